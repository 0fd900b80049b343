"""What this machine offers for TensorRT: library versions, the GPU and its compute capability, the Jetson model.

Everything here is a probe that never raises: a missing library or device is a value (None / a reason string),
because the same facts feed three readers that must all work on a CPU-only machine: the engine cache key
(`engine_cache.py`), `densehybrid doctor` and the GPU check report. Nothing here imports tensorrt or pycuda at
module import time.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

# Jetson modules have no nvidia-smi on older JetPacks; their compute capability follows from the SoC.
# Order matters: "Orin Nano" must match Orin before a bare "Nano" (the 2019 Jetson Nano, Maxwell).
JETSON_COMPUTE_CAPABILITY = (("orin", "8.7"), ("xavier", "7.2"), ("tx2", "6.2"), ("tx1", "5.3"),
                             ("nano", "5.3"))
NVINFER_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so")


@dataclass
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"
    source: str               # which probe answered: pycuda, cuda-python, nvidia-smi, jetson device tree


@dataclass
class JetsonInfo:
    model: str                # /proc/device-tree/model
    l4t_release: str | None   # from /etc/nv_tegra_release, e.g. "35.4.1"
    power_mode: str | None    # `nvpmodel -q`, e.g. "MAXN (mode 0)"


@dataclass
class CudaEnvironment:
    tensorrt: str | None = None
    tensorrt_error: str | None = None
    pycuda: str | None = None
    pycuda_error: str | None = None
    cuda_python: str | None = None
    cuda_driver: str | None = None
    cuda_runtime: str | None = None
    gpu: GpuInfo | None = None
    gpu_error: str | None = None
    jetson: JetsonInfo | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _try_import(name: str):
    try:
        return importlib.import_module(name), None
    except Exception as e:  # broken CUDA installs raise OSError/RuntimeError from these packages, not ImportError
        return None, f"{type(e).__name__}: {e}"


def tensorrt_version() -> str | None:
    """TensorRT version from the Python bindings, else from libnvinfer itself (what onnxruntime's EP loads)."""
    trt, _ = _try_import("tensorrt")
    if trt is not None and getattr(trt, "__version__", None):
        return short_version(trt.__version__)
    return nvinfer_library_version()


def short_version(version: str | None) -> str | None:
    """major.minor.patch: the bindings say '8.6.1.post1' or '10.3.0.26', the library '8.6.1'; engines are tied to
    the library release, so keys compare these three numbers."""
    if not version:
        return None
    parts = re.findall(r"\d+", str(version))
    return ".".join(parts[:3]) if parts else str(version)


def nvinfer_library_version() -> str | None:
    """`getInferLibVersion()` of the installed libnvinfer: 8.x encodes M*1000+m*100+p, 10.x M*10000+m*100+p."""
    for lib in NVINFER_LIBRARIES:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        try:
            fn = handle.getInferLibVersion
            fn.restype = ctypes.c_int32
            return decode_nvinfer_version(int(fn()))
        except AttributeError:
            continue
    return None


def decode_nvinfer_version(v: int) -> str:
    if v >= 10000:  # TensorRT 10 widened the encoding
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"


def tensorrt_major(version: str | None) -> int | None:
    m = re.match(r"(\d+)", version or "")
    return int(m.group(1)) if m else None


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def probe_gpu_pycuda(cuda) -> tuple[GpuInfo | None, str | None, str | None]:
    """(gpu, driver version, error) through pycuda.driver (no context is created)."""
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return None, None, "pycuda sees no CUDA device"
        dev = cuda.Device(0)
        major, minor = dev.compute_capability()
        return GpuInfo(str(dev.name()), f"{major}.{minor}", "pycuda"), _cuda_version(cuda.get_driver_version()), None
    except Exception as e:
        return None, None, f"pycuda cannot query the GPU: {type(e).__name__}: {e}"


def probe_gpu_cuda_python() -> tuple[GpuInfo | None, str | None, str | None]:
    cudart = cuda_python_runtime()
    if cudart is None:
        return None, None, "cuda-python not installed"
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count == 0:
            return None, None, f"cuda-python: no CUDA device ({err})"
        err, prop = cudart.cudaGetDeviceProperties(0)
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        _, runtime = cudart.cudaRuntimeGetVersion()
        return GpuInfo(name, f"{prop.major}.{prop.minor}", "cuda-python"), _cuda_version(int(runtime)), None
    except Exception as e:
        return None, None, f"cuda-python cannot query the GPU: {type(e).__name__}: {e}"


def cuda_python_runtime():
    """The cuda-python runtime module under its new (cuda.bindings.runtime) or legacy (cuda.cudart) name."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        mod, _ = _try_import(name)
        if mod is not None:
            return mod
    return None


def probe_gpu_nvidia_smi() -> tuple[GpuInfo | None, str | None, str | None]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, None, "nvidia-smi not found"
    try:
        out = subprocess.run([exe, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return None, None, f"nvidia-smi failed: {e}"
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3:
        return None, None, f"nvidia-smi found no GPU ({(out.stderr or out.stdout).strip()[:200]})"
    return GpuInfo(parts[0], parts[1], "nvidia-smi"), None, None


def read_jetson(root: Path = Path("/")) -> JetsonInfo | None:
    """The Jetson model, L4T release and power mode; None on anything that is not a Jetson."""
    release_file = root / NV_TEGRA_RELEASE.relative_to("/")
    model_file = root / DEVICE_TREE_MODEL.relative_to("/")
    model = None
    if model_file.is_file():
        model = model_file.read_bytes().decode(errors="replace").rstrip("\x00").strip()
    if not release_file.is_file() and not (model and "jetson" in model.lower()):
        return None
    release = parse_l4t_release(release_file.read_text(errors="replace")) if release_file.is_file() else None
    return JetsonInfo(model=model or "unknown Jetson", l4t_release=release, power_mode=nvpmodel_mode())


def parse_l4t_release(text: str) -> str | None:
    """'# R35 (release), REVISION: 4.1, ...' -> '35.4.1'."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def nvpmodel_mode() -> str | None:
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out.stdout)


