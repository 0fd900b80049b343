"""ONNX export of a DenseHybrid network with pre- and post-processing inside the graph (ARCHITECTURE.md section 3).

Graph: `image` uint8 (1,H,W,3) RGB -> normalise_uint8_nhwc -> network -> scores (model/scores.py) -> outputs at the
input resolution: `class_id` uint8, `anomaly_score` float32/float16, `confidence` float32 (max class posterior);
optionally the raw `logits` (1,K,h,w) and `ood_logit` (1,h,w) at decoder resolution. `ExportWrapper` is that graph
as a torch module, so the torch backend and ONNX Runtime run the same maths.

Scoring resolution (measured in docs/EXPORT.md):
- "decoder" (default): scores and confidence are computed on the (h,w) = (H/4,W/4) decoder outputs and the two maps
  are upsampled bilinearly together; class_id is the decoder-resolution argmax upsampled by nearest neighbour.
  That argmax is exactly the argmax of bilinearly upsampled logits wherever the (up to four) decoder pixels a
  bilinear sample mixes share their argmax (a convex combination of logit vectors that all favour class c still
  favours c), so it can only differ in a band about two pixels wide along class boundaries, and it avoids
  materialising K full-resolution logit maps.
- "input": the K logits and the dataset-posterior logit are upsampled to (H,W) first and everything is computed at
  full resolution, as the official code does (with stable maths: logsumexp and log-sigmoid, no softmax().log()).
"""
from __future__ import annotations

import datetime
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from densehybrid_ros.config.model_card import Calibration, ClassInfo, ModelCard, card_path_for, sha256_of
from densehybrid_ros.config.validation import ConfigError, check_choice, check_range
from densehybrid_ros.core.scores import SCORE_TYPES
from densehybrid_ros.model.densehybrid import DenseHybridNet, normalise_uint8_nhwc
from densehybrid_ros.model.scores import compute_score

HEADS = ("densehybrid", "semantic")
SCORING_RESOLUTIONS = ("decoder", "input")
SCORE_DTYPES = ("float32", "float16")
DEFAULT_OPSET = 17
NORMALISATION = "rgb/127.5-1"
MAX_SIDE = 8192  # the model card's input size range


def output_names(heads: str = "densehybrid", raw_outputs: bool = False) -> list[str]:
    names = ["class_id", "anomaly_score", "confidence"] if heads == "densehybrid" else ["class_id", "confidence"]
    if raw_outputs:
        names += ["logits", "ood_logit"] if heads == "densehybrid" else ["logits"]
    return names


