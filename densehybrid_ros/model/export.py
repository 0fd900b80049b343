"""ONNX export of a DenseHybrid network with pre- and post-processing inside the graph (docs/ARCHITECTURE.md section 3).

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
  materialising K full-resolution logit maps. `class_upsampling="bilinear"` keeps decoder-resolution scores but takes
  class_id from the bilinearly upsampled K logits (the "input" class map, for about +10% latency).
- "input": the K logits and the dataset-posterior logit are upsampled to (H,W) first and everything is computed at
  full resolution, as the official code does (with stable maths: logsumexp and log-sigmoid, no softmax().log()).
"""
from __future__ import annotations

import datetime
import time
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from densehybrid_ros.config.model_card import (Calibration, ClassInfo, ModelCard, card_path_for,
                                               check_data_sources, sha256_of)
from densehybrid_ros.config.validation import ConfigError, check_choice, check_range
from densehybrid_ros.core.scores import SCORE_TYPES
from densehybrid_ros.model.densehybrid import DenseHybridNet, normalise_uint8_nhwc
from densehybrid_ros.model.scores import compute_score, log_dataset_posterior

HEADS = ("densehybrid", "semantic")
SCORING_RESOLUTIONS = ("decoder", "input")
SCORE_DTYPES = ("float32", "float16")
CLASS_UPSAMPLINGS = ("nearest", "bilinear")
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


def _score_reusing_log_likelihood(score_type: str, class_logits: torch.Tensor, ood_logit: torch.Tensor,
                                  log_likelihood: torch.Tensor) -> torch.Tensor:
    """compute_score(), but the scores built on ln p^(x) = logsumexp(s) reuse the one the confidence needs.

    ONNX Runtime does not merge two identical ReduceLogSumExp nodes; sharing it took the DenseHybrid graph's cost
    over the semantic-only graph from +3.1% to +1.2% at 512x1024 (docs/BENCHMARKS.md).
    """
    if score_type == "hybrid":
        return log_dataset_posterior(ood_logit) - log_likelihood  # eq. 6
    if score_type == "generative":
        return -log_likelihood
    return compute_score(score_type, class_logits, ood_logit)


