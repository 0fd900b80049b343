"""The detector node's parameters: one typed dataclass, the single source of their defaults, ranges and meaning.

Everything else is derived from `DetectorConfig`'s field metadata:
- the ROS parameter descriptors (type, FloatingPointRange / IntegerRange, description, run-time changeability)
  built by `densehybrid_ros/ros/parameters.py`,
- the validation messages (`DetectorConfig.from_values` names the parameter and its valid range or choices),
- the documented `params/detector.yaml` (`render_params_yaml`; regenerate with
  `python -m densehybrid_ros.config.detector > params/detector.yaml`).

This module imports neither rclpy nor torch, so the CLI and tests read the same definitions.
"""
from __future__ import annotations

import math
import sys
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Iterable

from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core import alert
from densehybrid_ros.core.alert import CORRIDOR_MODES, ROAD_CLASS_NAMES, AlertConfig, road_ids_from_names
from densehybrid_ros.core.alert_filters import TEMPORAL_MODES

if TYPE_CHECKING:
    from densehybrid_ros.config.model_card import ModelCard

# The core alert's default corridor as the ROS parameter's flat list x0, y0, x1, y1, ...
DEFAULT_CORRIDOR = tuple(float(v) for vertex in alert.DEFAULT_CORRIDOR for v in vertex)
MAX_CORRIDOR_VERTICES = alert.MAX_CORRIDOR_VERTICES
# The alert settings' defaults and ranges come from core/alert.py (AlertConfig, RANGES), so the parameters and
# the core alert cannot disagree on what is valid; the parameters carry the same names.
_ALERT_DEFAULTS = AlertConfig()

GROUPS = {
    "model": "Model and inference backend (read at configure)",
    "input": "Camera input (read at configure)",
    "threshold": "Open-set threshold tau (changeable at run time)",
    "alert": "Obstacle alert in the drive corridor (changeable at run time)",
    "output": "Outputs",
    "lifecycle": "Lifecycle",
}


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter as the node declares it."""

    name: str
    type: type            # bool | int | float | str | list (of floats)
    default: Any
    description: str
    group: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    dynamic: bool = False  # may change while the node is configured/active

    def valid_text(self) -> str:
        """The valid values, as the validation messages and the YAML comments say them."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is list:
            return (f"a flat list x0, y0, x1, y1, ... of 3..{MAX_CORRIDOR_VERTICES} vertices, "
                    f"each coordinate in [{_fmt(self.lo)}, {_fmt(self.hi)}]")
        if self.lo is not None or self.hi is not None:
            kind = "an integer" if self.type is int else "a number"
            return f"{kind} in [{_fmt(self.lo)}, {_fmt(self.hi)}]"
        return {bool: "true or false", str: "a string", int: "an integer", float: "a number"}[self.type]

    def check(self, value: Any) -> Any:
        """The value converted to this parameter's type, or ConfigError naming the parameter and its valid range."""
        bad = ConfigError(f"parameter '{self.name}' = {value!r} is invalid: expected {self.valid_text()}")
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise bad
            if self.choices is not None and value not in self.choices:
                raise bad
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            if self.type is int and int(value) != value:
                raise bad
            if isinstance(value, float) and not math.isfinite(value):
                raise bad
            if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                raise bad
            return int(value) if self.type is int else float(value)
        if self.type is list:
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise bad
            values = list(value)
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                raise bad
            if len(values) % 2 or not 3 <= len(values) // 2 <= MAX_CORRIDOR_VERTICES:
                raise bad
            if any(not math.isfinite(v) or v < self.lo or v > self.hi for v in values):
                raise bad
            return tuple(float(v) for v in values)
        raise AssertionError(self.type)  # pragma: no cover


def _fmt(v: float | None) -> str:
    if v is None:
        return "-inf"
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _param(default: Any, description: str, group: str, *, lo: float | None = None, hi: float | None = None,
           choices: Iterable[str] | None = None, dynamic: bool = False, kind: type | None = None):
    meta = {"description": description, "group": group, "lo": lo, "hi": hi,
            "choices": None if choices is None else tuple(choices), "dynamic": dynamic,
            "kind": kind if kind is not None else type(default)}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta)
    return field(default=default, metadata=meta)


def _alert_param(name: str, description: str, group: str = "alert"):
    """A run-time parameter of the core alert, with AlertConfig's default and RANGES' range for `name`."""
    lo, hi = alert.RANGES[name]
    return _param(getattr(_ALERT_DEFAULTS, name), description, group, lo=lo, hi=hi, dynamic=True)


