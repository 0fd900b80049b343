"""Build a TensorRT engine from the exported ONNX graph (TensorRT Python API, 8.6 and 10.x).

Phases, each logged with the elapsed time (a build takes minutes on a Jetson and must never look hung):
parse (ONNX parser errors name the failing node), configure (precision, workspace, DLA, optimisation profile,
timing cache), pin the score head, calibrate (INT8), build (TensorRT 10 reports its own phases through
`IProgressMonitor`; on every version a heartbeat logs the elapsed time), then write the engine and its sidecar
atomically (`engine_cache.write_engine`).

Why the score head is pinned to FP32 (`score_head_layers`): the hybrid score (eq. 6) is
`ln P(d_out|x) - logsumexp(s)`, a difference of two terms that are each tens of nats while tau sits at about -6,
and the decision `score > tau` is taken per pixel. In FP16 (a 10-bit mantissa) a logsumexp of ~20 is only
resolved to 1/64 nat and `exp` overflows above ~11, so pixels near tau flip class and the open-set mask and the
alert change; in INT8 the logits would be quantised to 256 levels over their whole range. The head is a few
element-wise layers at 1/4 resolution plus the two 1x1 output convolutions, so FP32 there costs next to nothing,
while the backbone and decoder (nearly all the FLOPs) run in FP16/INT8. The layers are found by graph
connectivity, not by name: everything computed from the `logits` and `ood_logit` outputs, and the layers that
produce them back to the heads' last convolution.

tensorrt is imported only by `load_tensorrt()`; this module imports on any machine.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from densehybrid_ros.runtime.calibration import CalibrationBatches, CalibrationCache
from densehybrid_ros.runtime.cuda_env import short_version, tensorrt_major
from densehybrid_ros.runtime.engine_cache import PRECISIONS, EngineKey, sha256_file, write_atomic, write_engine

LOG = logging.getLogger("densehybrid.tensorrt")

SCORE_SOURCES = ("logits", "ood_logit")  # graph outputs the score head is computed from (docs/DEVELOPING.md)
DEFAULT_WORKSPACE_MB = 2048
PRECISION_CONSTRAINTS = ("obey", "prefer")
HEARTBEAT_S = 15.0


class TensorRTUnavailable(RuntimeError):
    """tensorrt (or a CUDA binding / GPU) is not available on this machine."""


class OnnxParseError(RuntimeError):
    """TensorRT's ONNX parser rejected the graph; the message lists each error with its node."""


class EngineBuildError(RuntimeError):
    """The builder was configured wrongly or TensorRT failed to produce an engine."""


def load_tensorrt():
    try:
        import tensorrt as trt
    except Exception as e:  # a broken libnvinfer raises OSError through the import
        raise TensorRTUnavailable(f"tensorrt is not importable here ({type(e).__name__}: {e}); on a Jetson use "
                                  "JetPack's python3-libnvinfer, on other CUDA machines `make install-tensorrt` "
                                  "(docs/JETSON.md)") from e
    return trt


# -- settings ----------------------------------------------------------------------------------------------------

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass
class BuildSettings:
    precision: str = "fp16"
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    dla_core: int | None = None
    shapes: dict[str, ShapeRange] = field(default_factory=dict)  # dynamic inputs: name -> (min, opt, max)
    timing_cache: Path | None = None
    calibration: CalibrationBatches | None = None
    calibration_cache: Path | None = None
    pin_score_head: bool = True
    precision_constraints: str = "obey"
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if isinstance(self.workspace_mb, bool) or not isinstance(self.workspace_mb, int) or \
                not 16 <= self.workspace_mb <= 1 << 20:
            raise ValueError(f"workspace must be an integer number of MB in [16, {1 << 20}], got {self.workspace_mb!r}")
        if self.dla_core is not None and (isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int)
                                          or not 0 <= self.dla_core <= 7):
            raise ValueError(f"dla_core must be an integer in [0, 7] or unset, got {self.dla_core!r}")
        if self.dla_core is not None and self.precision == "fp32":
            raise ValueError("DLA runs FP16 and INT8 only: use --precision fp16 or int8 with --dla-core")
        if self.precision_constraints not in PRECISION_CONSTRAINTS:
            raise ValueError(f"precision_constraints={self.precision_constraints!r} is not one of "
                             f"{', '.join(PRECISION_CONSTRAINTS)}")
        if self.precision in ("int8", "best") and self.calibration is None:
            raise ValueError(f"precision {self.precision} needs calibration data (--calib-data)")
        for name, rng in self.shapes.items():
            check_shape_range(name, rng)

    @property
    def uses_int8(self) -> bool:
        return self.precision in ("int8", "best")

    @property
    def uses_fp16(self) -> bool:
        return self.precision in ("fp16", "best")


