"""`backend: auto`: the fastest runtime this machine offers for the exported graph.

The order, from side-by-side measurements (docs/QUANTIZATION.md):
1. tensorrt: a CUDA GPU with the tensorrt bindings and a CUDA binding (pycuda or cuda-python): engines built for
   the device, FP16/INT8 on tensor cores. Not for the INT8 QDQ graphs of `densehybrid quantize`: their uint8
   activations have zero points, and TensorRT takes only symmetric quantization (the rules below then apply; the
   GPU's INT8 engine is built from the float model with engine_precision: int8).
2. openvino, when it imports, on an Intel x86-64 CPU for every graph, and on other x86-64 CPUs for INT8 (QDQ)
   graphs. On an Intel Xeon OpenVINO ran the FP32 graph in 0.74x of onnxruntime's time (2 threads). On an AMD EPYC
   (Zen 4) the FP32 graph of the current exporter cost the same CPU time on both (1.00-1.05x), while the INT8 graph
   ran in 0.36-0.39x of onnxruntime FP32's CPU time on OpenVINO against 0.52-0.55x on onnxruntime. On ARM
   (Jetson CPUs, Raspberry Pi) onnxruntime's kernels are the better-tuned ones.
3. onnxruntime otherwise (and it still picks its own TensorRT/CUDA providers when its GPU build is installed).

`choose_backend` is pure over a `MachineFacts` (tested with facts of other machines); `machine_facts()` probes
this one without importing tensorrt unless its module is present.
"""
from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
X86_MACHINES = ("x86_64", "amd64", "i686", "i386")
INTEL = "GenuineIntel"


@dataclass(frozen=True)
class MachineFacts:
    arch: str                      # platform.machine(), lower case
    cpu_vendor: str                # /proc/cpuinfo vendor_id ("GenuineIntel", "AuthenticAMD", "" when unknown)
    cpu_model: str
    openvino: str | None           # version when importable
    tensorrt_missing: tuple[str, ...]  # what TensorRT still needs here (empty: usable)
    openvino_error: str | None = None


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def _cpuinfo(field: str, text: str) -> str:
    for line in text.splitlines():
        if line.startswith(field):
            return line.split(":", 1)[1].strip()
    return ""


def machine_facts() -> MachineFacts:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    openvino, openvino_error = None, None
    if importlib.util.find_spec("openvino") is not None:
        from densehybrid_ros.runtime.openvino_backend import OpenVINOUnavailable, load_openvino

        try:
            openvino = load_openvino().__version__.split("-")[0]
        except OpenVINOUnavailable as e:
            openvino_error = str(e)
    if importlib.util.find_spec("tensorrt") is not None:
        from densehybrid_ros.runtime.tensorrt_backend import missing_requirements

        trt_missing = tuple(missing_requirements())
    else:
        trt_missing = ("tensorrt",)
    return MachineFacts(arch=platform.machine().lower(), cpu_vendor=_cpuinfo("vendor_id", cpuinfo),
                        cpu_model=_cpuinfo("model name", cpuinfo) or platform.processor(), openvino=openvino,
                        tensorrt_missing=trt_missing, openvino_error=openvino_error)


def choose_backend(facts: MachineFacts, quantized: bool = False) -> Choice:
    """The runtime `backend: auto` uses on a machine with these facts for a float (or, `quantized`, an INT8 QDQ)
    graph, and why (shown in doctor and at configure)."""
    cpu = facts.cpu_model or facts.cpu_vendor or facts.arch
    if not facts.tensorrt_missing:
        if not quantized:
            return Choice("tensorrt", "a CUDA GPU with TensorRT and a CUDA binding")
        # The QDQ graphs of `densehybrid quantize` have uint8 activations with zero points, which TensorRT's ONNX
        # parser refuses (symmetric quantization only); a TensorRT INT8 engine is built from the float model.
        if facts.arch not in X86_MACHINES:
            return Choice("onnxruntime", f"INT8 QDQ graph on a CUDA machine ({cpu}): TensorRT takes only symmetric "
                                         "quantization; for INT8 on the GPU use the float model with "
                                         "engine_precision: int8")
    graph = "INT8" if quantized else "FP32"
    if facts.arch in X86_MACHINES:
        if facts.openvino is None:
            why = facts.openvino_error or "openvino is not installed (pip install -r requirements/openvino.txt)"
            return Choice("onnxruntime", f"x86-64 CPU ({cpu}) but {why}")
        if facts.cpu_vendor == INTEL or quantized:
            return Choice("openvino", f"{graph} graph on an x86-64 CPU ({cpu}) with openvino {facts.openvino}")
        return Choice("onnxruntime", f"FP32 graph on a non-Intel x86-64 CPU ({cpu}): OpenVINO is no faster there "
                                     "for FP32 (it is for INT8 graphs)")
    return Choice("onnxruntime", f"{facts.arch} CPU ({cpu}): onnxruntime's kernels; no TensorRT "
                                 f"(missing {', '.join(facts.tensorrt_missing)})")


def resolve_auto(backend: str, quantized: bool = False) -> tuple[str, str | None]:
    """(backend to load, reason) for a configured backend name: `auto` is resolved here, others pass through."""
    if backend != AUTO:
        return backend, None
    choice = choose_backend(machine_facts(), quantized)
    return choice.backend, choice.reason


def doctor_runtime_choice(report, ok: str, info: str) -> None:
    """`densehybrid doctor`: the OpenVINO install and what `backend: auto` picks on this machine."""
    facts = machine_facts()
    if facts.openvino is not None:
        report.line(ok, "openvino", f"{facts.openvino} (backend openvino available)")
    else:
        report.line(info, "openvino", facts.openvino_error or "not installed (optional, x86 CPUs: pip install -r "
                                                              "requirements/openvino.txt)")
    for quantized in (False, True):
        choice = choose_backend(facts, quantized)
        graphs = "INT8" if quantized else "FP32"
        report.line(ok, f"backend auto ({graphs} graphs)", f"{choice.backend}: {choice.reason}")