@dataclass(frozen=True)
class DetectorConfig:
    """Every parameter of the `detector` node, with its default, valid range or choices and meaning."""

    # -- model ---------------------------------------------------------------------------------------------------
    model: str = _param(
        "", "Exported model: the .onnx file (its .card.yaml beside it) or the card itself. Empty: the model "
            "shipped in the package's models/ folder.", "model")
    backend: str = _param(
        "onnxruntime", "Inference runtime. onnxruntime picks TensorRT > CUDA > CPU providers when present; "
                       "tensorrt needs tensorrt + pycuda + a CUDA GPU; openvino (x86 CPUs) needs "
                       "requirements/openvino.txt; auto picks the fastest of these on this machine (shown in "
                       "diagnostics and densehybrid doctor); torch is for parity checks only.",
        "model", choices=("onnxruntime", "tensorrt", "openvino", "auto", "torch"))
    backend_threads: int = _param(
        0, "Intra-op threads of the runtime; 0 lets the runtime decide.", "model", lo=0, hi=64)
    warmup_runs: int = _param(
        2, "Inferences on a blank frame at configure, so the first camera frame does not pay for allocation "
           "and kernel selection.", "model", lo=0, hi=50)
    engine_policy: str = _param(
        "rebuild", "TensorRT engines (backend tensorrt, or onnxruntime with the TensorRT provider): when the cached "
                   "engine is missing, unreadable or was built for another TensorRT, GPU, precision or model, "
                   "'rebuild' builds it at configure (minutes, logged) and 'refuse' fails configure naming every "
                   "difference and the densehybrid build-engine command.", "model", choices=("rebuild", "refuse"))
    engine_precision: str = _param(
        "fp16", "TensorRT engine precision: fp32, fp16, int8 (calibrated; score head kept in FP32) or best.",
        "model", choices=("fp32", "fp16", "int8", "best"))
    engine_cache_dir: str = _param(
        "", "Folder of TensorRT engines and their sidecars; empty: beside the model file.", "model")
    # -- input -----------------------------------------------------------------------------------------------------
    input_transport: str = _param(
        "raw", "Subscribe to 'image' (sensor_msgs/Image) or 'image/compressed' (sensor_msgs/CompressedImage, "
               "jpeg or png).", "input", choices=("raw", "compressed"))
    use_camera_info: bool = _param(
        True, "Subscribe to 'camera_info' and report it in diagnostics (optional; frames are served without it).",
        "input")
    qos_reliability: str = _param(
        "best_effort", "Camera subscription reliability: best_effort is the sensor-data profile drivers use; "
                       "reliable for bag replay that must not lose frames.", "input",
        choices=("best_effort", "reliable"))
    qos_depth: int = _param(
        5, "Camera subscription history depth. The node still serves only the latest frame (a one-slot mailbox "
           "drops and counts the older ones as 'superseded'); a depth of 1 lets DDS overwrite frames while the "
           "executor is busy, and those losses are counted nowhere (measured at 1920x1080 under load: 27-30 of 30 "
           "reached the node with depth 1, 30 of 30 with 5).", "input", lo=1, hi=100)
    max_image_pixels: int = _param(
        8_294_400, "Frames with more pixels (width*height) are dropped as 'oversize' before decoding "
                   "(default: 3840x2160).", "input", lo=1, hi=67_108_864)
    prefer_cv_bridge: bool = _param(
        True, "Convert raw frames with cv_bridge when it is importable (ROS 2 distro installs); otherwise and for "
              "encodings cv_bridge lacks, the zero-copy numpy path.", "input")
    # -- threshold -------------------------------------------------------------------------------------------------
    threshold_source: str = _param(
        "card", "Where tau comes from: 'card' uses the calibrated tau in the model card (TPR 95% on the "
                "calibration split); 'parameter' uses the 'threshold' parameter.", "threshold",
        choices=("card", "parameter"), dynamic=True)
    threshold: float = _param(
        0.0, "Anomaly score threshold tau used when threshold_source is 'parameter': pixels scoring above it "
             "are labelled unknown (K) and can raise the alert. Units of the card's score type.",
        "threshold", lo=alert.RANGES["tau"][0], hi=alert.RANGES["tau"][1], dynamic=True)
    # -- alert -----------------------------------------------------------------------------------------------------
    corridor: tuple = _param(
        DEFAULT_CORRIDOR, "Drive corridor polygon in normalised image coordinates (x right, y down): flat list "
                          "x0, y0, x1, y1, ...", "alert", lo=0.0, hi=1.0, dynamic=True, kind=list)
    corridor_mode: str = _param(
        "polygon", "'polygon' watches the whole corridor; 'polygon_and_road' watches only its pixels predicted as "
                   "road plus anomalous regions standing on road, so pavements and verges inside the polygon are "
                   "ignored.", "alert", choices=CORRIDOR_MODES, dynamic=True)
    min_area_fraction: float = _alert_param(
        "min_area_fraction", "Smallest anomalous connected component that counts, as a fraction of the image area "
                             "(so it scales with resolution).")
    min_corridor_fraction: float = _alert_param(
        "min_corridor_fraction", "A frame counts as a hit when a component survives and the anomalous share of the "
                                 "watched corridor exceeds this.")
    raise_frames: int = _alert_param(
        "raise_frames", "Hysteresis: raise the alert once raise_frames of the last window_frames frames were hits.")
    window_frames: int = _alert_param(
        "window_frames", "Hysteresis: the sliding window of recent frames in which raise_frames hits are counted.")
    clear_frames: int = _alert_param(
        "clear_frames", "Hysteresis: clear a raised alert after clear_frames consecutive clean frames.")
    road_contact_fraction: float = _alert_param(
        "road_contact_fraction", "'polygon_and_road' mode: share of a region's lower edge that must rest on road "
                                 "for it to count.")
    max_regions: int = _alert_param(
        "max_regions", "At most this many regions (largest first) are reported in ~/obstacle_alert; all of them "
                       "count towards the corridor fraction.")
    temporal_fusion: str = _param(
        _ALERT_DEFAULTS.temporal_fusion,
        "Score filter of the alert (docs/ALERT.md): 'min' judges each corridor pixel by its lowest anomaly score "
        "over the last temporal_frames frames, so class-boundary flicker does not count and an obstacle present in "
        "consecutive frames does; 'mean' averages them; 'none' uses this frame only. The published score maps are "
        "not filtered. On CamVid val (15 Hz) 'min' over 3 frames halves the clean-frame false positives at the "
        "card's tau without losing pasted obstacles (docs/report/camvid/report.md); it delays the alert by "
        "temporal_frames - 1 frames.", "alert", choices=TEMPORAL_MODES, dynamic=True)
    temporal_frames: int = _alert_param(
        "temporal_frames", "Frames (this one included) that temporal_fusion combines.")
    score_opening_px: int = _alert_param(
        "score_opening_px", "Score filter of the alert: grey-level opening of the anomaly score with a square of "
                            "this side in pixels of the camera image (0 or 1: off); anomalous lines narrower than "
                            "it (class boundaries) are removed, blobs at least as wide are kept.")
    # -- output ----------------------------------------------------------------------------------------------------
    overlay_alpha: float = _param(
        0.5, "Opacity of the open-set colours blended on the camera image in ~/overlay.", "output",
        lo=0.0, hi=1.0, dynamic=True)
    diagnostics_period: float = _param(
        1.0, "Seconds between /diagnostics messages (rates and latencies are averaged over this window).",
        "output", lo=0.1, hi=60.0)
    # -- lifecycle -------------------------------------------------------------------------------------------------
    autostart: bool = _param(
        True, "Configure and activate on start-up, so a launch file needs no lifecycle manager. A failed "
              "configure leaves the node unconfigured (and alive) with the error logged.", "lifecycle")

    # -----------------------------------------------------------------------------------------------------------
    @classmethod
    def specs(cls) -> tuple[ParameterSpec, ...]:
        out = []
        for f in fields(cls):
            m = f.metadata
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            out.append(ParameterSpec(f.name, m["kind"], default, m["description"], m["group"], m["lo"], m["hi"],
                                     m["choices"], m["dynamic"]))
        return tuple(out)

    @classmethod
    def spec(cls, name: str) -> ParameterSpec:
        for s in cls.specs():
            if s.name == name:
                return s
        raise KeyError(name)

    @classmethod
    def from_values(cls, values: dict[str, Any], base: "DetectorConfig | None" = None) -> "DetectorConfig":
        """Validate `values` (name -> value) on top of `base` (default: the defaults). Unknown names and every
        invalid value are reported together in one ConfigError, each naming the parameter and its valid range."""
        specs = {s.name: s for s in cls.specs()}
        errors, checked = [], {}
        for name, value in values.items():
            spec = specs.get(name)
            if spec is None:
                errors.append(f"unknown parameter '{name}' (known: {', '.join(specs)})")
                continue
            try:
                checked[name] = spec.check(value)
            except ConfigError as e:
                errors.append(str(e))
        if errors:
            raise ConfigError("; ".join(errors))
        config = replace(base if base is not None else cls(), **checked)
        config.check_consistency()
        return config

    def check_consistency(self) -> None:
        """Relations between parameters that single ranges cannot express."""
        if self.raise_frames > self.window_frames:
            raise ConfigError(f"parameter 'raise_frames' = {self.raise_frames} is invalid: expected an integer in "
                              f"[1, window_frames={self.window_frames}] (m of the last n frames)")
        if alert.polygon_area(self.corridor) < alert.MIN_POLYGON_AREA:
            raise ConfigError(f"parameter 'corridor' = {list(self.corridor)} is invalid: the polygon has no area")

    def tau_for(self, card: "ModelCard") -> float:
        """The threshold in use: the card's calibrated tau (`threshold_source: card`) or the `threshold` parameter."""
        if self.threshold_source == "parameter":
            return float(self.threshold)
        if card.tau is None:
            raise ConfigError(f"parameter 'threshold_source' = 'card' but the model card {card.card_path} has no "
                              f"calibrated tau (calibrate the model with `densehybrid calibrate`, or set "
                              f"threshold_source: parameter and threshold)")
        return float(card.tau)

    def alert_config_for(self, card: "ModelCard", tau: float | None = None) -> AlertConfig:
        """The core alert's settings: the one builder, used by the node and the demo alike.

        The alert parameters of this config (same names in AlertConfig), `tau` (default: `tau_for(card)`) and the
        road class ids read from the card's class names, so a model with another taxonomy keeps working. The polygon
        mode needs no road class; a card without one fails only when `polygon_and_road` is asked for.
        """
        if tau is None:
            tau = self.tau_for(card)
        names = [c.name for c in card.classes]
        if self.corridor_mode == "polygon_and_road":
            road_ids = road_ids_from_names(names)
        else:
            road_ids = tuple(i for i, n in enumerate(names) if n in ROAD_CLASS_NAMES)
        return AlertConfig(corridor=self.corridor, corridor_mode=self.corridor_mode, road_ids=road_ids,
                           tau=float(tau), temporal_fusion=self.temporal_fusion,
                           **{name: getattr(self, name) for name in ALERT_PARAMETERS}).validate()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def dynamic_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs() if s.dynamic)


