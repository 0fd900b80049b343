"""DDS settings that carry camera-sized images between processes (`params/dds.env` + the Fast DDS profile it names).

With Fast DDS's default transports a 1.5 MB image published by another process (a camera driver, a bag replay)
never reaches the node; in-process tests cannot see this. Every entry point that starts ROS 2 applies the same
`dds.env` before `rclpy.init()` (Fast DDS reads the environment when the participant is created): the tests'
conftest, `make demo`, the bag tools, the benchmark, and the launch files for the node.

A relative path in a value that names a file (the profile) is resolved from the folder above `params/`, so the
file works from a source checkout and from the installed share/densehybrid_ros/ alike.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

from densehybrid_ros.config.validation import ConfigError

PACKAGE = "densehybrid_ros"
DDS_ENV = "dds.env"
# Keys whose values are file paths (resolved against the package root when relative).
PATH_KEYS = ("FASTDDS_DEFAULT_PROFILES_FILE",)


def default_dds_env_path() -> Path:
    """params/dds.env of the source checkout, else of the installed package share folder."""
    source = Path(__file__).resolve().parents[2] / "params" / DDS_ENV
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / "params" / DDS_ENV
    except Exception:  # noqa: BLE001 - neither a checkout nor an ament install: report the checkout path
        return source


def read_dds_env(path: Path | None = None) -> dict[str, str]:
    """The KEY=VALUE lines of `path` (default: the package's params/dds.env), file paths made absolute."""
    path = Path(path) if path is not None else default_dds_env_path()
    if not path.is_file():
        raise ConfigError(f"DDS settings file {path} does not exist")
    root = path.resolve().parent.parent
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip().strip('"').strip("'")
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        if key in PATH_KEYS and value and not Path(value).is_absolute():
            value = str(root / value)
        if key in PATH_KEYS and value and not Path(value).is_file():
            raise ConfigError(f"{path}:{number}: {key} names {value}, which does not exist")
        values[key] = value
    return values


def apply_dds_env(environ: MutableMapping[str, str] | None = None, path: Path | None = None,
                  override: bool = False) -> dict[str, str]:
    """Put the DDS settings into `environ` (default: os.environ); keeps values already set unless `override`.
    Returns what was applied."""
    environ = os.environ if environ is None else environ
    applied = {}
    for key, value in read_dds_env(path).items():
        if override or key not in environ:
            environ[key] = value
            applied[key] = value
    return applied
