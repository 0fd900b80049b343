"""Runtimes and precisions side by side: onnxruntime and OpenVINO, FP32 and INT8, in one interleaved run, and the
same at several input sizes (the scale table). For `densehybrid benchmark` and docs/QUANTIZATION.md.

Every pipeline is the node's call, `Backend.infer` on one frame, so pre- and post-processing and the score head are
timed too. Pipelines run in interleaved rounds (`evaluation.timing.measure_interleaved`: the order rotates each round)
and ratios are medians of per-round ratios, the only numbers that mean something on a shared machine.

Graphs at other sizes: the shipped graph is fixed-size, so `export_at` rebuilds its network from the ONNX weights
(`model/onnx_weights.py`, needs torch) and exports it with the same settings at each size; `quantize_at` quantizes
each export with the settings recorded in the INT8 card (with fewer calibration frames by default: the scales do not
change the speed).

    python -m densehybrid_ros.cli.runtime_speed --model models/x.onnx --int8 models/x_int8.onnx \\
        --sizes 256x512,512x1024,720x1280,1024x2048 --threads 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REFERENCE = "onnxruntime fp32"


@dataclass
class RuntimeTiming:
    size: tuple[int, int]
    wall: dict[str, np.ndarray]   # pipeline -> seconds per round
    cpu: dict[str, np.ndarray]    # pipeline -> CPU seconds of this process per round
    rounds: int
    note: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # pipeline -> why it did not run

    def median_ms(self, name: str) -> float:
        return 1000 * float(np.median(self.wall[name]))

    def ratio(self, name: str, reference: str = REFERENCE, clock: str = "wall") -> tuple[float, float, float]:
        """(median, q1, q3) of the per-round ratios name / reference."""
        t = self.wall if clock == "wall" else self.cpu
        r = t[name] / t[reference]
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        return float(med), float(q1), float(q3)


def pipelines_for(models: dict[str, Path], backends: Sequence[str], threads: int
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """Backends named "<backend> <precision>" for every model (precision -> path) and backend that loads here."""
    from densehybrid_ros.runtime import create_backend

    loaded, skipped = {}, {}
    for backend in backends:
        options = {"threads": threads, "warmup": 1}
        if backend == "onnxruntime":
            options["spin"] = False  # a shared machine: spinning threads would steal the other pipelines' cores
        for precision, path in models.items():
            name = f"{backend} {precision}"
            try:
                loaded[name] = create_backend(path, backend=backend, **options)
            except Exception as e:  # a runtime that is not installed here is reported, not fatal
                skipped[name] = f"{type(e).__name__}: {e}"
    return loaded, skipped


def time_runtimes(models: dict[str, Path], frame: np.ndarray, backends: Sequence[str] = ("onnxruntime", "openvino"),
                  threads: int = 2, repeats: int = 20, warmup: int = 2, budget: float = 300.0) -> RuntimeTiming:
    """Time `Backend.infer(frame)` for every backend x model in one interleaved run.

    models: precision -> model path, e.g. {"fp32": ..., "int8": ...}; the reference of the ratios is onnxruntime
    on the first one.
    """
    from densehybrid_ros.evaluation.timing import measure_interleaved

    loaded, skipped = pipelines_for(models, backends, threads)
    try:
        calls: dict[str, Callable[[], Any]] = {name: (lambda b=b: b.infer(frame)) for name, b in loaded.items()}
        wall, cpu, rounds, note = measure_interleaved(calls, repeats, warmup, budget)
    finally:
        for b in loaded.values():
            b.close()
    return RuntimeTiming(tuple(frame.shape[:2]), wall, cpu, rounds, note, skipped)


def network_of(model: Path) -> tuple[Any, Any, str]:
    """(eval-mode network, card, where its weights came from) of an exported graph (torch).

    From the graph's own weights (`model/onnx_weights.py`) where it can be rebuilt from them; where it cannot (a
    fold the rebuild does not know, a card without its network_config), from the training checkpoint its card
    names, checked against the tensors the graph keeps by name.
    """
    from densehybrid_ros.config.model_card import load_model_card
    from densehybrid_ros.model.densehybrid import load_network_checkpoint
    from densehybrid_ros.model.onnx_weights import OnnxWeightsError, network_from_onnx

    try:
        net, card, _ = network_from_onnx(model)
        return net, card, "the graph's own weights"
    except OnnxWeightsError as e:
        card = load_model_card(model)
        ckpt = (card.training or {}).get("checkpoint")
        if not ckpt or not Path(ckpt).is_file():
            raise OnnxWeightsError(f"{e}; nor is the checkpoint its card names ({ckpt}) on this machine") from e
    net, _ = load_network_checkpoint(ckpt)
    same, compared = _same_tensors(net, model)
    if compared == 0 or same < compared:
        raise OnnxWeightsError(f"{ckpt} is not the checkpoint {model} was exported from: {compared - same} of the "
                               f"{compared} tensors the graph keeps by name differ (rewritten since the export?)")
    return net, card, f"its checkpoint {ckpt} ({compared} tensors checked against the graph)"


def _same_tensors(net: Any, model: Path) -> tuple[int, int]:
    """(equal, compared): the network's tensors against those the graph stores under their state-dict names."""
    import onnx

    from densehybrid_ros.model.onnx_weights import _STATE_PREFIX, _initializers

    values = _initializers(onnx.load(str(model)).graph)
    same = compared = 0
    for key, tensor in net.state_dict().items():
        stored = values.get(_STATE_PREFIX + key)
        if stored is not None and stored.size == tensor.numel() and tensor.is_floating_point():
            compared += 1
            same += bool(np.allclose(stored.reshape(tuple(tensor.shape)), tensor.numpy(), rtol=1e-5, atol=1e-6))
    return same, compared


