"""Test-wide settings: DDS stays on this machine, and each pytest run gets its own ROS domain."""
import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Domain ids 0..101 are safe on Linux with the default port mapping; spread runs by pid so that parallel
# runs (a developer's and CI's) do not see each other's topics.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
