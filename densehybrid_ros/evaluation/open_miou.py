"""Closed-set mIoU and open-mIoU (DenseHybrid paper section 4, eq. 16) with the paper's two-fold protocol (5.3).

Labels: inlier classes 0..K-1, anomaly K, void 255 (excluded everywhere).

- Closed-set mIoU: the K x K confusion of the closed-set class map over inlier pixels (anomaly pixels and void
  left out), IoU averaged over the K classes (classes absent from both labels and predictions are left out of
  the mean).
- Open-IoU (eq. 16): the open-set map puts label K wherever score > tau; on the (K+1) x (K+1) confusion,
  open-IoU_k = TP_k / (TP_k + FP_k^ow + FN_k^ow), where FP/FN also count pixels confused with the anomaly label
  (anomalies called k, and k-pixels called anomalous). open-mIoU averages over the K inlier classes only, so a
  perfect anomaly detector gives back the closed-set mIoU.
- Two-fold protocol: tau is chosen at TPR 95% on fold A and open-mIoU measured on fold B, then the folds swap;
  the two values are averaged with weights equal to the folds' image counts.

Streaming: the threshold of one fold is known only after the other fold has been seen, so `OpenSetAccumulator`
keeps, per inlier class k, score histograms of (label k, predicted k) pixels and of (predicted k) pixels; the
open-IoU at any tau is then read from cumulative counts. Inside the one bin that straddles tau the pixels are
split in proportion to where tau falls (tests/test_open_miou.py bounds the resulting error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from densehybrid_ros.core.open_set import open_set_map
from densehybrid_ros.evaluation.metrics import DEFAULT_TARGET_TPR, VOID, operating_point_at_tpr
from densehybrid_ros.evaluation.streaming import ScoreBinning, ScoreHistogram, split_labels

# -- confusion matrices -------------------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels x num_labels) int64 counts, rows = ground truth, columns = prediction; void labels skipped.

    Ground-truth labels outside 0..num_labels-1 (other than void) and predictions outside that range are errors.
    """
    labels = np.asarray(labels).ravel()
    predictions = np.asarray(predictions).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels ({labels.size} pixels) and predictions ({predictions.size}) differ in size")
    keep = labels != VOID
    y = labels[keep].astype(np.int64)
    p = predictions[keep].astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_labels):
        raise ValueError(f"ground-truth labels must be in [0, {num_labels - 1}] or {VOID} (void); "
                         f"found {y.min()}..{y.max()}")
    if p.size and (p.min() < 0 or p.max() >= num_labels):
        raise ValueError(f"predicted labels must be in [0, {num_labels - 1}]; found {p.min()}..{p.max()}")
    return np.bincount(y * num_labels + p, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class of a square confusion (NaN where the class is absent from labels and predictions)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_over_present(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def closed_set_confusion(semantic: np.ndarray, class_id: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K confusion over inlier pixels only (anomaly label K and void excluded)."""
    semantic = np.asarray(semantic)
    labels = np.where(semantic >= num_classes, VOID, semantic)  # anomaly (K) -> void for the closed world
    return confusion_matrix(labels, class_id, num_classes)


def closed_set_miou(conf: np.ndarray) -> float:
    return mean_over_present(iou_per_class(conf))


def open_set_confusion(semantic: np.ndarray, class_id: np.ndarray, anomaly_score: np.ndarray, tau: float,
                       num_classes: int) -> np.ndarray:
    """(K+1) x (K+1) confusion of the open-set map (label K where score > tau) against K+1 labels."""
    predicted = open_set_map(np.asarray(class_id), np.asarray(anomaly_score), tau, num_classes)
    return confusion_matrix(semantic, predicted, num_classes + 1)


def open_iou_per_class(open_conf: np.ndarray) -> np.ndarray:
    """Eq. 16 for the K inlier classes of a (K+1) x (K+1) confusion."""
    return iou_per_class(open_conf)[:-1]


def open_miou(open_conf: np.ndarray) -> float:
    """open-mIoU: eq. 16 averaged over the K inlier classes (not K+1)."""
    return mean_over_present(open_iou_per_class(open_conf))


class ConfusionAccumulator:
    def __init__(self, num_labels: int):
        self.matrix = np.zeros((num_labels, num_labels), dtype=np.int64)

    def add(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        self.matrix += confusion_matrix(labels, predictions, self.matrix.shape[0])


# -- streaming open-IoU at a threshold known later ---------------------------------------------------------


@dataclass
class PreparedLabels:
    """Non-void pixels of one frame: closed-set predictions, where they are right, and the label counts."""

    keep: np.ndarray  # flat mask of non-void pixels
    predicted: np.ndarray  # closed-set class of the kept pixels (int64)
    hit: np.ndarray  # label == prediction, over the kept pixels
    label_count: np.ndarray  # pixels per label 0..K


def prepare_labels(semantic: np.ndarray, class_id: np.ndarray, num_classes: int) -> PreparedLabels:
    semantic = np.asarray(semantic).ravel()
    class_id = np.asarray(class_id).ravel()
    if semantic.size != class_id.size:
        raise ValueError(f"labels ({semantic.size} pixels) and class map ({class_id.size}) differ in size")
    keep = semantic != VOID
    y = semantic[keep].astype(np.int64)
    c = class_id[keep].astype(np.int64)
    if y.size and y.max() > num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}] (K = {num_classes} is the anomaly) or {VOID}; "
                         f"found {y.max()}")
    if c.size and c.max() >= num_classes:
        raise ValueError(f"closed-set predictions must be in [0, {num_classes - 1}]; found {c.max()}")
    return PreparedLabels(keep, c, y == c, np.bincount(y, minlength=num_classes + 1))


class OpenSetAccumulator:
    """Per-class score histograms from which the open-IoU of every inlier class at any tau is read.

    For class k: `tp[k]` counts pixels labelled k and predicted k by the closed-set map, `pred[k]` pixels
    predicted k (any non-void label, anomalies included), `label_count[k]` pixels labelled k. At a threshold t
    (anomaly where score >= t) the open-set map keeps the closed prediction below t, so
    TP_k(t) = tp_k(score < t), predicted_k(t) = pred_k(score < t) and
    open-IoU_k = TP_k / (label_count_k + predicted_k - TP_k).
    """

    def __init__(self, num_classes: int, binning: ScoreBinning):
        self.num_classes = int(num_classes)
        self.binning = binning
        n = binning.num_bins
        self.tp = np.zeros((self.num_classes, n), dtype=np.int64)
        self.pred = np.zeros((self.num_classes, n), dtype=np.int64)
        self.label_count = np.zeros(self.num_classes + 1, dtype=np.int64)
        self.images = 0

    def add(self, semantic: np.ndarray, class_id: np.ndarray, anomaly_score: np.ndarray | None = None,
            bins: np.ndarray | None = None) -> None:
        """One frame: K+1 labels, closed-set class map and either the score map or its bins (this binning)."""
        if bins is None:
            if anomaly_score is None:
                raise ValueError("OpenSetAccumulator.add needs the anomaly score map or its bins")
            bins = self.binning.bins(np.asarray(anomaly_score).ravel())
        self.add_prepared(prepare_labels(semantic, class_id, self.num_classes), np.asarray(bins).ravel())

    def add_prepared(self, labels: "PreparedLabels", bins: np.ndarray) -> None:
        """One frame whose labels were prepared once for all score types; `bins` flat, this binning."""
        if bins.size != labels.keep.size:
            raise ValueError(f"labels ({labels.keep.size} pixels) and scores ({bins.size}) differ in size")
        k, n = self.num_classes, self.binning.num_bins
        b = bins[labels.keep]
        self.label_count += labels.label_count
        self.pred += np.bincount(labels.predicted * n + b, minlength=k * n).reshape(k, n)
        self.tp += np.bincount(labels.predicted[labels.hit] * n + b[labels.hit], minlength=k * n).reshape(k, n)
        self.images += 1

    def merge(self, other: "OpenSetAccumulator") -> "OpenSetAccumulator":
        if other.binning != self.binning or other.num_classes != self.num_classes:
            raise ValueError("cannot merge open-set accumulators with different classes or bins")
        self.tp += other.tp
        self.pred += other.pred
        self.label_count += other.label_count
        self.images += other.images
        return self

    def _below(self, counts: np.ndarray, threshold: float) -> np.ndarray:
        """Per class: pixels with score < threshold, splitting the straddling bin linearly."""
        position = float(self.binning.positions(np.array([threshold]))[0])
        n = self.binning.num_bins
        whole = int(min(max(math.floor(position), 0), n))
        below = counts[:, :whole].sum(axis=1).astype(np.float64)
        if whole < n:
            below += counts[:, whole] * (position - whole)
        return below

    def open_iou_at(self, threshold: float) -> np.ndarray:
        """Open-IoU of each inlier class when pixels with score >= threshold are labelled anomalous."""
        tp = self._below(self.tp, threshold)
        pred = self._below(self.pred, threshold)
        union = self.label_count[:-1] + pred - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


# -- the two-fold protocol ----------------------------------------------------------------------------------


@dataclass
class FoldResult:
    images: int
    tau: float  # threshold chosen on the OTHER fold (score > tau -> anomaly)
    tpr_on_other_fold: float
    open_miou: float
    open_iou: list[float] = field(default_factory=list)


@dataclass
class TwoFoldResult:
    open_miou: float  # image-count weighted mean of the two folds
    folds: list[FoldResult]
    target_tpr: float
    note: str = ""


class TwoFoldOpenSet:
    """Paper 5.3: tau at TPR 95% on fold A measured on fold B and vice versa, weighted by image count.

    Each fold holds a pooled anomaly histogram (for its threshold) and an OpenSetAccumulator (for its open-IoU).
    Folds are assigned by the caller (the runner alternates frames, so both folds see every condition).
    """

    def __init__(self, num_classes: int, binning: ScoreBinning, open_bits: int = 16,
                 target_tpr: float = DEFAULT_TARGET_TPR):
        self.binning = binning
        self.target_tpr = target_tpr
        self.anomaly = [ScoreHistogram(binning), ScoreHistogram(binning)]
        self.open = [OpenSetAccumulator(num_classes, binning.coarsened(min(open_bits, binning.bits)))
                     for _ in range(2)]

    def add(self, fold: int, semantic: np.ndarray | None, class_id: np.ndarray | None, anomaly: np.ndarray,
            bins: np.ndarray, prepared: PreparedLabels | None = None,
            masks: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One frame of `fold` (0 or 1): K+1 labels, closed class map, 0/1/255 anomaly labels, fine score bins
        (`prepared` / `masks`: the labels prepared by `prepare_labels` / the flat anomaly and inlier masks, when
        the caller computed them once for several score types).

        Without K+1 labels (binary benchmarks) only the fold's anomaly histogram is updated.
        """
        if fold not in (0, 1):
            raise ValueError(f"fold must be 0 or 1, got {fold}")
        positive, negative = split_labels(anomaly) if masks is None else masks
        flat = np.asarray(bins).ravel()
        self.anomaly[fold].add_bins(flat[positive], flat[negative])
        if semantic is not None or prepared is not None:
            if prepared is None:
                if class_id is None:
                    raise ValueError("open-set accumulation needs the closed-set class map with the labels")
                prepared = prepare_labels(semantic, class_id, self.open[fold].num_classes)
            shift = self.binning.bits - self.open[fold].binning.bits
            self.open[fold].add_prepared(prepared, flat >> shift)

    def pooled(self) -> ScoreHistogram:
        """The anomaly histogram of both folds together (the whole split)."""
        return ScoreHistogram(self.binning).merge(self.anomaly[0]).merge(self.anomaly[1])

    def merged_open_set(self) -> OpenSetAccumulator:
        return OpenSetAccumulator(self.open[0].num_classes, self.open[0].binning).merge(self.open[0]).merge(
            self.open[1])

    def result(self) -> TwoFoldResult:
        folds = []
        for this, other in ((0, 1), (1, 0)):
            images = self.open[this].images
            hist = self.anomaly[other]
            if images == 0 or hist.n_pos == 0:
                folds.append(FoldResult(images, math.nan, math.nan, math.nan, []))
                continue
            op = operating_point_at_tpr(hist.curve(), self.target_tpr)
            iou = self.open[this].open_iou_at(op.threshold)
            folds.append(FoldResult(images, op.tau, op.tpr, mean_over_present(iou), iou.tolist()))
        valid = [f for f in folds if not math.isnan(f.open_miou)]
        note = ""
        if len(valid) < 2:
            note = ("a fold has no images or its partner fold no anomaly pixels; open-mIoU uses the remaining "
                    "fold" if valid else "no fold has both images and a partner fold with anomalies")
        total = sum(f.images for f in valid)
        value = sum(f.open_miou * f.images for f in valid) / total if total else math.nan
        return TwoFoldResult(value, folds, self.target_tpr, note)
