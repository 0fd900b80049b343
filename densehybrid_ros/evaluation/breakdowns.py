"""AP / AUROC / FPR95 broken down by condition, by distance band and by obstacle size (docs/ARCHITECTURE.md section 5).

Which pixels enter each group (docs/EVALUATION.md):
- condition: every labelled pixel of the frames of that condition (the sample's `condition`);
- distance band (paper table 3, 5 m bands up to 50 m): anomaly pixels AND inlier pixels whose depth lies in the
  band -- "same-distance inliers", so a band measures the detector at that range rather than mixing near
  inliers into far obstacles; pixels without depth (0, inf, NaN) are left out; frames without depth skip this;
- obstacle size: anomaly pixels of ground-truth components (8-connected) whose area, as a fraction of the frame,
  lies in the bin, against ALL inlier pixels of the split, so that the bins differ only in their positives.

Histograms here use the coarse nested bins (16 bits by default, error < 1e-3; see streaming.py) of the score
type's binning, to keep 7 score types x ~20 groups within a few hundred MiB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densehybrid_ros.evaluation.components import connected_components
from densehybrid_ros.evaluation.metrics import anomaly_metrics
from densehybrid_ros.evaluation.streaming import ScoreBinning, ScoreHistogram, split_labels

# Paper table 3 uses 5 m bands from 5 to 50 m (LostAndFound disparities are unreliable beyond); the synthetic
# world has obstacles from a few metres, so the first band starts at 0.
DEFAULT_DISTANCE_EDGES = tuple(float(d) for d in range(0, 55, 5))
# Obstacle area as a fraction of the frame: <0.1% (a distant box), 0.1-0.5%, 0.5-2%, >=2% (close or large).
DEFAULT_SIZE_EDGES = (0.0, 0.001, 0.005, 0.02, 1.0)


def band_names(edges: tuple[float, ...], unit: str = "m", scale: float = 1.0, fmt: str = "g") -> list[str]:
    return [f"{edges[i] * scale:{fmt}}-{edges[i + 1] * scale:{fmt}} {unit}".strip() for i in range(len(edges) - 1)]


def _check_edges(name: str, edges: tuple[float, ...]) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise ValueError(f"{name} must be at least two increasing non-negative values, got {edges}")
    return edges


@dataclass
class GroupMetrics:
    ap: float
    auroc: float
    fpr95: float
    n_pos: int
    n_neg: int
    images: int


@dataclass
class FrameGroups:
    """The groups of one frame's pixels, shared by every score type (flat masks over the frame)."""

    condition: str
    positive: np.ndarray
    negative: np.ndarray
    band_pos: np.ndarray | None = None  # band of each anomaly pixel with a depth in the bands
    band_neg: np.ndarray | None = None
    pos_in_band: np.ndarray | None = None
    neg_in_band: np.ndarray | None = None
    size_pos: np.ndarray | None = None  # size bin of each anomaly pixel (order of flat[positive])


def frame_groups(anomaly: np.ndarray, condition: str, depth: np.ndarray | None,
                 distance_edges: tuple[float, ...] = DEFAULT_DISTANCE_EDGES,
                 size_edges: tuple[float, ...] = DEFAULT_SIZE_EDGES,
                 gt_components: tuple[int, np.ndarray] | None = None) -> FrameGroups:
    """Assign the labelled pixels of one frame to condition, distance band and size bin.
    gt_components: (count, label map) of the anomaly mask, if already computed."""
    anomaly = np.asarray(anomaly)
    positive, negative = split_labels(anomaly)
    groups = FrameGroups(condition=str(condition), positive=positive, negative=negative)
    if depth is not None:
        if np.shape(depth) != anomaly.shape:
            raise ValueError(f"depth {np.shape(depth)} and anomaly labels {anomaly.shape} differ in shape")
        d = np.asarray(depth, dtype=np.float64).ravel()
        band = np.searchsorted(np.asarray(distance_edges), d, side="right") - 1
        valid = np.isfinite(d) & (d > 0) & (band >= 0) & (band < len(distance_edges) - 1)
        groups.pos_in_band, groups.neg_in_band = positive & valid, negative & valid
        groups.band_pos, groups.band_neg = band[groups.pos_in_band], band[groups.neg_in_band]
    if positive.any():
        n, labels = gt_components if gt_components is not None else connected_components(anomaly == 1)
        if n:
            area = np.bincount(labels.ravel(), minlength=n + 1) / labels.size
            size_bin = np.clip(np.searchsorted(np.asarray(size_edges), area, side="right") - 1, 0,
                               len(size_edges) - 2)
            groups.size_pos = size_bin[labels.ravel()[positive]]
    return groups


