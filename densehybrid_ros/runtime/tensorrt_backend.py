"""TensorRT engine backend (serialized engine + pycuda), placeholder until the TensorRT-engines issue lands.

On machines without tensorrt, pycuda or a CUDA GPU it fails at construction with a message saying what is missing;
on a machine that has them it still refuses rather than pretend, and points at the onnxruntime backend with the
TensorRT execution provider, which already runs the same graph through TensorRT.
"""
from __future__ import annotations

import importlib

import numpy as np

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions

NOT_AVAILABLE = "tensorrt backend not available: needs tensorrt + pycuda + a CUDA GPU"


def missing_requirements() -> list[str]:
    """What this machine lacks for TensorRT engines: module names and/or 'a CUDA GPU'."""
    missing = []
    for module in ("tensorrt", "pycuda.driver"):
        try:
            importlib.import_module(module)
        except Exception:  # a broken CUDA install raises more than ImportError from these packages
            missing.append(module.split(".")[0])
    if "pycuda" not in missing:
        try:
            import pycuda.driver as cuda

            cuda.init()
            if cuda.Device.count() == 0:
                missing.append("a CUDA GPU")
        except Exception:
            missing.append("a CUDA GPU")
    return missing


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, card: ModelCard, options: BackendOptions | None = None) -> None:
        super().__init__(card, options)
        missing = missing_requirements()
        if missing:
            raise RuntimeError(f"{NOT_AVAILABLE} (missing here: {', '.join(missing)}); install them with "
                               "`make install-tensorrt` on a Jetson/CUDA machine, or use backend='onnxruntime'")
        raise RuntimeError("tensorrt engine backend is not implemented yet (TensorRT engines are a later issue); "
                           "use backend='onnxruntime' with providers=['tensorrt'] to run this graph on TensorRT")

    def _run(self, rgb: np.ndarray) -> SegmentationResult:  # pragma: no cover - construction always raises
        raise RuntimeError(NOT_AVAILABLE)
