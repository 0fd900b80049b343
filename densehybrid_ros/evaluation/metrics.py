"""Pixel-level anomaly-detection metrics: average precision, AUROC and FPR at 95% TPR (docs/ARCHITECTURE.md section 5).

Everything here is computed from a `BinaryCurve`: the cumulative true- and false-positive counts at every
distinct score threshold, highest first. The exact curve comes from sorting the pixels (`exact_curve`); the
streaming curve of `streaming.ScoreHistogram` has the same form with the thresholds at bin edges, so both paths
share one implementation of each metric.

Conventions (docs/EVALUATION.md):
- positive = anomaly pixel (label 1), negative = inlier pixel (label 0), void (255) is excluded;
- an operating point at threshold t calls a pixel anomalous when score >= t (the convention of sklearn's
  `roc_curve`); `OperatingPoint.tau` is the equivalent strict threshold for `score > tau`, which is how the node
  and `core.open_set.open_set_map` apply tau;
- AP is the step-wise sum  sum_n (R_n - R_{n-1}) P_n  over the distinct thresholds, identical to sklearn's
  `average_precision_score` (no interpolation);
- AUROC is the trapezoidal area under (FPR, TPR) from (0, 0), identical to sklearn's `roc_auc_score`;
- FPR95 is the FPR at the first operating point (highest threshold) whose TPR >= 0.95;
- a split or image without anomaly pixels has no defined AP, AUROC or FPR95: the functions return NaN (not an
  error) so that a report over a split with some anomaly-free images still renders; AUROC and FPR95 are also
  NaN without inlier pixels. Calibration, which cannot choose tau without anomalies, raises instead.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

VOID = 255
DEFAULT_TARGET_TPR = 0.95


@dataclass(frozen=True)
class BinaryCurve:
    """Cumulative counts at each distinct threshold, in decreasing threshold order.

    thresholds[i]: predicting "anomaly" for score >= thresholds[i] gives tp[i] true and fp[i] false positives.
    n_pos / n_neg: totals (tp[-1] / fp[-1] when the curve is not empty).
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int

    def __post_init__(self) -> None:
        if not (len(self.thresholds) == len(self.tp) == len(self.fp)):
            raise ValueError("BinaryCurve: thresholds, tp and fp must have the same length")

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / self.n_pos if self.n_pos else np.full(len(self.tp), np.nan)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_neg if self.n_neg else np.full(len(self.fp), np.nan)

    @property
    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.tp + self.fp, 1)

    @property
    def recall(self) -> np.ndarray:
        return self.tpr


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float  # anomaly where score >= threshold
    tau: float  # the same decision as score > tau (for float32 score maps)
    tpr: float
    fpr: float


@dataclass(frozen=True)
class AnomalyMetrics:
    ap: float
    auroc: float
    fpr95: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict:
        return asdict(self)


def anomaly_labels_and_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten, drop void pixels and check the inputs; returns (scores, labels as bool)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"score map {scores.shape} and anomaly labels {labels.shape} differ in shape")
    if labels.dtype == np.bool_:
        y = labels.ravel()
        s = scores.ravel()
    else:
        flat = labels.ravel()
        bad = (flat != 0) & (flat != 1) & (flat != VOID)
        if np.any(bad):
            raise ValueError(f"anomaly labels must be 0 (inlier), 1 (anomaly) or {VOID} (void); "
                             f"found {np.unique(flat[bad])[:5].tolist()}")
        keep = flat != VOID
        y = flat[keep] == 1
        s = scores.ravel()[keep]
    if s.dtype.kind not in "fiu":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ValueError("score map contains NaN; every metric needs an ordering of the pixels")
    return s, y


