"""`densehybrid doctor`: is this machine ready to run the detector? Runtimes, ROS 2, and every model in models/.

Exit code 1 when something the node needs is missing or broken (numpy, OpenCV, onnxruntime, a model file that does
not match its card or does not load); optional parts (torch, TensorRT, rclpy on a training machine) are reported
and never fail the check.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

HELP = "check the installation: runtimes, ROS 2, model files"

OK, INFO, FAIL = "ok", "--", "FAIL"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of models and their cards to check (default: ./models, else the installed "
                             "package's share/densehybrid_ros/models)")
    parser.add_argument("--no-infer", action="store_true",
                        help="only load each model, do not run one blank frame through it")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _findable(module: str) -> bool:
    """Whether `module` can be imported, without importing it (torch alone takes seconds to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_models_dir() -> Path | None:
    local = Path("models")
    if local.is_dir():
        return local
    share = Path(sys.prefix) / "share" / "densehybrid_ros" / "models"
    return share if share.is_dir() else None


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def line(self, status: str, what: str, detail: str = "") -> None:
        if status == FAIL:
            self.failures += 1
        print(f"  [{status:>4}] {what}" + (f": {detail}" if detail else ""))


def check_python(report: Report) -> None:
    report.line(OK, "python", f"{platform.python_version()} ({sys.executable})")
    for module, dist in (("numpy", "numpy"), ("cv2", "opencv-python-headless"), ("yaml", "PyYAML")):
        try:
            mod = importlib.import_module(module)
            report.line(OK, module, getattr(mod, "__version__", _version(dist)))
        except ImportError as e:
            report.line(FAIL, module, f"not importable ({e}); the node needs it: pip install -r "
                                      "requirements/runtime.txt")


def check_runtimes(report: Report) -> bool:
    try:
        import onnxruntime as ort
    except ImportError as e:
        report.line(FAIL, "onnxruntime", f"not importable ({e}); it is the default backend")
        ort_ok = False
    else:
        from densehybrid_ros.runtime.onnxruntime_backend import select_providers
        report.line(OK, "onnxruntime", f"{ort.__version__}, providers available: "
                                       f"{', '.join(ort.get_available_providers())}; will use: "
                                       f"{', '.join(select_providers())}")
        ort_ok = True
    if _findable("torch"):
        report.line(OK, "torch", f"{_version('torch')} (torch backend, training and export available)")
    else:
        report.line(INFO, "torch", "not installed (fine on a vehicle: only training, export and the torch "
                                   "parity backend need it)")
    from densehybrid_ros.runtime.tensorrt_backend import missing_requirements
    missing = missing_requirements() if _findable("tensorrt") or _findable("pycuda") else ["tensorrt", "pycuda"]
    if missing:
        report.line(INFO, "tensorrt", f"not available (missing: {', '.join(missing)}); needed only for TensorRT "
                                      "engines on a Jetson/CUDA machine")
    else:
        report.line(OK, "tensorrt", f"tensorrt {_version('tensorrt')}, pycuda {_version('pycuda')}, CUDA GPU found")
    return ort_ok


def check_ros(report: Report) -> None:
    distro = os.environ.get("ROS_DISTRO")
    if not _findable("rclpy"):
        report.line(INFO, "rclpy", "not importable: the detector node needs ROS 2 (source a ROS 2 install or pip "
                                   "install -r requirements/runtime.txt); the CLI tools work without it")
        return
    try:
        import rclpy  # noqa: F401  # importing loads the rmw C libraries: the real test that ROS 2 works here
    except Exception as e:  # a half-sourced ROS 2 raises ImportError or OSError from its C extensions
        report.line(FAIL, "rclpy", f"found but fails to import: {e}")
        return
    where = f"ROS_DISTRO={distro}" if distro else "PyPI wheels (no ROS_DISTRO set)"
    report.line(OK, "rclpy", f"{_version('ros-rclpy') if not distro else distro} ({where}); "
                             f"RMW_IMPLEMENTATION={os.environ.get('RMW_IMPLEMENTATION', 'default')}")


def check_models(report: Report, folder: Path | None, infer: bool, ort_ok: bool) -> None:
    if folder is None:
        report.line(INFO, "models", "no models/ folder here or in the installed package (export one with "
                                    "`densehybrid export`)")
        return
    if not folder.is_dir():
        report.line(FAIL, "models", f"{folder} is not a folder")
        return
    from densehybrid_ros.config.model_card import CARD_SUFFIX, card_path_for, load_model_card

    cards = sorted(folder.glob(f"*{CARD_SUFFIX}"))
    orphans = [p for p in sorted(folder.glob("*.onnx")) if not card_path_for(p).is_file()]
    if not cards and not orphans:
        report.line(INFO, "models", f"no models in {folder}")
    for onnx_file in orphans:
        report.line(FAIL, str(onnx_file), f"no model card beside it (expected {card_path_for(onnx_file).name})")
    for card_file in cards:
        try:
            card = load_model_card(card_file)  # checks the file exists and its sha256
        except ValueError as e:
            report.line(FAIL, str(card_file), str(e))
            continue
        size = "dynamic" if card.dynamic_input else f"{card.input_height}x{card.input_width}"
        tau = "not calibrated" if card.tau is None else f"tau {card.tau:.4g}"
        detail = f"K={card.num_classes}, input {size}, score {card.score_type}, {tau}, sha256 ok"
        if ort_ok:
            detail += _load_and_run(card, infer)
            if detail.endswith("!"):
                report.line(FAIL, str(card.model_path()), detail[:-1])
                continue
        report.line(OK, str(card.model_path()), detail)


def _load_and_run(card, infer: bool) -> str:
    import numpy as np

    from densehybrid_ros.runtime import create_backend

    try:
        backend = create_backend(card, threads=1, warmup=0)
        if not infer:
            return ", onnxruntime load ok"
        size = backend.input_size or (256, 512)
        t0 = time.perf_counter()
        result = backend.infer(np.zeros((*size, 3), np.uint8))
        ms = 1000 * (time.perf_counter() - t0)
        if not np.isfinite(result.anomaly_score).all():
            return ", one blank frame gave non-finite anomaly scores!"
        backend.close()
        return f", onnxruntime ok (one {size[0]}x{size[1]} frame in {ms:.0f} ms, cold)"
    except Exception as e:
        return f", onnxruntime cannot run it: {e}!"


def run(args: argparse.Namespace) -> int:
    report = Report()
    print("densehybrid doctor")
    check_python(report)
    ort_ok = check_runtimes(report)
    check_ros(report)
    check_models(report, args.models if args.models is not None else default_models_dir(), not args.no_infer, ort_ok)
    from densehybrid_ros.cli.doctor_tensorrt import check_tensorrt
    check_tensorrt(report, args.models if args.models is not None else default_models_dir())
    if report.failures:
        print(f"{report.failures} problem(s) found")
        return 1
    print("all required parts present")
    return 0
