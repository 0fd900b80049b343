"""The default backend: the exported graph (pre- and post-processing inside) on an ONNX Runtime session.

Execution providers are tried in the order TensorRT > CUDA > CPU among those this onnxruntime build offers, so the
same code runs on a laptop and on a Jetson with onnxruntime-gpu; the providers actually used are in `.providers`.

With the TensorRT execution provider, onnxruntime builds a TensorRT engine at session creation and caches it. Its
cache must follow the same staleness rules as the native engines (runtime/engine_cache.py): the cache lives in a
folder named after the engine key (TensorRT and onnxruntime versions, GPU, precision, input shapes, ONNX sha256,
calibration) with the key's sidecar inside, so an upgrade or a new model never picks up an old engine;
`engine_policy` decides whether an outdated cache is replaced (`rebuild`) or refused with what differs
(`refuse`). The provider options come from one pure function, `gpu_provider_options`.
"""
from __future__ import annotations

import json
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions, ModelLoadError, checked_model_bytes
from densehybrid_ros.runtime.engine_cache import (
    ENGINE_POLICIES, EngineKey, EngineStaleError, calibration_cache_path_for, compare_keys, key_digest, sha256_file,
    write_atomic,
)

LOG = logging.getLogger("densehybrid.onnxruntime")
PROVIDER_PRIORITY = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
OPTIMISATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
REQUIRED_OUTPUTS = ("class_id", "anomaly_score", "confidence")
RAW_OUTPUTS = ("logits", "ood_logit")
MAX_THREADS = 64
TRT_PROVIDER, CUDA_PROVIDER = "TensorrtExecutionProvider", "CUDAExecutionProvider"
GPU_PRECISIONS = ("fp32", "fp16", "int8", "best")  # best = int8 here: the provider always adds FP16 to INT8
ORT_CACHE_SUFFIX = ".ort-trt"
ORT_CACHE_SIDECAR = "key.json"
ORT_CALIBRATION_TABLE = "calibration.cache"


@dataclass
class OnnxRuntimeOptions(BackendOptions):
    """threads: intra-op threads, 0 = onnxruntime's default (one per physical core).
    providers: execution providers in priority order (full names or tensorrt/cuda/cpu); None = every available
        one of TensorRT > CUDA > CPU.
    optimisation: graph optimisation level, one of disable/basic/extended/all.
    spin: let idle worker threads busy-wait between frames; lowers latency on a dedicated core, wastes CPU on a
        shared one.
    precision: TensorRT execution provider precision, fp32/fp16/int8/best (int8 and best are the same there and
        read the calibration cache `densehybrid build-engine --precision int8` writes beside the model). Ignored
        without that provider.
    engine_cache_dir: where the TensorRT provider caches engines and timings; empty = beside the model.
    engine_policy: rebuild or refuse an outdated engine cache (see module docstring).
    device: CUDA device index for the GPU providers. workspace_mb, dla_core: TensorRT builder settings.
    """

    threads: int = 0
    providers: Sequence[str] | None = None
    optimisation: str = "all"
    spin: bool = True
    precision: str = "fp16"
    engine_cache_dir: str = ""
    engine_policy: str = "rebuild"
    device: int = 0
    workspace_mb: int = 2048
    dla_core: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0 = onnxruntime default), "
                             f"got {self.threads!r}")
        if self.optimisation not in OPTIMISATION_LEVELS:
            raise ValueError(f"optimisation={self.optimisation!r} is not one of {', '.join(OPTIMISATION_LEVELS)}")
        if isinstance(self.providers, str):
            self.providers = [p.strip() for p in self.providers.split(",") if p.strip()]
        if self.precision not in GPU_PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(GPU_PRECISIONS)}")
        if self.engine_policy not in ENGINE_POLICIES:
            raise ValueError(f"engine_policy={self.engine_policy!r} is not one of {', '.join(ENGINE_POLICIES)}")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ValueError(f"device must be a CUDA device index >= 0, got {self.device!r}")
        if isinstance(self.workspace_mb, bool) or not isinstance(self.workspace_mb, int) or self.workspace_mb < 16:
            raise ValueError(f"workspace_mb must be an integer >= 16, got {self.workspace_mb!r}")


