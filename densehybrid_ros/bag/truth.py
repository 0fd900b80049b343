"""Ground truth for the alert: in which frames an obstacle is in the drive corridor, judged from the labels by the
node's own alert code (same corridor polygon, minimum area and corridor mode as the node's parameters).

The labelled anomaly (id K) plays the part of the score map: a pixel is anomalous exactly where the labels say K.
A frame whose anomalous corridor component passes the node's per-frame test is a ground-truth hit; an obstacle
"enters the corridor" at the first hit of a run of hits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import yaml

from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "params" / "detector.yaml"


def load_detector_params(path: str | Path | None = None) -> DetectorConfig:
    """The node's parameters from a ROS 2 parameters file (the `ros__parameters` of its first node entry)."""
    path = Path(path) if path is not None else DEFAULT_PARAMS
    if not path.is_file():
        raise ConfigError(f"parameters file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"parameters file {path} is not YAML: {e}") from None
    for entry in data.values() if isinstance(data, dict) else ():
        if isinstance(entry, dict) and isinstance(entry.get("ros__parameters"), dict):
            values = dict(entry["ros__parameters"])
            known = {s.name for s in DetectorConfig.specs()}
            try:
                return DetectorConfig.from_values({k: v for k, v in values.items() if k in known})
            except ConfigError as e:
                raise ConfigError(f"parameters file {path}: {e}") from None
    raise ConfigError(f"parameters file {path} has no '<node>: ros__parameters:' section")


def truth_alert_config(params: DetectorConfig, class_names: Sequence[str]) -> AlertConfig:
    """The node's alert settings (its one builder) with a threshold between 'not anomaly' (0) and 'anomaly' (1).

    The score filters stay off: they clean a noisy score, and applied to the labels they would delay the frame an
    obstacle enters (temporal fusion) or erase a thin one (opening), so time to alert would be understated."""
    card = SimpleNamespace(classes=[SimpleNamespace(name=n) for n in class_names])
    return dataclasses.replace(params.alert_config_for(card, tau=0.5), temporal_fusion="none",
                               score_opening_px=0).validate()


@dataclass(frozen=True)
class TruthFrame:
    hit: bool                 # an obstacle is in the corridor by the node's per-frame test
    corridor_fraction: float  # labelled anomalous share of the watched corridor
    anomaly_pixels: int       # labelled anomalous pixels in the whole frame
    boxes: tuple = ()         # (x0, y0, x1, y1), x1/y1 exclusive, of the labelled components in the corridor


class CorridorTruth:
    """Feed label maps in frame order; each call says whether the labelled obstacle is in the corridor."""

    def __init__(self, config: AlertConfig, anomaly_label: int) -> None:
        self._detector = ObstacleAlertDetector(config)
        self.anomaly_label = int(anomaly_label)

    def __call__(self, labels: np.ndarray) -> TruthFrame:
        anomalous = labels == self.anomaly_label
        state = self._detector.update(anomalous.astype(np.float32), np.asarray(labels, dtype=np.uint8))
        return TruthFrame(bool(state.frame_hit), float(state.corridor_fraction), int(anomalous.sum()),
                          tuple((b.x0, b.y0, b.x1, b.y1) for b in state.boxes))


def truth_for(params: DetectorConfig | None, anomaly_label: int, class_names: Sequence[str] = ()) -> CorridorTruth:
    """A CorridorTruth with the node's parameters (default: params/detector.yaml) for a model's class names."""
    params = params if params is not None else load_detector_params()
    return CorridorTruth(truth_alert_config(params, class_names), anomaly_label)
