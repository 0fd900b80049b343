"""`densehybrid gpu-check` (`make gpu-check`): the one unattended verification of the TensorRT path on a CUDA machine.

Steps, each recorded in one Markdown report with what it could not do and why (a step that fails or cannot run
is reported and the next one still runs):

1. install the TensorRT extra (requirements/tensorrt.txt) unless tensorrt is already importable;
2. describe the machine (TensorRT, CUDA, GPU, Jetson power mode);
3. build FP32, FP16 and INT8 engines from the shipped ONNX (INT8 calibrated on rendered frames whose seeds are
   disjoint from every evaluation split), timing cache shared between the builds;
4. compare each engine with onnxruntime on the CPU on held-out frames (the synthetic test split): class agreement,
   anomaly-score correlation, and the AP / FPR95 of each against the ground truth, as differences in points;
5. time the engines against the ONNX graph and the semantic-only graph (same weights, no dataset-posterior head and
   score) on onnxruntime's best GPU provider, batch 1 at the model's input size, in interleaved rounds;
6. run the node with the FP16 engine over a replayed synthetic drive (`densehybrid bag make` + `bag evaluate`),
   when the bag tools are installed.

Acceptance (the same numbers the GPU tests require): FP16 class agreement >= 99.5%, INT8 >= 98%, anomaly-score AP
within 1 point of onnxruntime CPU. Budget: under 8 minutes on a datacentre GPU with the defaults.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

HELP = "CUDA machines: build FP32/FP16/INT8 engines, compare with onnxruntime CPU, time them, report"

PRECISIONS = ("fp32", "fp16", "int8")
THRESHOLDS = {"fp32": 0.999, "fp16": 0.995, "int8": 0.98}  # class agreement
MAX_AP_DIFFERENCE = 1.0  # points
ROOT = Path(__file__).resolve().parents[2]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=Path("models/densehybrid_lite0_synthetic.onnx"),
                        help="model to check (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"),
                        help="folder for engines, frames and the report (default ./gpu_check)")
    parser.add_argument("--data", type=Path, default=None,
                        help="held-out split with anomaly labels (default: data_cache/synthetic/test if present, "
                             "else a small test split rendered into --out)")
    parser.add_argument("--frames", type=int, default=56, help="held-out frames compared (default 56, 8 per condition)")
    parser.add_argument("--calib-frames", type=int, default=128, help="INT8 calibration frames (default 128)")
    parser.add_argument("--rounds", type=int, default=50, help="timed rounds per pipeline (default 50)")
    parser.add_argument("--drive-frames", type=int, default=60, help="frames of the replayed drive (default 60)")
    parser.add_argument("--no-install", action="store_true", help="do not pip install the TensorRT extra")
    parser.add_argument("--skip-node", action="store_true", help="skip the node replay step")


@dataclass
class Step:
    name: str
    status: str = "not run"   # done | failed | skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Comparison:
    """One candidate (an engine) against the reference (onnxruntime CPU) on the same frames."""

    class_agreement: float
    score_correlation: float
    ap_reference: float
    ap_candidate: float
    fpr95_reference: float
    fpr95_candidate: float

    @property
    def ap_difference(self) -> float:
        """Points (percentage points of AP)."""
        return 100 * (self.ap_candidate - self.ap_reference)

    @property
    def fpr95_difference(self) -> float:
        return 100 * (self.fpr95_candidate - self.fpr95_reference)


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[Step], Any]) -> Any:
        step = Step(name)
        self.steps.append(step)
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(step)
            if step.status == "not run":
                step.status = "done"
            return result
        except Exception as e:  # every step reports and the check goes on
            step.status = "failed"
            step.detail = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            return None
        finally:
            step.seconds = time.perf_counter() - t0
            print(f"   {step.status} ({step.seconds:.0f} s) {step.detail}", flush=True)


def compare(reference: list, candidate: list, anomaly: list[np.ndarray]) -> Comparison:
    """Class agreement over all pixels, Pearson correlation of anomaly scores, and AP/FPR95 of both against the
    anomaly labels (0 inlier, 1 anomaly, 255 void)."""
    from densehybrid_ros.evaluation.metrics import pixel_metrics

    if len(reference) != len(candidate) or len(reference) != len(anomaly) or not reference:
        raise ValueError(f"compare: {len(reference)} reference, {len(candidate)} candidate, {len(anomaly)} label maps")
    same = sum(int(np.count_nonzero(r.class_id == c.class_id)) for r, c in zip(reference, candidate))
    total = sum(r.class_id.size for r in reference)
    ref_scores = np.stack([r.anomaly_score for r in reference]).astype(np.float64)
    cand_scores = np.stack([c.anomaly_score for c in candidate]).astype(np.float64)
    corr = float(np.corrcoef(ref_scores.ravel(), cand_scores.ravel())[0, 1])
    labels = np.stack(anomaly)
    ref_m, cand_m = pixel_metrics(ref_scores, labels), pixel_metrics(cand_scores, labels)
    return Comparison(same / total, corr, ref_m.ap, cand_m.ap, ref_m.fpr95, cand_m.fpr95)


def acceptance(precision: str, c: Comparison) -> list[str]:
    """What fails the acceptance bar for this precision (empty: it passes)."""
    out = []
    need = THRESHOLDS[precision]
    if c.class_agreement < need:
        out.append(f"class agreement {100 * c.class_agreement:.2f}% < {100 * need:.1f}%")
    if abs(c.ap_difference) > MAX_AP_DIFFERENCE:
        out.append(f"AP differs by {c.ap_difference:+.2f} points (limit {MAX_AP_DIFFERENCE})")
    return out


def held_out_frames(data: Path | None, out: Path, frames: int, size: tuple[int, int]) -> tuple[list, str]:
    """(samples, description): evenly spaced frames of the test split, rendered into `out` when absent."""
    from densehybrid_ros.data.adapters import open_split
    from densehybrid_ros.data.splits import write_split
    from densehybrid_ros.data.taxonomy import CONDITIONS
    from densehybrid_ros.runtime.calibration import evenly_spaced

    if data is None and (Path("data_cache/synthetic/test") / "index.json").is_file():
        data = Path("data_cache/synthetic/test")
    if data is None:
        per = max(1, -(-frames // len(CONDITIONS)))
        write_split(out / "heldout", "test", frames_per_condition=per, height=size[0], width=size[1])
        data = out / "heldout" / "test"
        where = f"{per} frames per condition of the synthetic test split (its seeds), rendered into {data}"
    else:
        where = str(data)
    split = open_split(data)
    picked = [split[i] for i in evenly_spaced(len(split), frames)]
    return picked, f"{len(picked)} frames from {where}"


def run(args: argparse.Namespace) -> int:
    report = Report()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    started = time.perf_counter()

    report.run("install the TensorRT extra", lambda s: _install(s, args))
    report.run("machine", lambda s: _machine(s, report))
    ok = report.run("model and held-out frames", lambda s: _frames(s, args, state))
    if ok is None:
        return _finish(report, out, started)
    report.run("onnxruntime CPU reference", lambda s: _reference(s, state))
    from densehybrid_ros.runtime.tensorrt_backend import missing_requirements

    missing = missing_requirements()
    if missing:
        for name in ("build engines", "compare engines", "timing", "node replay"):
            report.steps.append(Step(name, "skipped", f"missing {', '.join(missing)}: no TensorRT code ran"))
        return _finish(report, out, started)
    report.run("build engines", lambda s: _build(s, args, state, report))
    report.run("compare engines with onnxruntime CPU", lambda s: _compare(s, state, report))
    report.run("timing", lambda s: _timing(s, args, state, report))
    if args.skip_node:
        report.steps.append(Step("node replay", "skipped", "--skip-node"))
    else:
        report.run("node replay", lambda s: _node_replay(s, args, state, report))
    return _finish(report, out, started)


# -- steps ---------------------------------------------------------------------------------------------------------

def _install(step: Step, args) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        step.status, step.detail = "skipped", "tensorrt already installed"
        return
    if args.no_install:
        step.status, step.detail = "skipped", "--no-install"
        return
    if Path("/etc/nv_tegra_release").is_file():
        step.status = "skipped"
        step.detail = ("Jetson: install JetPack's python3-libnvinfer (not the PyPI wheels), then rerun; see "
                       "docs/JETSON.md")
        return
    req = ROOT / "requirements" / "tensorrt.txt"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-r", str(req)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install -r {req} failed: {proc.stderr.strip()[-800:]}")
    step.detail = f"pip install -r {req}"


def _machine(step: Step, report: Report) -> None:
    from densehybrid_ros.runtime.cuda_env import probe

    env = probe()
    rows = [("python", platform.python_version()), ("TensorRT", env.tensorrt or f"missing ({env.tensorrt_error})"),
            ("pycuda", env.pycuda or "missing"), ("cuda-python", env.cuda_python or "missing"),
            ("CUDA driver", env.cuda_driver or "unknown"), ("CUDA runtime", env.cuda_runtime or "unknown"),
            ("GPU", f"{env.gpu.name} (sm {env.gpu.compute_capability})" if env.gpu else f"none ({env.gpu_error})")]
    try:
        import onnxruntime as ort
        rows.append(("onnxruntime", f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}"))
    except ImportError:
        rows.append(("onnxruntime", "missing"))
    if env.jetson:
        rows.append(("Jetson", f"{env.jetson.model}, L4T {env.jetson.l4t_release}, power {env.jetson.power_mode}"))
    report.sections.append("## Machine\n\n| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows))
    step.detail = rows[-1][1] if env.jetson else rows[6][1]


def _frames(step: Step, args, state) -> bool:
    from densehybrid_ros.runtime import resolve_card

    card = resolve_card(args.model)
    if card.dynamic_input:
        raise ValueError(f"{args.model} has a dynamic input size; gpu-check compares at a fixed size (export one)")
    size = (card.input_height, card.input_width)
    samples, where = held_out_frames(args.data, args.out, args.frames, size)
    state.update(card=card, size=size, samples=samples)
    step.detail = where
    return True


def _reference(step: Step, state) -> None:
    from densehybrid_ros.runtime import create_backend

    cpu = create_backend(state["card"], providers=["cpu"], warmup=1, threads=0)
    state["reference"] = [cpu.infer(s.image) for s in state["samples"]]
    cpu.close()
    step.detail = f"{len(state['reference'])} frames"


def _build(step: Step, args, state, report: Report) -> None:
    from densehybrid_ros.runtime.calibration import CalibrationBatches
    from densehybrid_ros.runtime.cuda_memory import device_info, load_cuda_api
    from densehybrid_ros.runtime.engine_cache import calibration_cache_path_for, engine_path_for, timing_cache_path_for
    from densehybrid_ros.runtime.tensorrt_engine import BuildSettings, PhaseLog, build_and_write, load_tensorrt

    card, engines_dir = state["card"], args.out / "engines"
    trt, cuda = load_tensorrt(), load_cuda_api()
    with cuda.activate():
        gpu, cc = device_info(cuda)
    model = card.model_path()
    rows, state["engines"] = [], {}
    try:
        for precision in PRECISIONS:
            engine = engine_path_for(model, precision, engines_dir)
            batches = CalibrationBatches("synthetic", args.calib_frames, state["size"]) if precision == "int8" else None
            settings = BuildSettings(precision=precision, timing_cache=timing_cache_path_for(model, cc, engines_dir),
                                     calibration=batches,
                                     calibration_cache=calibration_cache_path_for(model, engines_dir))
            t0 = time.perf_counter()
            try:
                result = build_and_write(engine, model, card, settings, trt=trt, cuda_api=cuda, gpu_name=gpu,
                                         compute_capability=cc, log=PhaseLog(print))
            except Exception as e:
                rows.append(f"| {precision} | failed: {e} | | |")
                continue
            state["engines"][precision] = engine
            rows.append(f"| {precision} | {time.perf_counter() - t0:.0f} s | {len(result.engine) / 1e6:.1f} MB | "
                        f"{len(result.info.get('pinned_fp32_layers', []))} |")
    finally:
        cuda.close()
    report.sections.append("## Engines\n\n| precision | build time | size | layers pinned to FP32 |\n"
                           "|---|---:|---:|---:|\n" + "\n".join(rows))
    if len(state["engines"]) < len(PRECISIONS):
        raise RuntimeError(f"built {sorted(state['engines'])} of {list(PRECISIONS)}")
    step.detail = f"engines in {engines_dir}"


def _compare(step: Step, state, report: Report) -> None:
    from densehybrid_ros.runtime import create_backend

    rows, failures = [], []
    anomaly = [s.anomaly for s in state["samples"]]
    for precision, engine in state.get("engines", {}).items():
        backend = create_backend(state["card"], backend="tensorrt", engine=str(engine), precision=precision,
                                 engine_policy="refuse", warmup=2)
        try:
            outs = [backend.infer(s.image) for s in state["samples"]]
        finally:
            backend.close()
        c = compare(state["reference"], outs, anomaly)
        bad = acceptance(precision, c)
        failures += [f"{precision}: {b}" for b in bad]
        rows.append(f"| {precision} | {100 * c.class_agreement:.3f}% (>= {100 * THRESHOLDS[precision]:.1f}%) | "
                    f"{c.score_correlation:.5f} | {100 * c.ap_reference:.2f} -> {100 * c.ap_candidate:.2f} "
                    f"({c.ap_difference:+.2f}) | {100 * c.fpr95_reference:.2f} -> {100 * c.fpr95_candidate:.2f} "
                    f"({c.fpr95_difference:+.2f}) | {'pass' if not bad else 'FAIL: ' + '; '.join(bad)} |")
    report.sections.append(
        "## Engines against onnxruntime CPU (held-out frames)\n\n"
        "| precision | class agreement | anomaly-score correlation | AP (points) | FPR95 (points) | acceptance |\n"
        "|---|---:|---:|---:|---:|---|\n" + "\n".join(rows))
    if failures:
        raise AssertionError("; ".join(failures))


def _timing(step: Step, args, state, report: Report) -> None:
    import onnx
    import onnxruntime as ort

    from densehybrid_ros.evaluation.timing import measure_interleaved
    from densehybrid_ros.runtime import create_backend
    from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeOptions, session_options

    card, size = state["card"], state["size"]
    frame = state["samples"][0].image
    if frame.shape[:2] != tuple(size):
        import cv2
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    gpu_providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()] or \
        ["CPUExecutionProvider"]
    provider = gpu_providers[0]
    semantic_path = args.out / "semantic_only.onnx"
    onnx.utils.extract_model(str(card.model_path()), str(semantic_path), ["image"], ["class_id"])
    graph = create_backend(card, providers=[provider.replace("ExecutionProvider", "").lower()], warmup=3)
    semantic = ort.InferenceSession(str(semantic_path), session_options(OnnxRuntimeOptions()),
                                    providers=[provider])
    feed = {"image": frame[None]}
    backends = {p: create_backend(card, backend="tensorrt", engine=str(e), precision=p, engine_policy="refuse",
                                  warmup=5) for p, e in state.get("engines", {}).items()}
    pipelines = {f"engine {p}": (lambda b=b: b.infer(frame)) for p, b in backends.items()}
    pipelines[f"ONNX graph ({provider})"] = lambda: graph.infer(frame)
    pipelines[f"semantic-only graph ({provider})"] = lambda: semantic.run(None, feed)
    try:
        wall, _, rounds, note = measure_interleaved(pipelines, args.rounds, 5, 120.0)
    finally:
        for b in backends.values():
            b.close()
        graph.close()
    base = float(np.median(wall[f"ONNX graph ({provider})"]))
    rows = [f"| {name} | {1000 * float(np.median(t)):.2f} | {1000 * float(np.percentile(t, 90)):.2f} | "
            f"{base / float(np.median(t)):.2f}x |" for name, t in wall.items()]
    report.sections.append(
        f"## Latency, batch 1 at {size[0]}x{size[1]} ({rounds} interleaved rounds{'; ' + note if note else ''})\n\n"
        "Engines are timed through the backend (host copies and one synchronisation included), the graphs as one "
        "onnxruntime call.\n\n| pipeline | median ms | p90 ms | speed-up over the ONNX graph |\n|---|---:|---:|---:|\n"
        + "\n".join(rows))
    step.detail = f"{rounds} rounds"


def _node_replay(step: Step, args, state, report: Report) -> None:
    from densehybrid_ros.cli import available_commands

    if "bag" not in available_commands():
        step.status, step.detail = "skipped", "the bag tools (densehybrid bag) are not installed in this version"
        return
    if "fp16" not in state.get("engines", {}):
        step.status, step.detail = "skipped", "no FP16 engine was built"
        return
    dh = [sys.executable, "-m", "densehybrid_ros.cli"]
    bag = args.out / "drive"
    if bag.exists():
        shutil.rmtree(bag)
    size = state["size"]
    subprocess.run(dh + ["bag", "make", "--out", str(bag), "--frames", str(args.drive_frames), "--height",
                         str(size[0]), "--width", str(size[1])], check=True, capture_output=True, text=True)
    engines_dir = str(state["engines"]["fp16"].parent)
    proc = subprocess.run(dh + ["bag", "evaluate", str(bag), "--out", str(args.out / "drive_eval"), "--force",
                                "--model", str(state["card"].model_path()), "--no-video", "--set",
                                "backend:=tensorrt", "engine_precision:=fp16", "engine_policy:=refuse",
                                f"engine_cache_dir:={engines_dir}"],
                          capture_output=True, text=True, env=dict(os.environ))
    tail = (proc.stdout + proc.stderr).strip()[-3000:]
    report.sections.append(f"## Node replay (FP16 engine)\n\n```\n{tail}\n```")
    if proc.returncode != 0:
        raise RuntimeError(f"densehybrid bag evaluate exited {proc.returncode} (output in the report)")
    step.detail = f"report in {args.out / 'drive_eval'}"


def _finish(report: Report, out: Path, started: float) -> int:
    from densehybrid_ros.runtime.engine_cache import write_atomic

    total = time.perf_counter() - started
    failed = [s for s in report.steps if s.status == "failed"]
    skipped = [s for s in report.steps if s.status == "skipped"]
    lines = ["# GPU check of the TensorRT path", "",
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, "
             f"{platform.node()}, {total / 60:.1f} min in total. Command: `densehybrid gpu-check "
             f"{' '.join(sys.argv[2:]) if len(sys.argv) > 2 else ''}`.", "",
             "## Steps", "", "| step | result | time | detail |", "|---|---|---:|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} s | {s.detail.replace('|', '/')} |" for s in report.steps]
    lines += ["", "**Could not do:** " + ("; ".join(f"{s.name} ({s.status}: {s.detail})" for s in failed + skipped)
                                          if failed or skipped else "nothing; every step ran."), ""]
    lines += [s + "\n" for s in report.sections]
    path = write_atomic(out / "report.md", "\n".join(lines).encode())
    print(f"report: {path}")
    return 1 if failed or any("no TensorRT code ran" in s.detail for s in skipped) else 0
