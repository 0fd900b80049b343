"""TensorRT engine backend: a serialized engine built on this device from the card's ONNX graph, run with one CUDA
stream, page-locked host buffers and async copies (pycuda, or cuda-python when that is what is installed).

Per frame: copy the uint8 RGB frame into the page-locked input buffer, enqueue host-to-device copy, inference and
the device-to-host copies of every output on the one stream, and synchronise once. The engine's input is the
graph's own uint8 (1, H, W, 3) tensor with the normalisation inside the engine, as in the ONNX graph, so the host
does no float conversion; an engine whose input is float (a graph exported that way) gets the 0..255 values cast
on the host instead.

The engine comes from `engine_cache`: it is used only if its sidecar matches this machine (TensorRT version, GPU,
compute capability), the card (ONNX sha256, input shapes), the precision and calibration; otherwise
`engine_policy` says whether to rebuild it here (`rebuild`, logged with progress) or to refuse with what differs
and the command that fixes it (`refuse`). An engine that TensorRT cannot deserialize is treated the same way.

I/O uses TensorRT's tensor-name API (`num_io_tensors`, `set_tensor_address`, `execute_async_v3`; TensorRT 8.5+,
the only API in 10.x); engines from older TensorRT fall back to the bindings API (`execute_async_v2`).
`close()` (the node calls it on deactivate/cleanup) frees every device and page-locked buffer, the stream, the
execution context and engine, and releases the CUDA context.
"""
from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions, InputError, ModelLoadError
from densehybrid_ros.runtime.engine_cache import (
    ENGINE_POLICIES, PRECISIONS, EngineCheck, EngineError, EngineStaleError, build_command,
    calibration_cache_path_for, engine_path_for, refusal_message, resolve_engine, sha256_file,
    timing_cache_path_for,
)

LOG = logging.getLogger("densehybrid.tensorrt")
NOT_AVAILABLE = "tensorrt backend not available: needs tensorrt + pycuda + a CUDA GPU"
REQUIRED_OUTPUTS = ("class_id", "anomaly_score", "confidence")
# The optimisation profile of engines for dynamic-size graphs when none is given: from a small preview to full HD.
DEFAULT_DYNAMIC_SHAPES = {"image": ((1, 256, 512, 3), (1, 512, 1024, 3), (1, 1080, 1920, 3))}


def missing_requirements() -> list[str]:
    """What this machine lacks for TensorRT engines: module names and/or 'a CUDA GPU'."""
    missing = []
    if _importable("tensorrt") is None:
        missing.append("tensorrt")
    pycuda = _importable("pycuda.driver")
    from densehybrid_ros.runtime.cuda_env import cuda_python_runtime

    cudart = cuda_python_runtime() if pycuda is None else None
    if pycuda is None and cudart is None:
        missing.append("pycuda")
        return missing
    try:
        if pycuda is not None:
            pycuda.init()
            count = pycuda.Device.count()
        else:
            err, count = cudart.cudaGetDeviceCount()
            count = count if int(err) == 0 else 0
        if count == 0:
            missing.append("a CUDA GPU")
    except Exception:
        missing.append("a CUDA GPU")
    return missing


