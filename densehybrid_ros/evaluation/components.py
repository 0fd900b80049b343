"""Component-level metrics of the SegmentMeIfYouCan benchmark (Chan et al., NeurIPS 2021 datasets track).

Definitions, as in the benchmark's reference implementation (road-anomaly-benchmark, `segment_metrics` and
`default_instancer`), applied to the binary map score > tau:

- Components are 8-connected (the benchmark labels with a 3x3 structure); prediction pixels on void are cleared
  before labelling. Predicted components smaller than `min_pred_area` pixels are dropped, and ground-truth
  components smaller than `min_gt_area` become void (region of interest = non-void after that). All pixel counts
  below are taken inside the region of interest.
- sIoU of a ground-truth component k, with K^(k) the union of the predicted components that intersect k:
      sIoU(k) = |k n K^(k)| / |(k u K^(k)) \\ A(k)|,   A(k) = pixels of the OTHER ground-truth components,
  so a predicted blob that covers two adjacent obstacles is not charged for the second one.
- PPV of a predicted component k^ (the benchmark's `prec_pred`): the fraction of its pixels that are anomalous in
  the ground truth, |k^ n K(k^)| / |k^|.
- At an sIoU threshold t: TP = ground-truth components with sIoU >= t, FN = those with sIoU < t,
  FP = predicted components with PPV < t; F1(t) = 2 TP / (2 TP + FN + FP), counts summed over the split.
- Reported: mean sIoU over all ground-truth components, mean PPV over all predicted components, F1 at
  t = 0.25, 0.5, 0.75 and the mean F1 over t = 0.25, 0.30, ..., 0.75 (11 thresholds) -- the benchmark's "F1".

The benchmark's size filters (ObstacleTrack: predictions < 50 px, ground truth < 10 px at 2048x1024; AnomalyTrack:
500 / 100 px) are pixel counts of 2-megapixel frames; `area_scale` lets callers scale them to other resolutions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from densehybrid_ros.evaluation.metrics import VOID

SIOU_THRESHOLDS = tuple(np.round(np.linspace(0.25, 0.75, 11), 2).tolist())
REPORTED_THRESHOLDS = (0.25, 0.5, 0.75)
# SegmentMeIfYouCan ObstacleTrack filters at its 2048x1024 resolution.
SMIYC_FRAME_PIXELS = 2048 * 1024
SMIYC_MIN_PRED_AREA = 50
SMIYC_MIN_GT_AREA = 10


@dataclass
class FrameComponents:
    """Per-component values of one frame."""

    siou: np.ndarray  # per ground-truth component
    gt_area: np.ndarray  # pixels, inside the region of interest
    ppv: np.ndarray  # per predicted component
    pred_area: np.ndarray


def connected_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of components, int32 label map with 0 = background), 8-connectivity."""
    n, labels = cv2.connectedComponents(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=8,
                                        ltype=cv2.CV_32S)
    return n - 1, labels


