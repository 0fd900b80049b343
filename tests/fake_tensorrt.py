"""FAKE `tensorrt` and `pycuda.driver` modules, ONLY for testing the project's control flow on machines without a GPU.

What they are for: checking what the project calls, in which order, with which settings, and what it does when a
call fails (parser errors, a failed build, an engine TensorRT cannot deserialize, calibration cache reuse, freeing
every CUDA resource). They never stand for "TensorRT works": nothing here optimises or runs a network. The fake
parser reads the real ONNX graph's structure (nodes, tensors, dtypes) so the score-head pinning is exercised on the
real graph, and the fake execution context writes a fixed, input-derived pattern into the outputs so the tests can
check that the host/device copies carry the right bytes to the right place.

Install with `install(monkeypatch)`; every call is appended to `CALLS` as (name, detail).
"""
from __future__ import annotations

import ctypes
import itertools
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx

CALLS: list[tuple[str, object]] = []
FAKE_GPU = "FAKE GPU (test double, not a device)"


def _log(name: str, detail: object = None) -> None:
    CALLS.append((name, detail))


# -- fake pycuda.driver ------------------------------------------------------------------------------------------

_DEVICE_MEMORY: dict[int, bytearray] = {}
_next_ptr = itertools.count(0x1000, 0x100000)
LIVE = {"device": set(), "host": set(), "contexts": 0}


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        self.ptr = next(_next_ptr)
        _DEVICE_MEMORY[self.ptr] = bytearray(nbytes)
        LIVE["device"].add(self.ptr)
        _log("mem_alloc", nbytes)

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        LIVE["device"].discard(self.ptr)
        _DEVICE_MEMORY.pop(self.ptr, None)
        _log("mem_free", self.ptr)


def _host_allocation(nbytes: int):
    base = ctypes.c_uint8 * max(nbytes, 1)

    def free(self) -> None:
        LIVE["host"].discard(id(self))
        _log("host_free", nbytes)

    alloc = type("HostAllocation", (base,), {"free": free})()
    LIVE["host"].add(id(alloc))
    return alloc


def make_pycuda(device_count: int = 1) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")

    class Device:
        @staticmethod
        def count() -> int:
            return device_count

        def __init__(self, i: int) -> None:
            self.i = i

        def name(self) -> str:
            return FAKE_GPU

        def compute_capability(self):
            return (8, 7)

        def retain_primary_context(self):
            LIVE["contexts"] += 1
            return _Context()

    class _Context:
        def push(self) -> None:
            _log("ctx_push")

        def detach(self) -> None:
            LIVE["contexts"] -= 1
            _log("ctx_detach")

    class Context:
        @staticmethod
        def pop() -> None:
            _log("ctx_pop")

    class Stream:
        def __init__(self) -> None:
            self.handle = 0xABC
            _log("stream")

        def synchronize(self) -> None:
            _log("synchronize")

    def pagelocked_empty(shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        return np.ndarray(shape, dtype, buffer=_host_allocation(nbytes))

    def _dev(buf) -> bytearray:
        return _DEVICE_MEMORY[int(buf)]

    def memcpy_htod(dest, src) -> None:
        data = np.ascontiguousarray(src).tobytes()
        _dev(dest)[:len(data)] = data
        _log("htod", len(data))

    def memcpy_htod_async(dest, src, stream=None) -> None:
        data = np.ascontiguousarray(src).tobytes()
        _dev(dest)[:len(data)] = data
        _log("htod_async", len(data))

    def memcpy_dtoh_async(dest, src, stream=None) -> None:
        n = dest.nbytes
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(_dev(src)[:n]), np.uint8)
        _log("dtoh_async", n)

    drv.init = lambda: _log("cuda_init")
    drv.Device, drv.Context, drv.Stream = Device, Context, Stream
    drv.pagelocked_empty, drv.mem_alloc = pagelocked_empty, DeviceAllocation
    drv.memcpy_htod, drv.memcpy_htod_async, drv.memcpy_dtoh_async = memcpy_htod, memcpy_htod_async, memcpy_dtoh_async
    drv.get_driver_version = lambda: 12020
    drv.get_version = lambda: (12, 2, 0)
    return drv


# -- fake tensorrt -------------------------------------------------------------------------------------------------

class _Enum:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __int__(self) -> int:
        return 0


class _Namespace:
    def __init__(self, *names: str) -> None:
        for n in names:
            setattr(self, n, _Enum(n))