def max_class_posterior(class_logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """max_c P(c|x) = exp(max s - logsumexp s): no K-sized softmax tensor, and exact for any logit magnitude."""
    s = class_logits.float()
    return torch.exp(s.amax(dim=dim) - torch.logsumexp(s, dim=dim))


class ExportWrapper(nn.Module):
    """The exported graph as a torch module: uint8 (1,H,W,3) RGB -> tuple of tensors named by `output_names`."""

    def __init__(self, model: DenseHybridNet, *, score_type: str = "hybrid", heads: str = "densehybrid",
                 scoring_resolution: str = "decoder", score_dtype: str = "float32", raw_outputs: bool = False):
        super().__init__()
        self.score_type = check_choice("score_type", score_type, SCORE_TYPES)
        self.heads = check_choice("heads", heads, HEADS)
        self.scoring_resolution = check_choice("scoring_resolution", scoring_resolution, SCORING_RESOLUTIONS)
        self.score_dtype = check_choice("score_dtype", score_dtype, SCORE_DTYPES)
        self.raw_outputs = bool(raw_outputs)
        self.model = model
        self.output_names = output_names(heads, raw_outputs)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = (image.shape[1], image.shape[2])
        t = self.model.pre_logits(normalise_uint8_nhwc(image))
        logits = self.model.class_head(t)
        # The semantic-only graph never evaluates g: it is the baseline for the DenseHybrid overhead.
        ood_logit = self.model.ood_head(t)[:, 0] if self.heads == "densehybrid" else None

        if self.scoring_resolution == "decoder":
            class_id = F.interpolate(logits.argmax(1, keepdim=True).to(torch.float32), size=size,
                                     mode="nearest")[:, 0].to(torch.uint8)
            maps = [max_class_posterior(logits)]
            if ood_logit is not None:
                maps.append(compute_score(self.score_type, logits, ood_logit))
            # One Resize for both maps.
            up = F.interpolate(torch.stack(maps, 1), size=size, mode="bilinear", align_corners=False)
            confidence = up[:, 0]
            score = up[:, 1] if ood_logit is not None else None
        else:
            full = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            class_id = full.argmax(1).to(torch.uint8)
            confidence = max_class_posterior(full)
            score = None
            if ood_logit is not None:
                full_g = F.interpolate(ood_logit[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
                score = compute_score(self.score_type, full, full_g)

        out = [class_id]
        if score is not None:
            # Computed in float32 and cast last: logsumexp over float16 logits overflows (core/scores.py).
            out.append(score.to(torch.float16) if self.score_dtype == "float16" else score)
        out.append(confidence)
        if self.raw_outputs:
            out.append(logits)
            if ood_logit is not None:
                out.append(ood_logit)
        return tuple(out)


def export_wrapper(model: DenseHybridNet, *, score_type: str = "hybrid", heads: str = "densehybrid",
                   scoring_resolution: str = "decoder", score_dtype: str = "float32",
                   raw_outputs: bool = False) -> ExportWrapper:
    """The exported graph's maths as an eval-mode torch module (used by export_onnx and the torch backend)."""
    return ExportWrapper(model, score_type=score_type, heads=heads, scoring_resolution=scoring_resolution,
                         score_dtype=score_dtype, raw_outputs=raw_outputs).eval()


@dataclass
class _Taxonomy:
    names: list[str]
    colours: list[tuple[int, int, int]]
    anomaly_colour: tuple[int, int, int]


def _taxonomy(taxonomy: Any, num_classes: int) -> _Taxonomy:
    """Accepts data.taxonomy.Taxonomy or the checkpoint's dict {names, colours[, anomaly_colour]}."""
    if taxonomy is None:
        from densehybrid_ros.data.taxonomy import SYNTHETIC
        taxonomy = SYNTHETIC
    if isinstance(taxonomy, Mapping):
        names, colours = taxonomy.get("names"), taxonomy.get("colours")
        anomaly_colour = taxonomy.get("anomaly_colour", (255, 0, 255))
    else:
        names, colours = getattr(taxonomy, "names", None), getattr(taxonomy, "colours", None)
        anomaly_colour = getattr(taxonomy, "anomaly_colour", (255, 0, 255))
    if names is None or colours is None:
        raise ConfigError("taxonomy: needs 'names' and 'colours'")
    if len(names) != num_classes or len(colours) != num_classes:
        raise ConfigError(f"taxonomy has {len(names)} names and {len(colours)} colours but the network has "
                          f"K={num_classes} classes")
    return _Taxonomy([str(n) for n in names], [tuple(int(v) for v in c) for c in colours],
                     tuple(int(v) for v in anomaly_colour))


def export_onnx(model: DenseHybridNet, out_path: str | Path, *, height: int, width: int, dynamic: bool = False,
                score_type: str = "hybrid", raw_outputs: bool = False, heads: str = "densehybrid",
                scoring_resolution: str = "decoder", score_dtype: str = "float32", taxonomy: Any = None,
                name: str | None = None, training: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None, calibration: Calibration | None = None,
                opset: int = DEFAULT_OPSET) -> ModelCard:
    """Export `model` to ONNX at `out_path` and write its model card beside it (`x.onnx` -> `x.card.yaml`).

    height, width: the fixed input size, or with dynamic=True only the size used to trace (the card then says null).
    Returns the saved ModelCard.
    """
    check_range("height", height, 32, MAX_SIDE, integer=True)
    check_range("width", width, 32, MAX_SIDE, integer=True)
    check_range("opset", opset, 17, 23, integer=True)
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ConfigError(f"export path must end in .onnx, got {out_path}")
    tax = _taxonomy(taxonomy, model.num_classes)
    wrapper = export_wrapper(model, score_type=score_type, heads=heads, scoring_resolution=scoring_resolution,
                             score_dtype=score_dtype, raw_outputs=raw_outputs)
    names = wrapper.output_names
    dynamic_axes = None
    if dynamic:
        full = {1: "height", 2: "width"}
        dynamic_axes = {"image": full, "class_id": full, "anomaly_score": full, "confidence": full,
                        "logits": {2: "decoder_height", 3: "decoder_width"},
                        "ood_logit": {1: "decoder_height", 2: "decoder_width"}}
        dynamic_axes = {k: v for k, v in dynamic_axes.items() if k == "image" or k in names}

    was_training = model.training
    model.eval()
    example = torch.zeros(1, int(height), int(width), 3, dtype=torch.uint8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated and about traced shape arithmetic; the dynamo
            # exporter needs onnxscript, which the training requirements do not carry.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), buf, input_names=["image"], output_names=names,
                              dynamic_axes=dynamic_axes, opset_version=int(opset), dynamo=False,
                              do_constant_folding=True)
    finally:
        model.train(was_training)

    import onnx

    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = (f"DenseHybrid ({heads}) open-set segmenter, score {score_type}, scoring at "
                        f"{scoring_resolution} resolution; input uint8 (1,H,W,3) RGB")
    meta = {"name": name or out_path.stem, "num_classes": str(model.num_classes), "score_type": score_type,
            "heads": heads, "scoring_resolution": scoring_resolution, "normalisation": NORMALISATION}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto, full_check=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save(proto, tmp)
    tmp.replace(out_path)

    card_training = {"network_config": model.config.to_dict(), "exported": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "heads": heads, "opset": int(opset)}
    card_training.update(training or {})
    card = ModelCard(
        name=name or out_path.stem,
        model_file=out_path.name,
        sha256=sha256_of(out_path),
        classes=[ClassInfo(i, n, c) for i, (n, c) in enumerate(zip(tax.names, tax.colours))],
        anomaly_label=model.num_classes,
        anomaly_colour=tax.anomaly_colour,
        input_height=None if dynamic else int(height),
        input_width=None if dynamic else int(width),
        score_type=score_type,
        score_dtype=score_dtype,
        normalisation=NORMALISATION,
        outputs=names,
        scoring_resolution=scoring_resolution,
        calibration=calibration,
        metrics=dict(metrics or {}),
        training=card_training,
    )
    card.save(card_path_for(out_path))
    return card


def output_shapes(names: Sequence[str], num_classes: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Expected output shapes for an input of (height, width) (decoder size as the network computes it)."""
    h, w = _decoder_size(height), _decoder_size(width)
    shapes = {"class_id": (1, height, width), "anomaly_score": (1, height, width), "confidence": (1, height, width),
              "logits": (1, num_classes, h, w), "ood_logit": (1, h, w)}
    return {n: shapes[n] for n in names}


def _decoder_size(side: int) -> int:
    # Stem and the three stride-2 stages before the stride-4 tap: two halvings with the backbone's fixed pads.
    for _ in range(2):
        side = (side - 1) // 2 + 1 if side % 2 == 0 else (side - 1) // 2
    return side