def _remove_small(labels: np.ndarray, n: int, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop components below min_area; returns (relabelled map with ids 1..m, keep mask over old ids 0..n)."""
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas >= max(min_area, 1)
    keep[0] = False
    new_ids = np.zeros(n + 1, dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[labels], keep


def frame_components(anomaly: np.ndarray, prediction: np.ndarray, min_pred_area: int = 0,
                     min_gt_area: int = 0) -> FrameComponents:
    """Component values of one frame: anomaly labels 0/1/255, prediction a bool mask (score > tau)."""
    anomaly = np.asarray(anomaly)
    prediction = np.asarray(prediction, dtype=bool)
    if anomaly.shape != prediction.shape:
        raise ValueError(f"anomaly labels {anomaly.shape} and prediction {prediction.shape} differ in shape")
    void = anomaly == VOID
    n_gt, gt = connected_components(anomaly == 1)
    n_pred, pred = connected_components(prediction & ~void)
    if min_pred_area > 0 and n_pred:
        pred, kept = _remove_small(pred, n_pred, min_pred_area)
        n_pred = int(kept.sum())
    roi = ~void
    if min_gt_area > 0 and n_gt:
        small = np.bincount(gt.ravel(), minlength=n_gt + 1) < min_gt_area
        small[0] = False
        roi &= ~small[gt]
        gt, kept = _remove_small(np.where(roi, gt, 0), n_gt, min_gt_area)
        n_gt = int(kept.sum())
    g = gt[roi].astype(np.int64)
    p = pred[roi].astype(np.int64)
    # overlap[i, j]: pixels of ground-truth component i (0 = not anomalous) in predicted component j (0 = none).
    overlap = np.bincount(g * (n_pred + 1) + p, minlength=(n_gt + 1) * (n_pred + 1)).reshape(n_gt + 1, n_pred + 1)
    gt_area = overlap[1:, :].sum(axis=1)
    pred_area = overlap[:, 1:].sum(axis=0)

    siou = np.zeros(n_gt)
    for i in range(1, n_gt + 1):
        hit = overlap[i, 1:] > 0  # K^(i): predicted components touching i
        intersection = overlap[i, 1:][hit].sum()
        # |(k u K^) \ A| = |k| + pixels of K^ that are not anomalous at all (pixels of K^ in other ground-truth
        # components are the adjustment A and drop out).
        union = gt_area[i - 1] + overlap[0, 1:][hit].sum()
        siou[i - 1] = intersection / union if union else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = np.where(pred_area > 0, overlap[1:, 1:].sum(axis=0) / np.maximum(pred_area, 1), 0.0)
    return FrameComponents(siou=siou, gt_area=gt_area, ppv=ppv.astype(np.float64), pred_area=pred_area)


@dataclass
class ComponentResult:
    mean_siou: float
    mean_ppv: float
    f1: dict[str, float]  # "0.25", "0.5", "0.75" and "mean"
    tp: dict[str, int]
    fn: dict[str, int]
    fp: dict[str, int]
    gt_components: int
    pred_components: int
    tau: float = math.nan
    min_pred_area: int = 0
    min_gt_area: int = 0
    images: int = 0

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass
class ComponentAccumulator:
    """Collects per-component values over a split; `result()` applies the benchmark's aggregation."""

    thresholds: tuple[float, ...] = SIOU_THRESHOLDS
    siou: list[np.ndarray] = field(default_factory=list)
    gt_area: list[np.ndarray] = field(default_factory=list)
    ppv: list[np.ndarray] = field(default_factory=list)
    images: int = 0

    def add(self, frame: FrameComponents) -> None:
        self.siou.append(frame.siou)
        self.gt_area.append(frame.gt_area)
        self.ppv.append(frame.ppv)
        self.images += 1

    def all_siou(self) -> np.ndarray:
        return np.concatenate(self.siou) if self.siou else np.zeros(0)

    def all_gt_area(self) -> np.ndarray:
        return np.concatenate(self.gt_area) if self.gt_area else np.zeros(0, np.int64)

    def result(self, **info) -> ComponentResult:
        siou = self.all_siou()
        ppv = np.concatenate(self.ppv) if self.ppv else np.zeros(0)
        f1, tp, fn, fp = {}, {}, {}, {}
        f1_values = []
        for t in self.thresholds:
            n_tp = int(np.count_nonzero(siou >= t))
            n_fn = int(np.count_nonzero(siou < t))
            n_fp = int(np.count_nonzero(ppv < t))
            denominator = 2 * n_tp + n_fn + n_fp
            value = 2 * n_tp / denominator if denominator else math.nan
            f1_values.append(value)
            if any(abs(t - r) < 1e-9 for r in REPORTED_THRESHOLDS):
                key = f"{t:g}"
                f1[key], tp[key], fn[key], fp[key] = value, n_tp, n_fn, n_fp
        valid = [v for v in f1_values if not math.isnan(v)]
        f1["mean"] = float(np.mean(valid)) if valid else math.nan
        return ComponentResult(
            mean_siou=float(siou.mean()) if siou.size else math.nan,
            mean_ppv=float(ppv.mean()) if ppv.size else math.nan,
            f1=f1, tp=tp, fn=fn, fp=fp, gt_components=int(siou.size), pred_components=int(ppv.size),
            images=self.images, **info)


def scaled_min_areas(frame_pixels: int, min_pred_area: int = SMIYC_MIN_PRED_AREA,
                     min_gt_area: int = SMIYC_MIN_GT_AREA) -> tuple[int, int]:
    """The benchmark's size filters scaled from 2048x1024 frames to frames of `frame_pixels` pixels."""
    scale = frame_pixels / SMIYC_FRAME_PIXELS
    return max(1, round(min_pred_area * scale)), max(1, round(min_gt_area * scale))