def _importable(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # a broken CUDA install raises more than ImportError from these packages
        return None


@dataclass
class TensorRTOptions(BackendOptions):
    """engine: the engine file; empty = `<model>.<precision>.engine` beside the model (or in engine_cache_dir).
    precision: fp32, fp16, int8 or best (FP16+INT8) for the engine looked for or built.
    engine_policy: rebuild (build here when missing/stale/unreadable) or refuse (raise with the fix command).
    workspace_mb, dla_core, calib_data, calib_frames: build settings used when the policy rebuilds.
    device: CUDA device index. cuda_binding: pycuda (default) or cuda-python.
    threads: accepted for the node's shared options; TensorRT runs on the GPU, so it is unused.
    """

    engine: str = ""
    engine_cache_dir: str = ""
    precision: str = "fp16"
    engine_policy: str = "rebuild"
    workspace_mb: int = 2048
    dla_core: int | None = None
    calib_data: str = "synthetic"
    calib_frames: int = 256
    device: int = 0
    cuda_binding: str = "pycuda"
    threads: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.engine_policy not in ENGINE_POLICIES:
            raise ValueError(f"engine_policy={self.engine_policy!r} is not one of {', '.join(ENGINE_POLICIES)}")
        if self.cuda_binding not in ("pycuda", "cuda-python"):
            raise ValueError(f"cuda_binding={self.cuda_binding!r} is not one of pycuda, cuda-python")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ValueError(f"device must be a CUDA device index >= 0, got {self.device!r}")
        if self.dla_core is not None and self.precision == "fp32":
            raise ValueError("DLA runs FP16 and INT8 only: precision fp16 or int8 with dla_core")


@dataclass
class _Tensor:
    name: str
    is_input: bool
    dtype: np.dtype
    host: np.ndarray          # page-locked, sized for the largest shape the engine accepts
    device: Any
    index: int                # binding index (bindings API only)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, card: ModelCard, options: TensorRTOptions | None = None) -> None:
        options = options or TensorRTOptions()
        super().__init__(card, options)
        self._options: TensorRTOptions = options
        self._cuda = None
        self._tensors: list[_Tensor] = []
        self._stream = self._context = self._engine = self._runtime = None
        self._infer_lock = threading.Lock()
        if card.quantization:
            # uint8 activations with zero points: TensorRT's ONNX parser takes only symmetric quantization.
            raise ModelLoadError(
                f"model file {card.model_path()} is an INT8 QDQ graph of `densehybrid quantize` (a CPU graph with "
                "asymmetric activations, which TensorRT refuses); for INT8 on the GPU give the float model and "
                "engine_precision: int8, which builds and calibrates a TensorRT INT8 engine")
        missing = missing_requirements()
        if missing:
            raise RuntimeError(f"{NOT_AVAILABLE} (missing here: {', '.join(missing)}); install them with "
                               "`make install-tensorrt` on a CUDA machine (on a Jetson: JetPack's python3-libnvinfer, "
                               "docs/JETSON.md), or use backend='onnxruntime'")
        from densehybrid_ros.runtime.cuda_memory import device_info, load_cuda_api
        from densehybrid_ros.runtime.tensorrt_engine import load_tensorrt

        self._trt = load_tensorrt()
        self._cuda = load_cuda_api(options.cuda_binding, options.device)
        try:
            with self._cuda.activate():
                self.gpu_name, self.compute_capability = device_info(self._cuda, options.device)
            self.engine_path = self._ensure_engine()
            self._load(self.engine_path)
            self._warm_up()
        except BaseException:
            self.close()
            raise

    # -- engine ----------------------------------------------------------------------------------------------------
    @property
    def shapes(self) -> dict:
        return DEFAULT_DYNAMIC_SHAPES if self._card.dynamic_input else {}

    def _paths(self) -> tuple[Path, Path, Path]:
        o = self._options
        model = self._card.model_path()
        engine = Path(o.engine) if o.engine else engine_path_for(model, o.precision, o.engine_cache_dir or None,
                                                                 o.dla_core)
        return (engine, calibration_cache_path_for(model, o.engine_cache_dir or None),
                timing_cache_path_for(model, self.compute_capability, o.engine_cache_dir or None))

    def _expected_key(self):
        from densehybrid_ros.runtime.tensorrt_engine import expected_key

        _, calib, _ = self._paths()
        calib_sha = sha256_file(calib) if self._options.precision in ("int8", "best") and calib.is_file() else None
        from densehybrid_ros.runtime.cuda_env import short_version

        return expected_key(self._card, self._options.precision, short_version(self._trt.__version__),
                            self.gpu_name,
                            self.compute_capability, self.shapes, calib_sha, self._options.dla_core)

    def fix_command(self) -> str:
        o = self._options
        engine, _, _ = self._paths()
        extra = ["--calib-data", o.calib_data, "--calib-frames", str(o.calib_frames)] \
            if o.precision in ("int8", "best") else []
        return build_command(self._card.model_path(), o.precision, engine if o.engine else None, o.dla_core, extra)

    def _rebuild(self) -> None:
        from densehybrid_ros.runtime.calibration import CalibrationBatches
        from densehybrid_ros.runtime.tensorrt_engine import BuildSettings, PhaseLog, build_and_write

        o = self._options
        engine, calib, timing = self._paths()
        size = self.input_size or DEFAULT_DYNAMIC_SHAPES["image"][1][1:3]
        batches = CalibrationBatches(o.calib_data, o.calib_frames, size) if o.precision in ("int8", "best") else None
        settings = BuildSettings(precision=o.precision, workspace_mb=o.workspace_mb, dla_core=o.dla_core,
                                 shapes=dict(self.shapes), timing_cache=timing, calibration=batches,
                                 calibration_cache=calib)
        build_and_write(engine, self._card.model_path(), self._card, settings, trt=self._trt, cuda_api=self._cuda,
                        gpu_name=self.gpu_name, compute_capability=self.compute_capability,
                        log=PhaseLog(LOG.warning))

    def _ensure_engine(self) -> Path:
        engine, _, _ = self._paths()
        self.engine_check: EngineCheck = resolve_engine(engine, self._expected_key, self._options.engine_policy,
                                                        self._rebuild, self.fix_command(), log=LOG.warning)
        return engine

    def _load(self, engine_path: Path) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime and engine: kept on self
        self._runtime = trt.Runtime(self._logger)
        if self._options.dla_core is not None:
            # IRuntime::setDLACore: the core a deserialized engine runs on; without it a .dla1 engine runs on core 0.
            self._runtime.DLA_core = int(self._options.dla_core)
        with self._cuda.activate():
            engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            # A sidecar that matches but an engine TensorRT rejects: a file from another build of the same version,
            # or a TensorRT patch release that changed the format. Same policy as a stale engine.
            check = EngineCheck(engine_path, "unreadable",
                                detail=f"TensorRT {trt.__version__} cannot deserialize {engine_path}")
            if self._options.engine_policy == "refuse":
                raise EngineStaleError(refusal_message(check, self.fix_command()))
            LOG.warning("%s; rebuilding it (engine_policy: rebuild)", check.describe())
            self._rebuild()
            with self._cuda.activate():
                engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if engine is None:
                raise EngineError(f"TensorRT {trt.__version__} cannot deserialize the engine it just built at "
                                  f"{engine_path}")
        self._engine = engine
        with self._cuda.activate():
            self._context = engine.create_execution_context()
            if self._context is None:
                raise EngineError(f"TensorRT could not create an execution context for {engine_path} (GPU memory?)")
            self._stream = self._cuda.create_stream()
            self._allocate()

    # -- I/O -------------------------------------------------------------------------------------------------------
    @property
    def _tensor_api(self) -> bool:
        return hasattr(self._engine, "num_io_tensors")

    def _io(self) -> list[tuple[str, bool, Any, tuple[int, ...], int]]:
        """(name, is_input, TensorRT dtype, largest shape, binding index) for every I/O tensor."""
        trt, engine, ctx = self._trt, self._engine, self._context
        out = []
        if self._tensor_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            for n in inputs:
                shape = tuple(engine.get_tensor_shape(n))
                if any(v < 0 for v in shape):
                    shape = tuple(engine.get_tensor_profile_shape(n, 0)[2])  # the profile's max
                    ctx.set_input_shape(n, shape)
                out.append((n, True, engine.get_tensor_dtype(n), shape, -1))
            for n in names:
                if n not in inputs:
                    out.append((n, False, engine.get_tensor_dtype(n), tuple(ctx.get_tensor_shape(n)), -1))
            return out
        for i in range(engine.num_bindings):  # TensorRT < 8.5
            n, is_in = engine.get_binding_name(i), engine.binding_is_input(i)
            shape = tuple(engine.get_binding_shape(i))
            if is_in and any(v < 0 for v in shape):
                shape = tuple(engine.get_profile_shape(0, i)[2])
                ctx.set_binding_shape(i, shape)
            out.append((n, is_in, engine.get_binding_dtype(i), shape, i))
        for k, (n, is_in, dt, shape, i) in enumerate(out):
            if not is_in:
                out[k] = (n, is_in, dt, tuple(ctx.get_binding_shape(i)), i)
        return out

    def _allocate(self) -> None:
        io = self._io()
        names = {n for n, *_ in io}
        inputs = [n for n, is_in, *_ in io if is_in]
        if len(inputs) != 1:
            raise ModelLoadError(f"engine {self.engine_path}: expected one input 'image', found {inputs}")
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"engine {self.engine_path}: missing outputs {missing} (found {sorted(names)})")
        for n, is_in, dt, shape, i in io:
            dtype = np.dtype(self._trt.nptype(dt))
            host = self._cuda.pagelocked_empty(shape, dtype)
            self._tensors.append(_Tensor(n, is_in, dtype, host, self._cuda.mem_alloc(host.nbytes), i))
        self._input = next(t for t in self._tensors if t.is_input)
        if self._input.host.ndim != 4 or self._input.host.shape[3] != 3:
            raise ModelLoadError(f"engine {self.engine_path}: input {self._input.name} must be (1, H, W, 3), found "
                                 f"{self._input.host.shape}")
        if self._tensor_api:
            for t in self._tensors:
                self._context.set_tensor_address(t.name, self._cuda.pointer(t.device))
        self._bindings = [0] * len(self._tensors)
        for t in self._tensors:
            if t.index >= 0:
                self._bindings[t.index] = self._cuda.pointer(t.device)
        self._last_shape: tuple[int, ...] | None = None

    def _graph_size_for(self, size: tuple[int, int]) -> tuple[int, int]:
        graph = super()._graph_size_for(size)
        if self.input_size is None:  # dynamic: the engine's profile is narrower than MIN_SIDE..MAX_SIDE
            (_, h0, w0, _), _, (_, h1, w1, _) = DEFAULT_DYNAMIC_SHAPES["image"]
            if not (h0 <= graph[0] <= h1 and w0 <= graph[1] <= w1):
                raise InputError(f"image size {graph[0]}x{graph[1]} is outside the engine's optimisation profile "
                                 f"({h0}x{w0} to {h1}x{w1}) for {self._card.name}")
        return graph

    def _set_shape(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Output shapes for this input shape (re-queried only when the input shape changes)."""
        if shape != self._last_shape:
            if self._tensor_api:
                self._context.set_input_shape(self._input.name, shape)
                self._out_shapes = {t.name: tuple(self._context.get_tensor_shape(t.name))
                                    for t in self._tensors if not t.is_input}
            else:
                self._context.set_binding_shape(self._input.index, shape)
                self._out_shapes = {t.name: tuple(self._context.get_binding_shape(t.index))
                                    for t in self._tensors if not t.is_input}
            self._last_shape = shape
        return self._out_shapes

    def _run(self, rgb: np.ndarray) -> SegmentationResult:
        # One execution context and one set of page-locked buffers: a second thread would overwrite this frame's.
        with self._infer_lock:
            return self._run_locked(rgb)

    def _run_locked(self, rgb: np.ndarray) -> SegmentationResult:
        cuda = self._cuda
        if cuda is None:
            raise RuntimeError(f"{self.name} backend for {self._card.name} was closed")
        shape = (1, *rgb.shape)
        with cuda.activate():
            out_shapes = self._set_shape(shape)
            n_in = int(np.prod(shape))
            host_in = self._input.host.reshape(-1)[:n_in].reshape(shape)
            np.copyto(host_in, rgb[None], casting="unsafe")  # uint8 -> uint8 copy; float engines: cast, no scaling
            cuda.htod_async(self._input.device, host_in, self._stream)
            handle = cuda.stream_handle(self._stream)
            if self._tensor_api:
                ok = self._context.execute_async_v3(handle)
            else:
                ok = self._context.execute_async_v2(self._bindings, handle)
            if not ok:
                raise RuntimeError(f"TensorRT failed to enqueue inference on {self.engine_path}")
            views = {}
            for t in self._tensors:
                if t.is_input:
                    continue
                view = t.host.reshape(-1)[:int(np.prod(out_shapes[t.name]))].reshape(out_shapes[t.name])
                cuda.dtoh_async(view, t.device, self._stream)
                views[t.name] = view
            cuda.synchronize(self._stream)  # the one synchronisation of the frame
        # Copies: the page-locked buffers are overwritten by the next frame while the node still publishes this one.
        return SegmentationResult(
            class_id=views["class_id"][0].astype(np.uint8, copy=True),
            anomaly_score=views["anomaly_score"][0].astype(np.float32, copy=True),
            confidence=views["confidence"][0].astype(np.float32, copy=True),
            logits=views["logits"][0].astype(np.float32, copy=True) if "logits" in views else None,
            ood_logit=views["ood_logit"][0].astype(np.float32, copy=True) if "ood_logit" in views else None,
        )

    def close(self) -> None:
        """Free every CUDA resource: buffers, stream, execution context, engine, then the CUDA context itself."""
        super().close()
        with self._infer_lock:  # after the frame in flight, whose buffers these are
            self._close_cuda()

    def _close_cuda(self) -> None:
        cuda = self._cuda
        if cuda is None:
            return
        try:
            with cuda.activate():
                for t in self._tensors:
                    cuda.free(t.device)
                    cuda.free_host(t.host)
                self._tensors = []
                if self._stream is not None:
                    cuda.destroy_stream(self._stream)
                # TensorRT objects go while the context they were made in is current.
                self._stream = self._context = self._engine = self._runtime = None
        finally:
            cuda.close()
            self._cuda = None
