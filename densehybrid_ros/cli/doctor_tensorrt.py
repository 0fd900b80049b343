"""The TensorRT part of `densehybrid doctor`: TensorRT, pycuda and CUDA versions, the GPU and its compute capability,
the Jetson model and power mode, and whether the engine the node would load for the configured model is usable,
each gap with what to do about it.

Optional on machines whose node runs onnxruntime on the CPU (reported as information); a FAIL only when the node's
parameters ask for the tensorrt backend and something it needs is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PARAMS_FILE = Path("params/detector.yaml")
INSTALL_HINT = ("on a Jetson: JetPack's TensorRT bindings (`sudo apt install python3-libnvinfer`, part of "
                "nvidia-jetpack; not PyPI); elsewhere: `make install-tensorrt` (docs/JETSON.md)")


def node_settings(params_file: Path = PARAMS_FILE) -> dict[str, Any]:
    """The node's model/backend/engine parameters from its parameter file (defaults where the file is silent)."""
    from densehybrid_ros.config.detector import DetectorConfig

    values = DetectorConfig().as_dict()
    source = "defaults"
    if params_file.is_file():
        import yaml

        try:
            doc = yaml.safe_load(params_file.read_text()) or {}
            for section in doc.values():
                if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                    values.update(section["ros__parameters"])
                    source = str(params_file)
        except yaml.YAMLError:
            source = f"defaults ({params_file} is not valid YAML)"
    keys = ("model", "backend", "engine_policy", "engine_precision", "engine_cache_dir")
    return {**{k: values.get(k) for k in keys}, "source": source}


def _configured_card(settings: dict[str, Any], models_dir: Path | None):
    from densehybrid_ros.config.model_card import load_model_card

    if settings.get("model"):
        return load_model_card(settings["model"])
    if models_dir is not None and models_dir.is_dir():
        # An empty `model` is the node's default model, never the first card by name (models/ holds several).
        try:
            from densehybrid_ros.ros.detector_node import DEFAULT_MODEL_NAME
        except ImportError:  # no rclpy: the node cannot run here, which the ROS 2 check reports
            return None
        default = models_dir / DEFAULT_MODEL_NAME
        if default.is_file():
            return load_model_card(default)
    return None


def check_tensorrt(report, models_dir: Path | None, params_file: Path = PARAMS_FILE) -> None:
    """Lines on `report` (doctor.Report: line(status, what, detail))."""
    from densehybrid_ros.cli.doctor import FAIL, INFO, OK
    from densehybrid_ros.runtime.cuda_env import probe

    settings = node_settings(params_file)
    needed = settings.get("backend") == "tensorrt"
    gap = FAIL if needed else INFO
    env = probe()

    if env.tensorrt and not env.tensorrt_error:
        report.line(OK, "tensorrt", env.tensorrt)
    elif env.tensorrt:
        report.line(gap, "tensorrt", f"libnvinfer {env.tensorrt} present but the Python bindings are not importable "
                                     f"({env.tensorrt_error}); {INSTALL_HINT}")
    else:
        report.line(gap, "tensorrt", f"not installed; {INSTALL_HINT}")
    if env.pycuda:
        report.line(OK, "pycuda", env.pycuda)
    elif env.cuda_python:
        report.line(OK, "cuda-python", f"{env.cuda_python} (used instead of pycuda)")
    else:
        report.line(gap, "pycuda", "not installed (nor cuda-python); `make install-tensorrt` (needs the CUDA "
                                   "toolkit headers to build: on a Jetson they come with JetPack)")
    versions = [f"driver {env.cuda_driver}" if env.cuda_driver else "", f"runtime {env.cuda_runtime}"
                if env.cuda_runtime else ""]
    if any(versions):
        report.line(OK, "CUDA", ", ".join(v for v in versions if v))
    if env.gpu is not None:
        report.line(OK, "GPU", f"{env.gpu.name}, compute capability {env.gpu.compute_capability} "
                               f"(via {env.gpu.source})")
    else:
        report.line(gap, "GPU", f"no CUDA GPU found ({env.gpu_error or 'no probe answered'}); TensorRT engines need "
                                "one: check the NVIDIA driver (nvidia-smi) or, in a container, --gpus all / "
                                "--runtime nvidia")
    if env.jetson is not None:
        j = env.jetson
        report.line(OK, "Jetson", f"{j.model}, L4T {j.l4t_release or 'unknown'}")
        if j.power_mode is None:
            report.line(INFO, "power mode", "nvpmodel not found; benchmark only at a known mode: `sudo nvpmodel -q`")
        else:
            advice = "" if j.power_mode.upper().startswith("MAXN") else \
                "; for benchmarks: `sudo nvpmodel -m 0` (MAXN on most modules) and `sudo jetson_clocks`"
            report.line(OK, "power mode", f"{j.power_mode}{advice}")
    for note in env.notes:
        report.line(INFO, "note", note)
    _check_engine(report, settings, models_dir, env, gap)


def _check_engine(report, settings: dict[str, Any], models_dir: Path | None, env, gap: str) -> None:
    from densehybrid_ros.cli.doctor import INFO, OK
    from densehybrid_ros.runtime.engine_cache import build_command
    from densehybrid_ros.runtime.tensorrt_engine import check_model_engine

    try:
        card = _configured_card(settings, models_dir)
    except ValueError as e:
        report.line(gap, "engine", f"configured model unusable: {e}")
        return
    if card is None:
        report.line(INFO, "engine", "no configured model to check an engine for")
        return
    precision = settings.get("engine_precision") or "fp16"
    cache_dir = settings.get("engine_cache_dir") or None
    check, key = check_model_engine(card, precision, cache_dir=cache_dir, env=env)
    what = f"engine ({precision}, {settings['source']})"
    fix = build_command(card.model_path(), precision)
    if check.ok:
        unknown = [f for f in ("tensorrt_version", "gpu_name") if getattr(key, f) is None]
        note = f" (not compared, unknown here: {', '.join(unknown)})" if unknown else ""
        report.line(OK, what, f"{check.engine_path} matches this machine and model{note}")
        return
    policy = settings.get("engine_policy")
    consequence = "the node will build it at configure (engine_policy: rebuild; minutes)" if policy == "rebuild" \
        else "the node will refuse to start (engine_policy: refuse)"
    status = gap if policy == "refuse" else INFO
    report.line(status, what, f"{'; '.join(check.reasons())}; {consequence}; build it now with: {fix}")
