"""The one typed, validated configuration layer: every entry point (node, CLI, tests) reads settings through here.

- model_card.py: the YAML that travels beside every exported model (classes, palette, K, input, score, tau).
- detector.py:   the node's parameters with their ranges (shared by ROS parameter descriptors and the CLI).
- training.py:   training run configs (training/configs/*.yaml).
"""
from densehybrid_ros.config.validation import ConfigError  # noqa: F401
