"""Streaming accumulation of anomaly scores: fixed-memory histograms that give the metrics of a whole split.

A split of thousands of 2-megapixel frames has billions of scored pixels; sorting them all is out of the question.
AP, AUROC and FPR95 depend only on the ordering of the scores, so the pixels are counted in bins of a monotone
map of the score and the metrics are read from the cumulative counts (metrics.curve_from_counts):

    z = (t(score) - centre) / scale            t = identity, or logit for posteriors in [0, 1]
    u = (asinh(z) + A) / 2A,  A = asinh(1e8)   (u in [0, 1]; clipped beyond +-1e8 scales)
    bin = floor(u * 2^bits)

- `centre` / `scale` (median and interquartile spread) are fixed once per score type from a sample of a few frames
  spread over the split (`ScoreBinning.fit`, `runner.fit_binnings`), so no range has to be known in advance
  and every frame shares the same bins;
- asinh is linear near the bulk of the scores and logarithmic in the tails: bins are ~4e-5 scales wide at the
  centre and ~4e-5 relative in the tails out to 1e8 scales (at 20 bits), so a badly fitted first frame costs
  little accuracy, and log-likelihoods around -20 with a spread of 0.05,
  posteriors in [0, 1] and entropies near 0 are all resolved;
- the logit transform undoes the sigmoid's saturation: P(d_out|x) = 0.99999 and 0.999999 are far apart in logit
  units and would share a bin in probability units;
- equal scores always share a bin, so ties are treated exactly as in the exact computation; only distinct scores
  closer than a bin width merge into one operating point;
- bins of fewer bits nest inside bins of more bits (bin >> k), so breakdown histograms at 16 bits combine with the
  pooled 20-bit ones.

The measured error against the exact metrics (tests/test_metrics.py, docs/EVALUATION.md): below 1e-4 absolute on
AP, AUROC and FPR95 at 20 bits, below 1e-3 at 16 bits, on millions of pixels of mixed Gaussians, heavy ties,
saturated posteriors and narrow far-from-zero clusters. Memory: 2 x 2^bits int64 counters, 16 MiB at 20 bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from densehybrid_ros.evaluation.metrics import VOID, BinaryCurve, curve_from_counts

DEFAULT_BITS = 20
BREAKDOWN_BITS = 16
MIN_BITS, MAX_BITS = 8, 24
TRANSFORMS = ("identity", "logit")
_ASINH_RANGE = math.asinh(1e8)
# Relative to the score's own level: a first frame of near-constant scores must not give bins so narrow that
# later frames fall off the ends.
_MIN_RELATIVE_SCALE = 1e-6


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"histogram bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return int(bits)


def _forward(scores: np.ndarray, transform: str) -> np.ndarray:
    x = np.array(scores, dtype=np.float64)  # a copy: the callers transform it in place
    if transform == "logit":
        with np.errstate(divide="ignore"):
            # log(p) - log(1-p) with 1-p exact for float32 p: p = 1 maps to +inf, p = 0 to -inf (ties kept).
            x = np.log(x) - np.log1p(-x)
    return x


def _inverse(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "logit":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    return x


def _check_scores(scores: np.ndarray, transform: str) -> None:
    if np.isnan(scores).any():
        raise ValueError("score map contains NaN; every metric needs an ordering of the pixels")
    if transform == "logit" and scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"the logit transform needs scores in [0, 1], got [{scores.min()}, {scores.max()}]")


@dataclass(frozen=True)
class ScoreBinning:
    """The bin map shared by every histogram of one score type."""

    centre: float = 0.0
    scale: float = 1.0
    bits: int = DEFAULT_BITS
    transform: str = "identity"

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if not (math.isfinite(self.centre) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"binning needs a finite centre and a positive finite scale, got "
                             f"centre={self.centre}, scale={self.scale}")

    @classmethod
    def fit(cls, scores: np.ndarray, bits: int = DEFAULT_BITS, transform: str = "identity",
            max_samples: int = 1 << 18) -> "ScoreBinning":
        """Centre and scale from a first sample of scores (median, interquartile range / 1.349)."""
        s = np.asarray(scores).ravel()
        _check_scores(s, transform)
        if s.size > max_samples:
            s = s[:: s.size // max_samples + 1]
        x = _forward(s, transform)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(0.0, 1.0, bits, transform)
        q25, centre, q75 = np.percentile(x, [25, 50, 75])
        scale = (q75 - q25) / 1.349
        if not scale > 0:
            scale = float(np.std(x))
        scale = max(float(scale) if scale > 0 else 0.0, _MIN_RELATIVE_SCALE * max(abs(float(centre)), 1.0))
        return cls(float(centre), scale, bits, transform)

    @property
    def num_bins(self) -> int:
        return 1 << self.bits

    def positions(self, scores: np.ndarray) -> np.ndarray:
        """Continuous bin coordinate in [0, num_bins] (float64): bin = floor(position), clipped to the last bin."""
        s = np.asarray(scores)
        _check_scores(s, self.transform)
        z = _forward(s, self.transform)
        z -= self.centre
        z *= 1.0 / self.scale
        np.arcsinh(z, out=z)
        z += _ASINH_RANGE
        z *= self.num_bins / (2.0 * _ASINH_RANGE)
        np.clip(z, 0, self.num_bins, out=z)  # also maps +-inf to the ends
        return z

    def bins(self, scores: np.ndarray) -> np.ndarray:
        """Bin index (int64) of every score, same shape."""
        return np.minimum(self.positions(scores), self.num_bins - 1).astype(np.int64)

    def lower_edges(self) -> np.ndarray:
        """Score at the lower boundary of each bin (bin 0 starts at -inf): bin b holds scores >= edge[b]."""
        u = np.arange(self.num_bins, dtype=np.float64) * (2.0 * _ASINH_RANGE / self.num_bins) - _ASINH_RANGE
        x = np.sinh(u) * self.scale + self.centre
        edges = _inverse(x, self.transform)
        edges[0] = -np.inf
        return edges

    def coarsened(self, bits: int) -> "ScoreBinning":
        bits = _check_bits(bits)
        if bits > self.bits:
            raise ValueError(f"cannot refine {self.bits}-bit bins to {bits} bits")
        return ScoreBinning(self.centre, self.scale, bits, self.transform)

    def to_dict(self) -> dict:
        return {"centre": self.centre, "scale": self.scale, "bits": self.bits, "transform": self.transform}


_EDGE_CACHE: dict[ScoreBinning, np.ndarray] = {}


def _edges(binning: ScoreBinning) -> np.ndarray:
    if binning not in _EDGE_CACHE:
        if len(_EDGE_CACHE) > 64:
            _EDGE_CACHE.clear()
        _EDGE_CACHE[binning] = binning.lower_edges()
    return _EDGE_CACHE[binning]


def split_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly mask, inlier mask), flat, from 0 / 1 / 255 labels or a bool mask (no void)."""
    labels = np.asarray(labels).ravel()
    if labels.dtype == np.bool_:
        return labels, ~labels
    positive, negative = labels == 1, labels == 0
    if np.count_nonzero(positive) + np.count_nonzero(negative) + np.count_nonzero(labels == VOID) != labels.size:
        raise ValueError(f"anomaly labels must be 0 (inlier), 1 (anomaly) or {VOID} (void); "
                         f"found {np.unique(labels)[:8].tolist()}")
    return positive, negative


