"""Threshold calibration: tau at a target TPR on a calibration split, written into the model card.

tau is the operating point of metrics.operating_point_at_tpr -- the first threshold (highest) whose TPR reaches
the target, the same point FPR95 is read at -- expressed as a strict threshold: the node labels a pixel anomalous
when score > tau. The score is the graph's own `anomaly_score` output (what the node thresholds), so no raw
outputs are needed. Pixels are counted in the streaming histogram (20 bits), so tau sits on a bin edge: its
resolution is ~1e-5 of the scores' spread, and the recorded TPR/FPR are those of the histogram.

Only the card is rewritten (calibration block); the model file is untouched, so its sha256 stays valid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.config.model_card import Calibration, ModelCard, load_model_card
from densehybrid_ros.evaluation.metrics import DEFAULT_TARGET_TPR, operating_point_at_tpr
from densehybrid_ros.evaluation.streaming import DEFAULT_BITS, ScoreHistogram, split_labels


class CalibrationError(ValueError):
    """The calibration cannot be done as asked (named in the message)."""


@dataclass
class CalibrationResult:
    tau: float
    target_tpr: float
    achieved_tpr: float
    fpr: float
    split: str
    score_type: str
    images: int
    anomaly_pixels: int
    inlier_pixels: int
    seconds: float

    def to_calibration(self) -> Calibration:
        return Calibration(tau=self.tau, target_tpr=self.target_tpr, achieved_tpr=round(self.achieved_tpr, 6),
                           fpr=round(self.fpr, 6), split=self.split, score_type=self.score_type)


def threshold_at_tpr(histogram: ScoreHistogram, target_tpr: float = DEFAULT_TARGET_TPR) -> tuple[float, float, float]:
    """(tau, achieved TPR, FPR) of the first operating point with TPR >= target; score > tau is anomalous."""
    if histogram.n_pos == 0:
        raise CalibrationError("the calibration split has no anomaly pixels: no threshold reaches a TPR; "
                               "calibrate on a split with anomalies")
    op = operating_point_at_tpr(histogram.curve(), target_tpr)
    return op.tau, op.tpr, op.fpr


def calibrate(model: str | Path, data: str | Path, target_tpr: float = DEFAULT_TARGET_TPR,
              score_type: str | None = None, format: str = "auto", backend: str = "onnxruntime",
              max_images: int | None = None, threads: int = 0, progress: bool = True,
              bits: int = DEFAULT_BITS) -> CalibrationResult:
    """Run the model over the calibration split and choose tau at the target TPR (nothing is written)."""
    from densehybrid_ros.data.adapters import open_split
    from densehybrid_ros.evaluation.runner import fit_binnings, limit_frames, progress_bar
    from densehybrid_ros.runtime import create_backend

    if not 0 < target_tpr <= 1:
        raise CalibrationError(f"target TPR must be in (0, 1], got {target_tpr}")
    if max_images is not None and max_images < 1:
        raise CalibrationError(f"max_images must be a positive integer, got {max_images}")
    started = time.perf_counter()
    options: dict[str, Any] = {"threads": int(threads)} if backend == "onnxruntime" and threads else {}
    runner = create_backend(model, backend=backend, **options)
    card = runner.card
    score_type = score_type or card.score_type
    if score_type != card.score_type:
        raise CalibrationError(
            f"the graph of {model} outputs the {card.score_type!r} score and the node thresholds that output; a tau "
            f"for {score_type!r} would be applied to the wrong score. Export a model with --score-type "
            f"{score_type} to deploy it")
    split = limit_frames(open_split(data, format=format), max_images)
    n = len(split)
    if n == 0:
        raise CalibrationError(f"calibration split {data} has no frames")
    taxonomy = getattr(split, "taxonomy", None)
    if taxonomy is not None and taxonomy.num_classes != card.num_classes:
        # A tau from another taxonomy's frames would replace the card's and be wrong on the model's own data.
        raise CalibrationError(f"split {data} has K={taxonomy.num_classes} classes but model {model} has "
                               f"K={card.num_classes}; calibrate a model on data of its own taxonomy")
    try:
        binning = fit_binnings(split, n, (score_type,), bits, runner.infer, card.scoring_resolution, Path(model),
                               raw=False)[score_type]
        hist = ScoreHistogram(binning)
        for i in progress_bar(range(n), n, progress, "calibrate"):
            sample = split[i]
            score = runner.infer(sample.image).anomaly_score
            positive, negative = split_labels(sample.anomaly)
            bins = hist.binning.bins(score).ravel()
            hist.add_bins(bins[positive], bins[negative])
    finally:
        runner.close()
    tau, tpr, fpr = threshold_at_tpr(hist, target_tpr)
    return CalibrationResult(tau=float(tau), target_tpr=float(target_tpr), achieved_tpr=float(tpr),
                             fpr=float(fpr), split=str(data), score_type=score_type, images=n,
                             anomaly_pixels=hist.n_pos, inlier_pixels=hist.n_neg,
                             seconds=time.perf_counter() - started)


def write_calibration(model: str | Path, result: CalibrationResult) -> ModelCard:
    """Store the calibration in the card beside `model` (sha256 checked before, model file untouched)."""
    card = load_model_card(model, verify_sha=True)
    if result.score_type != card.score_type:
        raise CalibrationError(f"calibration is for {result.score_type!r} but the card's score type is "
                               f"{card.score_type!r}")
    if not np.isfinite(result.tau):
        raise CalibrationError(f"calibrated tau is not finite ({result.tau}); the scores do not separate")
    card.calibration = result.to_calibration()
    card.save(card.card_path)
    return card
