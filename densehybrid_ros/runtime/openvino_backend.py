"""OpenVINO backend: the same exported ONNX graph (pre- and post-processing inside) on OpenVINO's CPU plugin.

Why: on x86 CPUs OpenVINO's CPU plugin runs this graph faster than onnxruntime's CPU provider (docs/QUANTIZATION.md
has the side-by-side numbers), and it reads the QDQ INT8 graphs of `densehybrid quantize` as its own low-precision
graph, so the INT8 path needs no second quantization tool.

Precision is pinned to f32 by default: on CPUs with AVX512-BF16 or AMX OpenVINO's default precision hint is bf16,
whose 8-bit mantissa resolves a logsumexp of ~20 nats only to ~0.1 nat, too coarse for a per-pixel comparison of the
hybrid score with a tau near -6 (the same reason TensorRT builds keep the score head in FP32). `precision: bf16` is
there for measurements only.

OpenVINO 2026.4's ONNX reader ignores the `axes` of ReduceLogSumExp (opset 17 attribute) and reduces over every
axis, which turns the hybrid score of a graph that uses it (the shipped lite0 graph) into noise while the class ids
stay right. `core_with_fixes` gives the process's Core a conversion of that operator of its own (the max-shifted
logsumexp over the given axes), checked against onnxruntime in tests/test_openvino_backend.py.

openvino is an optional requirement (requirements/openvino.txt); this module imports it at construction and turns
its absence into an error that names the fix.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions, ModelLoadError, checked_model_bytes

REQUIRED_OUTPUTS = ("class_id", "anomaly_score", "confidence")
RAW_OUTPUTS = ("logits", "ood_logit")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
MAX_THREADS = 64
INSTALL_HINT = "pip install -r requirements/openvino.txt"


class OpenVINOUnavailable(ModelLoadError):
    """openvino is not importable here; the message says how to install it."""


def load_openvino():
    try:
        import openvino
    except Exception as e:  # a broken wheel raises OSError/ImportError from its shared libraries
        raise OpenVINOUnavailable(f"backend 'openvino' needs the openvino package, which is not importable here "
                                  f"({type(e).__name__}: {e}); install it with: {INSTALL_HINT}") from e
    return openvino


def openvino_version() -> str | None:
    """The installed openvino version, None when it is not importable (never raises)."""
    try:
        return load_openvino().__version__
    except OpenVINOUnavailable:
        return None


def _reduce_log_sum_exp(node):
    """ONNX ReduceLogSumExp (axes attribute, opset <= 17) as max + log(sum(exp(x - max))) over those axes."""
    import openvino.opset13 as ops

    x = node.get_input(0)
    if node.get_input_size() > 1:  # opset 18: axes as an input
        axes = node.get_input(1)
    elif node.has_attribute("axes"):
        axes = ops.constant(np.array(node.get_attribute("axes"), np.int64))
    else:  # no axes: every axis (ONNX inputs have a known rank)
        axes = ops.constant(np.arange(x.get_partial_shape().rank.get_length(), dtype=np.int64))
    keep = bool(node.get_attribute("keepdims")) if node.has_attribute("keepdims") else True
    peak = ops.reduce_max(x, axes, True)
    total = ops.reduce_sum(ops.exp(ops.subtract(x, peak)), axes, keep)
    return [ops.add(ops.log(total), peak if keep else ops.squeeze(peak, axes)).output(0)]


_core = None
_core_lock = threading.Lock()


def core_with_fixes():
    """The process's one `openvino.Core`, with the ReduceLogSumExp conversion (see module docstring).

    One Core for the whole process, never released. With a Core per backend, released at the end of the constructor
    before the model its Python conversion had built, a long process that built many backends died of heap
    corruption; with one Core it did not (docs/RELIABILITY.md entry 14). OpenVINO's maintainers describe one Core
    per application as the intended use, its methods being thread-safe. Every setting goes to `compile_model`, so
    backends sharing the Core share no options.
    """
    global _core
    with _core_lock:
        if _core is None:
            ov = load_openvino()
            from openvino.frontend import ConversionExtension

            core = ov.Core()
            core.add_extension(ConversionExtension("ReduceLogSumExp", _reduce_log_sum_exp))
            _core = core
        return _core


@dataclass
class OpenVINOOptions(BackendOptions):
    """threads: inference threads, 0 = OpenVINO's default (all cores).
    device: OpenVINO device, CPU (default) or GPU/NPU where those plugins exist.
    hint: latency (one frame at a time, the node's case) or throughput.
    precision: fp32 (default, see module docstring), bf16 or fp16 (measurements only).
    pinning: pin inference threads to cores; right on a vehicle with cores reserved for the node, wrong on a
        shared machine, where a pinned thread waits for its core instead of moving to a free one.
    cache_dir: folder for OpenVINO's compiled-model cache (faster start-up); empty = no cache.
    """

    threads: int = 0
    device: str = "CPU"
    hint: str = "latency"
    precision: str = "fp32"
    pinning: bool = False
    cache_dir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0 = OpenVINO default), "
                             f"got {self.threads!r}")
        if self.hint not in HINTS:
            raise ValueError(f"hint={self.hint!r} is not one of {', '.join(HINTS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be an OpenVINO device name such as CPU, got {self.device!r}")


def compile_config(options: OpenVINOOptions) -> dict[str, Any]:
    """The `compile_model` properties for these options (pure; shared with the benchmark's bare graphs)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[options.hint],
                              "INFERENCE_PRECISION_HINT": PRECISIONS[options.precision]}
    if options.device.upper().startswith("CPU"):
        config["ENABLE_CPU_PINNING"] = bool(options.pinning)
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
    if options.cache_dir:
        config["CACHE_DIR"] = str(options.cache_dir)
    return config


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, card: ModelCard, options: OpenVINOOptions | None = None) -> None:
        options = options or OpenVINOOptions()
        super().__init__(card, options)
        # One request, reused: two threads would overwrite each other's outputs between infer and the copy.
        self._request_lock = threading.Lock()
        self._request = None
        self._cancelled = False
        ov = load_openvino()
        self._model_path = card.model_path()
        if not self._model_path.is_file():
            raise FileNotFoundError(f"model file not found: {self._model_path}")
        core = core_with_fixes()
        if options.device.split(".")[0].split(":")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise ValueError(f"OpenVINO device {options.device!r} is not available here; available: "
                             f"{', '.join(core.available_devices)}")
        # As the onnxruntime backend: these very bytes, checked against the card's sha256, are what OpenVINO reads
        # (a path read again could be another file).
        model_bytes = checked_model_bytes(card)
        try:
            model = core.read_model(model_bytes)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for unreadable graphs
            raise ModelLoadError(f"OpenVINO cannot read model file {self._model_path}: {e}") from e
        self._check_graph(model)
        self._core, self._model, self._device, self._config = core, model, options.device, compile_config(options)
        self._compile()
        self.version = ov.__version__.split("-")[0]
        self.device = options.device
        self._warm_up()

    def _compile(self) -> None:
        try:
            self._compiled = self._core.compile_model(self._model, self._device, self._config)
        except Exception as e:
            raise ModelLoadError(f"OpenVINO cannot compile model file {self._model_path} for {self._device}: "
                                 f"{e}") from e
        self._request = self._compiled.create_infer_request()
        self._outputs = [(name, self._compiled.output(name)) for name in REQUIRED_OUTPUTS + RAW_OUTPUTS
                         if name in self._output_names]

    @property
    def providers(self) -> list[str]:
        """Where it runs, in the same form as the onnxruntime backend's providers (diagnostics, doctor)."""
        return [f"OpenVINO {self.device}"]

    def execution_precision(self) -> str:
        """The precision the compiled model actually runs in (OpenVINO may differ from the hint per device)."""
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def _check_graph(self, model) -> None:
        """The graph contract of docs/DEVELOPING.md, as the onnxruntime backend checks it, on OpenVINO's view."""
        where = f"model file {self._model_path}"
        inputs = model.inputs
        found = ", ".join(f"{i.get_any_name()}: {i.get_element_type().get_type_name()}" for i in inputs)
        if len(inputs) != 1 or "image" not in inputs[0].get_names() or \
                inputs[0].get_element_type().get_type_name() != "u8":
            raise ModelLoadError(f"{where}: expected one input 'image' of uint8, found {found}")
        shape = inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        if len(dims) != 4 or dims[3] != 3:
            raise ModelLoadError(f"{where}: input 'image' must be (1, H, W, 3), found {shape}")
        graph_size = tuple(dims[1:3])
        card_size = (self.card.input_height, self.card.input_width)
        if graph_size != card_size:
            raise ModelLoadError(f"{where}: the graph's input size {_size(graph_size)} disagrees with its card "
                                 f"{self.card.card_path} ({_size(card_size)})")
        names = {n for o in model.outputs for n in o.get_names()}
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"{where}: missing outputs {missing} (found {sorted(names)}); a semantic-only "
                                 "graph has no anomaly score and cannot drive the detector")
        self._output_names = names

    def _run(self, rgb: np.ndarray) -> SegmentationResult:
        with self._request_lock:
            if self._request is None:
                raise RuntimeError(f"{self.name} backend for {self.card.name} was closed")
            if self._cancelled:
                # Measured with OpenVINO 2026.4: after a cancelled run, this compiled model (a new request too)
                # gave the next frames wrong maps, and only a new compilation gave the right ones again.
                self._cancelled = False
                self._compile()
            request = self._request
            # start_async + wait rather than infer: a synchronous infer does not see InferRequest.cancel.
            request.start_async({"image": rgb[None]})
            request.wait()
            # The request's output tensors are reused by the next frame: copy what the result keeps.
            out = {name: np.array(request.get_tensor(port).data[0]) for name, port in self._outputs}
        return SegmentationResult(
            class_id=out["class_id"],
            anomaly_score=out["anomaly_score"].astype(np.float32, copy=False),
            confidence=out["confidence"],
            logits=out.get("logits"),
            ood_logit=out.get("ood_logit"),
        )

    def cancel(self) -> None:
        # InferRequest.cancel stops the inference in flight (its wait then raises), so a stopping node does not
        # wait for a whole frame; the lock is not taken, since the run in flight holds it.
        request = self._request
        if request is not None:
            self._cancelled = True
            request.cancel()

    def close(self) -> None:
        super().close()
        with self._request_lock:  # after the run in flight, never under it
            self._request = None
        self._compiled = None


def _size(size: tuple) -> str:
    return "dynamic" if size[0] is None else f"{size[0]}x{size[1]}"