class ExportWrapper(nn.Module):
    """The exported graph as a torch module: uint8 (1,H,W,3) RGB -> tuple of tensors named by `output_names`."""

    def __init__(self, model: DenseHybridNet, *, score_type: str = "hybrid", heads: str = "densehybrid",
                 scoring_resolution: str = "decoder", score_dtype: str = "float32", raw_outputs: bool = False,
                 class_upsampling: str = "nearest"):
        super().__init__()
        self.class_upsampling = check_choice("class_upsampling", class_upsampling, CLASS_UPSAMPLINGS)
        self.score_type = check_choice("score_type", score_type, SCORE_TYPES)
        self.heads = check_choice("heads", heads, HEADS)
        self.scoring_resolution = check_choice("scoring_resolution", scoring_resolution, SCORING_RESOLUTIONS)
        self.score_dtype = check_choice("score_dtype", score_dtype, SCORE_DTYPES)
        self.raw_outputs = bool(raw_outputs)
        self.model = model
        self.output_names = output_names(heads, raw_outputs)
        # Set by export_onnx for fixed-size graphs: the output size then is a constant, so the graph's outputs have
        # static shapes (a traced image.shape would make them symbolic).
        self.fixed_size: tuple[int, int] | None = None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = self.fixed_size if self.fixed_size is not None else (image.shape[1], image.shape[2])
        t = self.model.pre_logits(normalise_uint8_nhwc(image))
        logits = self.model.class_head(t)
        # The semantic-only graph never evaluates g: it is the baseline for the DenseHybrid overhead.
        ood_logit = self.model.ood_head(t)[:, 0] if self.heads == "densehybrid" else None
        return self.postprocess(logits, ood_logit, size)

    def postprocess(self, logits: torch.Tensor, ood_logit: torch.Tensor | None,
                    size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Decoder outputs (1,K,h,w), (1,h,w) -> the graph outputs at `size` (H, W)."""
        if self.scoring_resolution == "decoder":
            if self.class_upsampling == "nearest":
                class_id = F.interpolate(logits.argmax(1, keepdim=True).to(torch.float32), size=size,
                                         mode="nearest")[:, 0].to(torch.uint8)
            else:
                class_id = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1).to(
                    torch.uint8)
            s = logits.float()
            # logsumexp written out around the maximum: the sum of exp(s - max) gives ln p^(x) and the max class
            # posterior (its reciprocal) together. onnxruntime's ReduceLogSumExp over the class axis took 4% of the
            # separable-decoder graph at 512x1024 (docs/NETWORK_DESIGN.md); ReduceMax + ReduceSum are its fast
            # reductions. Exact for any logit magnitude: every exponent is <= 0 and the sum is >= 1.
            peak = s.amax(dim=1)
            total = torch.exp(s - peak[:, None]).sum(dim=1)
            lse = peak + torch.log(total)
            maps = [1.0 / total]  # max class posterior exp(max s - logsumexp s), as max_class_posterior()
            if ood_logit is not None:
                maps.append(_score_reusing_log_likelihood(self.score_type, s, ood_logit, lse))
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
                   raw_outputs: bool = False, class_upsampling: str = "nearest") -> ExportWrapper:
    """The exported graph's maths as an eval-mode torch module (used by export_onnx and the torch backend)."""
    return ExportWrapper(model, score_type=score_type, heads=heads, scoring_resolution=scoring_resolution,
                         score_dtype=score_dtype, raw_outputs=raw_outputs,
                         class_upsampling=class_upsampling).eval()


def wrapper_options(card: ModelCard) -> dict[str, Any]:
    """The `export_wrapper` arguments that reproduce the graph a model card describes.

    The torch backend builds its wrapper from these, so torch and onnxruntime run the same maths; in particular
    `class_upsampling`, which the card records only under `training.export` (written by `export_onnx`; cards from
    before that option default to "nearest", the exporter's default).
    """
    outputs = set(card.outputs)
    export = (card.training or {}).get("export") or {}
    return {"score_type": card.score_type,
            "heads": "densehybrid" if "anomaly_score" in outputs else "semantic",
            "scoring_resolution": card.scoring_resolution, "score_dtype": card.score_dtype,
            "raw_outputs": "logits" in outputs,
            "class_upsampling": export.get("class_upsampling", "nearest")}


def _stable_log_sigmoid_symbolic(g: Any, x: Any) -> Any:
    """ONNX for ln sigmoid(x) = min(x, 0) - softplus(-|x|).

    The TorchScript exporter's own translation is Log(Sigmoid(x)), which is -inf once sigmoid underflows
    (x < -88 in float32) and turns the hybrid score (eq. 6) into -inf/NaN in the graph while torch stays exact.
    softplus(-|x|) only sees non-positive inputs, so it lies in [0, ln 2] and never overflows.
    """
    zero = g.op("Constant", value_t=torch.tensor(0.0, dtype=torch.float32))
    return g.op("Sub", g.op("Min", x, zero), g.op("Softplus", g.op("Neg", g.op("Abs", x))))


def _register_export_symbolics(opset: int) -> None:
    torch.onnx.register_custom_op_symbolic("aten::log_sigmoid", _stable_log_sigmoid_symbolic, opset)


@dataclass
class _Taxonomy:
    names: list[str]
    colours: list[tuple[int, int, int]]
    anomaly_colour: tuple[int, int, int]


def default_taxonomy(num_classes: int) -> Any:
    """The synthetic world's taxonomy when K matches it, else placeholder names class_0.. with distinct colours."""
    from densehybrid_ros.data.taxonomy import SYNTHETIC

    if num_classes == SYNTHETIC.num_classes:
        return SYNTHETIC
    return {"names": [f"class_{i}" for i in range(num_classes)],
            "colours": [((i * 67) % 256, (i * 151) % 256, (i * 211) % 256) for i in range(num_classes)]}


def _taxonomy(taxonomy: Any, num_classes: int) -> _Taxonomy:
    """Accepts data.taxonomy.Taxonomy or the checkpoint's dict {names, colours[, anomaly_colour]}."""
    if taxonomy is None:
        taxonomy = default_taxonomy(num_classes)
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
                opset: int = DEFAULT_OPSET, class_upsampling: str = "nearest",
                data_sources: list[dict[str, str]] | None = None) -> ModelCard:
    """Export `model` to ONNX at `out_path` and write its model card beside it (`x.onnx` -> `x.card.yaml`).

    height, width: the fixed input size, or with dynamic=True only the size used to trace (the card then says null).
    data_sources: the card's data_sources (config/model_card.py), checked before the export starts.
    Returns the saved ModelCard.
    """
    check_range("height", height, 32, MAX_SIDE, integer=True)
    check_range("width", width, 32, MAX_SIDE, integer=True)
    check_range("opset", opset, 17, 23, integer=True)
    data_sources = check_data_sources(data_sources, "export data_sources")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ConfigError(f"export path must end in .onnx, got {out_path}")
    tax = _taxonomy(taxonomy, model.num_classes)
    wrapper = export_wrapper(model, score_type=score_type, heads=heads, scoring_resolution=scoring_resolution,
                             score_dtype=score_dtype, raw_outputs=raw_outputs, class_upsampling=class_upsampling)
    names = wrapper.output_names
    if not dynamic:
        wrapper.fixed_size = (int(height), int(width))
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
    _register_export_symbolics(int(opset))
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
    folded_pads = fold_pads_into_convs(proto)
    _declare_output_shapes(proto, model.num_classes, None if dynamic else (int(height), int(width)))
    proto.doc_string = (f"DenseHybrid ({heads}) open-set segmenter, score {score_type}, scoring at "
                        f"{scoring_resolution} resolution; input uint8 (1,H,W,3) RGB")
    meta = {"name": name or out_path.stem, "num_classes": str(model.num_classes), "score_type": score_type,
            "heads": heads, "scoring_resolution": scoring_resolution, "class_upsampling": class_upsampling,
            "normalisation": NORMALISATION}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto, full_check=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save(proto, tmp)
    tmp.replace(out_path)

    card_training = {"network_config": model.config.to_dict(), "exported": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": {"heads": heads, "opset": int(opset), "class_upsampling": class_upsampling,
                   "folded_pads": len(folded_pads)}}
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
        data_sources=data_sources,
    )
    card.save(card_path_for(out_path))
    return card


