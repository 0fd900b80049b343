"""The few CUDA calls the TensorRT path needs, over pycuda (the design's choice) or cuda-python when that is what
the machine has: a context, one stream, page-locked host buffers, device buffers, async copies, one synchronise.

Why an explicit context instead of `import pycuda.autoinit`: the node runs inference on a worker thread and may
configure and clean up many times; autoinit binds a context to the importing thread for the life of the process.
Here the device's primary context (the one the TensorRT runtime itself uses) is retained once, pushed around every
call that touches CUDA and released on `close()`, so every allocation has an owner that frees it.
"""
from __future__ import annotations

import ctypes
import importlib
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

CUDA_BINDINGS = ("pycuda", "cuda-python")


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call."""


def load_cuda_api(prefer: str = "pycuda", device: int = 0) -> "CudaApi":
    """pycuda when importable (or asked for), else cuda-python; CudaError naming both when neither works."""
    order = [prefer] + [b for b in CUDA_BINDINGS if b != prefer]
    errors = []
    for name in order:
        try:
            return PyCudaApi(device) if name == "pycuda" else CudaPythonApi(device)
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise CudaError("no CUDA Python binding importable (" + "; ".join(errors) + "); install pycuda "
                    "(make install-tensorrt) or cuda-python")


class CudaApi:
    """Interface; every method must be called between `activate()` enter and exit."""

    name = "cuda"

    @contextmanager
    def activate(self) -> Iterator[None]:
        yield

    def create_stream(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def pagelocked_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    def mem_alloc(self, nbytes: int) -> Any: ...
    def pointer(self, device_buffer: Any) -> int: ...
    def htod_async(self, device_buffer: Any, host: np.ndarray, stream: Any) -> None: ...
    def dtoh_async(self, host: np.ndarray, device_buffer: Any, stream: Any) -> None: ...
    def htod(self, device_buffer: Any, host: np.ndarray) -> None: ...
    def synchronize(self, stream: Any) -> None: ...
    def free(self, device_buffer: Any) -> None: ...
    def free_host(self, host: np.ndarray) -> None: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def close(self) -> None: ...


class PyCudaApi(CudaApi):
    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        cuda = importlib.import_module("pycuda.driver")
        self._cuda = cuda
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as e:
            raise CudaError(f"pycuda cannot initialise CUDA: {e}") from e
        if not 0 <= device < count:
            raise CudaError(f"CUDA device {device} requested, this machine has {count}")
        self._context = cuda.Device(device).retain_primary_context()

    @contextmanager
    def activate(self) -> Iterator[None]:
        if self._context is None:
            raise CudaError("CUDA context already released")
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def create_stream(self):
        return self._cuda.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def pagelocked_empty(self, shape, dtype):
        return self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def mem_alloc(self, nbytes: int):
        return self._cuda.mem_alloc(max(int(nbytes), 1))

    def pointer(self, device_buffer) -> int:
        return int(device_buffer)

    def htod_async(self, device_buffer, host, stream) -> None:
        self._cuda.memcpy_htod_async(device_buffer, host, stream)

    def dtoh_async(self, host, device_buffer, stream) -> None:
        self._cuda.memcpy_dtoh_async(host, device_buffer, stream)

    def htod(self, device_buffer, host) -> None:
        self._cuda.memcpy_htod(device_buffer, host)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def free(self, device_buffer) -> None:
        device_buffer.free()

    def free_host(self, host) -> None:
        base = getattr(host, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def destroy_stream(self, stream) -> None:
        pass  # pycuda frees a Stream with its last reference, inside a pushed context (close() drops it there)

    def close(self) -> None:
        if self._context is not None:
            self._context.detach()
            self._context = None


class CudaPythonApi(CudaApi):
    """NVIDIA's cuda-python runtime bindings (`cuda.bindings.runtime`, formerly `cuda.cudart`)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        from densehybrid_ros.runtime.cuda_env import cuda_python_runtime

        rt = cuda_python_runtime()
        if rt is None:
            raise ImportError("cuda-python is not installed")
        self._rt = rt
        self._device = device
        self._host_ptrs: dict[int, int] = {}
        self._check(rt.cudaSetDevice(device), "cudaSetDevice")

    def _check(self, result, call: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise CudaError(f"{call} failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    @contextmanager
    def activate(self) -> Iterator[None]:
        self._check(self._rt.cudaSetDevice(self._device), "cudaSetDevice")  # per thread in the runtime API
        yield

    def create_stream(self):
        return self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream) -> int:
        return int(stream)

    def pagelocked_empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
        arr = np.frombuffer(raw, np.uint8, count=int(np.prod(shape)) * dtype.itemsize).view(dtype).reshape(shape)
        self._host_ptrs[id(arr)] = ptr
        return arr

    def mem_alloc(self, nbytes: int):
        return int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def pointer(self, device_buffer) -> int:
        return int(device_buffer)

    def _copy(self, dst: int, src: int, nbytes: int, kind: str, stream=None) -> None:
        k = getattr(self._rt.cudaMemcpyKind, kind)
        if stream is None:
            self._check(self._rt.cudaMemcpy(dst, src, nbytes, k), "cudaMemcpy")
        else:
            self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, k, stream), "cudaMemcpyAsync")

    def htod_async(self, device_buffer, host, stream) -> None:
        self._copy(int(device_buffer), host.ctypes.data, host.nbytes, "cudaMemcpyHostToDevice", stream)

    def dtoh_async(self, host, device_buffer, stream) -> None:
        self._copy(host.ctypes.data, int(device_buffer), host.nbytes, "cudaMemcpyDeviceToHost", stream)

    def htod(self, device_buffer, host) -> None:
        host = np.ascontiguousarray(host)
        self._copy(int(device_buffer), host.ctypes.data, host.nbytes, "cudaMemcpyHostToDevice")

    def synchronize(self, stream) -> None:
        self._check(self._rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def free(self, device_buffer) -> None:
        self._check(self._rt.cudaFree(int(device_buffer)), "cudaFree")

    def free_host(self, host) -> None:
        ptr = self._host_ptrs.pop(id(host), None)
        if ptr is not None:
            self._check(self._rt.cudaFreeHost(ptr), "cudaFreeHost")

    def destroy_stream(self, stream) -> None:
        self._check(self._rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def close(self) -> None:
        pass


def device_info(api: CudaApi, device: int = 0) -> tuple[str | None, str | None]:
    """(GPU name, compute capability "M.m") through whichever binding `api` is; (None, None) if it cannot say."""
    if isinstance(api, PyCudaApi):
        dev = api._cuda.Device(device)
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"
    if isinstance(api, CudaPythonApi):
        prop = api._check(api._rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return name, f"{prop.major}.{prop.minor}"
    return None, None