def check_shape_range(name: str, rng: Sequence[Sequence[int]]) -> ShapeRange:
    if len(rng) != 3:
        raise ValueError(f"shapes for input {name!r}: expected (min, opt, max), got {rng!r}")
    lo, opt, hi = (tuple(int(v) for v in s) for s in rng)
    if not len(lo) == len(opt) == len(hi):
        raise ValueError(f"shapes for input {name!r}: min/opt/max have different ranks {lo}, {opt}, {hi}")
    if any(v < 1 for v in lo) or not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ValueError(f"shapes for input {name!r}: need 1 <= min <= opt <= max per dimension, got min {lo}, "
                         f"opt {opt}, max {hi}")
    return lo, opt, hi


def input_shapes_for_key(static: dict[str, Sequence[int]], shapes: dict[str, ShapeRange]) -> dict[str, Any]:
    """The `input_shapes` field of the engine key: a fixed shape, or the min/opt/max of a dynamic input."""
    out: dict[str, Any] = {}
    for name, shape in static.items():
        if name in shapes:
            lo, opt, hi = shapes[name]
            out[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
        else:
            out[name] = [int(v) for v in shape]
    return out


def card_input_shapes(card) -> dict[str, list[int]]:
    """The graph input as the card states it: image (1, H, W, 3) uint8, -1 for a dynamic side."""
    h = -1 if card.input_height is None else int(card.input_height)
    w = -1 if card.input_width is None else int(card.input_width)
    return {"image": [1, h, w, 3]}


def expected_key(card, precision: str, tensorrt_version: str | None, gpu_name: str | None,
                 compute_capability: str | None, shapes: dict[str, ShapeRange] | None = None,
                 calibration_cache_sha256: str | None = None, dla_core: int | None = None) -> EngineKey:
    return EngineKey(tensorrt_version=tensorrt_version, gpu_name=gpu_name, compute_capability=compute_capability,
                     precision=precision, input_shapes=input_shapes_for_key(card_input_shapes(card), shapes or {}),
                     onnx_sha256=card.sha256, calibration_cache_sha256=calibration_cache_sha256, dla_core=dla_core)


# -- the score head ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerView:
    """A layer as far as connectivity goes; built from a TensorRT network or (tests, docs) from the ONNX graph."""

    name: str
    kind: str                     # TensorRT LayerType name or ONNX op type
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    float_outputs: bool = True    # all outputs float (int/bool layers, e.g. ArgMax, shape maths, are never pinned)


CONVOLUTION_KINDS = ("CONVOLUTION", "Conv")


def score_head_layers(layers: Sequence[LayerView], sources: Sequence[str] = SCORE_SOURCES) -> list[str]:
    """Names of the layers to keep in FP32: everything downstream of the `sources` tensors and the chain that
    produces each source back to (and including) its convolution. Order follows `layers`."""
    producer = {t: layer for layer in layers for t in layer.outputs}
    pinned: set[str] = set()
    for source in sources:
        layer = producer.get(source)
        while layer is not None and layer.name not in pinned:
            pinned.add(layer.name)
            if layer.kind in CONVOLUTION_KINDS:
                break
            feeding = [producer[t] for t in layer.inputs if t in producer and producer[t].float_outputs]
            layer = feeding[0] if len(feeding) == 1 else None  # a join is not a head's chain: stop there
    reached = set(sources)
    for layer in layers:  # layers are in topological order in both TensorRT networks and ONNX graphs
        if any(t in reached for t in layer.inputs):
            pinned.add(layer.name)
            reached.update(layer.outputs)
    float_names = {layer.name for layer in layers if layer.float_outputs}
    return [layer.name for layer in layers if layer.name in pinned and layer.name in float_names]


def head_sources(layers: Sequence[LayerView]) -> tuple[str, ...]:
    """The tensors the score head is computed from: `logits` and `ood_logit` when the graph outputs them (exported
    with --raw-outputs), else the outputs of the heads' last convolutions (no convolution after them), where those
    raw outputs come from. The export default has no raw outputs, so without this fallback nothing would be pinned."""
    produced = {t for layer in layers for t in layer.outputs}
    if all(s in produced for s in SCORE_SOURCES):
        return SCORE_SOURCES
    convs = [i for i, layer in enumerate(layers) if layer.kind in CONVOLUTION_KINDS]
    last = []
    for i in convs:  # layers are in topological order: what is downstream of layer i comes after it
        reached = set(layers[i].outputs)
        feeds_a_conv = False
        for layer in layers[i + 1:]:
            if any(t in reached for t in layer.inputs):
                if layer.kind in CONVOLUTION_KINDS:
                    feeds_a_conv = True
                    break
                reached.update(layer.outputs)
        if not feeds_a_conv:
            last.append(i)
    return tuple(t for i in last for t in layers[i].outputs)


def network_layers(trt, network) -> list[LayerView]:
    """LayerViews of a parsed TensorRT network."""
    floats = {trt.float32, trt.float16}
    out = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = tuple(t.name for t in (layer.get_input(j) for j in range(layer.num_inputs)) if t is not None)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        out.append(LayerView(layer.name, getattr(layer.type, "name", str(layer.type)), ins,
                             tuple(t.name for t in outs), all(t.dtype in floats for t in outs)))
    return out


def onnx_layers(model) -> list[LayerView]:
    """LayerViews of an ONNX model (onnx.ModelProto), Constant nodes left out; float-ness from shape inference.

    The same connectivity as `network_layers`, so INT8 quantization with onnxruntime (runtime/quantize.py) keeps
    in float exactly the layers a TensorRT build pins to FP32.
    """
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    floats = {v.name for v in list(graph.value_info) + list(graph.output) + list(graph.input)
              if v.type.tensor_type.elem_type in float_types}
    floats.update(init.name for init in graph.initializer if init.data_type in float_types)
    return [LayerView(n.name, n.op_type, tuple(n.input), tuple(n.output), all(o in floats for o in n.output))
            for n in graph.node if n.op_type != "Constant"]


def pin_layers_fp32(trt, network, names: Sequence[str]) -> int:
    wanted = set(names)
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in wanted:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        count += 1
    return count


# -- parsing -------------------------------------------------------------------------------------------------------

def format_parser_error(err: Any) -> str:
    """One parser error with the node that failed (node index, name and operator where this TensorRT says them)."""

    def call(name: str):
        fn = getattr(err, name, None)
        try:
            return fn() if callable(fn) else None
        except Exception:
            return None

    node, node_name, op = call("node"), call("node_name"), call("node_operator")
    where = []
    if node is not None and node >= 0:
        where.append(f"node {node}")
    if node_name:
        where.append(f"'{node_name}'")
    if op:
        where.append(f"({op})")
    code = call("code")
    code = getattr(code, "name", code)
    src = f" [{call('file')}:{call('line')} {call('func')}]" if call("file") else ""
    return f"{' '.join(where) or 'graph'}: {call('desc')} (code {code}){src}"


def create_network(trt, builder):
    """An explicit-batch network: a flag in TensorRT 8.x, the only (default) mode in 10.x."""
    if (tensorrt_major(getattr(trt, "__version__", "")) or 0) >= 10:
        return builder.create_network(0)
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))


