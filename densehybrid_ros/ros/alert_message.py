"""The obstacle alert on the wire: `diagnostic_msgs/DiagnosticArray` on `~/obstacle_alert`.

Why this type (docs/NODE.md has the long form): custom .msg packages cannot be built from the PyPI ROS 2 wheels,
and vision_msgs is not in every distro's base install, so the alert uses a standard type that every ROS 2 install
has. DiagnosticArray is stamped (the header is the camera frame's header, so the alert lines up with the image it
came from), its level field is a ready-made three-state severity (OK / WARN / ERROR = clear / warning / alert), and
its key/value lists carry the numbers without inventing a binary layout. Every ROS tool already displays it
(`ros2 topic echo`, rqt_runtime_monitor, Foxglove), and a diagnostic_aggregator can fold it into the vehicle's
health tree.

Layout (one message per processed frame, published even when clear, so silence always means "node down"):
- header: the input image's header, unchanged.
- status[0], name "obstacle_alert": level OK / WARN / ERROR, message "clear" / "warning" / "alert",
  hardware_id = the camera frame_id; values: state, corridor_fraction (anomalous share of the corridor, 0..1),
  peak_score (highest anomaly score in the corridor), threshold (tau), num_regions, image_width, image_height.
- status[1..], name "obstacle_alert/region_<i>": one per anomalous connected component in the corridor, largest
  first; values: x_offset, y_offset, width, height (the pixel box, as in sensor_msgs/RegionOfInterest), area_px
  (anomalous pixels of the component), peak_score.

`parse_alert` turns a message back into an `AlertReport` for consumers and tests, and refuses a message whose
level contradicts its state: a consumer that acts on the level (a diagnostic aggregator, a safety monitor) and one
that reads the state must never see two different answers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from densehybrid_ros.core.alert import STATES

ALERT_TYPE = DiagnosticArray
STATUS_NAME = "obstacle_alert"
# The wire severity of each state (DiagnosticStatus.level is a one-byte `bytes` in rclpy).
LEVELS = {"clear": DiagnosticStatus.OK, "warning": DiagnosticStatus.WARN, "alert": DiagnosticStatus.ERROR}


@dataclass
class Region:
    """One anomalous region: its pixel box (sensor_msgs/RegionOfInterest convention), area and peak score."""

    x_offset: int
    y_offset: int
    width: int
    height: int
    area_px: int
    peak_score: float


@dataclass
class AlertReport:
    state: str
    corridor_fraction: float
    peak_score: float
    threshold: float
    regions: list[Region] = field(default_factory=list)
    image_width: int = 0
    image_height: int = 0
    frame_id: str = ""
    stamp_ns: int = 0


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, float):
        value = f"{value:.6g}"
    return KeyValue(key=key, value=str(value))


def to_message(report: AlertReport, header: Any) -> DiagnosticArray:
    if report.state not in STATES:
        raise ValueError(f"alert state {report.state!r} is not one of {', '.join(STATES)}")
    msg = DiagnosticArray()
    msg.header = header
    level = LEVELS[report.state]
    summary = DiagnosticStatus(level=level, name=STATUS_NAME, message=report.state, hardware_id=header.frame_id)
    summary.values = [
        _kv("state", report.state), _kv("corridor_fraction", float(report.corridor_fraction)),
        _kv("peak_score", float(report.peak_score)), _kv("threshold", float(report.threshold)),
        _kv("num_regions", len(report.regions)), _kv("image_width", int(report.image_width)),
        _kv("image_height", int(report.image_height)),
    ]
    statuses = [summary]
    for i, r in enumerate(report.regions):
        st = DiagnosticStatus(level=level, name=f"{STATUS_NAME}/region_{i}", message=report.state,
                              hardware_id=header.frame_id)
        st.values = [_kv("x_offset", int(r.x_offset)), _kv("y_offset", int(r.y_offset)),
                     _kv("width", int(r.width)), _kv("height", int(r.height)), _kv("area_px", int(r.area_px)),
                     _kv("peak_score", float(r.peak_score))]
        statuses.append(st)
    msg.status = statuses
    return msg


def parse_alert(msg: DiagnosticArray) -> AlertReport:
    """The AlertReport in a message written by `to_message` (ValueError if it is not one)."""
    if not msg.status or msg.status[0].name != STATUS_NAME:
        raise ValueError(f"not an obstacle alert: first status is {msg.status[0].name if msg.status else None!r}")
    values = {kv.key: kv.value for kv in msg.status[0].values}
    state = values.get("state")
    if state not in STATES:
        raise ValueError(f"obstacle alert state {state!r} is not one of {', '.join(STATES)}")
    for st in msg.status:
        if st.level != LEVELS[state]:
            raise ValueError(f"obstacle alert status {st.name!r} has level {level_number(st.level)} but the state is "
                             f"{state!r} (level {level_number(LEVELS[state])})")
    regions = []
    for st in msg.status[1:]:
        v = {kv.key: kv.value for kv in st.values}
        regions.append(Region(int(v["x_offset"]), int(v["y_offset"]), int(v["width"]), int(v["height"]),
                              int(v["area_px"]), float(v["peak_score"])))
    stamp = msg.header.stamp
    return AlertReport(state=state, corridor_fraction=float(values["corridor_fraction"]),
                       peak_score=float(values["peak_score"]), threshold=float(values["threshold"]),
                       regions=regions, image_width=int(values["image_width"]),
                       image_height=int(values["image_height"]), frame_id=msg.header.frame_id,
                       stamp_ns=stamp.sec * 1_000_000_000 + stamp.nanosec)


def level_number(level: Any) -> int:
    """A DiagnosticStatus level as an int (rclpy gives a one-byte `bytes`)."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def report_from_state(state: Any, width: int, height: int) -> AlertReport:
    """The report of a core `AlertState` (core/alert.py) for an image of width x height."""
    regions = [Region(int(b.x0), int(b.y0), int(b.x1 - b.x0), int(b.y1 - b.y0), int(b.area), float(b.peak_score))
               for b in state.boxes]
    return AlertReport(state=state.state, corridor_fraction=float(state.corridor_fraction),
                       peak_score=float(state.peak_score), threshold=float(state.tau), regions=regions,
                       image_width=int(width), image_height=int(height))
