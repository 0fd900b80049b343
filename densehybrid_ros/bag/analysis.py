"""What `densehybrid bag evaluate` measures, from two bags: the input (frames, labels) and the recorded outputs of
the node, matched by header stamp.

- pixel metrics (AP, AUROC, FPR95 of the published anomaly score; evaluation/metrics.py) and open-set figures
  (open-mIoU of the published open-set map, closed-set mIoU of the semantic map; evaluation/open_miou.py) on the
  frames that got outputs;
- latency per frame: stamp to publish (the output's DDS source timestamp) and stamp to receive; with re-stamped
  replay the stamp is the time the frame was published, as a camera driver stamps it;
- drops: frames without an alert output, and the node's own drop counters from /diagnostics;
- the alert against ground truth (`truth.CorridorTruth`): for each obstacle event (a run of frames with the labelled
  obstacle in the corridor) the frames and seconds from its entry to the node's first ALERT, or a miss; alerts and
  warnings that rise away from any obstacle, per minute of obstacle-free drive.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.bag.files import BagError, image_array, open_bag, stamp_ns
from densehybrid_ros.bag.truth import CorridorTruth
from densehybrid_ros.evaluation.metrics import VOID, pixel_metrics
from densehybrid_ros.evaluation.open_miou import (ConfusionAccumulator, closed_set_confusion, closed_set_miou,
                                                  iou_per_class, open_miou)

# Pixels kept for the exact pixel metrics; longer bags are subsampled on a fixed grid (deterministic).
MAX_METRIC_PIXELS = 40_000_000
PERCENTILES = (50, 90, 99)


@dataclass
class FrameRecord:
    index: int
    stamp_ns: int                       # the bag's stamp
    t: float                            # seconds from the first frame
    published_stamp_ns: int | None = None
    truth_hit: bool | None = None       # None: no labels
    truth_fraction: float | None = None
    state: str | None = None            # the node's alert state; None: no output for this frame
    corridor_fraction: float | None = None
    regions: tuple = ()                 # the node's alert regions (x0, y0, x1, y1)
    truth_boxes: tuple = ()             # labelled obstacle components in the corridor
    # Labelled obstacle pixels in those components, and how many of them the node flagged (~/open_set = anomaly)
    # inside one of its alert regions; None when no ~/open_set output matched the frame.
    obstacle_pixels: int | None = None
    obstacle_flagged_in_regions: int | None = None
    stamp_to_publish_ms: float | None = None
    stamp_to_receive_ms: float | None = None


@dataclass
class Event:
    start: int          # frame the obstacle entered the corridor
    end: int            # last frame of the run
    alert_frame: int | None = None
    alert_raised_before_entry: bool = False

    @property
    def missed(self) -> bool:
        return self.alert_frame is None


@dataclass
class Analysis:
    frames: list[FrameRecord]
    fps: float
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def read_stamp_log(path: Path, topic: str) -> dict[int, int]:
    """Original -> published stamps of `topic` from `bag play --stamp-log`."""
    out: dict[int, int] = {}
    if not path.is_file():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["topic"] == topic:
                out[int(row["bag_stamp_ns"])] = int(row["published_stamp_ns"])
    return out


def _region(status: Any) -> tuple[int, int, int, int]:
    v = {kv.key: int(float(kv.value)) for kv in status.values if kv.key in ("x_offset", "y_offset", "width", "height")}
    return v["x_offset"], v["y_offset"], v["x_offset"] + v["width"], v["y_offset"] + v["height"]


# Share of the labelled obstacle's pixels the node must flag inside its alert regions for the alert to be on it.
MIN_FLAGGED_SHARE = 0.05


def on_obstacle(frame: FrameRecord) -> bool:
    """The node's alert is on the labelled obstacle: its regions hold at least MIN_FLAGGED_SHARE of the obstacle's
    pixels flagged by the node. Boxes alone are not enough: a false-positive region spanning the corridor contains
    every obstacle in it. Without an ~/open_set output for the frame, only the boxes can be compared."""
    if frame.obstacle_flagged_in_regions is not None and frame.obstacle_pixels:
        return frame.obstacle_flagged_in_regions >= max(1, MIN_FLAGGED_SHARE * frame.obstacle_pixels)
    return any(r[0] < t[2] and t[0] < r[2] and r[1] < t[3] and t[1] < r[3]
               for r in frame.regions for t in frame.truth_boxes)


def obstacle_flagged_in_regions(labels: np.ndarray, open_set: np.ndarray, regions: tuple, truth_boxes: tuple,
                                anomaly_label: int) -> tuple[int, int]:
    """(labelled obstacle pixels in the truth boxes, those of them flagged in open_set and inside a region)."""
    obstacle = np.zeros(labels.shape, bool)
    for x0, y0, x1, y1 in truth_boxes:
        obstacle[y0:y1, x0:x1] |= labels[y0:y1, x0:x1] == anomaly_label
    in_region = np.zeros(labels.shape, bool)
    for x0, y0, x1, y1 in regions:
        in_region[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    flagged = obstacle & in_region & (open_set == anomaly_label)
    return int(obstacle.sum()), int(flagged.sum())


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values, np.float64)
    out = {f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}
    out.update(mean=float(v.mean()), max=float(v.max()), n=int(v.size))
    return out


def analyse(input_bag: Path, image_topic: str, labels_topic: str | None, outputs_bag: Path, private: str,
            stamp_map: dict[int, int], published_times: dict[tuple[str, int], int], truth: CorridorTruth | None,
            num_classes: int, raise_window: int) -> Analysis:
    """Match the recorded outputs to the input frames and compute every figure of the report."""
    with open_bag(input_bag) as bag:
        bag.require(image_topic)
        stamps = []
        for _, _, _, msg in bag.decoded([image_topic]):
            stamps.append(stamp_ns(msg.header.stamp))
    if not stamps:
        raise BagError(f"bag {input_bag} has no frames on {image_topic}")
    t0 = stamps[0]
    frames = [FrameRecord(i, s, (s - t0) / 1e9) for i, s in enumerate(stamps)]
    fps = (len(stamps) - 1) / ((stamps[-1] - t0) / 1e9) if len(stamps) > 1 and stamps[-1] > t0 else 1.0
    by_published: dict[int, FrameRecord] = {}
    for f in frames:
        f.published_stamp_ns = stamp_map.get(f.stamp_ns, f.stamp_ns)
        by_published[f.published_stamp_ns] = f
    result = Analysis(frames, fps)

    alert_topic = f"{private}/obstacle_alert"
    score_maps: dict[int, np.ndarray] = {}
    semantic: dict[int, np.ndarray] = {}
    open_set: dict[int, np.ndarray] = {}
    diagnostics: list[dict[str, str]] = []
    unmatched = 0
    with open_bag(outputs_bag) as out:
        for topic, _, log_ns, msg in out.decoded():
            if topic == "/diagnostics":
                for st in msg.status:
                    if st.name.startswith(f"{private}:"):
                        diagnostics.append({kv.key: kv.value for kv in st.values})
                continue
            frame = by_published.get(stamp_ns(msg.header.stamp))
            if frame is None:
                unmatched += 1
                continue
            if topic == alert_topic:
                values = {kv.key: kv.value for kv in msg.status[0].values} if msg.status else {}
                frame.state = values.get("state")
                frame.corridor_fraction = float(values.get("corridor_fraction", "nan"))
                frame.regions = tuple(_region(st) for st in msg.status[1:])
                published = published_times.get((topic, log_ns))
                if published is not None:
                    frame.stamp_to_publish_ms = (published - frame.published_stamp_ns) / 1e6
                frame.stamp_to_receive_ms = (log_ns - frame.published_stamp_ns) / 1e6
            elif topic.endswith("/anomaly_score"):
                score_maps[frame.index] = image_array(msg)
            elif topic.endswith("/semantic"):
                semantic[frame.index] = image_array(msg)
            elif topic.endswith("/open_set"):
                open_set[frame.index] = image_array(msg)
    m = result.metrics
    answered = [f for f in frames if f.state is not None]
    m["frames"] = len(frames)
    m["frames_with_outputs"] = len(answered)
    m["outputs_without_input"] = unmatched
    m["drop_rate"] = 1.0 - len(answered) / len(frames)
    m["fps"] = fps
    m["duration_s"] = frames[-1].t
    m["latency_ms"] = {
        "stamp_to_publish": _percentiles([f.stamp_to_publish_ms for f in answered
                                          if f.stamp_to_publish_ms is not None]),
        "stamp_to_receive": _percentiles([f.stamp_to_receive_ms for f in answered
                                          if f.stamp_to_receive_ms is not None]),
    }
    if diagnostics:
        last = diagnostics[-1]
        m["node_drops"] = {k[len("drops."):]: int(v) for k, v in last.items() if k.startswith("drops.")}
        processing = [float(d["processing_ms_mean"]) for d in diagnostics
                      if d.get("processing_ms_mean") not in (None, "n/a")]
        infer = [float(d["backend_infer_ms_mean"]) for d in diagnostics
                 if d.get("backend_infer_ms_mean") not in (None, "n/a")]
        m["latency_ms"]["arrival_to_publish_node_windows"] = _percentiles(processing)
        m["latency_ms"]["backend_infer_node_windows"] = _percentiles(infer)
    else:
        result.skipped.append("node drop counters and arrival-to-publish latency (no /diagnostics recorded)")

    if labels_topic is None:
        result.skipped += ["pixel metrics (AP, AUROC, FPR95): the bag has no labels",
                           "open-set metrics: the bag has no labels",
                           "time to alert, missed obstacles and false alerts against ground truth: no labels"]
    else:
        try:
            _pixel_and_open_set(result, input_bag, labels_topic, truth, score_maps, semantic, open_set, num_classes)
        except BagError:
            raise
        except ValueError as e:
            raise BagError(f"labels on {labels_topic} in {input_bag} do not fit the model's {num_classes} classes "
                           f"and anomaly id {num_classes}: {e}") from None
        _alert_against_truth(result, raise_window)
    _alert_timeline(result)
    return result


def _pixel_and_open_set(result: Analysis, input_bag: Path, labels_topic: str, truth: CorridorTruth | None,
                        score_maps: dict, semantic: dict, open_set: dict, num_classes: int) -> None:
    frames_by_stamp = {f.stamp_ns: f for f in result.frames}
    scores, labels = [], []
    total = sum(s.size for s in score_maps.values())
    stride = max(1, math.ceil(total / MAX_METRIC_PIXELS))
    open_conf = ConfusionAccumulator(num_classes + 1)
    closed_conf = ConfusionAccumulator(num_classes)
    with open_bag(input_bag) as bag:
        bag.require(labels_topic)
        for _, _, _, msg in bag.decoded([labels_topic]):
            frame = frames_by_stamp.get(stamp_ns(msg.header.stamp))
            if frame is None:
                continue
            label = image_array(msg)
            if label.ndim != 2:
                raise BagError(f"labels on {labels_topic} in {input_bag} must be single-channel ids")
            if truth is not None:
                t = truth(label)
                frame.truth_hit, frame.truth_fraction, frame.truth_boxes = t.hit, t.corridor_fraction, t.boxes
            i = frame.index
            if i in score_maps and score_maps[i].shape == label.shape:
                anomaly = np.where(label == VOID, VOID, (label == num_classes).astype(np.uint8))
                scores.append(score_maps[i].reshape(-1)[::stride])
                labels.append(anomaly.reshape(-1)[::stride])
            if i in open_set and open_set[i].shape == label.shape:
                open_conf.add(label, open_set[i])
                if frame.truth_boxes:
                    frame.obstacle_pixels, frame.obstacle_flagged_in_regions = obstacle_flagged_in_regions(
                        label, open_set[i], frame.regions, frame.truth_boxes, num_classes)
            if i in semantic and semantic[i].shape == label.shape:
                closed_conf.matrix += closed_set_confusion(label, semantic[i], num_classes)
    m = result.metrics
    if scores:
        s, y = np.concatenate(scores), np.concatenate(labels)
        if (y == 1).any() and (y == 0).any():
            pm = pixel_metrics(s, y)
            m["pixel"] = {"ap": pm.ap, "auroc": pm.auroc, "fpr95": pm.fpr95, "anomaly_pixels": pm.n_pos,
                          "inlier_pixels": pm.n_neg, "frames": len(scores), "subsample": stride}
        else:
            result.skipped.append("pixel metrics: the labelled frames with outputs have no anomaly pixels "
                                  "(or no inlier pixels)")
    else:
        result.skipped.append("pixel metrics: no ~/anomaly_score output matched a labelled frame")
    if open_conf.matrix.sum():
        conf = open_conf.matrix
        anomaly_row = conf[num_classes]
        inlier_rows = conf[:num_classes]
        m["open_set"] = {
            "open_miou": open_miou(conf),
            "anomaly_iou": float(iou_per_class(conf)[num_classes]) if conf[num_classes].sum() or
            conf[:, num_classes].sum() else None,
            "anomaly_recall_at_tau": float(anomaly_row[num_classes] / anomaly_row.sum()) if anomaly_row.sum() else None,
            "inlier_flagged_at_tau": float(inlier_rows[:, num_classes].sum() / inlier_rows.sum())
            if inlier_rows.sum() else None,
        }
    else:
        result.skipped.append("open-set metrics: no ~/open_set output matched a labelled frame")
    if closed_conf.matrix.sum():
        m.setdefault("open_set", {})["closed_miou"] = closed_set_miou(closed_conf.matrix)


def _alert_against_truth(result: Analysis, raise_window: int) -> None:
    frames = result.frames
    hits = [bool(f.truth_hit) for f in frames]
    events: list[Event] = []
    i = 0
    while i < len(hits):
        if hits[i]:
            j = i
            while j + 1 < len(hits) and hits[j + 1]:
                j += 1
            events.append(Event(i, j))
            i = j + 1
        else:
            i += 1
    states = _held_states(frames)
    for ev in events:
        # Counted from the first frame at or after the entry whose output is in ALERT with a region on the obstacle:
        # an alert standing for other reasons (false positives elsewhere in the corridor) is not a detection.
        for k in range(ev.start, ev.end + 1):
            if frames[k].state == "alert" and on_obstacle(frames[k]):
                ev.alert_frame = k
                break
        ev.alert_raised_before_entry = ev.start > 0 and states[ev.start - 1] == "alert"
    result.events = events
    near = np.zeros(len(frames), bool)
    for ev in events:
        near[max(0, ev.start - raise_window):min(len(frames), ev.end + raise_window + 1)] = True
    false_alerts = _rises(states, "alert", ~near)
    false_warnings = _rises(states, "warning", ~near)
    clean_s = float((~near).sum()) / result.fps
    m = result.metrics
    m["alert"] = {
        "obstacle_events": len(events),
        "missed": sum(ev.missed for ev in events),
        "time_to_alert": [{"entry_frame": ev.start, "entry_s": frames[ev.start].t, "alert_frame": ev.alert_frame,
                           "frames": None if ev.missed else ev.alert_frame - ev.start,
                           "seconds": None if ev.missed else frames[ev.alert_frame].t - frames[ev.start].t,
                           "frames_in_corridor": ev.end - ev.start + 1,
                           "raised_before_entry": ev.alert_raised_before_entry} for ev in events],
        "clean_seconds": clean_s,
        "false_alerts": false_alerts,
        "false_warnings": false_warnings,
        "false_alerts_per_min": false_alerts / clean_s * 60 if clean_s > 0 else None,
        "false_warnings_per_min": false_warnings / clean_s * 60 if clean_s > 0 else None,
    }


def _held_states(frames: list[FrameRecord]) -> list[str]:
    """The node's state per frame; a frame without output holds the previous state (what a consumer sees)."""
    out, last = [], "clear"
    for f in frames:
        last = f.state if f.state is not None else last
        out.append(last)
    return out


def _rises(states: list[str], level: str, where: np.ndarray) -> int:
    """Rising edges into `level` at frames where `where` holds."""
    count = 0
    for k, s in enumerate(states):
        if s == level and (k == 0 or states[k - 1] != level) and where[k]:
            count += 1
    return count


def _alert_timeline(result: Analysis) -> None:
    states = _held_states(result.frames)
    first = next((k for k, s in enumerate(states) if s == "alert"), None)
    rises = _rises(states, "alert", np.ones(len(states), bool))
    minutes = max(result.metrics["duration_s"], 1.0 / result.fps) / 60.0
    result.metrics["alert_timeline"] = {
        "first_alert_frame": first, "first_alert_s": None if first is None else result.frames[first].t,
        "alert_frames": sum(s == "alert" for s in states), "warning_frames": sum(s == "warning" for s in states),
        "alerts_raised": rises, "alerts_per_min": rises / minutes,
        "states": "".join({"clear": "C", "warning": "W", "alert": "A"}.get(f.state or "", "-")
                          for f in result.frames),
    }