def export_at(model: Path, size: tuple[int, int], out: Path) -> Path:
    """The network of `model` (an exported graph with its card) exported again at `size`, same settings (torch)."""
    from densehybrid_ros.model.export import export_onnx, wrapper_options

    net, card, _ = network_of(model)
    export_onnx(net, out, height=size[0], width=size[1], calibration=card.calibration, name=card.name,
                training=card.training, **wrapper_options(card))
    return out


def quantize_at(int8_card, fp32_path: Path, out: Path, frames: int = 8) -> Path:
    """`fp32_path` quantized with the settings recorded in `int8_card` (calibration source and frames aside)."""
    from densehybrid_ros.runtime.quantize import QuantizeSettings, quantize_model

    q = int8_card.quantization
    settings = QuantizeSettings(calibration=q.get("calibration", {}).get("source", "synthetic"), frames=frames,
                                method=q.get("method", "minmax"), per_channel=q.get("per_channel", True),
                                reduce_range=q.get("reduce_range", False),
                                symmetric_activations=q.get("activations") == "int8 symmetric",
                                all_ops=not q.get("float_op_types", True),
                                moving_average=bool(q.get("moving_average", False)),
                                float_first=int(q.get("float_first_convolutions", 0)),
                                percentile=float(q.get("percentile", 99.999)),
                                exclude_stem="stem" in q.get("float_nodes", {}))
    quantize_model(fp32_path, out, settings, log=lambda *_: None)
    return out


def frame_of(size: tuple[int, int]) -> np.ndarray:
    """A rendered synthetic road frame (calibration seeds: never an evaluation frame)."""
    from densehybrid_ros.runtime.calibration import CalibrationBatches

    return CalibrationBatches("synthetic", 1, size).frame(0)


def scale_table(fp32: Path, int8: Path, sizes: Sequence[tuple[int, int]], backends: Sequence[str], threads: int,
                repeats: int, budget: float, frames: int = 8, log: Callable[[str], None] = print
                ) -> list[RuntimeTiming]:
    """`time_runtimes` at every size on graphs exported (and quantized) at that size."""
    from densehybrid_ros.runtime import resolve_card

    int8_card = resolve_card(int8)
    out = []
    with tempfile.TemporaryDirectory(prefix="densehybrid-scale-") as tmp:
        for h, w in sizes:
            t0 = time.perf_counter()
            f = export_at(fp32, (h, w), Path(tmp) / f"fp32_{h}x{w}.onnx")
            q = quantize_at(int8_card, f, Path(tmp) / f"int8_{h}x{w}.onnx", frames=frames)
            timing = time_runtimes({"fp32": f, "int8": q}, frame_of((h, w)), backends, threads, repeats, 1, budget)
            out.append(timing)
            log(f"{h}x{w}: " + ", ".join(f"{n} {timing.median_ms(n):.0f} ms" for n in timing.wall) +
                f" ({timing.rounds} rounds, {time.perf_counter() - t0:.0f} s)")
    return out


# -- markdown ------------------------------------------------------------------------------------------------------