def parse_nvpmodel(text: str) -> str | None:
    """`nvpmodel -q` prints 'NV Power Mode: MAXN' then the mode number."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    number = re.search(r"^\s*(\d+)\s*$", text[m.end():], re.MULTILINE)
    return f"{m.group(1)} (mode {number.group(1)})" if number else m.group(1)


def jetson_compute_capability(model: str) -> str | None:
    low = model.lower()
    for key, cc in JETSON_COMPUTE_CAPABILITY:
        if key in low:
            return cc
    return None


def probe(include_gpu: bool = True) -> CudaEnvironment:
    """Everything at once. GPU probes in order: pycuda, cuda-python, nvidia-smi, the Jetson device tree."""
    env = CudaEnvironment()
    trt, env.tensorrt_error = _try_import("tensorrt")
    if trt is not None:
        env.tensorrt = short_version(getattr(trt, "__version__", None)) or "unknown"
    else:
        env.tensorrt = nvinfer_library_version()
        if env.tensorrt:
            env.notes.append(f"libnvinfer {env.tensorrt} is installed but the tensorrt Python bindings are not "
                             "importable")
    cuda, env.pycuda_error = _try_import("pycuda.driver")
    if cuda is not None:
        env.pycuda = _dist_version("pycuda") or "installed"
    env.cuda_python = _dist_version("cuda-python") or _dist_version("cuda-bindings")
    env.jetson = read_jetson()
    if not include_gpu:
        return env
    errors = []
    for name, fn in (("pycuda", lambda: probe_gpu_pycuda(cuda) if cuda is not None else (None, None, "no pycuda")),
                     ("cuda-python", probe_gpu_cuda_python), ("nvidia-smi", probe_gpu_nvidia_smi)):
        gpu, version, err = fn()
        if name == "pycuda" and version:
            env.cuda_driver = version
        if name == "cuda-python" and version:
            env.cuda_runtime = version
        if gpu is not None:
            env.gpu = gpu
            break
        errors.append(err)
    if env.gpu is None and env.jetson is not None:
        cc = jetson_compute_capability(env.jetson.model)
        if cc:
            env.gpu = GpuInfo(env.jetson.model, cc, "jetson device tree")
    if env.gpu is None:
        env.gpu_error = "; ".join(e for e in errors if e)
    if cuda is not None and env.cuda_runtime is None:
        try:
            env.cuda_runtime = ".".join(str(x) for x in cuda.get_version())  # the CUDA pycuda was built for
        except Exception:
            pass
    return env