class ScoreHistogram:
    """Anomaly / inlier pixel counts per score bin; `curve()` feeds the metrics of metrics.py."""

    def __init__(self, binning: ScoreBinning):
        self.binning = binning
        self.pos = np.zeros(binning.num_bins, dtype=np.int64)
        self.neg = np.zeros(binning.num_bins, dtype=np.int64)

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Count one score map against its 0 / 1 / 255 anomaly labels (void is skipped)."""
        scores = np.asarray(scores)
        if scores.shape != np.shape(labels):
            raise ValueError(f"score map {scores.shape} and anomaly labels {np.shape(labels)} differ in shape")
        positive, negative = split_labels(labels)
        bins = self.binning.bins(scores.ravel())
        self.add_bins(bins[positive], bins[negative])

    def add_bins(self, positive_bins: np.ndarray, negative_bins: np.ndarray) -> None:
        """Count pixels whose bins were computed already by this histogram's binning."""
        n = self.pos.size
        if positive_bins.size:
            self.pos += np.bincount(positive_bins, minlength=n)
        if negative_bins.size:
            self.neg += np.bincount(negative_bins, minlength=n)

    def merge(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if other.binning != self.binning:
            raise ValueError(f"cannot merge histograms with different bins ({self.binning} vs {other.binning})")
        self.pos += other.pos
        self.neg += other.neg
        return self

    def coarsened(self, bits: int) -> "ScoreHistogram":
        """The same counts in the nested bins of fewer bits."""
        out = ScoreHistogram(self.binning.coarsened(bits))
        group = 1 << (self.binning.bits - out.binning.bits)
        out.pos = self.pos.reshape(-1, group).sum(axis=1)
        out.neg = self.neg.reshape(-1, group).sum(axis=1)
        return out

    def curve(self) -> BinaryCurve:
        """Operating points at every non-empty bin's lower edge, highest first (anomaly where score >= edge)."""
        return curve_from_counts(_edges(self.binning)[::-1], self.pos[::-1], self.neg[::-1])


def histogram_of(scores: np.ndarray, labels: np.ndarray, bits: int = DEFAULT_BITS,
                 transform: str = "identity") -> ScoreHistogram:
    """One-shot histogram with bins fitted to these scores (tests, small splits)."""
    h = ScoreHistogram(ScoreBinning.fit(scores, bits, transform))
    h.add(scores, labels)
    return h