ONNX_DTYPES = {1: "float32", 2: "uint8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}
_GRAPHS: dict[str, object] = {}


def _inferred_graph(path: str):
    """The ONNX graph with inferred tensor types (what TensorRT's parser knows about each tensor), cached per file."""
    key = f"{path}:{Path(path).stat().st_mtime_ns}"
    if key not in _GRAPHS:
        _GRAPHS[key] = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    return _GRAPHS[key]


def make_tensorrt(version: str = "10.3.0", unsupported_ops: tuple[str, ...] = (), build_fails: bool = False,
                  num_dla_cores: int = 0) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    dtypes = {n: _Enum(n) for n in ("float32", "float16", "uint8", "int32", "int64", "bool")}
    for n, d in dtypes.items():
        setattr(trt, n, d)
    trt.nptype = lambda d: np.dtype({"bool": "bool"}.get(d.name, d.name))
    trt.MemoryPoolType = _Namespace("WORKSPACE")
    trt.BuilderFlag = _Namespace("FP16", "INT8", "GPU_FALLBACK", "OBEY_PRECISION_CONSTRAINTS",
                                 "PREFER_PRECISION_CONSTRAINTS")
    trt.DeviceType = _Namespace("GPU", "DLA")
    trt.TensorIOMode = _Namespace("INPUT", "OUTPUT")
    trt.NetworkDefinitionCreationFlag = _Namespace("EXPLICIT_BATCH")

    class Logger:
        VERBOSE, WARNING = "VERBOSE", "WARNING"

        def __init__(self, level=None) -> None:
            self.level = level

    class Tensor:
        def __init__(self, name: str, dtype, shape) -> None:
            self.name, self.dtype, self.shape = name, dtype, tuple(shape)

    class Layer:
        def __init__(self, node, tensors) -> None:
            self.name, self.type = node.name, _Enum(node.op_type)
            self._in = [tensors[t] for t in node.input if t in tensors]
            self._out = [tensors[t] for t in node.output]
            self.precision = None
            self.output_types = {}
            self.num_inputs, self.num_outputs = len(self._in), len(self._out)

        def get_input(self, i):
            return self._in[i]

        def get_output(self, i):
            return self._out[i]

        def set_output_type(self, i, dtype) -> None:
            self.output_types[i] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.layers, self.inputs, self.outputs = [], [], []
            _log("create_network", flags)

        num_layers = property(lambda self: len(self.layers))
        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_layer(self, i):
            return self.layers[i]

        def get_input(self, i):
            return self.inputs[i]

    class ParserError:
        def __init__(self, index: int, node) -> None:
            self._i, self._node = index, node

        def code(self):
            return _Enum("UNSUPPORTED_NODE")

        def desc(self):
            return f"No importer registered for op: {self._node.op_type}"

        def node(self):
            return self._i

        def node_name(self):
            return self._node.name

        def node_operator(self):
            return self._node.op_type

    class OnnxParser:
        def __init__(self, network, logger) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, path: str) -> bool:
            _log("parse_from_file", path)
            g = _inferred_graph(path)
            info = {v.name: v for v in list(g.input) + list(g.output) + list(g.value_info)}
            kinds = {}
            for v in info.values():
                kinds[v.name] = ONNX_DTYPES.get(v.type.tensor_type.elem_type, "float32")
            for init in g.initializer:
                kinds[init.name] = ONNX_DTYPES.get(init.data_type, "float32")
            tensors = {}

            def tensor(name: str, guess: str):
                if name not in tensors:
                    dims = []
                    if name in info:
                        dims = [d.dim_value if d.dim_value else -1 for d in info[name].type.tensor_type.shape.dim]
                    tensors[name] = Tensor(name, dtypes[kinds.get(name, guess)], dims)
                return tensors[name]

            initialisers = {i.name for i in g.initializer}
            for v in g.input:
                self.network.inputs.append(tensor(v.name, "float32"))
            int_ops = {"Shape", "ArgMax", "Equal", "ConstantOfShape"}
            for i, node in enumerate(g.node):
                if node.op_type in unsupported_ops:
                    self.errors.append(ParserError(i, node))
                    return False
                for t in node.input:
                    if t and t not in initialisers:
                        tensor(t, "float32")
                guess = "int64" if node.op_type in int_ops else "float32"
                if node.op_type == "Constant":
                    continue
                for t in node.output:
                    tensor(t, guess)
                self.network.layers.append(Layer(node, tensors))
            self.network.outputs = [tensors[v.name] for v in g.output]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data) or b"fake-timing-cache"

        def serialize(self) -> bytes:
            return self.data

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags, self.pool, self.profiles = set(), {}, []
            self.int8_calibrator = self.progress_monitor = None
            self.default_device_type, self.DLA_core = trt.DeviceType.GPU, -1
            self._timing = None
            self.calibration_profile = None

        def set_memory_pool_limit(self, pool, size) -> None:
            self.pool[pool.name] = size

        def set_flag(self, flag) -> None:
            self.flags.add(flag.name)
            _log("set_flag", flag.name)

        def add_optimization_profile(self, p) -> None:
            self.profiles.append(p)

        def set_calibration_profile(self, p) -> None:
            self.calibration_profile = p

        def create_timing_cache(self, data: bytes):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            self._timing = cache
            return cache.data != b"foreign"

        def get_timing_cache(self):
            return self._timing

    class Builder:
        def __init__(self, logger) -> None:
            self.platform_has_fast_fp16 = True
            self.platform_has_fast_int8 = True
            self.num_DLA_cores = num_dla_cores

        def create_network(self, flags: int = 0):
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            _log("build_serialized_network", sorted(config.flags))
            if config.progress_monitor is not None:
                m = config.progress_monitor
                m.phase_start("Building engine", None, 2)
                m.step_complete("Building engine", 0)
                m.step_complete("Building engine", 1)
                m.phase_finish("Building engine")
            cal = config.int8_calibrator
            if cal is not None and "INT8" in config.flags:
                cached = cal.read_calibration_cache()
                if cached is None:
                    n = 0
                    while cal.get_batch([network.inputs[0].name]) is not None:
                        n += 1
                    cal.write_calibration_cache(b"TRT-FAKE-EntropyCalibration2\nbatches:%d\n" % n)
            if build_fails:
                return None
            pinned = [layer.name for layer in network.layers if layer.precision is trt.float32]
            profile = config.profiles[0].shapes if config.profiles else {}
            desc = {"fake": True, "version": version, "flags": sorted(config.flags), "pinned": pinned,
                    "inputs": [(t.name, t.dtype.name, list(t.shape)) for t in network.inputs],
                    "outputs": [(t.name, t.dtype.name, list(t.shape)) for t in network.outputs],
                    "profile": {k: [list(s) for s in v] for k, v in profile.items()},
                    "dla_core": config.DLA_core}
            return json.dumps(desc).encode()

    class ExecutionContext:
        def __init__(self, engine) -> None:
            self.engine, self.addresses, self.input_shape = engine, {}, None

        def set_input_shape(self, name, shape) -> bool:
            self.input_shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.engine.shape_for(name, self.input_shape)

        def set_tensor_address(self, name, ptr) -> bool:
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle) -> bool:
            _log("execute_async_v3", stream_handle)
            (name, _, _), = self.engine.desc["inputs"]
            shape = self.input_shape or tuple(self.engine.desc["inputs"][0][2])
            n = int(np.prod(shape))
            rgb = np.frombuffer(bytes(_DEVICE_MEMORY[self.addresses[name]][:n]), np.uint8).reshape(shape)
            # The fixed pattern the tests check against: derived from the input, per output.
            pattern = {"class_id": (rgb[..., 0] // 20) % 14,
                       "anomaly_score": rgb[..., 1].astype(np.float32) / 10 - 5,
                       "confidence": rgb[..., 2].astype(np.float32) / 255}
            for out_name, dtype, _ in self.engine.desc["outputs"]:
                out_shape = self.get_tensor_shape(out_name)
                value = pattern.get(out_name)
                arr = (np.asarray(value, dtype) if value is not None else np.zeros(out_shape, dtype)).reshape(out_shape)
                data = arr.tobytes()
                _DEVICE_MEMORY[self.addresses[out_name]][:len(data)] = data
            return True

    class Engine:
        def __init__(self, desc) -> None:
            self.desc = desc
            self.names = [n for n, _, _ in desc["inputs"]] + [n for n, _, _ in desc["outputs"]]

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            inputs = [n for n, _, _ in self.desc["inputs"]]
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def _entry(self, name):
            return next(e for e in self.desc["inputs"] + self.desc["outputs"] if e[0] == name)

        def get_tensor_dtype(self, name):
            return dtypes[self._entry(name)[1]]

        def get_tensor_shape(self, name):
            return tuple(self._entry(name)[2])

        def get_tensor_profile_shape(self, name, profile):
            return [tuple(s) for s in self.desc["profile"][name]]

        def shape_for(self, name, input_shape):
            shape = list(self._entry(name)[2])
            if input_shape is None or -1 not in shape:
                return tuple(shape)
            h, w = input_shape[1], input_shape[2]
            if name in ("logits",):
                return (1, shape[1], h // 4, w // 4)
            if name == "ood_logit":
                return (1, h // 4, w // 4)
            return (1, h, w)

        def create_execution_context(self):
            _log("create_execution_context")
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger) -> None:
            self.DLA_core = -1  # IRuntime's default: no DLA core chosen

        def deserialize_cuda_engine(self, data: bytes):
            _log("deserialize_cuda_engine", len(data))
            try:
                desc = json.loads(bytes(data))
            except (ValueError, UnicodeDecodeError):
                return None  # what TensorRT does with an engine it cannot read
            if not (desc.get("fake") and desc.get("version") == version):
                return None
            engine = Engine(desc)
            engine.runs_on_dla_core = self.DLA_core  # fixed at deserialization, as IRuntime::setDLACore says
            return engine

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.IInt8EntropyCalibrator2, trt.IProgressMonitor = IInt8EntropyCalibrator2, IProgressMonitor
    return trt


def install(monkeypatch, **options) -> tuple[types.ModuleType, types.ModuleType]:
    """Put the fakes in sys.modules for one test (monkeypatch undoes it); clears the call log."""
    CALLS.clear()
    LIVE["device"].clear()
    LIVE["host"].clear()
    LIVE["contexts"] = 0
    trt = make_tensorrt(**{k: v for k, v in options.items() if k != "device_count"})
    drv = make_pycuda(options.get("device_count", 1))
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    return trt, drv


def calls(name: str) -> list:
    return [d for n, d in CALLS if n == name]


def names() -> list[str]:
    return [n for n, _ in CALLS]


def engine_description(path: Path) -> dict:
    return json.loads(Path(path).read_bytes())
