"""INT8 static quantization of an exported graph with onnxruntime: QDQ format, per-channel weights, calibrated on the
project's own frames, the score head and the input normalisation kept in float.

Why QDQ: the quantized graph stays a plain ONNX file with QuantizeLinear/DequantizeLinear pairs around the integer
layers, so every runtime that reads ONNX runs it (onnxruntime fuses the pairs into integer kernels, OpenVINO's CPU
plugin reads them as its own low-precision graph, TensorRT uses them as explicit quantization), and the node loads it
like any other model: another .onnx with its card.

What stays float, and why:
- the score head (`tensorrt_engine.score_head_layers`, the same layers a TensorRT build pins to FP32): the hybrid
  score is a difference of two terms of tens of nats compared against a tau near -6 per pixel; 256 levels over the
  logits' range would move pixels across tau. Everything computed from the heads' last convolutions (ArgMax on the
  class logits included) stays float too.
- the input: the graph takes uint8 RGB and normalises inside (Cast, Mul, Sub). Those nodes stay float so the first
  quantization step is the convolution's own input quantizer, calibrated on the normalised range, instead of a
  second, coarser requantization of an image that was exactly representable as uint8.
- optionally the stem convolution and named nodes (`QuantizeSettings.exclude`), knobs for a model that loses too
  much accuracy.

Calibration frames come from `runtime/calibration.CalibrationBatches`, the same deterministic selection TensorRT's
INT8 calibrator uses, so both INT8 paths calibrate on the same pixels and the card records its fingerprint.

onnx and onnxruntime only (no torch): quantization can run on the vehicle's own machine.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from densehybrid_ros.config.model_card import ModelCard, card_path_for, sha256_of
from densehybrid_ros.runtime.base import ModelLoadError
from densehybrid_ros.runtime.calibration import SYNTHETIC, CalibrationBatches
from densehybrid_ros.runtime.tensorrt_engine import head_sources, onnx_layers, score_head_layers

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_FRAMES = 32
DEFAULT_CALIBRATION_SIZE = (512, 1024)  # dynamic graphs: the size the node's default camera gives
INT8_SUFFIX = "_int8"
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear")
# QDQ pairs around these make OpenVINO 2026.4's CPU plugin crash (segmentation fault) while compiling the graph;
# left in float they cost onnxruntime nothing measurable (a BatchNormalization has no integer kernel there anyway).
OPENVINO_UNSAFE_OPS = ("Concat", "BatchNormalization")


class QuantizationError(RuntimeError):
    """The graph cannot be quantized as asked (the message names the file or the setting)."""


@dataclass
class QuantizeSettings:
    """calibration: "synthetic" (frames rendered from calibration-only seeds) or a split / image folder.
    frames: calibration frames (evenly spaced over the source). method: minmax, entropy or percentile.
    per_channel: one weight scale per output channel (per-tensor loses depthwise filters of small norm).
    reduce_range: 7-bit weights, for CPUs without VNNI whose u8*s8 pairs saturate; not needed with VNNI.
    symmetric_activations: int8 activations around zero instead of uint8 with a zero point.
    exclude_stem: keep the first convolution in float. exclude: more node names to keep in float.
    float_first: keep the first N convolutions (graph order) in float. Default 9: on EfficientNet-Lite0 the stem and
        blocks 0-2, the stride-2 and stride-4 layers. Quantized, they cost ~1 mIoU point on the synthetic val
        split, while the decoder in float or the rest of the backbone in float gained nothing (docs/QUANTIZATION.md).
    preprocess: onnxruntime's quant_pre_process (shape inference, graph optimisation) before quantizing.
    all_ops: also quantize Concat and BatchNormalization (the graph then runs on onnxruntime only, see
        OPENVINO_UNSAFE_OPS).
    percentile: the percentile method's cut (in %).
    moving_average: minmax ranges as a moving average of the per-frame ranges instead of the extremes over all
        frames (a single outlier frame then does not widen a tensor's quantization step for every frame).
    """

    calibration: str = SYNTHETIC
    frames: int = DEFAULT_FRAMES
    method: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = False
    symmetric_activations: bool = False
    exclude_stem: bool = False
    float_first: int = 9
    exclude: Sequence[str] = field(default_factory=tuple)
    preprocess: bool = True
    all_ops: bool = False
    moving_average: bool = False
    percentile: float = 99.999
    size: tuple[int, int] | None = None  # calibration size for a dynamic graph (default 512x1024)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is not one of {', '.join(METHODS)}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"calibration frames must be a positive integer, got {self.frames!r}")
        if isinstance(self.float_first, bool) or not isinstance(self.float_first, int) or self.float_first < 0:
            raise ValueError(f"float_first must be an integer >= 0, got {self.float_first!r}")
        if not 90.0 <= float(self.percentile) < 100.0:
            raise ValueError(f"percentile must be in [90, 100), got {self.percentile!r}")
        self.exclude = tuple(self.exclude)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "activations": "int8 symmetric" if self.symmetric_activations else "uint8 asymmetric",
                "weights": "int8 symmetric", "preprocess": self.preprocess,
                "float_op_types": [] if self.all_ops else list(OPENVINO_UNSAFE_OPS),
                "float_first_convolutions": self.float_first,
                **({"percentile": self.percentile} if self.method == "percentile" else {}),
                **({"moving_average": True} if self.moving_average and self.method == "minmax" else {})}


# -- which nodes stay float ----------------------------------------------------------------------------------------

def _downstream(nodes: Sequence[Any], seeds: set[str]) -> set[str]:
    """Names of `seeds` and of every node computed from their outputs (nodes in topological order)."""
    reached: set[str] = set()
    out = set(seeds)
    for n in nodes:
        if n.name in seeds:
            reached.update(n.output)
        elif any(t in reached for t in n.input):
            out.add(n.name)
            reached.update(n.output)
    return out


def score_sources(model) -> tuple[str, ...]:
    """The tensors the score head is computed from: the raw `logits` and `ood_logit` of a graph exported with them,
    else the outputs of the heads' last convolutions (those with no convolution after them), which is where the
    raw outputs come from in a graph exported with them."""
    return head_sources(onnx_layers(model))  # the rule the TensorRT build pins by


def float_nodes(model, exclude_stem: bool = False, float_first: int = 0) -> dict[str, list[str]]:
    """The nodes of `model` (onnx.ModelProto) that stay float, by reason: `score_head`, `input`, `stem` and
    `first_convolutions`.

    input: the nodes between the graph input and the first convolutions (layout, cast, normalisation, padding).
    """
    nodes = [n for n in model.graph.node if n.op_type != "Constant"]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names) or "" in names:
        raise QuantizationError("the graph has unnamed or duplicate node names; re-export it")
    layers = onnx_layers(model)
    head = _downstream(nodes, set(score_head_layers(layers, head_sources(layers))))
    inputs = {i.name for i in model.graph.input}
    reached, pre, convs = set(inputs), [], []
    for n in nodes:
        if not any(t in reached for t in n.input):
            continue
        if n.op_type == "Conv":
            convs.append(n.name)
            continue
        pre.append(n.name)
        reached.update(n.output)
    out = {"score_head": [n for n in names if n in head], "input": pre}
    if exclude_stem:
        out["stem"] = convs
    if float_first:
        out["first_convolutions"] = [n.name for n in nodes if n.op_type == "Conv"][:float_first]
    return out


# -- quantizing ----------------------------------------------------------------------------------------------------

def default_output(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + INT8_SUFFIX + ".onnx")


def _calibration_size(card: ModelCard, settings: QuantizeSettings) -> tuple[int, int]:
    if card.input_height is not None:
        if settings.size is not None and tuple(settings.size) != (card.input_height, card.input_width):
            raise QuantizationError(f"calibration size {settings.size} differs from the fixed graph size "
                                    f"{card.input_height}x{card.input_width} of {card.model_path()}")
        return int(card.input_height), int(card.input_width)
    return tuple(settings.size or DEFAULT_CALIBRATION_SIZE)  # type: ignore[return-value]


def op_types_to_quantize(all_ops: bool = False) -> list[str]:
    """The operator types onnxruntime may quantize, less OPENVINO_UNSAFE_OPS unless `all_ops`."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    ops = set(QLinearOpsRegistry) | set(QDQRegistry)
    return sorted(ops if all_ops else ops - set(OPENVINO_UNSAFE_OPS))


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


class _CountingReader:
    """Wraps a CalibrationDataReader to report progress (the calibration pass takes minutes on a CPU)."""

    def __init__(self, reader, total: int, progress: Callable[[int, int], None] | None) -> None:
        self._reader, self._total, self._progress, self._done = reader, total, progress, 0

    def get_next(self):
        item = self._reader.get_next()
        if item is not None:
            self._done += 1
            if self._progress is not None:
                self._progress(self._done, self._total)
        return item

    def rewind(self) -> None:
        self._reader.rewind()
        self._done = 0

    def __len__(self) -> int:
        return self._total

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantize_model(model_path: str | Path, out_path: str | Path | None = None,
                   settings: QuantizeSettings | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   log: Callable[[str], None] = print) -> ModelCard:
    """Quantize the graph of `model_path` (card beside it) to INT8 and write it with its card; returns the card.

    Nothing is half-written: the graph and the card go to temporary files in the output folder and are renamed
    into place only when both exist. The card copies the float card (classes, score type, tau provenance, training)
    and adds a `quantization` section; the float model's metrics move under `quantization.reference` since they
    are not this graph's. tau is the float model's until `densehybrid calibrate` is run on the INT8 graph.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from densehybrid_ros.runtime import resolve_card

    settings = settings or QuantizeSettings()
    card = resolve_card(model_path)
    src = card.model_path()
    out = Path(out_path) if out_path is not None else default_output(src)
    if out.suffix != ".onnx":
        raise QuantizationError(f"output path must end in .onnx, got {out}")
    if out.resolve() == src.resolve():
        raise QuantizationError(f"output {out} would overwrite the float model")
    if card.quantization:
        raise QuantizationError(f"{src} is already quantized ({card.quantization.get('method')}); quantize the "
                                "float model")
    try:  # a file onnx cannot parse is named here, not in a protobuf traceback halfway through
        onnx.load(str(src), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and onnx's own errors alike
        raise ModelLoadError(f"onnx cannot read model file {src}: {e}") from e
    size = _calibration_size(card, settings)
    batches = CalibrationBatches(settings.calibration, settings.frames, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="densehybrid-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        if settings.preprocess:
            log(f"pre-processing {src} (shape inference, graph optimisation)")
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        else:
            onnx.save(onnx.load(str(src)), str(prepared))
        model = onnx.load(str(prepared))
        keep = float_nodes(model, exclude_stem=settings.exclude_stem, float_first=settings.float_first)
        names = {n.name for n in model.graph.node}
        original = {n.name for n in onnx.load(str(src)).graph.node}
        unknown = [n for n in settings.exclude if n not in names | original]
        if unknown:
            raise QuantizationError(f"--exclude names nodes that are not in {src}: {unknown}")
        requested = [n for n in settings.exclude if n in names]  # the others were folded away by pre-processing
        if requested:
            keep["requested"] = requested
        excluded = list(dict.fromkeys(n for group in keep.values() for n in group))
        log(f"calibrating on {batches.frames} frame(s) from {settings.calibration} at {size[0]}x{size[1]} "
            f"({settings.method}); {len(excluded)} node(s) stay float")
        # Not CalibMaxIntermediateOutputs: onnxruntime 1.31's MinMax calibrator drops the ranges it flushes.
        extra = {"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": True,
                 "CalibMovingAverage": bool(settings.moving_average)}
        if settings.method == "percentile":
            extra["CalibPercentile"] = float(settings.percentile)
        reader = _CountingReader(batches.onnxruntime_reader(model.graph.input[0].name), len(batches), progress)
        tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            quantize_static(str(prepared), str(tmp_out), reader, quant_format=QuantFormat.QDQ,
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            activation_type=QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                            op_types_to_quantize=op_types_to_quantize(settings.all_ops),
                            calibrate_method=_ort_method(settings.method), extra_options=extra)
            check_quantized(tmp_out, card)
            new_card = int8_card(card, tmp_out, out.name, settings, batches, keep, time.perf_counter() - t0)
            tmp_card = card_path_for(out).with_name(f".{card_path_for(out).name}.{os.getpid()}.tmp")
            new_card.save(tmp_card)
            os.replace(tmp_out, out)
            os.replace(tmp_card, card_path_for(out))
        finally:
            for p in (tmp_out, card_path_for(out).with_name(f".{card_path_for(out).name}.{os.getpid()}.tmp")):
                if p.exists():
                    p.unlink()
    new_card.card_path = card_path_for(out)
    log(f"wrote {out} and {new_card.card_path} ({time.perf_counter() - t0:.0f} s)")
    return new_card


def int8_card(card: ModelCard, model_file: Path, final_name: str, settings: QuantizeSettings,
              batches: CalibrationBatches, keep: dict[str, list[str]], seconds: float) -> ModelCard:
    """The INT8 graph's card: the float card with this file's name and sha256 and a `quantization` section."""
    import onnxruntime as ort

    reference = {"model_file": card.model_file, "sha256": card.sha256}
    if card.metrics:
        reference["metrics"] = dict(card.metrics)
    section = {
        **settings.describe(),
        "format": "QDQ (onnxruntime static quantization)",
        "tool": f"onnxruntime {ort.__version__}",
        "calibration": batches.describe(),
        "float_nodes": {k: list(v) for k, v in keep.items()},
        "reference": reference,
        "tau": "copied from the float card; run `densehybrid calibrate` on the INT8 graph to recalibrate",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }
    return dataclasses.replace(card, name=f"{card.name}{INT8_SUFFIX}", model_file=final_name,
                               sha256=sha256_of(model_file), metrics={}, quantization=section, card_path=None)


def check_quantized(path: str | Path, card: ModelCard) -> None:
    """The INT8 graph keeps the float graph's interface and holds integer layers; else QuantizationError."""
    import onnx

    model = onnx.load(str(path))
    ref = onnx.load(str(card.model_path()))

    def io(graph) -> list[tuple]:
        return [(v.name, v.type.tensor_type.elem_type,
                 tuple(d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim))
                for v in list(graph.input) + list(graph.output)]

    if io(model.graph) != io(ref.graph):
        raise QuantizationError(f"quantized graph {path} changed the interface: {io(model.graph)} vs "
                                f"{io(ref.graph)}")
    if not any(n.op_type in QUANTIZED_OPS for n in model.graph.node):
        raise QuantizationError(f"quantized graph {path} holds no QuantizeLinear/DequantizeLinear node")


def quantized_node_summary(path: str | Path) -> dict[str, int]:
    """How many convolutions of a QDQ graph read a dequantized (integer) weight, and how many stay float."""
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    int8 = fp = 0
    for n in graph.node:
        if n.op_type != "Conv":
            continue
        w = producers.get(n.input[1])
        if w is not None and w.op_type == "DequantizeLinear":
            int8 += 1
        else:
            fp += 1
    return {"int8_convolutions": int8, "float_convolutions": fp}
