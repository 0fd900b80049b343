"""The multi-camera node's own parameters (ros/multi_camera_node.py); every other parameter is the detector's
(config/detector.py, same names, ranges and meaning, applied to every camera).

One node serves N cameras: camera `c` is read from `<c>/<camera_image_topic>` (and `<c>/<camera_info_topic>`),
and its outputs go to `<c>/detector/<output>`, the topics a `detector` node in namespace `c` publishes
(launch/two_cameras.launch.py), so consumers do not change when N nodes become one.

This module imports neither rclpy nor torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from densehybrid_ros.config.validation import ConfigError

MAX_CAMERAS = 16
# A relative ROS name: tokens of letters, digits and underscores, not starting with a digit, joined by '/'.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
CAMERAS_FORM = (f"a list of 1..{MAX_CAMERAS} distinct camera namespaces, each a relative ROS name such as 'front' "
                "or 'cameras/front' (letters, digits, underscores; no leading digit or slash), e.g. "
                "cameras:=[front, rear]")
TOPIC_FORM = "a relative ROS name such as 'image_raw' or 'color/image_raw'"
BACKENDS = ("onnxruntime",)  # the batched graph runs on ONNX Runtime


@dataclass(frozen=True)
class MultiCameraSpec:
    name: str
    default: Any
    description: str


SPECS: tuple[MultiCameraSpec, ...] = (
    MultiCameraSpec("cameras", ["front", "rear"],
                    f"Camera namespaces served by this node: {CAMERAS_FORM}. The latest frame of each camera "
                    "goes into one batched inference; a camera that stops publishing is left out of the batch."),
    MultiCameraSpec("camera_image_topic", "image_raw",
                    f"Image topic of each camera, relative to its namespace: {TOPIC_FORM} (with input_transport "
                    "compressed, '<topic>/compressed')."),
    MultiCameraSpec("camera_info_topic", "camera_info",
                    f"CameraInfo topic of each camera, relative to its namespace: {TOPIC_FORM}."),
)
NAMES = tuple(s.name for s in SPECS)


@dataclass(frozen=True)
class MultiCameraConfig:
    cameras: tuple[str, ...] = ("front", "rear")
    camera_image_topic: str = "image_raw"
    camera_info_topic: str = "camera_info"

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "MultiCameraConfig":
        """Validate name -> value; every problem reported together, each naming the parameter and its valid form."""
        errors = []
        cameras = values.get("cameras", list(cls.cameras))
        try:
            cameras = check_cameras(cameras)
        except ConfigError as e:
            errors.append(str(e))
        topics = {}
        for name in ("camera_image_topic", "camera_info_topic"):
            value = values.get(name, getattr(cls, name))
            if not isinstance(value, str) or not _NAME.match(value):
                errors.append(f"parameter '{name}' = {value!r} is invalid: expected {TOPIC_FORM}")
            topics[name] = value
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            errors.append(f"unknown multi-camera parameter(s) {unknown} (known: {', '.join(NAMES)})")
        if errors:
            raise ConfigError("; ".join(errors))
        return cls(cameras=cameras, **topics)


def check_cameras(value: Any) -> tuple[str, ...]:
    bad = f"parameter 'cameras' = {value!r} is invalid: expected {CAMERAS_FORM}"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(bad)
    cameras = list(value)
    if not 1 <= len(cameras) <= MAX_CAMERAS or any(not isinstance(c, str) or not _NAME.match(c) for c in cameras):
        raise ConfigError(bad)
    repeated = sorted({c for c in cameras if cameras.count(c) > 1})
    if repeated:
        raise ConfigError(f"{bad} ({', '.join(repeated)} given twice)")
    return tuple(cameras)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"parameter 'backend' = {backend!r} is not supported by the multi-camera node: expected "
                          f"one of {', '.join(repr(b) for b in BACKENDS)} (the batched graph runs on ONNX Runtime)")
