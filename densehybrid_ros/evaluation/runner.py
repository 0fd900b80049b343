"""`densehybrid evaluate`: run a model over a split and accumulate every metric for every score type.

Per frame: the backend runs the exported graph (which must have raw outputs); the seven scores are computed from
the raw `logits` / `ood_logit` with core/scores.py the way the graph computes its own score (card
`scoring_resolution`): "decoder" scores at decoder resolution then upsampled bilinearly (half-pixel centres, as
torch's align_corners=False), "input" upsamples the logits first. Everything is accumulated in fixed memory
(streaming.py): pooled histograms, per-image metrics, closed-set confusion, the two-fold open-set accumulators,
breakdowns. Component metrics need a threshold that is known only after the whole split, so the raw outputs are
cached on disk (decoder resolution, float32) and a second, inference-free pass computes them.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densehybrid_ros.core.scores import SCORE_TYPES, compute_score
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.evaluation.breakdowns import (
    DEFAULT_DISTANCE_EDGES, DEFAULT_SIZE_EDGES, BreakdownAccumulator, FrameGroups, frame_groups,
)
from densehybrid_ros.evaluation.components import (
    ComponentAccumulator, connected_components, frame_components, scaled_min_areas,
)
from densehybrid_ros.evaluation.metrics import (
    DEFAULT_TARGET_TPR, PerImageMean, anomaly_metrics, operating_point_at_tpr,
)
from densehybrid_ros.evaluation.open_miou import (
    ConfusionAccumulator, PreparedLabels, closed_set_confusion, TwoFoldOpenSet, iou_per_class, mean_over_present, prepare_labels,
)
from densehybrid_ros.evaluation.streaming import (
    BREAKDOWN_BITS, DEFAULT_BITS, ScoreBinning, ScoreHistogram,
)

# Scores that are posteriors in [0, 1] are binned in logit units, where their saturated tails stay apart.
SCORE_TRANSFORMS = {"discriminative": "logit", "max_softmax": "logit"}
CURVE_POINTS = 400  # points kept per PR / ROC curve for the plots


class EvaluationError(ValueError):
    """The model or the split cannot be evaluated as asked (named in the message)."""


@dataclass
class EvaluationConfig:
    model: Path
    data: Path
    format: str = "auto"
    backend: str = "onnxruntime"
    out: Path | None = Path("docs/report")
    max_images: int | None = None
    tau_from_card: bool = False
    score_types: tuple[str, ...] = SCORE_TYPES
    target_tpr: float = DEFAULT_TARGET_TPR
    bits: int = DEFAULT_BITS
    breakdown_bits: int = BREAKDOWN_BITS
    open_bits: int = 12  # the straddling bin is split linearly: 12 bits are within 1e-5 of exact (EVALUATION.md)
    distance_edges: tuple[float, ...] = DEFAULT_DISTANCE_EDGES
    size_edges: tuple[float, ...] = DEFAULT_SIZE_EDGES
    components: bool = True
    qualitative: int = 4
    threads: int = 0
    progress: bool = True
    cache_dir: Path | None = None  # where the raw outputs are cached for the component pass (default: a tempdir)

    def __post_init__(self) -> None:
        self.model, self.data = Path(self.model), Path(self.data)
        unknown = [s for s in self.score_types if s not in SCORE_TYPES]
        if unknown or not self.score_types:
            raise EvaluationError(f"score types {unknown or '(none)'} are not valid; choose from "
                                  f"{', '.join(SCORE_TYPES)}")
        if self.max_images is not None and (isinstance(self.max_images, bool) or self.max_images < 1):
            raise EvaluationError(f"max_images must be a positive integer, got {self.max_images!r}")
        if not 0 < self.target_tpr <= 1:
            raise EvaluationError(f"target TPR must be in (0, 1], got {self.target_tpr}")
        if not 8 <= self.bits <= 24:
            raise EvaluationError(f"histogram bits must be in [8, 24], got {self.bits}")
        # Breakdown and open-set histograms nest inside the pooled bins, so they cannot be finer.
        self.breakdown_bits = min(self.breakdown_bits, self.bits)
        self.open_bits = min(self.open_bits, self.bits)
        if self.breakdown_bits < 8 or self.open_bits < 8:
            raise EvaluationError("breakdown and open-set histograms need at least 8 bits")
        if not 0 <= self.qualitative <= 16:
            raise EvaluationError(f"qualitative frames must be in [0, 16], got {self.qualitative}")


# -- scores from raw outputs ---------------------------------------------------------------------------------


def _resize_linear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if x.shape[-2:] == (h, w):
        return np.asarray(x, dtype=np.float32)
    return cv2.resize(np.asarray(x, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def upsample_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) -> (K, H, W) bilinear; OpenCV resizes up to 512 channels in one call (channels last)."""
    hwk = np.ascontiguousarray(np.moveaxis(np.asarray(logits, dtype=np.float32), 0, -1))
    up = cv2.resize(hwk, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.moveaxis(up.reshape(size[0], size[1], -1), -1, 0)


def score_maps(logits: np.ndarray, ood_logit: np.ndarray, size: tuple[int, int], score_types: Sequence[str],
               scoring_resolution: str = "decoder") -> dict[str, np.ndarray]:
    """Every requested score at label resolution `size` (float32), computed as the exported graph does."""
    if scoring_resolution == "input":
        s = upsample_logits(logits, size)
        g = _resize_linear(ood_logit, size)
        return {t: np.asarray(compute_score(t, s, g), dtype=np.float32) for t in score_types}
    return {t: _resize_linear(compute_score(t, logits, ood_logit), size) for t in score_types}


def raw_outputs(result: SegmentationResult, model: Path) -> tuple[np.ndarray, np.ndarray]:
    if result.logits is None or result.ood_logit is None:
        raise EvaluationError(f"model {model} has no raw outputs (logits, ood_logit); evaluation computes every "
                              f"score type from them: re-export with `densehybrid export --raw-outputs ...`")
    return np.asarray(result.logits, dtype=np.float32), np.asarray(result.ood_logit, dtype=np.float32)


FIT_FRAMES = 4


def fit_frame_indices(n_frames: int, count: int = FIT_FRAMES) -> list[int]:
    """Frames spread over the split (splits are often ordered by condition, so not the first few)."""
    return sorted(set(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int).tolist()))


