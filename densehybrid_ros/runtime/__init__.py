"""Inference backends: `create_backend(card_or_model_path, backend="onnxruntime", **options) -> Backend`.

Each backend module is imported only when it is asked for: importing this package loads numpy, OpenCV and the
model card code, never torch, tensorrt or rclpy (a vehicle runs with onnxruntime alone).
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from densehybrid_ros.config.model_card import ModelCard, load_model_card
from densehybrid_ros.runtime.base import Backend, BackendOptions, InputError, ModelLoadError, validate_rgb

# name -> (module, backend class, options dataclass, extra constructor arguments that are not options)
BACKENDS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "onnxruntime": ("densehybrid_ros.runtime.onnxruntime_backend", "OnnxRuntimeBackend", "OnnxRuntimeOptions", ()),
    "torch": ("densehybrid_ros.runtime.torch_backend", "TorchBackend", "TorchOptions", ("checkpoint", "model")),
    "tensorrt": ("densehybrid_ros.runtime.tensorrt_backend", "TensorRTBackend", "TensorRTOptions", ()),
    "openvino": ("densehybrid_ros.runtime.openvino_backend", "OpenVINOBackend", "OpenVINOOptions", ()),
}
AUTO = "auto"  # the fastest of the above this machine offers (runtime/selection.py)
BACKEND_NAMES = tuple(BACKENDS) + (AUTO,)
DEFAULT_BACKEND = "onnxruntime"

__all__ = ["AUTO", "Backend", "BackendOptions", "InputError", "ModelLoadError", "BACKEND_NAMES", "DEFAULT_BACKEND",
           "create_backend", "resolve_card", "validate_rgb"]


def resolve_card(card_or_model_path: ModelCard | str | Path, verify_sha: bool = True) -> ModelCard:
    """A ModelCard as is, or load it from a model path (`x.onnx`) or card path (`x.card.yaml`), checking sha256.

    A missing model file is named as such (rather than as the missing card beside it), since that is the path the
    user typed.
    """
    if isinstance(card_or_model_path, ModelCard):
        return card_or_model_path
    path = Path(card_or_model_path)
    if not path.name.endswith(".yaml") and not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return load_model_card(path, verify_sha=verify_sha)


# The TensorRT engine settings (node parameters engine_precision, engine_policy, engine_cache_dir) and the backends
# that build engines with them (natively, or through onnxruntime's TensorRT provider).
ENGINE_OPTIONS = ("precision", "engine_policy", "engine_cache_dir")
ENGINE_BACKENDS = ("tensorrt", "onnxruntime")


def _known_option(name: str) -> bool:
    for module_name, _, options_name, extras in BACKENDS.values():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # torch's module needs torch
            continue
        if name in extras or name in {f.name for f in dataclasses.fields(getattr(module, options_name))}:
            return True
    return False


def create_backend(card_or_model_path: ModelCard | str | Path, backend: str = DEFAULT_BACKEND,
                   **options: Any) -> Backend:
    """Load a model on one backend.

    backend: onnxruntime (default), torch (parity/debug, needs torch), tensorrt (engines built on this device;
        needs tensorrt + pycuda + a CUDA GPU), openvino (x86 CPUs; optional requirements/openvino.txt) or auto
        (the fastest of these here, runtime/selection.py; the backend's `name` says which, `.auto_reason` why).
        With auto, options that only another backend takes are dropped (threads, warmup are common).
    options: fields of that backend's options dataclass (e.g. threads, providers, optimisation, spin, warmup,
        resize_to_model for onnxruntime; device, threads for torch) plus `checkpoint=`/`model=` for torch and
        `verify_sha=False` to skip the card's checksum (tests of broken files only).
    """
    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_NAMES)}")
    verify_sha = bool(options.pop("verify_sha", True))
    card = resolve_card(card_or_model_path, verify_sha=verify_sha)
    auto_reason = None
    if backend == AUTO:
        from densehybrid_ros.runtime.selection import resolve_auto

        backend, auto_reason = resolve_auto(backend, quantized=bool(card.quantization))
    module_name, class_name, options_name, extras = BACKENDS[backend]
    module = importlib.import_module(module_name)
    options_cls = getattr(module, options_name) if options_name else BackendOptions
    valid = {f.name for f in dataclasses.fields(options_cls)}
    if auto_reason is not None:  # another backend's option is moot here; a typo is still an error below
        if backend not in ENGINE_BACKENDS:  # OpenVINO's own `precision` is not the engines' precision
            options = {k: v for k, v in options.items() if k not in ENGINE_OPTIONS}
        options = {k: v for k, v in options.items() if k in valid or k in extras or not _known_option(k)}
    unknown = sorted(set(options) - valid - set(extras))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for backend {backend!r}; valid: "
                         f"{', '.join(sorted(valid | set(extras)))}")
    extra_args = {k: options.pop(k) for k in extras if k in options}
    loaded = getattr(module, class_name)(card, options_cls(**options), **extra_args)
    if auto_reason is not None:
        loaded.auto_reason = auto_reason
    return loaded