# The numeric parameters that are AlertConfig fields of the same name, with its RANGES (corridor, corridor_mode and
# temporal_fusion are passed above).
ALERT_PARAMETERS = ("min_area_fraction", "min_corridor_fraction", "raise_frames", "window_frames", "clear_frames",
                    "road_contact_fraction", "max_regions", "temporal_frames", "score_opening_px")


def render_params_yaml() -> str:
    """params/detector.yaml: every parameter with its default and a comment giving its meaning and valid values."""
    lines = [
        "# Parameters of the densehybrid_ros `detector` node, with their defaults.",
        "# Generated from densehybrid_ros/config/detector.py (the single source of ranges and meaning):",
        "#   python -m densehybrid_ros.config.detector > params/detector.yaml",
        "# '/**' applies to every node that loads this file, whatever its name or namespace (one file serves",
        "# several cameras). Parameters marked [run time] can be changed with `ros2 param set` while the node runs;",
        "# the others are read at configure (change them, then cleanup + configure).",
        "/**:",
        "  ros__parameters:",
    ]
    current_group = None
    for s in DetectorConfig.specs():
        if s.group != current_group:
            current_group = s.group
            lines += ["", f"    # --- {GROUPS[s.group]} ---"]
        tag = "[run time] " if s.dynamic else ""
        lines += _wrap(f"{tag}{s.description} Valid: {s.valid_text()}.", indent="    # ")
        lines.append(f"    {s.name}: {_yaml_value(s.default)}")
    return "\n".join(lines) + "\n"


def render_parameters_markdown() -> str:
    """The parameter table of docs/NODE.md (a test keeps the page in step with this module)."""
    rows = ["| parameter | type | default | valid | run time | meaning |", "|---|---|---|---|---|---|"]
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "double[]"}
    for s in DetectorConfig.specs():
        default = _yaml_value(s.default).replace("|", "\\|")
        rows.append(f"| `{s.name}` | {names[s.type]} | `{default}` | {s.valid_text()} | "
                    f"{'yes' if s.dynamic else 'no'} | {s.description} |")
    return "\n".join(rows) + "\n"


def _yaml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '""' if v == "" else f"{v}"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(repr(float(x)) for x in v) + "]"
    return str(v)


def _wrap(text: str, indent: str, width: int = 110) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(indent) + len(line) + 1 + len(word) > width:
            out.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(indent + line)
    return out


if __name__ == "__main__":
    sys.stdout.write(render_params_yaml())
