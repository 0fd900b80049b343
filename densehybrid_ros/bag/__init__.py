"""rosbag2 tools: synthetic drives and frame-sequence datasets as bags, replay, recording, and the node's
evaluation on a bag (docs/BAGS.md).

A thin layer over `rosbags` (real rosbag2 directories, sqlite3 or mcap, CDR, standard metadata.yaml): no bag
format and no message definition of our own. File IO (`files`, `drives`, `convert`, `analysis`, `report`) needs
no ROS install; only `live` (replay and recording over DDS) and `evaluate` import rclpy.
"""
