"""Result types shared by the runtime backends, the node and the evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SegmentationResult:
    """Per-pixel outputs of one frame, at the resolution of the input image.

    class_id: (H, W) uint8, closed-set argmax of the class posterior.
    anomaly_score: (H, W) float32, higher = more anomalous (the model card names the score type).
    confidence: (H, W) float32, max of the class posterior.
    logits / ood_logit: raw class logits (K, h, w) and dataset-posterior logit (h, w) at decoder resolution,
        present only for graphs exported with raw outputs (evaluation).
    """

    class_id: np.ndarray
    anomaly_score: np.ndarray
    confidence: np.ndarray
    logits: np.ndarray | None = None
    ood_logit: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.class_id.shape)  # type: ignore[return-value]
