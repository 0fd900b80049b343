"""`densehybrid doctor`: is this machine ready to run the detector? Runtimes, ROS 2, the DDS settings that carry
camera images between processes, and every model in models/.

Exit code 1 when something the node needs is missing or broken (numpy, OpenCV, onnxruntime, a model file that does
not match its card or does not load, a DDS profile that is named but missing, or settings known to lose camera
frames); optional parts (torch, TensorRT, rclpy on a training machine) are reported and never fail the check.
Warnings ("warn") are settings of this shell that a camera driver or a bag replay started from it would inherit.
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
from typing import Mapping

HELP = "check the installation: runtimes, ROS 2, model files"

OK, INFO, WARN, FAIL = "ok", "--", "warn", "FAIL"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of models and their cards to check (default: ./models, else the installed "
                             "package's share/densehybrid_ros/models)")
    parser.add_argument("--no-infer", action="store_true",
                        help="only load each model, do not run one blank frame through it")
    parser.add_argument("--dds-live", action="store_true",
                        help="also send 1920x1080 rgb8 frames between two processes with this shell's DDS settings "
                             "and count what arrives (about 10 s)")
    parser.add_argument("--clean-shm", action="store_true",
                        help="remove the Fast DDS shared-memory segments that dead processes left in /dev/shm "
                             "(never those of a running process)")


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
    """The folder an empty `model` parameter reads (ros/detector_node.default_model_dirs), so doctor checks the
    files the node would load, not whatever models/ the current folder has; without rclpy, this package's own."""
    try:
        from densehybrid_ros.ros.detector_node import default_model_dirs
        candidates = default_model_dirs()
    except ImportError:
        candidates = [Path(__file__).resolve().parents[2] / "models"]
    candidates.append(Path(sys.prefix) / "share" / "densehybrid_ros" / "models")
    return next((d for d in candidates if d.is_dir()), None)


class Report:
    def __init__(self) -> None:
        self.failures = 0
        self.warnings = 0

    def line(self, status: str, what: str, detail: str = "") -> None:
        if status == FAIL:
            self.failures += 1
        if status == WARN:
            self.warnings += 1
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


# -- DDS: camera-sized images between processes ----------------------------------------------------------------------
FRAME_BYTES = 1920 * 1080 * 3  # one 1920x1080 rgb8 frame, the largest camera image the checks plan for
RECOMMENDED_SOCKET_BUFFER = 32 * 1024 * 1024  # what params/fastdds.xml asks for: several such frames
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
LOAD_DDS_ENV = "run `set -a; . params/dds.env; set +a` in the repository root (README: \"Camera drivers and bag " \
               "replay in other processes\")"
SYSCTL_FIX = (f"sudo sysctl -w net.core.rmem_max={RECOMMENDED_SOCKET_BUFFER} "
              f"net.core.wmem_max={RECOMMENDED_SOCKET_BUFFER} (persist it in /etc/sysctl.d/)")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def read_socket_limits(net_core: Path = Path("/proc/sys/net/core")) -> dict[str, int | None]:
    """net.core.{rmem,wmem}_{max,default} in bytes; None where unreadable (not Linux, a restricted container)."""
    limits: dict[str, int | None] = {}
    for name in ("rmem_max", "wmem_max", "rmem_default", "wmem_default"):
        try:
            limits[name] = int((net_core / name).read_text())
        except (OSError, ValueError):
            limits[name] = None
    return limits


