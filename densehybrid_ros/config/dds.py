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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

from densehybrid_ros.config.validation import ConfigError

PACKAGE = "densehybrid_ros"
DDS_ENV = "dds.env"
# Keys whose values are file paths (resolved against the package root when relative).
PATH_KEYS = ("FASTDDS_DEFAULT_PROFILES_FILE",)


def default_dds_env_path() -> Path:
    """params/dds.env of the source checkout, else of the installed package's share folder (ament index, then the
    prefix a pip install put it in)."""
    source = Path(__file__).resolve().parents[2] / "params" / DDS_ENV
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / "params" / DDS_ENV
    except Exception:  # noqa: BLE001 - not an ament install
        pass
    installed = Path(sys.prefix) / "share" / PACKAGE / "params" / DDS_ENV
    # Neither: report the checkout path, where a developer would look.
    return installed if installed.is_file() else source


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


# -- what a Fast DDS profile gives ROS 2 participants ----------------------------------------------------------------
# Fast DDS's shared-memory segment when a profile does not set one (eProsima's SharedMemTransportDescriptor default).
FASTDDS_DEFAULT_SHM_SEGMENT = 512 * 1024


@dataclass
class ProfileTransports:
    """The transports of a Fast DDS XML profile's default participant (what every ROS 2 node started with
    FASTDDS_DEFAULT_PROFILES_FILE pointing to it gets)."""

    path: Path
    default_participant: bool            # a <participant is_default_profile="true"> exists
    shm_segment: int | None              # largest shared-memory segment among its transports; None: no SHM
    udp_buffers: tuple[int, int] | None  # (send, receive) socket buffers asked for, 0 = system default; None: no UDP
    builtin_transports: bool             # the builtin transports are still on (useBuiltinTransports not false)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def read_profile_transports(path: Path) -> ProfileTransports:
    """Parse `path` (a Fast DDS XML profiles file); ConfigError naming the file when it is missing or not XML."""
    import xml.etree.ElementTree as ET

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Fast DDS profile {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ConfigError(f"Fast DDS profile {path} is not valid XML: {e}") from e
    descriptors = {}
    for desc in root.iter():
        if _local(desc.tag) == "transport_descriptor":
            descriptors[_child_text(desc, "transport_id")] = desc
    participant = next((p for p in root.iter() if _local(p.tag) == "participant"
                        and p.get("is_default_profile", "").lower() == "true"), None)
    shm, udp, builtin = None, None, True
    if participant is not None:
        for element in participant.iter():
            name = _local(element.tag)
            if name == "useBuiltinTransports":
                builtin = (element.text or "").strip().lower() != "false"
            if name != "transport_id" or element.text is None or element.text.strip() not in descriptors:
                continue
            desc = descriptors[element.text.strip()]
            kind = (_child_text(desc, "type") or "").upper()
            try:
                if kind == "SHM":
                    segment = int(_child_text(desc, "segment_size") or FASTDDS_DEFAULT_SHM_SEGMENT)
                    shm = max(shm or 0, segment)
                elif kind in ("UDPV4", "UDPV6"):
                    udp = (int(_child_text(desc, "sendBufferSize") or 0),
                           int(_child_text(desc, "receiveBufferSize") or 0))
            except ValueError as e:
                raise ConfigError(f"Fast DDS profile {path}: transport {element.text.strip()!r}: {e}") from e
    return ProfileTransports(path=path, default_participant=participant is not None, shm_segment=shm,
                             udp_buffers=udp, builtin_transports=builtin)