def select_providers(requested: Sequence[str] | None = None) -> list[str]:
    """Execution providers to use, in priority order, restricted to those this onnxruntime build offers.

    An explicitly requested provider that is not available is an error (silently falling back to the CPU would
    hide a misconfigured GPU install behind a 20x slower node).
    """
    available = ort.get_available_providers()
    if requested is None:
        chosen = [p for p in PROVIDER_PRIORITY if p in available]
        return chosen or list(available)
    if not requested:
        raise ValueError(f"providers is empty; available: {', '.join(available)}")
    chosen = []
    for p in requested:
        full = PROVIDER_ALIASES.get(p.lower(), p)
        if full not in available:
            raise ValueError(f"onnxruntime execution provider {p!r} is not available in this install; "
                             f"available: {', '.join(available)}")
        chosen.append(full)
    return chosen


def session_options(options: OnnxRuntimeOptions) -> ort.SessionOptions:
    """The session settings of the backend (shared with the benchmark, which times bare graphs the same way)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = OPTIMISATION_LEVELS[options.optimisation]
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1  # a single chain of operators: the parallelism is inside the convolutions
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
    return so


def ort_cache_root(card: ModelCard, options: OnnxRuntimeOptions) -> Path:
    model = card.model_path()
    base = Path(options.engine_cache_dir) if options.engine_cache_dir else model.parent
    return base / f"{model.stem}{ORT_CACHE_SUFFIX}"


def ort_engine_key(card: ModelCard, options: OnnxRuntimeOptions, tensorrt_version: str | None,
                   gpu_name: str | None, compute_capability: str | None) -> EngineKey:
    """The key of the TensorRT provider's cache for this model and these options (same fields as native engines,
    plus the onnxruntime version: the provider serialises engines in its own wrapper)."""
    h = -1 if card.input_height is None else card.input_height
    w = -1 if card.input_width is None else card.input_width
    calib = calibration_cache_path_for(card.model_path(), options.engine_cache_dir or None)
    calib_sha = sha256_file(calib) if options.precision in ("int8", "best") and calib.is_file() else None
    return EngineKey(tensorrt_version=tensorrt_version, gpu_name=gpu_name, compute_capability=compute_capability,
                     precision=options.precision, input_shapes={"image": [1, h, w, 3]}, onnx_sha256=card.sha256,
                     calibration_cache_sha256=calib_sha, dla_core=options.dla_core,
                     runtime=f"onnxruntime {ort.__version__}")


def gpu_provider_options(providers: Sequence[str], options: OnnxRuntimeOptions, cache_dir: Path | None,
                         dynamic_input: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(provider, options) pairs for `ort.InferenceSession(providers=...)`; pure (no I/O), so it is tested here.

    TensorRT: precision flags, engine and timing caches in `cache_dir` (the keyed folder), workspace, DLA; INT8
    uses the TensorRT-native calibration table copied into that folder. CUDA: the device, and an exhaustive
    convolution search for fixed-size graphs (searched once per session; a dynamic graph would search per size).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for p in providers:
        if p == TRT_PROVIDER:
            o: dict[str, Any] = {
                "device_id": options.device,
                "trt_max_workspace_size": options.workspace_mb << 20,
                "trt_fp16_enable": options.precision in ("fp16", "int8", "best"),
                "trt_int8_enable": options.precision in ("int8", "best"),
            }
            if options.precision in ("int8", "best"):
                o["trt_int8_calibration_table_name"] = ORT_CALIBRATION_TABLE
                o["trt_int8_use_native_calibration_table"] = True
            if cache_dir is not None:
                o.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                          "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir)})
            if options.dla_core is not None:
                o.update({"trt_dla_enable": True, "trt_dla_core": options.dla_core})
            out.append((p, o))
        elif p == CUDA_PROVIDER:
            out.append((p, {"device_id": options.device,
                            "cudnn_conv_algo_search": "HEURISTIC" if dynamic_input else "EXHAUSTIVE"}))
        else:
            out.append((p, {}))
    return out


def prepare_trt_cache(card: ModelCard, options: OnnxRuntimeOptions, key: EngineKey) -> Path:
    """The keyed cache folder for `key`, applying engine_policy to folders of other keys (stale engines)."""
    root = ort_cache_root(card, options)
    folder = root / key_digest(key)
    command = (f"densehybrid build-engine --model {card.model_path()} --precision {options.precision} "
               "--runtime onnxruntime")
    refuse = options.engine_policy == "refuse"
    if (folder / ORT_CACHE_SIDECAR).is_file():
        # The key is written before onnxruntime builds: a build cut short leaves the key and no engine, and under
        # 'refuse' the session must not start that build (minutes) at configure.
        if refuse and not any(folder.glob("*.engine")):
            raise EngineStaleError(f"onnxruntime TensorRT engine cache {folder} holds no engine (a build that did "
                                   f"not finish); engine_policy is 'refuse'. Build it on this machine with:\n  {command}")
        return folder
    stale = sorted(p for p in root.glob("*") if (p / ORT_CACHE_SIDECAR).is_file()) if root.is_dir() else []
    if stale and refuse:
        built = EngineKey.from_dict(json.loads((stale[-1] / ORT_CACHE_SIDECAR).read_text()))
        diffs = "; ".join(str(d) for d in compare_keys(built, key)) or "unreadable key"
        raise EngineStaleError(f"onnxruntime TensorRT engine cache {stale[-1]} is outdated ({diffs}); "
                               f"engine_policy is 'refuse'. Rebuild it on this machine with:\n  {command}")
    if refuse:
        raise EngineStaleError(f"no onnxruntime TensorRT engine cache for this model and machine under {root}; "
                               f"engine_policy is 'refuse', so configure does not start a build. Build it on this "
                               f"machine with:\n  {command}")
    if options.precision in ("int8", "best"):
        calib = calibration_cache_path_for(card.model_path(), options.engine_cache_dir or None)
        if not calib.is_file():
            raise FileNotFoundError(f"INT8 with the TensorRT provider needs the calibration cache {calib}; make it "
                                    f"with: densehybrid build-engine --model {card.model_path()} --precision int8")
    for old in stale:  # only folders holding our sidecar: never anything else under root
        shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if options.precision in ("int8", "best"):
        write_atomic(folder / ORT_CALIBRATION_TABLE, calib.read_bytes())
    write_atomic(folder / ORT_CACHE_SIDECAR, (json.dumps(key.as_dict(), indent=1, sort_keys=True) + "\n").encode())
    return folder


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, card: ModelCard, options: OnnxRuntimeOptions | None = None) -> None:
        options = options or OnnxRuntimeOptions()
        super().__init__(card, options)
        self._model_path = card.model_path()
        if not self._model_path.is_file():
            raise FileNotFoundError(f"model file not found: {self._model_path}")
        providers = select_providers(options.providers)
        self.engine_cache_dir: Path | None = None
        if TRT_PROVIDER in providers:
            from densehybrid_ros.runtime.cuda_env import probe

            env = probe()
            key = ort_engine_key(card, options, env.tensorrt, env.gpu.name if env.gpu else None,
                                 env.gpu.compute_capability if env.gpu else None)
            self.engine_cache_dir = prepare_trt_cache(card, options, key)
            if options.precision != "fp32":
                # Unlike the native tensorrt backend, the provider has no per-layer precision: the score head
                # (tens of nats compared against tau) runs in the engine's precision too (docs/JETSON.md).
                LOG.warning("onnxruntime's TensorRT provider runs the whole graph, score head included, in %s; for "
                            "an FP32 score head use precision fp32 or backend 'tensorrt'", options.precision)
        with_options = gpu_provider_options(providers, options, self.engine_cache_dir, card.dynamic_input)
        # Read once, hashed, and these bytes loaded: the file cannot change between the check and the load.
        model_bytes = checked_model_bytes(card)
        try:
            self._session = ort.InferenceSession(model_bytes, session_options(options), providers=with_options)
        except Exception as e:  # onnxruntime raises its own pybind exception types for unreadable graphs
            raise ModelLoadError(f"onnxruntime cannot load model file {self._model_path}: {e}") from e
        self._check_graph()
        self._output_names = [o.name for o in self._session.get_outputs()
                              if o.name in REQUIRED_OUTPUTS + RAW_OUTPUTS]
        # The RunOptions of the run in flight, so another thread can cancel it (cancel()).
        self._run_lock = threading.Lock()
        self._runs_in_flight: set[ort.RunOptions] = set()
        self._warm_up()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def session(self) -> ort.InferenceSession:
        return self._session

    def _check_graph(self) -> None:
        """The graph must be the contract of docs/DEVELOPING.md and agree with its card on the input size."""
        where = f"model file {self._model_path}"
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "image" or inputs[0].type != "tensor(uint8)":
            found = ", ".join(f"{i.name}: {i.type}" for i in inputs)
            raise ModelLoadError(f"{where}: expected one input 'image' of uint8, found {found}")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[3] != 3:
            raise ModelLoadError(f"{where}: input 'image' must be (1, H, W, 3), found {shape}")
        graph_size = tuple(d if isinstance(d, int) else None for d in shape[1:3])
        card_size = (self.card.input_height, self.card.input_width)
        if graph_size != card_size:
            raise ModelLoadError(f"{where}: the graph's input size {_size(graph_size)} disagrees with its card "
                                 f"{self.card.card_path} ({_size(card_size)})")
        names = {o.name for o in self._session.get_outputs()}
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise ModelLoadError(f"{where}: missing outputs {missing} (found {sorted(names)}); a semantic-only "
                                 "graph has no anomaly score and cannot drive the detector")

    def _run(self, rgb: np.ndarray) -> SegmentationResult:
        run_options = ort.RunOptions()
        # A failed run raises with ONNX Runtime's message; its own log line per failure (and per cancelled run)
        # would bypass the caller's throttled logging. Load-time messages (session level) stay visible.
        run_options.log_severity_level = 4
        # Every run in flight is cancellable: with one slot, a second thread's run ending would have cleared the
        # first one's options.
        with self._run_lock:
            self._runs_in_flight.add(run_options)
        try:
            raw = self._session.run(self._output_names, {"image": rgb[None]}, run_options)
        finally:
            with self._run_lock:
                self._runs_in_flight.discard(run_options)
        out = dict(zip(self._output_names, raw))
        return SegmentationResult(
            class_id=out["class_id"][0],
            # float16 graphs: the result type is float32, and OpenCV cannot resize float16.
            anomaly_score=out["anomaly_score"][0].astype(np.float32, copy=False),
            confidence=out["confidence"][0],
            logits=out["logits"][0] if "logits" in out else None,
            ood_logit=out["ood_logit"][0] if "ood_logit" in out else None,
        )

    def cancel(self) -> None:
        # ONNX Runtime checks the flag between operators: session.run raises within one operator's time (~30 ms
        # on the shipped model at 512x1024, docs/RELIABILITY.md section 5).
        with self._run_lock:
            for run_options in self._runs_in_flight:
                run_options.terminate = True

    def close(self) -> None:
        super().close()
        self._session = None  # type: ignore[assignment]  # frees the arena before the backend object goes


def _size(size: tuple) -> str:
    return "dynamic" if size[0] is None else f"{size[0]}x{size[1]}"