def dds_findings(environ: Mapping[str, str], socket_limits: Mapping[str, int | None],
                 dds_env: Path | None = None) -> list[tuple[str, str, str]]:
    """(status, what, detail) lines about the DDS settings in `environ` (what a camera driver or `ros2 bag play`
    started from this shell gets) and the project's params/dds.env (`dds_env`, default: the package's)."""
    from densehybrid_ros.config.dds import (ConfigError, ProfileTransports, default_dds_env_path, read_dds_env,
                                            read_profile_transports)

    found: list[tuple[str, str, str]] = []
    shipped_path = Path(dds_env) if dds_env is not None else default_dds_env_path()
    try:
        shipped = read_dds_env(shipped_path)
        profile = shipped.get("FASTDDS_DEFAULT_PROFILES_FILE")
        segment = read_profile_transports(Path(profile)).shm_segment if profile else None
        found.append((OK, "params/dds.env", f"{shipped_path}; profile {profile}, shared-memory segment "
                                            f"{_mb(segment) if segment else 'none'}"))
    except ConfigError as e:
        found.append((FAIL, "params/dds.env", str(e)))

    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FAST_DDS_RMWS:
        found.append((WARN, "RMW_IMPLEMENTATION", f"{rmw}: params/fastdds.xml is a Fast DDS profile and does not "
                                                 f"apply; give {rmw} a transport for large messages (shared memory, "
                                                 f"or socket buffers of at least {_mb(FRAME_BYTES)}) or use "
                                                 "rmw_fastrtps_cpp"))
        found.append(_socket_buffer_finding(socket_limits, None))
        return found
    found.append((OK, "RMW_IMPLEMENTATION", rmw or "not set: rmw_fastrtps_cpp, the default of the ROS 2 wheels and "
                                                  "of most distros"))

    transports: ProfileTransports | None = None
    profile_file = environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    if not profile_file:
        found.append((WARN, "FASTDDS_DEFAULT_PROFILES_FILE",
                      "not set: Fast DDS uses its builtin transports, and a camera driver or `ros2 bag play` started "
                      "from this shell loses camera-sized frames on their way to the detector (measured: 0 of 20 "
                      f"512x1024 rgb8 frames between two processes); {LOAD_DDS_ENV}"))
    else:
        try:
            transports = read_profile_transports(Path(profile_file))
        except ConfigError as e:
            found.append((FAIL, "FASTDDS_DEFAULT_PROFILES_FILE", f"{e}; Fast DDS then runs with its defaults, "
                                                                 f"which lose camera-sized frames. {LOAD_DDS_ENV}"))
        else:
            found.append(_profile_finding(transports, relative=not Path(profile_file).is_absolute()))
    carries_large = transports is not None and transports.default_participant and \
        (transports.shm_segment or 0) >= FRAME_BYTES

    localhost = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST" or \
        environ.get("ROS_LOCALHOST_ONLY", "") == "1"
    if localhost and not carries_large:
        found.append((WARN, "ROS_AUTOMATIC_DISCOVERY_RANGE",
                      "LOCALHOST without a shared-memory profile that holds a camera frame: large images between "
                      f"processes will be lost (measured: 0-1 of 20 512x1024 rgb8 frames); {LOAD_DDS_ENV}"))
    elif localhost:
        found.append((OK, "ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST: discovery stays on this machine, the "
                                                           "profile's shared memory carries the frames"))
    else:
        found.append((INFO, "ROS_AUTOMATIC_DISCOVERY_RANGE",
                      f"{environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') or 'not set (SUBNET)'}: nodes on other hosts "
                      "with the same ROS_DOMAIN_ID see this one; frames to them go over UDP"))

    builtin = environ.get("FASTDDS_BUILTIN_TRANSPORTS", "")
    if builtin:
        if transports is not None and not transports.builtin_transports:
            found.append((INFO, "FASTDDS_BUILTIN_TRANSPORTS", f"{builtin}: ignored, the profile turns the builtin "
                                                              "transports off"))
        elif builtin.upper().startswith("LARGE_DATA") and localhost:
            found.append((FAIL, "FASTDDS_BUILTIN_TRANSPORTS",
                          f"{builtin} together with the LOCALHOST range carries camera-sized frames no better than "
                          "the defaults (measured: 1 of 20 512x1024 rgb8 frames; 20 of 20 without LOCALHOST); unset "
                          f"it and {LOAD_DDS_ENV}"))
        else:
            found.append((INFO, "FASTDDS_BUILTIN_TRANSPORTS", builtin))
    found.append(_socket_buffer_finding(socket_limits, transports))
    return found