def exact_curve(scores: np.ndarray, labels: np.ndarray) -> BinaryCurve:
    """The curve over every distinct score value (what sklearn's `_binary_clf_curve` computes)."""
    s, y = anomaly_labels_and_scores(scores, labels)
    if s.size == 0:
        return BinaryCurve(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    y = y[order]
    # The last index of each run of equal scores: ties enter the curve together, as one operating point.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tp = np.cumsum(y, dtype=np.int64)[last]
    fp = (last + 1) - tp
    return BinaryCurve(s[last].astype(np.float64), tp, fp.astype(np.int64), int(tp[-1]), int(fp[-1]))


def curve_from_counts(thresholds_desc: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> BinaryCurve:
    """Curve from per-threshold counts (a histogram read from its highest bin down); empty bins are dropped."""
    pos = np.asarray(pos, dtype=np.int64)
    neg = np.asarray(neg, dtype=np.int64)
    keep = (pos + neg) > 0
    tp = np.cumsum(pos[keep])
    fp = np.cumsum(neg[keep])
    n_pos = int(tp[-1]) if tp.size else 0
    n_neg = int(fp[-1]) if fp.size else 0
    return BinaryCurve(np.asarray(thresholds_desc, dtype=np.float64)[keep], tp, fp, n_pos, n_neg)


def average_precision(curve: BinaryCurve) -> float:
    """Step-wise AP: sum over thresholds of (recall gain) x (precision); NaN without positives."""
    if curve.n_pos == 0:
        return math.nan
    recall = curve.tp / curve.n_pos
    gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(gain * curve.precision))


def auroc(curve: BinaryCurve) -> float:
    """Area under the ROC curve by the trapezoidal rule, from (0, 0); NaN without positives or negatives."""
    if curve.n_pos == 0 or curve.n_neg == 0:
        return math.nan
    tpr = np.r_[0.0, curve.tp / curve.n_pos]
    fpr = np.r_[0.0, curve.fp / curve.n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def strict_threshold_below(threshold: float) -> float:
    """tau such that `score > tau` makes exactly the decision of `score >= threshold` on float32 score maps (what
    every graph outputs and the node compares): the float32 value just below the smallest float32 >= threshold.

    tau is itself a float32 value, because NumPy 2 compares a float32 array with a Python float in float32: a tau
    between two float32 values would be rounded to the nearer one, half the time upwards past the scores the
    calibration counted."""
    if threshold == -math.inf:
        return -math.inf
    t32 = np.float32(threshold)
    if float(t32) < threshold:  # rounded down: the smallest float32 >= threshold is the next one up
        t32 = np.nextafter(t32, np.float32(np.inf))
    return float(np.nextafter(t32, np.float32(-np.inf)))


def operating_point_at_tpr(curve: BinaryCurve, target_tpr: float = DEFAULT_TARGET_TPR) -> OperatingPoint:
    """The first operating point (highest threshold) whose TPR >= target_tpr.

    Raises ValueError without anomaly pixels: no threshold reaches a TPR there.
    """
    if not 0.0 < target_tpr <= 1.0:
        raise ValueError(f"target TPR must be in (0, 1], got {target_tpr}")
    if curve.n_pos == 0:
        raise ValueError("no anomaly pixels: a threshold at a target TPR is undefined")
    tpr = curve.tp / curve.n_pos
    i = int(np.argmax(tpr >= target_tpr))  # tpr reaches 1.0 at the last point, so a match always exists
    fpr = float(curve.fp[i] / curve.n_neg) if curve.n_neg else math.nan
    threshold = float(curve.thresholds[i])
    return OperatingPoint(threshold=threshold, tau=strict_threshold_below(threshold), tpr=float(tpr[i]), fpr=fpr)


def fpr_at_tpr(curve: BinaryCurve, target_tpr: float = DEFAULT_TARGET_TPR) -> float:
    """FPR at the first operating point with TPR >= target (FPR95 for the default); NaN if undefined."""
    if curve.n_pos == 0 or curve.n_neg == 0:
        return math.nan
    return operating_point_at_tpr(curve, target_tpr).fpr


def anomaly_metrics(curve: BinaryCurve) -> AnomalyMetrics:
    return AnomalyMetrics(ap=average_precision(curve), auroc=auroc(curve), fpr95=fpr_at_tpr(curve),
                          n_pos=curve.n_pos, n_neg=curve.n_neg)


def pixel_metrics(scores: np.ndarray, labels: np.ndarray) -> AnomalyMetrics:
    """Exact AP / AUROC / FPR95 of one score map (or a stack of them) against 0/1/255 anomaly labels."""
    return anomaly_metrics(exact_curve(scores, labels))


class PerImageMean:
    """Mean of per-image metrics over the images that contain anomaly pixels.

    Images without anomalies have no AP or FPR95 and are left out (counted in `skipped`); an image whose
    anomaly pixels cover every labelled pixel has AP = 1 but no AUROC / FPR95, and enters only the AP mean.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {"ap": [], "auroc": [], "fpr95": []}
        self.skipped = 0

    def add(self, m: AnomalyMetrics) -> None:
        if m.n_pos == 0:
            self.skipped += 1
            return
        for key in self.values:
            v = getattr(m, key)
            if not math.isnan(v):
                self.values[key].append(v)

    @property
    def images(self) -> int:
        return len(self.values["ap"])

    def result(self) -> dict[str, float]:
        out = {k: (float(np.mean(v)) if v else math.nan) for k, v in self.values.items()}
        out["images"] = self.images
        out["images_without_anomalies"] = self.skipped
        return out