class SpreadSubset:
    """`count` frames of a split spread over it, for --max-images: splits are ordered by condition (clear first),
    so the first N frames would measure or calibrate one condition. Other attributes pass through to the split."""

    def __init__(self, split, count: int) -> None:
        self._split = split
        self.indices = fit_frame_indices(len(split), count)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self._split[self.indices[i]]

    def __getattr__(self, name: str):
        return getattr(self._split, name)


def limit_frames(split, max_images: int | None):
    """The split itself, or `max_images` of its frames spread over it."""
    return split if max_images is None or max_images >= len(split) else SpreadSubset(split, max_images)


def fit_binnings(split, n_frames: int, score_types: Sequence[str], bits: int, infer, scoring_resolution: str,
                 model: Path, count: int = FIT_FRAMES, raw: bool = True) -> dict[str, ScoreBinning]:
    """Bins per score type fitted on a few frames spread over the split (a cheap pre-pass of `count` inferences):
    the bins' centre and scale then suit every condition, not just the first frame's."""
    samples: dict[str, list[np.ndarray]] = {t: [] for t in score_types}
    for i in fit_frame_indices(n_frames, count):
        sample = split[i]
        result = infer(sample.image)
        if raw:
            logits, ood_logit = raw_outputs(result, model)
            maps = score_maps(logits, ood_logit, sample.anomaly.shape, score_types, scoring_resolution)
        else:
            maps = {score_types[0]: result.anomaly_score}
        for t in score_types:
            flat = np.asarray(maps[t], dtype=np.float32).ravel()
            samples[t].append(flat[:: max(1, flat.size // (1 << 16))])
    return {t: ScoreBinning.fit(np.concatenate(samples[t]), bits, SCORE_TRANSFORMS.get(t, "identity"))
            for t in score_types}


# -- accumulation ---------------------------------------------------------------------------------------------


def _downsample_curve(x: np.ndarray, y: np.ndarray, n: int = CURVE_POINTS) -> tuple[list, list]:
    if x.size <= n:
        return x.tolist(), y.tolist()
    idx = np.unique(np.r_[np.linspace(0, x.size - 1, n).round().astype(int), x.size - 1])
    return x[idx].tolist(), y[idx].tolist()


class ScoreTypeState:
    """Everything accumulated for one score type."""

    def __init__(self, name: str, binning: ScoreBinning, num_classes: int, config: EvaluationConfig):
        self.name = name
        self.binning = binning
        self.shift = binning.bits - config.breakdown_bits
        self.coarse = binning.coarsened(config.breakdown_bits)
        self.per_image = PerImageMean()
        self.breakdown = BreakdownAccumulator(self.coarse, config.distance_edges, config.size_edges)
        # The two folds' anomaly histograms together are the pooled histogram of the split.
        self.two_fold = TwoFoldOpenSet(num_classes, binning, config.open_bits, config.target_tpr)
        self.components = ComponentAccumulator()

    def add(self, index: int, score: np.ndarray, groups: FrameGroups, prepared: PreparedLabels | None) -> None:
        bins = self.binning.bins(score).ravel()
        coarse = bins >> self.shift
        image = ScoreHistogram(self.coarse)
        image.add_bins(coarse[groups.positive], coarse[groups.negative])
        self.per_image.add(anomaly_metrics(image.curve()))
        self.breakdown.add_frame(groups, coarse, image)
        self.two_fold.add(index % 2, None, None, None, bins, prepared=prepared,
                          masks=(groups.positive, groups.negative))


@dataclass
class Evaluation:
    """The results (`metrics`, JSON-ready) and what the plots need (curves, qualitative frames)."""

    metrics: dict[str, Any]
    curves: dict[str, dict[str, list]] = field(default_factory=dict)
    qualitative: list[dict[str, Any]] = field(default_factory=list)
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


def _sanitise(x: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so metrics.json is standard JSON."""
    if isinstance(x, dict):
        return {str(k): _sanitise(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_sanitise(v) for v in x]
    if isinstance(x, np.ndarray):
        return _sanitise(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def progress_bar(iterable, total: int, enabled: bool, desc: str):
    """`iterable` with a tqdm bar (per frame) when `enabled` and tqdm is installed, else `iterable` itself."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a training requirement; evaluation still runs without a progress bar
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="frame", dynamic_ncols=True)


def _check_sample(sample, num_classes: int) -> None:
    if sample.anomaly.shape != sample.image.shape[:2]:
        raise EvaluationError(f"frame {sample.name}: anomaly labels {sample.anomaly.shape} and image "
                              f"{sample.image.shape[:2]} differ in size")
    if sample.semantic is not None:
        top = int(sample.semantic[sample.semantic != 255].max(initial=0))
        if top > num_classes:
            raise EvaluationError(f"frame {sample.name}: label {top} exceeds the model's anomaly label "
                                  f"K={num_classes}; the split and the model use different taxonomies")


def _qualitative_frame(sample, class_id: np.ndarray, score: np.ndarray, max_width: int = 480) -> dict[str, Any]:
    h, w = sample.anomaly.shape
    scale = min(1.0, max_width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def small(x, nearest):
        if scale == 1.0:
            return np.array(x)
        return cv2.resize(x, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    return {"name": sample.name, "condition": sample.condition, "image": small(sample.image, False),
            "semantic": None if sample.semantic is None else small(sample.semantic, True),
            "anomaly": small(sample.anomaly, True), "class_id": small(class_id, True),
            "score": small(score.astype(np.float32), False)}


def evaluate(config: EvaluationConfig) -> Evaluation:
    """Run the model over the split and compute every metric for every score type (nothing is written)."""
    from densehybrid_ros.data.adapters import open_split
    from densehybrid_ros.runtime import create_backend

    started = time.perf_counter()
    backend_options: dict[str, Any] = {}
    if config.backend == "onnxruntime" and config.threads:
        backend_options["threads"] = int(config.threads)
    backend = create_backend(config.model, backend=config.backend, **backend_options)
    card = backend.card
    if "logits" not in card.outputs or "ood_logit" not in card.outputs:
        raise EvaluationError(f"model {config.model} was exported without raw outputs (card outputs: "
                              f"{', '.join(card.outputs)}); re-export with `densehybrid export --raw-outputs ...`")
    split = limit_frames(open_split(config.data, format=config.format), config.max_images)
    n_frames = len(split)
    if n_frames == 0:
        raise EvaluationError(f"split {config.data} has no frames")
    k = card.num_classes
    taxonomy = getattr(split, "taxonomy", None)
    if taxonomy is not None and taxonomy.num_classes != k:
        raise EvaluationError(f"split {config.data} has K={taxonomy.num_classes} classes but model "
                              f"{config.model} has K={k}; evaluate a model on data of its own taxonomy")

    card_tau = None
    if config.tau_from_card:
        if card.calibration is None:
            raise EvaluationError(f"--tau-from-card: the card of {config.model} has no calibration; run "
                                  "`densehybrid calibrate` first")
        card_tau = (card.calibration.score_type, float(card.calibration.tau))

    cache_root = None
    if config.components:
        cache_root = Path(tempfile.mkdtemp(prefix="densehybrid-eval-", dir=config.cache_dir))
    binnings = fit_binnings(split, n_frames, config.score_types, config.bits,
                            lambda image: backend.infer(image), card.scoring_resolution, config.model)
    states = {name: ScoreTypeState(name, binnings[name], k, config) for name in config.score_types}
    closed = ConfusionAccumulator(k)
    closed_by_condition: dict[str, ConfusionAccumulator] = {}
    conditions: dict[str, int] = {}
    qualitative: list[tuple[int, dict[str, Any]]] = []
    has_semantic = True
    inference_seconds = 0.0
    frame_pixels = 0
    try:
        for i in progress_bar(range(n_frames), n_frames, config.progress, "evaluate"):
            sample = split[i]
            _check_sample(sample, k)
            t0 = time.perf_counter()
            result = backend.infer(sample.image)
            inference_seconds += time.perf_counter() - t0
            logits, ood_logit = raw_outputs(result, config.model)
            size = sample.anomaly.shape
            frame_pixels = max(frame_pixels, size[0] * size[1])
            maps = score_maps(logits, ood_logit, size, config.score_types, card.scoring_resolution)
            class_id = result.class_id
            if class_id.shape != size:
                class_id = cv2.resize(class_id, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            if cache_root is not None:
                np.save(cache_root / f"{i}.npy", np.concatenate([logits, ood_logit[None]], axis=0))

            conditions[sample.condition] = conditions.get(sample.condition, 0) + 1
            if sample.semantic is None:
                has_semantic = False
            else:
                conf = closed_set_confusion(sample.semantic, class_id, k)
                closed.matrix += conf
                closed_by_condition.setdefault(sample.condition, ConfusionAccumulator(k)).matrix += conf
            gt_components = connected_components(sample.anomaly == 1)
            groups = frame_groups(sample.anomaly, sample.condition, sample.depth, config.distance_edges,
                                  config.size_edges, gt_components)
            prepared = None if sample.semantic is None else prepare_labels(sample.semantic, class_id, k)
            for name in config.score_types:
                states[name].add(i, maps[name], groups, prepared)
            positive = groups.positive
            if len(qualitative) < config.qualitative and (np.any(positive) or i >= n_frames - config.qualitative):
                qualitative.append((i, _qualitative_frame(sample, class_id, maps[_main_score(card, config)])))

        # The operating point per score type: the card's tau (if asked) or TPR >= target on the whole split.
        taus: dict[str, dict[str, Any]] = {}
        for name, st in states.items():
            if card_tau is not None and card_tau[0] == name:
                taus[name] = {"tau": card_tau[1], "source": "model card"}
            elif st.two_fold.anomaly[0].n_pos + st.two_fold.anomaly[1].n_pos:
                op = operating_point_at_tpr(st.two_fold.pooled().curve(), config.target_tpr)
                taus[name] = {"tau": op.tau, "threshold": op.threshold, "tpr": op.tpr, "fpr": op.fpr,
                              "source": f"TPR >= {config.target_tpr:g} on this split"}

        component_areas = scaled_min_areas(frame_pixels)
        if cache_root is not None:
            for i in progress_bar(range(n_frames), n_frames, config.progress, "components"):
                sample = split[i]
                raw = np.load(cache_root / f"{i}.npy")
                names = [n for n in config.score_types if n in taus]
                maps = score_maps(raw[:-1], raw[-1], sample.anomaly.shape, names, card.scoring_resolution)
                for name in names:
                    states[name].components.add(frame_components(
                        sample.anomaly, maps[name] > taus[name]["tau"], *component_areas))
    finally:
        if cache_root is not None:
            shutil.rmtree(cache_root, ignore_errors=True)
        backend.close()

    elapsed = time.perf_counter() - started
    names_k = [c.name for c in card.classes]
    metrics: dict[str, Any] = {
        "model": {"name": card.name, "file": str(config.model), "sha256": card.sha256,
                  "score_type": card.score_type, "scoring_resolution": card.scoring_resolution,
                  "num_classes": k, "calibration": None if card.calibration is None else vars(card.calibration),
                  "backend": config.backend},
        "data": {"path": str(config.data), "format": getattr(split, "format", config.format),
                 "images": n_frames, "conditions": dict(sorted(conditions.items()))},
        "settings": {"target_tpr": config.target_tpr, "histogram_bits": config.bits,
                     "breakdown_bits": config.breakdown_bits, "open_set_bits": config.open_bits,
                     "folds": "alternating frames (even -> fold A, odd -> fold B)",
                     "distance_edges_m": list(config.distance_edges), "size_edges_fraction": list(config.size_edges),
                     "component_min_pred_area": component_areas[0], "component_min_gt_area": component_areas[1],
                     "per_image": "mean over images with anomaly pixels"},
        "closed_set": None,
        "scores": {},
        "timing": {"seconds": elapsed, "inference_seconds": inference_seconds,
                   "frames_per_second": n_frames / elapsed if elapsed else None},
    }
    if has_semantic:
        iou = iou_per_class(closed.matrix)
        metrics["closed_set"] = {
            "miou": mean_over_present(iou), "iou": dict(zip(names_k, iou.tolist())),
            "by_condition": {c: mean_over_present(iou_per_class(acc.matrix))
                             for c, acc in sorted(closed_by_condition.items())},
        }
    curves: dict[str, dict[str, list]] = {}
    for name, st in states.items():
        curve = st.two_fold.pooled().curve()
        entry: dict[str, Any] = {"pooled": anomaly_metrics(curve).to_dict(), "per_image": st.per_image.result(),
                                 "operating_point": taus.get(name), "binning": st.binning.to_dict()}
        entry.update(st.breakdown.result())
        if has_semantic:
            tf = st.two_fold.result()
            entry["open_set"] = {"open_miou_two_fold": tf.open_miou, "note": tf.note,
                                 "folds": [vars(f) for f in tf.folds]}
            merged = st.two_fold.merged_open_set()
            if name in taus:
                iou_open = merged.open_iou_at(_threshold_of(taus[name]))
                entry["open_set"]["open_miou_at_operating_point"] = mean_over_present(iou_open)
                entry["open_set"]["open_iou_at_operating_point"] = dict(zip(names_k, iou_open.tolist()))
        if config.components and name in taus:
            entry["components"] = st.components.result(tau=taus[name]["tau"], min_pred_area=component_areas[0],
                                                       min_gt_area=component_areas[1]).to_dict()
            entry["components_by_size"] = _components_by_size(st.components, frame_pixels, config.size_edges)
        metrics["scores"][name] = entry
        if curve.n_pos and curve.n_neg:
            recall, precision = _downsample_curve(curve.tpr, curve.precision)
            fpr, tpr = _downsample_curve(curve.fpr, curve.tpr)
            curves[name] = {"recall": recall, "precision": precision, "fpr": fpr, "tpr": tpr}

    main = _main_score(card, config)
    main_tau = taus.get(main, {}).get("tau")
    for _, q in qualitative:
        q["tau"] = main_tau
        q["score_type"] = main
    return Evaluation(metrics=_sanitise(metrics), curves=curves, qualitative=[q for _, q in qualitative],
                      palette=card.palette, class_names=names_k)


def _main_score(card, config: EvaluationConfig) -> str:
    return card.score_type if card.score_type in config.score_types else config.score_types[0]


def _threshold_of(op: dict[str, Any]) -> float:
    """The `score >= threshold` form of an operating point (the card's tau is a strict `score > tau`)."""
    return float(op.get("threshold", np.nextafter(np.float64(op["tau"]), np.inf)))


def _components_by_size(acc: ComponentAccumulator, frame_pixels: int, edges: tuple[float, ...]) -> dict:
    from densehybrid_ros.evaluation.breakdowns import band_names

    siou = acc.all_siou()
    area = acc.all_gt_area() / max(frame_pixels, 1)
    out = {}
    for i, name in enumerate(band_names(edges, unit="% of frame", scale=100)):
        sel = (area >= edges[i]) & ((area < edges[i + 1]) | (i == len(edges) - 2))
        out[name] = {"components": int(sel.sum()), "mean_siou": float(siou[sel].mean()) if sel.any() else None,
                     "detected_at_0.5": int(np.count_nonzero(siou[sel] >= 0.5))}
    return out


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