def _profile_finding(transports, relative: bool) -> tuple[str, str, str]:
    where = str(transports.path)
    if not transports.default_participant:
        return (WARN, "FASTDDS_DEFAULT_PROFILES_FILE",
                f"{where} has no <participant is_default_profile=\"true\">, so ROS 2 nodes do not use its "
                f"transports; {LOAD_DDS_ENV}")
    if (transports.shm_segment or 0) < FRAME_BYTES:
        have = f"a {_mb(transports.shm_segment)} segment" if transports.shm_segment else "no shared-memory transport"
        return (WARN, "FASTDDS_DEFAULT_PROFILES_FILE",
                f"{where} has {have}; a 1920x1080 rgb8 frame ({_mb(FRAME_BYTES)}) then goes over UDP in fragments "
                "and is lost when a fragment is (best-effort camera topics); use a shared-memory transport with a "
                "segment of several frames, as params/fastdds.xml does (64 MB)")
    detail = f"{where}: shared-memory segment {_mb(transports.shm_segment)}, holds a 1920x1080 rgb8 frame"
    if relative:
        detail += (f" (a relative path: found from {Path.cwd()}; a process started in another folder does not find "
                   f"it, export FASTDDS_DEFAULT_PROFILES_FILE={transports.path.resolve()} for those)")
    return (OK, "FASTDDS_DEFAULT_PROFILES_FILE", detail)


def _socket_buffer_finding(limits: Mapping[str, int | None], transports) -> tuple[str, str, str]:
    rmem, wmem = limits.get("rmem_max"), limits.get("wmem_max")
    if rmem is None or wmem is None:
        return (INFO, "socket buffers", "net.core.rmem_max / wmem_max not readable here; frames sent over UDP "
                                        f"need buffers of at least {_mb(FRAME_BYTES)}")
    sizes = f"net.core.rmem_max={rmem}, wmem_max={wmem}"
    if min(rmem, wmem) < FRAME_BYTES:
        return (WARN, "socket buffers",
                f"{sizes}: below one 1920x1080 rgb8 frame ({_mb(FRAME_BYTES)}). A frame that goes over UDP (to other "
                "hosts, or between containers that do not share /dev/shm) then arrives only while the receiving "
                "thread keeps draining the socket, and best-effort camera topics drop every frame that lost a "
                "fragment (measured on loopback: 0 of 20 512x1024 frames with the 212 KB default, 20 of 20 "
                f"1920x1080 frames with 4 MB on an idle machine); {SYSCTL_FIX}")
    asked = transports.udp_buffers if transports is not None else None
    if asked is not None and min(asked) == 0:
        default = limits.get("rmem_default")
        return (WARN, "socket buffers",
                f"{sizes}, but the profile's UDP transport asks for no size, so it gets net.core.rmem_default="
                f"{default}: set sendBufferSize and receiveBufferSize (params/fastdds.xml asks for "
                f"{RECOMMENDED_SOCKET_BUFFER})")
    return (OK, "socket buffers", f"{sizes}: room for a 1920x1080 rgb8 frame over UDP")


def check_dds(report: Report, environ: Mapping[str, str] | None = None,
              net_core: Path = Path("/proc/sys/net/core"), live: bool = False) -> None:
    if not _findable("rclpy"):
        report.line(INFO, "DDS", "rclpy not importable: no ROS 2 node runs here, DDS settings not checked")
        return
    print("DDS settings of this shell (a camera driver or `ros2 bag play` started from it gets them):")
    for status, what, detail in dds_findings(os.environ if environ is None else environ,
                                             read_socket_limits(net_core)):
        report.line(status, what, detail)
    if live:
        report.line(*dds_live_finding(os.environ if environ is None else environ))


