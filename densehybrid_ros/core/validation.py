"""Small checks that produce messages naming the setting and its valid range.

They live in core, the bottom layer, because core validates its own settings (the alert config); every layer
above imports them from `densehybrid_ros.config.validation`, which re-exports this module.
"""
from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """A setting is missing, of the wrong type, or outside its valid range. The message names the setting."""


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if value != value:  # NaN
        raise ConfigError(f"{name}: NaN is not a valid value")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value!r} is outside its valid range [{lo}, {hi}]")
    return int(value) if integer else value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def require(mapping: dict, key: str, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where}: missing required key {key!r}")
    return mapping[key]
