"""The default backend: the exported graph (pre- and post-processing inside) on an ONNX Runtime session.

Execution providers are tried in the order TensorRT > CUDA > CPU among those this onnxruntime build offers, so the
same code runs on a laptop and on a Jetson with onnxruntime-gpu; the providers actually used are in `.providers`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnxruntime as ort

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions, ModelLoadError

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


@dataclass
class OnnxRuntimeOptions(BackendOptions):
    """threads: intra-op threads, 0 = onnxruntime's default (one per physical core).
    providers: execution providers in priority order (full names or tensorrt/cuda/cpu); None = every available
        one of TensorRT > CUDA > CPU.
    optimisation: graph optimisation level, one of disable/basic/extended/all.
    spin: let idle worker threads busy-wait between frames; lowers latency on a dedicated core, wastes CPU on a
        shared one.
    """

    threads: int = 0
    providers: Sequence[str] | None = None
    optimisation: str = "all"
    spin: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0 = onnxruntime default), "
                             f"got {self.threads!r}")
        if self.optimisation not in OPTIMISATION_LEVELS:
            raise ValueError(f"optimisation={self.optimisation!r} is not one of {', '.join(OPTIMISATION_LEVELS)}")
        if isinstance(self.providers, str):
            self.providers = [p.strip() for p in self.providers.split(",") if p.strip()]


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


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, card: ModelCard, options: OnnxRuntimeOptions | None = None) -> None:
        options = options or OnnxRuntimeOptions()
        super().__init__(card, options)
        self._model_path = card.model_path()
        if not self._model_path.is_file():
            raise FileNotFoundError(f"model file not found: {self._model_path}")
        providers = select_providers(options.providers)
        try:
            self._session = ort.InferenceSession(str(self._model_path), session_options(options),
                                                 providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types for unreadable graphs
            raise ModelLoadError(f"onnxruntime cannot load model file {self._model_path}: {e}") from e
        self._check_graph()
        self._output_names = [o.name for o in self._session.get_outputs()
                              if o.name in REQUIRED_OUTPUTS + RAW_OUTPUTS]
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
        out = dict(zip(self._output_names, self._session.run(self._output_names, {"image": rgb[None]})))
        return SegmentationResult(
            class_id=out["class_id"][0],
            # float16 graphs: the result type is float32, and OpenCV cannot resize float16.
            anomaly_score=out["anomaly_score"][0].astype(np.float32, copy=False),
            confidence=out["confidence"][0],
            logits=out["logits"][0] if "logits" in out else None,
            ood_logit=out["ood_logit"][0] if "ood_logit" in out else None,
        )

    def close(self) -> None:
        super().close()
        self._session = None  # type: ignore[assignment]  # frees the arena before the backend object goes


def _size(size: tuple) -> str:
    return "dynamic" if size[0] is None else f"{size[0]}x{size[1]}"