def check_shared_memory(report: Report, clean: bool, shm_dir: Path | None = None) -> None:
    """/dev/shm is RAM: segments of killed DDS processes (64 MB each with params/fastdds.xml) add up."""
    from densehybrid_ros.ros.fastdds_shm import SHM_DIR, remove_stale_segments, stale_segments

    folder = SHM_DIR if shm_dir is None else shm_dir
    if clean:
        report.line(OK, "Fast DDS shared memory", remove_stale_segments(folder).summary())
        return
    stale = stale_segments(folder)
    if stale:
        size = sum(size for _, size in stale)
        report.line(WARN, "Fast DDS shared memory",
                    f"{len(stale)} segments of dead processes hold {size / 1e6:.0f} MB of RAM in {folder}; "
                    "`densehybrid doctor --clean-shm` removes them (the node also does at start-up)")
    else:
        report.line(OK, "Fast DDS shared memory", f"no segment of a dead process in {folder}")


def dds_live_finding(environ: Mapping[str, str], width: int = 1920, height: int = 1080, frames: int = 10,
                     timeout: float = 60.0) -> tuple[str, str, str]:
    """Publish `frames` frames at 10 Hz from one process to another (densehybrid_ros.ros.camera_stream) with the
    DDS settings in `environ`, on a topic of its own, and count what arrives. Best effort, like a camera driver."""
    import json
    import signal
    import subprocess

    what = f"DDS between processes ({width}x{height} rgb8)"
    topic = f"/densehybrid_doctor_{os.getpid()}/image"
    cmd = [sys.executable, "-m", "densehybrid_ros.ros.camera_stream"]
    env = {**environ, "PYTHONUNBUFFERED": "1"}
    listener = subprocess.Popen([*cmd, "listen", "--topic", topic], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        listener.stdout.readline()  # it is subscribed once it says so
        sender = subprocess.run([*cmd, "publish", "--topic", topic, "--width", str(width), "--height", str(height),
                                 "--frames", str(frames), "--rate", "10", "--wait", "20"],
                                env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        listener.send_signal(signal.SIGINT)
        try:
            heard, complaint = listener.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            listener.kill()
            heard, complaint = "", "it did not stop within 20 s of SIGINT and was killed"
    if sender.returncode != 0:
        return (FAIL, what, f"the publisher failed: {sender.stderr.strip().splitlines()[-1:] or sender.returncode}")
    try:
        sent = json.loads(sender.stdout.strip().splitlines()[-1])["sent"]
        received = json.loads(heard.strip().splitlines()[-1])["received"]
    except (IndexError, KeyError, ValueError):
        return (FAIL, what, f"no summary from the listener (exit code {listener.returncode}): "
                            f"{heard.strip()[-300:]!r}; {complaint.strip()[-300:]!r}")
    if received < sent:
        return (FAIL, what, f"{received} of {sent} frames arrived: a camera driver started from this shell would "
                            f"lose frames on their way to the detector; {LOAD_DDS_ENV}")
    return (OK, what, f"{received} of {sent} frames arrived")


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
    from densehybrid_ros.runtime.selection import doctor_runtime_choice
    doctor_runtime_choice(report, OK, INFO)
    check_ros(report)
    check_models(report, args.models if args.models is not None else default_models_dir(), not args.no_infer, ort_ok)
    from densehybrid_ros.cli.doctor_tensorrt import check_tensorrt
    check_tensorrt(report, args.models if args.models is not None else default_models_dir())
    check_dds(report, live=args.dds_live)
    check_shared_memory(report, args.clean_shm)
    warned = f"; {report.warnings} warning(s)" if report.warnings else ""
    if report.failures:
        print(f"{report.failures} problem(s) found{warned}")
        return 1
    print(f"all required parts present{warned}")
    return 0