def parse_onnx(trt, builder, logger, onnx_path: str | Path):
    network = create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise OnnxParseError(f"TensorRT {getattr(trt, '__version__', '?')} cannot parse {onnx_path}:\n  "
                             + "\n  ".join(errors or ["(the parser gave no error detail)"]))
    return network, parser


# -- progress --------------------------------------------------------------------------------------------------------

class PhaseLog:
    """'[  12.3 s] phase: message' lines through a callback (the CLI prints, the node logs)."""

    def __init__(self, emit: Callable[[str], None] | None = None) -> None:
        self._emit = emit or LOG.info
        self._t0 = time.monotonic()
        self.phases: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def __call__(self, phase: str, message: str) -> None:
        with self._lock:
            self.phases.append((phase, round(self.elapsed, 2)))
            self._emit(f"[{self.elapsed:7.1f} s] {phase}: {message}")


class _Heartbeat:
    """Logs the elapsed time every `period` seconds while TensorRT builds (8.6 reports nothing meanwhile)."""

    def __init__(self, log: PhaseLog, period: float) -> None:
        self._log, self._period = log, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-build-heartbeat", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self._period):
            self._log("build", f"still optimising ({time.monotonic() - start:.0f} s in the builder)")

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_progress_monitor(trt, log: PhaseLog, min_interval_s: float = 5.0):
    """TensorRT 10's IProgressMonitor, reporting phase starts/ends and at most one step line per interval."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class BuildProgress(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._steps: dict[str, int] = {}
            self._last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._steps[phase_name] = num_steps
            log("build", f"{phase_name} started ({num_steps} steps)" + (f" in {parent_phase}" if parent_phase else ""))

        def step_complete(self, phase_name, step):
            now = time.monotonic()
            if now - self._last >= min_interval_s:
                self._last = now
                log("build", f"{phase_name}: step {step + 1}/{self._steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            log("build", f"{phase_name} finished")

    return BuildProgress()


# -- INT8 ----------------------------------------------------------------------------------------------------------

def make_entropy_calibrator(trt, cuda_api, batches: CalibrationBatches, cache: CalibrationCache, log: PhaseLog):
    """An IInt8EntropyCalibrator2 fed by `batches` (uint8 NHWC, the graph's own input) through one device buffer."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._index = 0
            nbytes = batches.batch_size * batches.size[0] * batches.size[1] * 3
            self._device = cuda_api.mem_alloc(nbytes)
            self.reused_cache = False

        def get_batch_size(self):
            return batches.batch_size

        def get_batch(self, names):
            if self._index >= len(batches):
                return None  # TensorRT stops calibrating
            cuda_api.htod(self._device, batches.batch(self._index))
            self._index += 1
            if self._index == 1 or self._index % 16 == 0 or self._index == len(batches):
                log("calibrate", f"batch {self._index}/{len(batches)}")
            return [cuda_api.pointer(self._device)]

        def read_calibration_cache(self):
            data = cache.read()
            if data is not None:
                self.reused_cache = True
                log("calibrate", f"reusing calibration cache {cache.path} (same model, data and TensorRT)")
            else:
                log("calibrate", f"calibrating on {batches.frames} frames from {batches.source} "
                                 f"({'; '.join(cache.mismatch())})")
            return data

        def write_calibration_cache(self, data):
            cache.write(bytes(data))
            log("calibrate", f"calibration cache written to {cache.path}")

        def release(self) -> None:
            if self._device is not None:
                cuda_api.free(self._device)
                self._device = None

    return EntropyCalibrator()


# -- the build -----------------------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    engine: bytes
    key: EngineKey
    info: dict[str, Any]


def build_engine(onnx_path: str | Path, card, settings: BuildSettings, *, trt=None, cuda_api=None,
                 gpu_name: str | None = None, compute_capability: str | None = None,
                 log: PhaseLog | None = None) -> BuildResult:
    """Parse, configure, pin, calibrate and build; returns the serialized engine and its key (nothing written)."""
    trt = trt or load_tensorrt()
    log = log or PhaseLog()
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.VERBOSE if settings.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    info: dict[str, Any] = {"workspace_mb": settings.workspace_mb, "precision_constraints":
                            settings.precision_constraints}

    log("parse", f"{onnx_path} with TensorRT {trt.__version__}")
    network, parser = parse_onnx(trt, builder, logger, onnx_path)
    log("parse", f"{network.num_layers} layers, {network.num_inputs} input(s), {network.num_outputs} output(s)")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    static = _configure_inputs(trt, builder, network, config, settings, log)

    if settings.uses_fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            log("configure", "warning: this GPU has no fast FP16; the FP16 engine may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.uses_int8:
        if not getattr(builder, "platform_has_fast_int8", True):
            log("configure", "warning: this GPU has no fast INT8")
        config.set_flag(trt.BuilderFlag.INT8)
    if settings.dla_core is not None:
        _configure_dla(trt, builder, config, settings.dla_core, log)

    if settings.pin_score_head and settings.precision != "fp32":
        layers = network_layers(trt, network)
        names = score_head_layers(layers, head_sources(layers))
        if not names:
            raise EngineBuildError(f"{onnx_path}: no score-head layer found to keep in FP32 (neither logits/ood_logit "
                                   "nor the heads' last convolutions); a reduced-precision score would move pixels "
                                   "across tau")
        pinned = pin_layers_fp32(trt, network, names)
        flag = "OBEY_PRECISION_CONSTRAINTS" if settings.precision_constraints == "obey" else \
            "PREFER_PRECISION_CONSTRAINTS"
        config.set_flag(getattr(trt.BuilderFlag, flag))
        info["pinned_fp32_layers"] = names
        log("configure", f"score head pinned to FP32: {pinned} layers ({flag})")

    timing_cache = _load_timing_cache(config, settings.timing_cache, log)

    calibrator = None
    calib_cache = None
    own_cuda = False
    if settings.uses_int8 and cuda_api is None:
        cuda_api, own_cuda = _cuda_api(), True  # released below: the context must not outlive the build
    if settings.uses_int8:
        calib_cache = CalibrationCache(settings.calibration_cache or onnx_path.with_suffix(".int8.calib"),
                                       card.sha256, settings.calibration.fingerprint(),
                                       short_version(trt.__version__))
        with cuda_api.activate():
            calibrator = make_entropy_calibrator(trt, cuda_api, settings.calibration, calib_cache, log)
        config.int8_calibrator = calibrator
        info["calibration"] = settings.calibration.describe()

    monitor = make_progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    log("build", f"building {settings.precision} engine (minutes; progress below)")
    t0 = time.monotonic()
    try:
        with _Heartbeat(log, HEARTBEAT_S):
            if cuda_api is not None:
                with cuda_api.activate():
                    serialized = builder.build_serialized_network(network, config)
            else:
                serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            with cuda_api.activate():
                calibrator.release()
        if own_cuda:
            cuda_api.close()
    info["build_seconds"] = round(time.monotonic() - t0, 1)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build the {settings.precision} engine from {onnx_path}; rerun "
                               "with --verbose for the builder's log")
    engine = bytes(memoryview(serialized))
    log("build", f"done in {info['build_seconds']} s, engine {len(engine) / 1e6:.1f} MB")
    if timing_cache is not None and settings.timing_cache is not None:
        write_atomic(settings.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
        log("build", f"timing cache saved to {settings.timing_cache}")
    if calibrator is not None:
        info["calibration_cache_reused"] = calibrator.reused_cache
    calib_sha = calib_cache.sha256() if calib_cache is not None else None
    key = EngineKey(tensorrt_version=short_version(trt.__version__), gpu_name=gpu_name,
                    compute_capability=compute_capability,
                    precision=settings.precision, input_shapes=input_shapes_for_key(static, settings.shapes),
                    onnx_sha256=card.sha256, calibration_cache_sha256=calib_sha, dla_core=settings.dla_core)
    del parser
    return BuildResult(engine, key, info)


def build_and_write(engine_path: str | Path, onnx_path: str | Path, card, settings: BuildSettings, *,
                    trt=None, cuda_api=None, gpu_name: str | None = None, compute_capability: str | None = None,
                    log: PhaseLog | None = None) -> BuildResult:
    """build_engine, then the engine and sidecar written atomically (engine_cache.write_engine)."""
    log = log or PhaseLog()
    actual = sha256_file(onnx_path)
    if actual != card.sha256:
        raise EngineBuildError(f"{onnx_path} has sha256 {actual[:12]}..., its card {card.card_path} says "
                               f"{card.sha256[:12]}...: the model file was replaced; re-export it or fix the card")
    result = build_engine(onnx_path, card, settings, trt=trt, cuda_api=cuda_api, gpu_name=gpu_name,
                          compute_capability=compute_capability, log=log)
    result.info["phases"] = log.phases
    write_engine(engine_path, result.engine, result.key, model_name=card.name, onnx_path=onnx_path, build=result.info)
    log("write", f"{engine_path} and {Path(str(engine_path) + '.json')}")
    return result


def _cuda_api():
    from densehybrid_ros.runtime.cuda_memory import load_cuda_api

    return load_cuda_api()


def _configure_inputs(trt, builder, network, config, settings: BuildSettings, log: PhaseLog) -> dict[str, list[int]]:
    """Static shapes as parsed; dynamic inputs get an optimisation profile from settings.shapes (also used to
    calibrate)."""
    static: dict[str, list[int]] = {}
    profile = None
    names = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = [int(v) for v in tensor.shape]
        static[tensor.name] = shape
        names.append(tensor.name)
        dynamic = any(v < 0 for v in shape)
        given = settings.shapes.get(tensor.name)
        if not dynamic:
            if given is not None and any(list(s) != shape for s in given):
                raise EngineBuildError(f"input {tensor.name!r} has the fixed shape {shape}; --min/--opt/--max-shape "
                                       "apply to dynamic graphs only")
            continue
        if given is None:
            raise EngineBuildError(f"input {tensor.name!r} has the dynamic shape {shape}: give --min-shape, "
                                   "--opt-shape and --max-shape (e.g. 1x256x512x3, 1x512x1024x3, 1x1080x1920x3)")
        lo, opt, hi = given
        for s in given:
            if len(s) != len(shape) or any(a >= 0 and a != b for a, b in zip(shape, s)):
                raise EngineBuildError(f"input {tensor.name!r}: shape {list(s)} does not fit the graph's {shape}")
        if profile is None:
            profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, lo, opt, hi)
        log("configure", f"input {tensor.name}: min {list(lo)}, opt {list(opt)}, max {list(hi)}")
    unknown = sorted(set(settings.shapes) - set(names))
    if unknown:
        raise EngineBuildError(f"shapes given for {unknown}, but the graph's inputs are {names}")
    if profile is not None:
        config.add_optimization_profile(profile)
        if settings.uses_int8:
            config.set_calibration_profile(profile)
    return static


def _configure_dla(trt, builder, config, core: int, log: PhaseLog) -> None:
    available = int(getattr(builder, "num_DLA_cores", 0))
    if available == 0:
        raise EngineBuildError("--dla-core given but this device has no DLA (DLA cores exist on Jetson Xavier and "
                               "Orin AGX/NX); drop --dla-core to build for the GPU")
    if core >= available:
        raise EngineBuildError(f"--dla-core {core} requested, this device has DLA cores 0..{available - 1}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run (e.g. the FP32 score head) go to the GPU
    log("configure", f"DLA core {core} with GPU fallback")


def _load_timing_cache(config, path: Path | None, log: PhaseLog):
    """Reuse tactic timings from earlier builds on this GPU (seconds instead of minutes for a rebuild)."""
    if path is None:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log("configure", f"timing cache {path} was made on another device or TensorRT; starting a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    else:
        log("configure", f"timing cache {path} ({'reused, ' + str(len(data)) + ' bytes' if data else 'new'})")
    return cache


def check_model_engine(card, precision: str, *, engine_path: str | Path | None = None,
                       cache_dir: str | Path | None = None, dla_core: int | None = None,
                       shapes: dict[str, ShapeRange] | None = None, env=None):
    """The verdict on the engine a node with these settings would load, from this machine's probe (no TensorRT
    import needed: a version or GPU this machine cannot name is not compared). Returns (EngineCheck, key)."""
    from densehybrid_ros.runtime.cuda_env import probe
    from densehybrid_ros.runtime.engine_cache import (
        calibration_cache_path_for, check_engine, engine_path_for, sha256_file,
    )

    env = env or probe()
    model = card.model_path()
    engine = Path(engine_path) if engine_path else engine_path_for(model, precision, cache_dir, dla_core)
    calib = calibration_cache_path_for(model, cache_dir)
    calib_sha = sha256_file(calib) if precision in ("int8", "best") and calib.is_file() else None
    if shapes is None and card.dynamic_input:
        from densehybrid_ros.runtime.tensorrt_backend import DEFAULT_DYNAMIC_SHAPES
        shapes = DEFAULT_DYNAMIC_SHAPES
    key = expected_key(card, precision, env.tensorrt, env.gpu.name if env.gpu else None,
                       env.gpu.compute_capability if env.gpu else None, shapes, calib_sha, dla_core)
    return check_engine(engine, key), key