def side_by_side_markdown(t: RuntimeTiming) -> str:
    lines = [f"| {t.size[0]}x{t.size[1]} | median ms | p90 ms | CPU ms | / {REFERENCE} (wall, median and IQR) | "
             "/ reference (CPU time) |", "|---|---:|---:|---:|---:|---:|"]
    for name in t.wall:
        med, q1, q3 = t.ratio(name)
        cpu_med = t.ratio(name, clock="cpu")[0]
        lines.append(f"| {name} | {t.median_ms(name):.0f} | {1000 * np.percentile(t.wall[name], 90):.0f} | "
                     f"{1000 * np.median(t.cpu[name]):.0f} | {med:.3f} ({q1:.3f}-{q3:.3f}) | {cpu_med:.3f} |")
    for name, why in t.skipped.items():
        lines.append(f"| {name} | not run: {why} | | | | |")
    lines.append(f"\n{t.rounds} interleaved rounds. {t.note}".rstrip())
    return "\n".join(lines)


def scale_markdown(timings: Sequence[RuntimeTiming]) -> str:
    """Per size and pipeline: wall ms, frames/s, ms per megapixel, CPU ms and the ratios to the reference (wall and
    CPU time; on a loaded machine the CPU time is the steadier measure of the work)."""
    lines = ["| input | MP | pipeline | median ms | frames/s | ms per MP | CPU ms | CPU ms per MP | "
             f"/ {REFERENCE} (wall) | / {REFERENCE} (CPU) | rounds |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in timings:
        mp = t.size[0] * t.size[1] / 1e6
        for n in t.wall:
            ms, cpu = t.median_ms(n), 1000 * float(np.median(t.cpu[n]))
            lines.append(f"| {t.size[0]}x{t.size[1]} | {mp:.2f} | {n} | {ms:.0f} | {1000 / ms:.2f} | {ms / mp:.0f} | "
                         f"{cpu:.0f} | {cpu / mp:.0f} | {t.ratio(n)[0]:.3f} | {t.ratio(n, clock='cpu')[0]:.3f} | "
                         f"{t.rounds} |")
    return "\n".join(lines)


def timings_json(timings: Sequence[RuntimeTiming]) -> list[dict[str, Any]]:
    """Raw per-round seconds, to re-render or re-analyse a run."""
    return [{"size": list(t.size), "rounds": t.rounds, "note": t.note, "skipped": t.skipped,
             "wall": {k: v.tolist() for k, v in t.wall.items()}, "cpu": {k: v.tolist() for k, v in t.cpu.items()}}
            for t in timings]


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="FP32 model")
    p.add_argument("--int8", type=Path, required=True, help="its INT8 graph (densehybrid quantize)")
    p.add_argument("--backends", default="onnxruntime,openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--budget", type=float, default=300.0, help="seconds per size for the timed rounds")
    p.add_argument("--sizes", default="", help="scale table sizes, e.g. 256x512,512x1024 (exports; needs torch)")
    p.add_argument("--scale-repeats", type=int, default=8)
    p.add_argument("--calib-frames", type=int, default=8, help="calibration frames of the scale table's INT8 graphs")
    p.add_argument("--scale-only", action="store_true", help="skip the side-by-side run on the given graphs")
    p.add_argument("--json", type=Path, default=None, help="write the raw per-round times here")
    args = p.parse_args(argv)
    from densehybrid_ros.evaluation.timing import load_average, machine_description

    backends = [b for b in args.backends.split(",") if b]
    machine = machine_description(args.threads)
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()))
    raw: dict[str, Any] = {"machine": machine}
    if not args.scale_only:
        t = time_runtimes({"fp32": args.model, "int8": args.int8}, frame_of(_card_size(args.model)), backends,
                          args.threads, args.repeats, 2, args.budget)
        print(side_by_side_markdown(t), flush=True)
        raw["side_by_side"] = timings_json([t])
    if args.sizes:
        table = scale_table(args.model, args.int8, _sizes(args.sizes), backends, args.threads, args.scale_repeats,
                            args.budget, args.calib_frames)
        print(scale_markdown(table))
        raw["scale"] = timings_json(table)
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(raw, indent=1))
    print(f"- load average at end: {load_average()}")
    return 0


def _card_size(model: Path) -> tuple[int, int]:
    from densehybrid_ros.runtime import resolve_card

    card = resolve_card(model)
    return (card.input_height or 512, card.input_width or 1024)


if __name__ == "__main__":
    raise SystemExit(main())