class _GroupedHistograms:
    """A dense block of (groups x bins) anomaly / inlier counts, filled with one bincount per frame."""

    def __init__(self, groups: int, binning: ScoreBinning):
        self.binning = binning
        self.pos = np.zeros((groups, binning.num_bins), dtype=np.int64)
        self.neg = np.zeros((groups, binning.num_bins), dtype=np.int64)
        self.images = np.zeros(groups, dtype=np.int64)

    def add(self, group_of_pos: np.ndarray, pos_bins: np.ndarray, group_of_neg: np.ndarray | None,
            neg_bins: np.ndarray | None) -> None:
        n = self.binning.num_bins
        g = self.pos.shape[0]
        touched = np.zeros(g, dtype=bool)
        if pos_bins.size:
            self.pos += np.bincount(group_of_pos * n + pos_bins, minlength=g * n).reshape(g, n)
            touched |= np.bincount(group_of_pos, minlength=g) > 0
        if neg_bins is not None and neg_bins.size:
            self.neg += np.bincount(group_of_neg * n + neg_bins, minlength=g * n).reshape(g, n)
            touched |= np.bincount(group_of_neg, minlength=g) > 0
        self.images += touched

    def metrics(self, group: int, negatives: np.ndarray | None = None) -> GroupMetrics:
        h = ScoreHistogram(self.binning)
        h.pos = self.pos[group]
        h.neg = self.neg[group] if negatives is None else negatives
        m = anomaly_metrics(h.curve())
        return GroupMetrics(m.ap, m.auroc, m.fpr95, m.n_pos, m.n_neg, int(self.images[group]))


class BreakdownAccumulator:
    """Per-condition, per-distance-band and per-size histograms of one score type."""

    def __init__(self, binning: ScoreBinning, distance_edges: tuple[float, ...] = DEFAULT_DISTANCE_EDGES,
                 size_edges: tuple[float, ...] = DEFAULT_SIZE_EDGES):
        self.binning = binning
        self.distance_edges = _check_edges("distance bands", distance_edges)
        self.size_edges = _check_edges("size bins", size_edges)
        self.conditions: dict[str, ScoreHistogram] = {}
        self.condition_images: dict[str, int] = {}
        self.distance = _GroupedHistograms(len(self.distance_edges) - 1, binning)
        self.size = _GroupedHistograms(len(self.size_edges) - 1, binning)
        self.all_inliers = np.zeros(binning.num_bins, dtype=np.int64)
        self.frames_with_depth = 0

    def add(self, bins: np.ndarray, anomaly: np.ndarray, condition: str, depth: np.ndarray | None = None,
            gt_components: tuple[int, np.ndarray] | None = None) -> None:
        """One frame. bins: this binning's bins of the score map (same shape as anomaly)."""
        if np.shape(bins) != np.shape(anomaly):
            raise ValueError(f"score bins {np.shape(bins)} and anomaly labels {np.shape(anomaly)} differ in shape")
        groups = frame_groups(anomaly, condition, depth, self.distance_edges, self.size_edges, gt_components)
        self.add_frame(groups, np.asarray(bins).ravel())

    def add_frame(self, groups: "FrameGroups", bins: np.ndarray, frame_histogram: ScoreHistogram | None = None) \
            -> None:
        """One frame whose groups were computed once for all score types (`frame_groups`); `bins` flat.
        frame_histogram: this frame's histogram in this binning, if the caller has it (per-image metrics)."""
        if frame_histogram is None:
            frame_histogram = ScoreHistogram(self.binning)
            frame_histogram.add_bins(bins[groups.positive], bins[groups.negative])
        hist = self.conditions.setdefault(groups.condition, ScoreHistogram(self.binning))
        hist.merge(frame_histogram)  # a frame has one condition: its histogram is that condition's share
        self.condition_images[groups.condition] = self.condition_images.get(groups.condition, 0) + 1
        self.all_inliers += frame_histogram.neg
        if groups.band_pos is not None:
            self.distance.add(groups.band_pos, bins[groups.pos_in_band], groups.band_neg, bins[groups.neg_in_band])
            self.frames_with_depth += 1
        if groups.size_pos is not None:
            self.size.add(groups.size_pos, bins[groups.positive], None, None)

    def result(self) -> dict:
        out: dict = {"condition": {}, "distance": {}, "size": {}}
        for name in sorted(self.conditions):
            h = self.conditions[name]
            m = anomaly_metrics(h.curve())
            out["condition"][name] = GroupMetrics(m.ap, m.auroc, m.fpr95, m.n_pos, m.n_neg,
                                                  self.condition_images[name]).__dict__
        if self.frames_with_depth:
            for i, name in enumerate(band_names(self.distance_edges)):
                out["distance"][name] = self.distance.metrics(i).__dict__
        for i, name in enumerate(band_names(self.size_edges, unit="% of frame", scale=100)):
            out["size"][name] = self.size.metrics(i, negatives=self.all_inliers).__dict__
        return out
