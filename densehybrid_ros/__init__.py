"""DenseHybrid open-set segmentation for ROS 2 vehicles (Grcic, Bevandic, Segvic, ECCV 2022)."""

__version__ = "0.1.0"
