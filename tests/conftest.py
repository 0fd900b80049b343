"""Test-wide settings: DDS stays on this machine with transports that carry camera-sized images between
processes (params/dds.env), and each pytest run gets its own ROS domain."""
import os

from densehybrid_ros.config.dds import apply_dds_env

# Before any rclpy import: Fast DDS reads these when a participant is created, and child processes (the node
# under test) inherit them.
apply_dds_env(override=True)
# Domain ids 0..101 are safe on Linux with the default port mapping; spread runs by pid so that parallel
# runs (a developer's and CI's) do not see each other's topics.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
