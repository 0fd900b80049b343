"""Inference-time filters of the anomaly score against false positives on class boundaries (docs/ALERT.md).

On real frames most clean-frame false positives of a DenseHybrid model sit in thin bands along the boundaries
between predicted classes: there the class logits of two classes are both moderate, so the unnormalised
log-likelihood ``logsumexp(s)`` dips and the hybrid score rises. An obstacle is a blob, not a line, so filters
that remove thin structures or structures that flicker from frame to frame can remove these false positives at a
small cost in obstacles. Each filter maps a score map (higher = more anomalous) to a score map of the same shape
and never raises a pixel's score, so ``score > tau`` only loses pixels:

- ``suppress_near_boundaries``: pixels within ``k`` px of a predicted-class boundary can not be anomalous;
- ``open_score``: grey-level morphological opening: ridges narrower than the kernel are lowered to their
  surroundings, blobs at least as wide keep their score;
- ``TemporalFusion``: the minimum (or mean) of the score over the last frames of one camera: a pixel must
  score high in consecutive frames.

``evaluation/camvid_report.py`` measures each on CamVid (clean frames and pasted obstacles); the alert applies
the ones its settings enable (``AlertConfig.score_opening_px``, ``temporal_fusion``). numpy + OpenCV only.
"""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

TEMPORAL_MODES = ("none", "min", "mean")


def class_boundaries(class_id: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower 4-neighbour has another class, and that neighbour (both sides of
    every boundary are marked, so a band of width k around it is symmetric)."""
    c = np.asarray(class_id)
    if c.ndim != 2:
        raise ValueError(f"class_id must be an (H, W) label map, got shape {c.shape}")
    out = np.zeros(c.shape, bool)
    horizontal = c[:, 1:] != c[:, :-1]
    out[:, 1:] |= horizontal
    out[:, :-1] |= horizontal
    vertical = c[1:, :] != c[:-1, :]
    out[1:, :] |= vertical
    out[:-1, :] |= vertical
    return out


def boundary_distance(class_id: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean distance (px) of every pixel to the nearest boundary pixel of ``class_boundaries``
    (0 on the boundary itself); +inf everywhere when the map has a single class."""
    boundary = class_boundaries(class_id)
    if not boundary.any():
        return np.full(boundary.shape, np.inf, np.float32)
    # distanceTransform measures the distance to the nearest zero pixel: boundary pixels are the zeros.
    return cv2.distanceTransform((~boundary).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def near_boundaries(class_id: np.ndarray, k: float) -> np.ndarray:
    """(H, W) bool: pixels within ``k`` px of a class boundary (``boundary_distance <= k``)."""
    return boundary_distance(class_id) <= k


def suppress_near_boundaries(score: np.ndarray, class_id: np.ndarray, k: float,
                             floor: float = -np.inf) -> np.ndarray:
    """A copy of ``score`` with the pixels within ``k`` px of a predicted-class boundary set to ``floor``."""
    score = np.asarray(score)
    if score.shape != np.shape(class_id):
        raise ValueError(f"score {score.shape} and class_id {np.shape(class_id)} differ in shape")
    if k <= 0:
        return score.copy()
    return np.where(near_boundaries(class_id, k), np.asarray(floor, score.dtype), score)


def open_score(score: np.ndarray, size: int) -> np.ndarray:
    """Grey-level opening (erosion then dilation) with a ``size`` x ``size`` square: every pixel keeps the highest
    value it can reach from a ``size``-wide square lying wholly in a region scoring at least that much. A ridge or
    line narrower than ``size`` px drops to its surroundings; a blob at least ``size`` px wide keeps its peak.
    ``size`` <= 1 returns a copy. NaN pixels stay NaN (they are never anomalous)."""
    s = np.asarray(score, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"score must be an (H, W) map, got shape {s.shape}")
    if size <= 1:
        return s.copy()
    nan = np.isnan(s)
    work = np.where(nan, np.float32(-np.inf), s) if nan.any() else s
    kernel = np.ones((int(size), int(size)), np.uint8)
    # BORDER_REPLICATE: a blob touching the image edge is not eroded by an imaginary low border.
    out = cv2.morphologyEx(work, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    if nan.any():
        out[nan] = np.nan
    return out


class TemporalFusion:
    """The anomaly score fused over the last ``frames`` frames of one camera, the current one included.

    mode "min": a pixel scores as low as its lowest score among those frames, so it must stay anomalous in
    consecutive frames (flicker along boundaries is removed; an obstacle present in every frame keeps its score).
    mode "mean": the average of those frames. mode "none" (or frames 1): the score unchanged. A frame of another
    size than the previous ones starts the history afresh; ``reset`` forgets it (a new drive).
    Pixels move between frames with the vehicle: at camera rates (10-30 Hz) an obstacle shifts a few pixels
    from one frame to the next, which ``min`` erodes from its edges only.
    """

    def __init__(self, mode: str = "min", frames: int = 2) -> None:
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"temporal fusion mode {mode!r} is not one of {', '.join(TEMPORAL_MODES)}")
        if isinstance(frames, bool) or int(frames) != frames or frames < 1:
            raise ValueError(f"temporal fusion frames must be a positive integer, got {frames!r}")
        self.mode = mode
        self.frames = int(frames)
        self._history: deque[np.ndarray] = deque(maxlen=max(self.frames - 1, 1))

    def reset(self) -> None:
        self._history.clear()

    def update(self, score: np.ndarray) -> np.ndarray:
        """Fuse ``score`` (H, W) with the history, then remember it; returns the fused map (float32)."""
        s = np.asarray(score, dtype=np.float32)
        if self.mode == "none" or self.frames == 1:
            return s
        if self._history and self._history[-1].shape != s.shape:
            self._history.clear()
        fused = fuse_scores([s, *self._history], self.mode)
        self._history.appendleft(s.copy())
        return fused


def fuse_scores(scores, mode: str) -> np.ndarray:
    """The pixel-wise min or mean of a list of same-shape score maps (float32); "none" returns the first."""
    if mode not in TEMPORAL_MODES:
        raise ValueError(f"temporal fusion mode {mode!r} is not one of {', '.join(TEMPORAL_MODES)}")
    maps = [np.asarray(s, dtype=np.float32) for s in scores]
    if not maps:
        raise ValueError("no score maps to fuse")
    if mode == "none" or len(maps) == 1:
        return maps[0].copy()
    if any(m.shape != maps[0].shape for m in maps):
        raise ValueError(f"score maps of different shapes: {[m.shape for m in maps]}")
    if mode == "min":
        out = maps[0].copy()
        for m in maps[1:]:
            np.minimum(out, m, out=out)  # NaN propagates: a pixel unknown in one frame is not anomalous
        return out
    out = np.zeros_like(maps[0])
    for m in maps:
        out += m
    return out / np.float32(len(maps))