def _constant_value(graph: Any, name: str, producers: dict[str, Any], initializers: dict[str, Any],
                    opset_import: Any) -> Any:
    """The value of tensor `name` if it is computed from constants alone (else None), evaluated with onnx's
    reference evaluator on just the nodes that compute it."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    needed, stack, seen = [], [name], set()
    while stack:
        t = stack.pop()
        if t in seen or t in initializers or t == "":
            continue
        seen.add(t)
        node = producers.get(t)
        if node is None:  # a graph input
            return None
        needed.append(node)
        stack.extend(node.input)
    ids = {id(n) for n in needed}
    nodes = [n for n in graph.node if id(n) in ids]
    used = [initializers[i] for n in nodes for i in n.input if i in initializers]
    sub = helper.make_graph(nodes, "constant", [], [helper.make_tensor_value_info(name, 0, None)], initializer=used)
    return ReferenceEvaluator(helper.make_model(sub, opset_imports=opset_import)).run(None, {})[0]


def fold_pads_into_convs(proto: Any) -> list[str]:
    """Remove each zero-valued, spatial-only Pad whose one consumer is a Conv, adding its amounts to the Conv's own
    (possibly asymmetric) `pads`. Returns the names of the Pads removed.

    Why: the backbone's stride-2 convolutions need TF-SAME's asymmetric pads, which a torch Conv2d cannot hold, so
    the exported graph has a Pad before each. onnxruntime does not fuse them (1.31, pads computed by a chain of
    Constant/Cast nodes), and its NCHWc convolutions then convert every padded tensor back to NCHW and again to
    NCHWc around the Pad: 13% of the shipped graph's time at 512x1024 (docs/NETWORK_DESIGN.md). ONNX Conv takes
    begin and end pads per axis, so the fused graph computes exactly the same values.
    """
    from onnx import helper

    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    removed = []
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
        users = consumers.get(pad.output[0], [])
        if mode != b"constant" or len(users) != 1 or users[0].op_type != "Conv" or pad.output[0] in graph_outputs:
            continue
        if len(pad.input) > 3 and pad.input[3]:  # opset-18 axes input: not produced by this exporter
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = _constant_value(graph, pad.input[2], producers, initializers, proto.opset_import)
            if value is None or value.any():
                continue
        amounts = _constant_value(graph, pad.input[1], producers, initializers, proto.opset_import)
        if amounts is None or len(amounts) != 8:
            continue
        amounts = [int(a) for a in amounts]
        # [N, C, H, W] begins then ends: only H and W, and no cropping (negative pads).
        if any(amounts[i] for i in (0, 1, 4, 5)) or min(amounts) < 0:
            continue
        conv = users[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and helper.get_attribute_value(attrs["auto_pad"]) not in (b"NOTSET", b""):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        if "pads" in attrs:
            conv.attribute.remove(attrs["pads"])
        conv.attribute.append(helper.make_attribute(
            "pads", [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        removed.append(pad.name)
    if removed:
        # The Constant/Cast chains that computed the pad amounts now feed nothing.
        _drop_unused_nodes(graph)
    return removed


def _drop_unused_nodes(graph: Any) -> None:
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    unused = [i for i in graph.initializer if i.name not in needed]
    for i in unused:
        graph.initializer.remove(i)


def _declare_output_shapes(proto: Any, num_classes: int, fixed_size: tuple[int, int] | None) -> None:
    """The TorchScript exporter leaves output dims symbolic (and merges unrelated symbols); declare them exactly so
    that consumers (TensorRT, the runtime's checks) see (1,H,W) and the decoder size, or named dynamic axes."""
    if fixed_size is not None:
        shapes: dict[str, tuple] = output_shapes([o.name for o in proto.graph.output], num_classes, *fixed_size)
    else:
        full, dec = (1, "height", "width"), (1, "decoder_height", "decoder_width")
        shapes = {"class_id": full, "anomaly_score": full, "confidence": full,
                  "logits": (1, num_classes, "decoder_height", "decoder_width"), "ood_logit": dec}
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[out.name]:
            dim = dims.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


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


@dataclass
class ScoringResolutionComparison:
    """How far "decoder" scoring departs from "input" scoring (upsample K logits first) on the same weights."""

    images: int
    pixels: int
    class_agreement: float  # fraction of pixels with the same class_id, pooled
    class_agreement_worst_image: float
    score_max_abs_error: float
    score_mean_abs_error: float
    score_spread: float  # p99 - p1 of the "input" score, to put the errors in scale
    decision_flips_at_p95: float  # fraction of pixels whose (score > tau) flips, tau = 95th percentile of "input"
    confidence_max_abs_error: float
    confidence_mean_abs_error: float


def compare_scoring_resolutions(model: DenseHybridNet, images: Sequence[Any],
                                score_type: str = "hybrid") -> ScoringResolutionComparison:
    """Both graph variants (as torch wrappers: the maths of the exported graphs) on uint8 RGB (H,W,3) images."""
    import numpy as np

    def outputs():
        with torch.no_grad():
            for rgb in images:
                x = torch.from_numpy(np.ascontiguousarray(rgb))[None]
                t = model.pre_logits(normalise_uint8_nhwc(x))
                yield model.class_head(t), model.ood_head(t)[:, 0], (x.shape[1], x.shape[2])

    return compare_scoring_resolutions_on_outputs(outputs(), score_type)


def compare_scoring_resolutions_on_outputs(decoder_outputs: Any,
                                           score_type: str = "hybrid") -> ScoringResolutionComparison:
    """Same comparison from decoder outputs: an iterable of (logits (1,K,h,w), ood_logit (1,h,w), (H, W))."""
    dummy = nn.Module()
    dec = ExportWrapper(dummy, score_type=score_type, scoring_resolution="decoder")
    inp = ExportWrapper(dummy, score_type=score_type, scoring_resolution="input")
    agree, worst, pixels, flips = 0, 1.0, 0, 0
    dscore, dconf, ref_scores = [], [], []
    with torch.no_grad():
        for logits, ood_logit, size in decoder_outputs:
            (c0, s0, k0), (c1, s1, k1) = dec.postprocess(logits, ood_logit, size), inp.postprocess(logits, ood_logit,
                                                                                                   size)
            worst = min(worst, (c0 == c1).double().mean().item())
            agree += int((c0 == c1).sum())
            pixels += c0.numel()
            dscore.append((s0 - s1).abs().flatten())
            dconf.append((k0 - k1).abs().flatten())
            ref_scores.append(s1.flatten())
            tau = torch.quantile(s1.flatten()[:: max(1, s1.numel() // 100_000)], 0.95)
            flips += int(((s0 > tau) != (s1 > tau)).sum())
    ds, dc, rs = torch.cat(dscore), torch.cat(dconf), torch.cat(ref_scores)
    sub = rs[:: max(1, rs.numel() // 1_000_000)]
    return ScoringResolutionComparison(
        images=len(ref_scores), pixels=pixels, class_agreement=agree / pixels, class_agreement_worst_image=worst,
        score_max_abs_error=float(ds.max()), score_mean_abs_error=float(ds.mean()),
        score_spread=float(torch.quantile(sub, 0.99) - torch.quantile(sub, 0.01)),
        decision_flips_at_p95=flips / pixels,
        confidence_max_abs_error=float(dc.max()), confidence_mean_abs_error=float(dc.mean()))


def piecewise_decoder_outputs(rgb: Any, num_classes: int, seed: int = 0, segments: int = 40,
                              sharpness: float = 8.0) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], Any]:
    """Model-like decoder outputs for the resolution comparison: an untrained network's class map is noise, with far
    more boundaries than any trained segmenter, so it overstates the cost of decoder-resolution scoring.

    Superpixels of a real photo (SLIC) get random classes; the (h,w) = (H/4,W/4) logits are `sharpness` times the
    area fraction of each class in a decoder pixel plus noise, i.e. confident inside regions and mixed on boundaries
    as a trained model's are; one superpixel is the anomaly (ood_logit high there). Returns (logits, ood_logit,
    (H, W), full-resolution label map).
    """
    import cv2
    import numpy as np
    from skimage.segmentation import slic

    rng = np.random.default_rng(seed)
    height, width = rgb.shape[:2]
    regions = slic(rgb, n_segments=segments, start_label=0)
    classes = rng.integers(0, num_classes, regions.max() + 1)
    label = classes[regions]
    anomaly = regions == rng.integers(0, regions.max() + 1)
    h, w = height // 4, width // 4
    frac = np.stack([cv2.resize((label == c).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                     for c in range(num_classes)])
    logits = sharpness * frac + rng.normal(0, 0.3, frac.shape)
    ood = 8.0 * cv2.resize(anomaly.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) - 4.0
    ood = ood + rng.normal(0, 0.3, ood.shape)
    return (torch.from_numpy(logits.astype(np.float32))[None], torch.from_numpy(ood.astype(np.float32))[None],
            (height, width), label)


def _measure(height: int = 512, width: int = 1024, repeats: int = 15) -> None:
    """Numbers of docs/EXPORT.md: accuracy of decoder vs input scoring, and their latency under onnxruntime."""
    import tempfile

    import cv2
    import numpy as np
    import onnxruntime as ort
    import skimage.data

    from densehybrid_ros.model.densehybrid import NetworkConfig, build_model

    torch.set_num_threads(1)
    names = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry")
    photos = [cv2.resize(getattr(skimage.data, n)(), (width, height), interpolation=cv2.INTER_AREA) for n in names]
    print(f"photos: skimage {', '.join(names)} at {height}x{width}")

    outs = [piecewise_decoder_outputs(p, 14, seed=i) for i, p in enumerate(photos)]
    for score_type in ("hybrid", "max_softmax"):
        r = compare_scoring_resolutions_on_outputs(((s, g, size) for s, g, size, _ in outs), score_type)
        print(f"piecewise (model-like) logits, {score_type}: {r}")
    dec = ExportWrapper(nn.Module(), scoring_resolution="decoder")
    inp = ExportWrapper(nn.Module(), scoring_resolution="input")
    acc_dec = acc_inp = 0.0
    for s, g, size, label in outs:
        acc_dec += float((dec.postprocess(s, g, size)[0][0].numpy() == label).mean()) / len(outs)
        acc_inp += float((inp.postprocess(s, g, size)[0][0].numpy() == label).mean()) / len(outs)
    print(f"piecewise logits: class_id accuracy vs the full-resolution label map: decoder (nearest) {acc_dec:.4f}, "
          f"input or decoder bilinear-class {acc_inp:.4f}")

    torch.manual_seed(0)
    net = build_model(NetworkConfig()).train()
    with torch.no_grad():  # BN statistics from the photos, so that the untrained maps are not constant
        for p in photos:
            net(normalise_uint8_nhwc(torch.from_numpy(p)[None]))
    net.eval()
    for score_type in ("hybrid", "max_softmax"):
        print(f"untrained network, {score_type}: {compare_scoring_resolutions(net, photos, score_type)}")

    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for label, kw in (("semantic decoder", dict(heads="semantic")),
                          ("densehybrid decoder", dict()),
                          ("densehybrid decoder bilinear-class", dict(class_upsampling="bilinear")),
                          ("densehybrid input", dict(scoring_resolution="input"))):
            path = Path(tmp) / f"{label.replace(' ', '_')}.onnx"
            export_onnx(net, path, height=height, width=width, **kw)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sessions[label] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {"image": photos[0][None]}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for s in sessions.values():
            s.run(None, feed)
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits every variant alike
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t0)
        base = float(np.median(times["semantic decoder"]))
        for k, v in times.items():
            med = float(np.median(v))
            print(f"onnxruntime 1 thread {height}x{width} {k}: median {med * 1e3:.1f} ms "
                  f"({med / base:.3f} x semantic)")


if __name__ == "__main__":
    import sys

    _measure(*(int(a) for a in sys.argv[1:3]))
