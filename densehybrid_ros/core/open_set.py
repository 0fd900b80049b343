"""Open-set fusion: the closed-set class map with label K wherever the anomaly score exceeds tau."""
from __future__ import annotations

import numpy as np


def open_set_map(class_id: np.ndarray, anomaly_score: np.ndarray, tau: float, anomaly_label: int) -> np.ndarray:
    if class_id.shape != anomaly_score.shape:
        raise ValueError(f"class map {class_id.shape} and score map {anomaly_score.shape} differ in shape")
    if not 0 <= anomaly_label <= 254:
        raise ValueError(f"anomaly_label must be in [0, 254] (255 is void), got {anomaly_label}")
    out = np.array(class_id, dtype=np.uint8, copy=True)
    out[anomaly_score > tau] = anomaly_label
    return out
