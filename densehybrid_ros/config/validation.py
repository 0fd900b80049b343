"""The settings errors and range checks every layer above core uses: `ConfigError`, `check_range`, `check_choice`,
`require`.

They are defined in `densehybrid_ros/core/validation.py` because core, the bottom layer, validates its own settings
and may import nothing above it (docs/ARCHITECTURE.md section 2); this module is the import place for the rest.
"""
from densehybrid_ros.core.validation import ConfigError, check_choice, check_range, require

__all__ = ["ConfigError", "check_choice", "check_range", "require"]
