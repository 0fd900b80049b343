"""`densehybrid benchmark`: latency per backend and input size, and three ratios measured side by side.

Every pipeline runs on the same frame in interleaved rounds (the order rotates each round), so the ratios are
medians of per-round ratios: a colleague's job that slows the machine for a few seconds slows both sides of a ratio
alike (docs/ARCHITECTURE.md section 5). The ratios:

(a) DenseHybrid graph / semantic-only graph of the same weights: the cost of the dataset-posterior head and the
    hybrid score (paper table 5: +4.6% for LDN-121 at 1024x2048; the aim here is under +3%).
(b) onnxruntime / torch eager: our graph (pre- and post-processing inside) on both runtimes.
(c) ours / an official-style torch pipeline: `official_style_pipeline` below, written the way the authors'
    evaluation code computes the score (all K logits upsampled to full size, posteriors from softmax().log(),
    every score on full-resolution tensors). Reported twice: ours on onnxruntime (what the node runs) and ours in
    torch eager (same runtime as the reference, so only the post-processing differs).

`--candidate NEW.onnx` compares graphs instead: today's graph (`--reference`, by default the model shipped before the
decoder study), the new graph and the new graph's INT8 copy (`densehybrid quantize`), each under onnxruntime and
OpenVINO, in one interleaved run at the reference's input size, with every ratio to today's graph; then the scale
table of the new graph (FP32 and INT8 re-exported at each size: ms, frames/s, ms per megapixel). Its section goes at
the top of the report, the rest of the file is kept.

`--node-cost` measures the detector node instead: the node in its own process, frames from another process, and
the node's end-to-end time divided by the bare `Backend.infer` time measured in the same rounds (with every image
output subscribed and with the alert alone), plus the node's resident memory over a long replay
(`ros/node_cost.py`). Its section of the report is written into the same file without touching the rest.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from densehybrid_ros.evaluation.timing import load_average, machine_description, measure_interleaved  # noqa: F401 - re-exported

HELP = "latency per backend and input size, with side-by-side ratios"

DEFAULT_SIZES = "256x512,512x1024,1024x2048"
QUICK_SIZE = "64x128"
DEFAULT_BACKENDS = "onnxruntime,torch"
BENCH_BACKENDS = ("onnxruntime", "torch")
DEFAULT_REFERENCE = Path("models/densehybrid_lite0_synthetic.onnx")  # today's graph, kept as the reference
DEFAULT_RUNTIMES = "onnxruntime,openvino"
RUNTIMES = ("onnxruntime", "openvino")
SCALE_SIZES = "256x512,512x1024,720x1280,1024x2048"
PAPER_OVERHEAD = 0.046  # DenseHybrid paper, table 5
TARGET_OVERHEAD = 0.03


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=None,
                        help=f"comma-separated HxW input sizes, each side in [32, 8192] (default {DEFAULT_SIZES})")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS,
                        help=f"comma-separated backends from {', '.join(BENCH_BACKENDS)} (default {DEFAULT_BACKENDS})")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per size [3, 10000] (default 20; fewer when --budget runs out)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs per pipeline first [0, 100] (default 3)")
    parser.add_argument("--threads", type=int, default=2,
                        help="intra-op threads for onnxruntime and torch alike [1, 64] (default 2)")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds of timed rounds per size [1, 3600]; repeats are cut (never below 5) to fit "
                             "(default 120)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, default=None,
                     help="model (.onnx with its card) whose network and export settings to benchmark (default: "
                          "the first model in models/, else --untrained)")
    src.add_argument("--untrained", action="store_true",
                     help="an untrained network of the default configuration (weights do not change the speed)")
    parser.add_argument("--write", type=Path, default=None, help="also write the report (e.g. docs/BENCHMARKS.md)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_SIZE}, 3 rounds, 1 warm-up (checks the machinery, not the speed)")
    cand = parser.add_argument_group("today's graph against a new one (one interleaved run, FP32 and INT8, "
                                     "onnxruntime and OpenVINO) and the new graph's scale table")
    cand.add_argument("--candidate", type=Path, default=None,
                      help="the new graph (.onnx with its card): timed with --reference and its INT8 copy in one "
                           "interleaved run under every --runtimes, then its scale table; re-exported at the "
                           "reference's size when its own differs (needs torch)")
    cand.add_argument("--candidate-int8", type=Path, default=None,
                      help="the new graph's INT8 copy (`densehybrid quantize --model <candidate>`; default "
                           "<candidate>_int8.onnx beside it)")
    cand.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                      help=f"today's graph, the denominator of the ratios (default {DEFAULT_REFERENCE})")
    cand.add_argument("--runtimes", default=DEFAULT_RUNTIMES,
                      help=f"comma-separated, from {', '.join(RUNTIMES)}; one that does not load here is listed as "
                           f"not run (default {DEFAULT_RUNTIMES})")
    cand.add_argument("--scale-sizes", default=SCALE_SIZES,
                      help="HxW sizes of the new graph's scale table, FP32 and INT8 re-exported and re-quantized at "
                           f"each (needs torch); 'none' skips it (default {SCALE_SIZES})")
    cand.add_argument("--scale-repeats", type=int, default=None,
                      help="timed rounds per scale-table size [3, 10000] (default 8; --quick 3; fewer when --budget "
                           "runs out)")
    cand.add_argument("--scale-calib-frames", type=int, default=8,
                      help="calibration frames of the scale table's INT8 graphs [1, 1000] (default 8: the ranges do "
                           "not change the speed)")
    node = parser.add_argument_group("node cost (the detector node in its own process, over DDS)")
    node.add_argument("--node-cost", action="store_true",
                      help="measure the node's end-to-end time against the bare backend and its memory over a "
                           "replay, instead of the backend tables (frames at the model's input size, or the first "
                           "--sizes entry)")
    node.add_argument("--node-rounds", type=int, default=None,
                      help="paired rounds per case (alert only / all outputs) [2, 1000] (default 20; --quick 4)")
    node.add_argument("--rss-frames", type=int, default=0,
                      help="frames of the memory replay [0, 1000000]; 0 skips it (the node's target is checked "
                           "over 10000)")
    node.add_argument("--rss-rate", type=float, default=25.0,
                      help="frames/s of the memory replay [0.5, 120] (default 25: above what the node serves, "
                           "so it also drops superseded frames)")


# -- argument checks -------------------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in (s.strip() for s in text.split(",")):
        m = re.fullmatch(r"(\d+)[xX](\d+)", item)
        if not m:
            raise ValueError(f"--sizes: {item!r} is not HxW (e.g. 512x1024)")
        h, w = int(m.group(1)), int(m.group(2))
        if not (32 <= h <= 8192 and 32 <= w <= 8192):
            raise ValueError(f"--sizes: {item} is outside the valid range; each side in [32, 8192]")
        sizes.append((h, w))
    return sizes


def parse_backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BENCH_BACKENDS]
    if bad or "onnxruntime" not in names:
        extra = " (tensorrt engines are not available yet)" if "tensorrt" in bad else ""
        raise ValueError(f"--backends: {text!r}: valid backends are {', '.join(BENCH_BACKENDS)} and onnxruntime "
                         f"must be one of them{extra}")
    return names


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} is outside its valid range [{lo}, {hi}]")
    return value


# -- the reference pipeline -------------------------------------------------------------------------------------

def official_style_pipeline(net: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """REFERENCE STYLE, for the speed comparison only: DenseHybrid scoring the way the authors' evaluation code does.

    The network's K class logits and its dataset-posterior logits (as the official two-channel head: [0, g],
    whose softmax is [1 - sigmoid(g), sigmoid(g)]) are upsampled to the full input size first; then the class
    posterior is a full-size softmax, the dataset posterior is softmax(...)[:, 1].log(), and the hybrid score
    (eq. 6) ln P(d_out|x) - logsumexp(s) is evaluated on full-resolution tensors. Same outputs as our graph
    (class id, score, confidence), same network, eager torch. Not numerically safe (log of a softmax underflows
    to -inf for confident pixels): that is the point of our own graph, not of this reference.
    """
    import torch
    import torch.nn.functional as F

    from densehybrid_ros.model.densehybrid import normalise_uint8_nhwc

    with torch.inference_mode():
        x = normalise_uint8_nhwc(torch.from_numpy(rgb)[None])
        logits, ood_logit = net(x)
        size = rgb.shape[:2]
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        two_channel = torch.stack([torch.zeros_like(ood_logit), ood_logit], 1)
        two_channel = F.interpolate(two_channel, size=size, mode="bilinear", align_corners=False)
        class_posterior = F.softmax(logits, dim=1)
        confidence, class_id = class_posterior.max(dim=1)
        p_out = F.softmax(two_channel, dim=1)[:, 1]
        score = p_out.log() - torch.logsumexp(logits, dim=1)
        return class_id[0].to(torch.uint8).numpy(), score[0].numpy(), confidence[0].numpy()


# -- measuring --------------------------------------------------------------------------------------------------

@dataclass
class SizeResult:
    size: tuple[int, int]
    wall: dict[str, np.ndarray]  # pipeline -> wall-clock seconds per round (the latency)
    cpu: dict[str, np.ndarray]  # pipeline -> CPU seconds of this process per round (the work done)
    rounds: int
    note: str = ""
    # Ratio (a) only: the full rounds plus extra rounds of the two graphs alone.
    pair_wall: dict[str, np.ndarray] = field(default_factory=dict)
    pair_cpu: dict[str, np.ndarray] = field(default_factory=dict)

    def ratios(self, clock: str) -> dict[str, np.ndarray]:
        """Per-round ratios on `clock` ("wall" or "cpu"); ratio (a) over the full and the extra rounds."""
        full = paired_ratios(self.wall if clock == "wall" else self.cpu)
        pair = paired_ratios(self.pair_wall if clock == "wall" else self.pair_cpu)
        full.update({k: v for k, v in pair.items() if k == "densehybrid_over_semantic"})
        return full

    def stats(self, name: str) -> tuple[float, float, float]:
        """(median wall s, p90 wall s, median CPU s)."""
        t = self.wall[name]
        return float(np.median(t)), float(np.percentile(t, 90)), float(np.median(self.cpu[name]))


RATIOS = {
    # key: (numerator, denominator, label)
    "densehybrid_over_semantic": ("onnxruntime", "semantic_graph", "DenseHybrid graph / semantic-only graph"),
    "onnxruntime_over_torch": ("onnxruntime", "torch", "onnxruntime / torch eager"),
    "ours_ort_over_official": ("onnxruntime", "official_style", "ours (onnxruntime) / official-style torch"),
    "ours_torch_over_official": ("torch", "official_style", "ours (torch eager) / official-style torch"),
}


def paired_ratios(times: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-round ratios numerator/denominator for every ratio whose two pipelines were measured."""
    return {key: times[a] / times[b] for key, (a, b, _) in RATIOS.items() if a in times and b in times}


def describe(ratio: np.ndarray) -> str:
    q1, med, q3 = np.percentile(ratio, [25, 50, 75])
    return f"{med:.3f} ({q1:.3f}-{q3:.3f})"


# -- the report -------------------------------------------------------------------------------------------------

def render_markdown(results: list[SizeResult], machine: dict[str, str], command: str, model_note: str,
                    backends: list[str]) -> str:
    lines = ["# Benchmarks", "",
             f"Produced by `{command}` (run it again to regenerate these tables; the sections that `--candidate` "
             f"and `--node-cost` runs write are kept). {model_note}", "",
             "## Latency per backend and input size", "",
             "Per frame: uint8 RGB in, class id + anomaly score + confidence out at the input size. `onnxruntime` "
             "and `torch` are the runtime backends (`Backend.infer`); the last two rows of each size are the "
             "references the ratios use. Latency is wall-clock time; CPU ms is the processor time this process "
             "spent (it does not grow while other jobs hold the cores).", "",
             "| input (HxW) | pipeline | median ms | p90 ms | frames/s (median) | CPU ms (median) | rounds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    label = {"onnxruntime": "onnxruntime backend (DenseHybrid graph)", "torch": "torch backend (eager, same maths)",
             "semantic_graph": "semantic-only graph (onnxruntime)", "official_style": "official-style torch pipeline"}
    for res in results:
        for name in ("onnxruntime", "torch", "semantic_graph", "official_style"):
            if name in res.wall:
                med, p90, cpu = res.stats(name)
                lines.append(f"| {res.size[0]}x{res.size[1]} | {label[name]} | {1000 * med:.1f} | {1000 * p90:.1f} | "
                             f"{1 / med:.2f} | {1000 * cpu:.1f} | {res.rounds} |")
    lines += ["", "## Ratios", "",
              "Medians of the per-round ratios (both pipelines of a ratio run in the same round on the same frame), "
              "interquartile range in brackets; below 1 means the first pipeline is faster. The DenseHybrid / "
              "semantic-only ratio adds rounds of the two graphs alone to the full rounds (hence more rounds).", "",
              "| input (HxW) | ratio | wall clock | CPU time | rounds |", "|---|---|---:|---:|---:|"]
    for res in results:
        wall, cpu = res.ratios("wall"), res.ratios("cpu")
        for key, (_, _, text) in RATIOS.items():
            if key in wall:
                lines.append(f"| {res.size[0]}x{res.size[1]} | {text} | {describe(wall[key])} | {describe(cpu[key])} | "
                             f"{len(wall[key])} |")
    overheads = [(r, float(np.median(r.ratios("cpu")["densehybrid_over_semantic"])) - 1,
                  float(np.median(r.ratios("wall")["densehybrid_over_semantic"])) - 1) for r in results]
    lines += [""]
    if overheads:
        worst = max(o for _, o, _ in overheads)
        verdict = "within" if worst < TARGET_OVERHEAD else "not within"
        per_size = ", ".join(f"{r.size[0]}x{r.size[1]} {100 * c:+.1f}% CPU ({100 * w:+.1f}% wall)"
                             for r, c, w in overheads)
        lines.append(f"DenseHybrid overhead over the semantic-only graph: {per_size}. Paper table 5: "
                     f"{100 * PAPER_OVERHEAD:+.1f}%; aim: under {100 * TARGET_OVERHEAD:+.0f}% (CPU time, "
                     f"{verdict} it at every size measured).")
    for r in results:
        if r.note:
            lines.append(f"- {r.size[0]}x{r.size[1]}: {r.note}.")
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "## How to read this", "",
              "- The machine is shared (other jobs run on the same cores), so wall-clock times can be inflated by "
              "load. The ratios are measured in interleaved rounds on the same frame (order rotated each round); "
              "the CPU-time column is the steadier one when the load average exceeds the core count, the "
              "wall-clock column is what a dedicated machine shows.",
              "- (a) DenseHybrid / semantic-only: both graphs are exported from the same weights with the same "
              "settings; the semantic-only one lacks the dataset-posterior head and the score (see "
              "`model/export.py`). The DenseHybrid side is timed through `Backend.infer` (input checks included), "
              "the semantic side as a bare `session.run`, so the overhead shown is if anything an overestimate.",
              "- (b) onnxruntime / torch eager: the same graph maths (`ExportWrapper`) on both runtimes, same "
              "thread count.",
              "- (c) ours / official-style: `official_style_pipeline` in `cli/benchmark.py` upsamples all K class "
              "logits and the two-channel dataset-posterior logits to the input size and scores there with "
              "softmax().log(), as the authors' evaluation code does; ours scores at decoder resolution (1/4) and "
              "upsamples two maps (accuracy cost of that choice: docs/EXPORT.md). Shown for ours on onnxruntime "
              "(what the node runs) and ours in torch eager (same runtime as the reference: only the "
              "post-processing differs).",
              "- Threads: both runtimes use the same intra-op thread count. On a loaded machine torch's OpenMP "
              "workers stall at every barrier when one of them is descheduled (measured here: a 256x512 frame took "
              "0.32 s with 1 thread and 1.7 s median with 2 threads at load average 5 on 2 cores), so a run on a "
              "shared machine uses `--threads 1`; use the cores you have on a dedicated one.",
              "- onnxruntime runs with thread spinning off here: spinning workers would steal the cores from the "
              "next pipeline in the round; on a dedicated core `spin=True` (the backend default) is faster."]
    if "torch" not in backends:
        lines.append("- torch was not benchmarked in this run (--backends), so ratios (b) and (c) are absent.")
    return "\n".join(lines) + "\n"


# -- the node-cost section ----------------------------------------------------------------------------------------
NODE_COST_BEGIN = "<!-- node-cost:begin (written by `densehybrid benchmark --node-cost`) -->"
NODE_COST_END = "<!-- node-cost:end -->"
SPEED_BEGIN = "<!-- speed:begin (written by `densehybrid benchmark --candidate`) -->"
SPEED_END = "<!-- speed:end -->"
NODE_COST_TARGET = 1.15
RSS_GROWTH_TARGET_MB = 20.0


def _merge_marked(existing: str, begin: str, end: str, section: str | None, top: bool = False) -> str:
    """`existing` report with its section between `begin` and `end` replaced by `section`; a report without one
    gets it after its title (`top`) or at its end; with `section` None, `existing` is returned unchanged."""
    if section is None:
        return existing
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    if not existing.strip():
        return block
    if top:
        title, _, body = existing.partition("\n")
        if title.startswith("# "):
            return f"{title}\n\n{block}" + ("\n" + body.lstrip("\n") if body.strip() else "")
        return block + "\n" + existing
    return existing.rstrip("\n") + "\n\n" + block


def _marked(existing: str, begin: str, end: str) -> str | None:
    if begin in existing and end in existing:
        return existing.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    return None


def merge_node_cost(existing: str, section: str | None) -> str:
    """`existing` report with its node-cost section replaced by `section` (appended when it has none); with
    `section` None, `existing` is returned unchanged. Used both ways: the node-cost run keeps the backend tables,
    the backend run keeps the node-cost section."""
    return _merge_marked(existing, NODE_COST_BEGIN, NODE_COST_END, section)


def merge_speed(existing: str, section: str | None) -> str:
    """`existing` report with its --candidate section replaced by `section` (put right after the title when it has
    none); the rest of the report is kept."""
    return _merge_marked(existing, SPEED_BEGIN, SPEED_END, section, top=True)


def speed_section(existing: str) -> str | None:
    """The --candidate section of a report (between its markers), or None."""
    return _marked(existing, SPEED_BEGIN, SPEED_END)


def carried_over(existing: str) -> str:
    """What a backend run keeps of an existing report: the node-cost section and everything after it (notes written
    by hand below it), with a blank line before; "" when the report has no node-cost section."""
    if NODE_COST_BEGIN not in existing:
        return ""
    return "\n" + NODE_COST_BEGIN + existing.split(NODE_COST_BEGIN, 1)[1]


def node_cost_section(existing: str) -> str | None:
    """The node-cost section of a report (between its markers), or None."""
    return _marked(existing, NODE_COST_BEGIN, NODE_COST_END)


def _med_p90(xs: list[float]) -> str:
    return f"{1e3 * float(np.median(xs)):.1f} ({1e3 * float(np.percentile(xs, 90)):.1f})"


def render_node_cost(rounds, rss, machine: dict[str, str], command: str, model: str) -> str:
    """Markdown of the node-cost measurement (ros/node_cost.py): the ratio table, the stage breakdown, memory."""
    from densehybrid_ros.ros import node_cost
    from densehybrid_ros.ros.node_cost import CASES, STAGES

    h, w = rounds.height, rounds.width
    lines = ["## Node cost across processes", "",
             f"Produced by `{command}` ({machine['date']}; load average {machine['load average at start']} at the "
             f"start, {machine['load average at end']} at the end; {machine['cores']}). Model: {model}.", "",
             f"The detector ran as its own process (`python -m densehybrid_ros.ros.detector_node`, "
             f"backend_threads {rounds.threads}); a camera process published {h}x{w} `rgb8` frames of a drive towards "
             "a road obstacle, one per round; this process recorded the node's outputs over DDS (params/dds.env) "
             "and ran the bare `Backend.infer` (same model, same threads) on the same frame in the same round, the "
             "order alternating. Blocks of rounds alternate between only `~/obstacle_alert` subscribed and every "
             "image output subscribed (the node computes only what someone subscribes to).", "",
             "| outputs subscribed | rounds | node end-to-end ms, median (p90) | bare Backend.infer ms | node / bare, "
             "wall | node / bare, CPU | node / its own Backend.infer | stamp to alert ms | stamp to last output ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for case in CASES:
        rs = rounds.of(case)
        if not rs:
            lines.append(f"| {case} | 0 | - | - | - | - | - | - | - |")
            continue
        wall = np.array([r.node_e2e_s / r.bare_s for r in rs])
        cpu = np.array([r.node_cpu_s / r.bare_cpu_s for r in rs])
        own = np.array([r.node_e2e_s / r.node_backend_s for r in rs])
        lines.append(f"| {case} | {len(rs)} | {_med_p90([r.node_e2e_s for r in rs])} | "
                     f"{1e3 * np.median([r.bare_s for r in rs]):.1f} | {describe(wall)} | {describe(cpu)} | "
                     f"{describe(own)} | {_med_p90([r.stamp_to_alert_s for r in rs])} | "
                     f"{_med_p90([r.stamp_to_last_s for r in rs])} |")
        verdicts.append(f"{case} {np.median(wall):.3f} wall, {np.median(cpu):.3f} CPU")
    lines += ["", f"Aim: node / bare at most {NODE_COST_TARGET:.2f}. Measured (medians): {'; '.join(verdicts)}."]
    if rounds.lost:
        lines.append(f"- {rounds.lost} frames got no complete outputs within 15 s and are not in the table.")
    lines += ["", "Where the node's time goes (medians over the rounds, ms; the node's own /diagnostics): queue = "
              "middleware reception to the worker taking the frame; convert = message to RGB array; alert = judge "
              "and publish `~/obstacle_alert`; image outputs = every subscribed image output computed, converted "
              "and published. The last column compares the inference inside the node with the bare one of the same "
              "round: the runtime's threads next to the node's Python threads (executor, worker) against a process "
              "that does nothing else.", "",
              "| outputs subscribed | queue | convert | Backend.infer (in the node) | alert | image outputs | "
              "end-to-end | node's Backend.infer / bare |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in CASES:
        rs = rounds.of(case)
        if rs:
            cells = [f"{1e3 * np.median([r.stages_s.get(s, np.nan) for r in rs]):.2f}" for s in STAGES[:2]]
            cells.append(f"{1e3 * np.median([r.node_backend_s for r in rs]):.1f}")
            cells += [f"{1e3 * np.median([r.stages_s.get(s, np.nan) for r in rs]):.2f}" for s in STAGES[2:]]
            cells.append(f"{1e3 * np.median([r.node_e2e_s for r in rs]):.1f}")
            cells.append(describe(np.array([r.node_backend_s / r.bare_s for r in rs])))
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines += ["", "### Memory over a long replay", ""]
    if rss is None:
        lines.append("Not measured in this run (`--rss-frames 0`).")
    else:
        growth = "within" if rss.growth_mb < RSS_GROWTH_TARGET_MB else "NOT within"
        other = ", ".join(f"{k} {v}" for k, v in sorted(rss.other_drops.items())) or "none"
        lines += [f"{rss.frames_sent} frames of {h}x{w} `rgb8` published at {rss.rate_hz:g} Hz from another process "
                  "with every output subscribed. The node serves the newest frame and drops the ones a newer frame "
                  "replaced while it was busy (latest frame wins), so every one of them went through the node's "
                  "subscription and mailbox, and the served ones through every output. RSS of the node process "
                  "(VmRSS) is sampled every second; the start value is taken once it has served its first frames "
                  "(arenas allocated).", "",
                  "| frames published | rate | seconds | received by the node | served | superseded | other drops | "
                  "RSS after warm-up MiB | RSS at end MiB | max MiB | growth MiB |",
                  "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
                  f"| {rss.frames_sent} | {rss.rate_hz:g} Hz | {rss.seconds:.0f} | {rss.frames_in} | "
                  f"{rss.frames_out} | {rss.superseded} | {other} | {rss.rss_start_mb:.1f} | {rss.rss_end_mb:.1f} | "
                  f"{rss.rss_max_mb:.1f} | {rss.growth_mb:+.1f} |", "",
                  f"Aim: growth under {RSS_GROWTH_TARGET_MB:.0f} MB: {growth}.", "",
                  "RSS along the run (seconds, frames served, MiB): " + ", ".join(
                      f"{t:.0f} s {n} {mb:.1f}" for t, n, mb in _spread(rss.samples, 9)) + "."]
    lines += ["", "How to read this:", "",
              "- node end-to-end: the node's own measure, from the middleware's reception of the frame (the DDS "
              "received_timestamp) to the return of its last publish (`latency_arrival_to_publish_ms_mean` in "
              f"/diagnostics; the run sets diagnostics_period {node_cost.DIAGNOSTICS_PERIOD_S:g} s so that each "
              "window holds one frame; publishing them costs the node about 1% of a frame's CPU time).",
              "- node / bare: per-round ratio, median (interquartile range). Wall: the end-to-end time over the bare "
              "run's. CPU: the node process's CPU time over the round (every thread, from the scheduler's "
              "counters) over this process's CPU time for the bare run; steadier than wall time when other jobs "
              "hold the cores. Node / its own Backend.infer: the end-to-end time over the inference inside the "
              "node, the overhead with no second process in the ratio.",
              "- stamp to alert / last output: camera stamp (taken right before publishing) to this process's DDS "
              "reception of `~/obstacle_alert` / of the last output; it adds both transports to the node's time.",
              "- The machine is shared: on 2 cores with a load average above 2 every wall time stretches; the "
              "ratios compare the two sides within each round."]
    return "\n".join(lines) + "\n"


def _spread(items: list, n: int) -> list:
    """`n` items evenly spread over `items`, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _node_model(args: argparse.Namespace, size: tuple[int, int] | None, tmp: Path) -> tuple[Path, str]:
    """The .onnx the node runs (exported untrained into `tmp` for --untrained) and a sentence saying which."""
    from densehybrid_ros.runtime import resolve_card

    if args.untrained:
        from densehybrid_ros.ros.testing import export_untrained_model

        h, w = size or parse_sizes(QUICK_SIZE)[0]
        path = export_untrained_model(tmp / f"untrained_{h}x{w}.onnx", h, w)
        return path, f"untrained export at {h}x{w} (weights do not change the speed)"
    model = args.model
    if model is None:
        cards = sorted(Path("models").glob("*.card.yaml"))
        if not cards:
            raise ValueError("no model in models/; pass --model or --untrained")
        model = cards[0]
    card = resolve_card(model)
    return card.model_path(), f"{card.name} ({card.model_path()}, sha256 {card.sha256[:12]})"


def run_node_cost(args: argparse.Namespace) -> int:
    from densehybrid_ros.ros import node_cost
    from densehybrid_ros.runtime import resolve_card

    try:
        rounds = _check_int("--node-rounds", args.node_rounds if args.node_rounds is not None
                            else (4 if args.quick else 20), 2, 1000)
        rss_frames = _check_int("--rss-frames", args.rss_frames, 0, 1_000_000)
        if not 0.5 <= args.rss_rate <= 120:
            raise ValueError(f"--rss-rate={args.rss_rate} is outside its valid range [0.5, 120]")
        threads = _check_int("--threads", args.threads, 1, 64)
        size = parse_sizes(args.sizes)[0] if args.sizes else (parse_sizes(QUICK_SIZE)[0] if args.quick else None)
    except ValueError as e:
        print(f"densehybrid benchmark: {e}", file=sys.stderr)
        return 2
    command = command_line(args)
    machine = machine_description(threads)
    with tempfile.TemporaryDirectory(prefix="densehybrid-node-cost-") as tmp:
        try:
            model, model_note = _node_model(args, size, Path(tmp))
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            print(f"densehybrid benchmark: {e}", file=sys.stderr)
            return 1
        if size is None:
            card = resolve_card(model)
            size = (int(card.input_height or 512), int(card.input_width or 1024))
        print(f"{command}\nnode cost: {model_note}, {size[0]}x{size[1]} frames, {rounds} rounds per case", flush=True)
        result = node_cost.measure_rounds(model, size[0], size[1], threads=threads, rounds_per_case=rounds,
                                          blocks=2 if rounds >= 4 else 1)
        rss = None
        if rss_frames:
            print(f"memory replay: {rss_frames} frames at {args.rss_rate:g} Hz", flush=True)
            rss = node_cost.rss_replay(model, size[0], size[1], frames=rss_frames, rate_hz=args.rss_rate,
                                       threads=threads)
    machine["load average at end"] = load_average()
    section = render_node_cost(result, rss, machine, command, model_note)
    _report_section(section, args.write, merge_node_cost, "node-cost")
    return 0


def _report_section(section: str, path: Path | None, merge: Callable[[str, str], str], what: str) -> None:
    """Print a section and, with --write, merge it into the report there (the rest of the file is kept)."""
    print()
    print(section)
    if path is not None:
        _write_atomic(path, merge(path.read_text() if path.is_file() else "# Benchmarks\n", section))
        print(f"wrote the {what} section of {path}")


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


# -- today's graph against a new one ------------------------------------------------------------------------------
GRAPHS = ("today's graph", "new graph", "new graph INT8")  # the pipelines of one runtime, in the tables' order
SPEED_TARGET = 0.5  # the new graph at least 2x faster than today's graph, same run


def parse_runtimes(text: str) -> list[str]:
    names = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in names if r not in RUNTIMES]
    if bad or "onnxruntime" not in names:
        raise ValueError(f"--runtimes: {text!r}: valid runtimes are {', '.join(RUNTIMES)} and onnxruntime must be one "
                         "of them (the ratios are taken to today's graph on onnxruntime)")
    return list(dict.fromkeys(names))


def _fixed_size(card: Any, flag: str, path: Path) -> tuple[int, int]:
    if card.input_height is None or card.input_width is None:
        raise ValueError(f"{flag} {path} is a dynamic-size graph; benchmark fixed-size exports (`densehybrid export` "
                         "without --dynamic)")
    return int(card.input_height), int(card.input_width)


@dataclass
class Candidate:
    """The three graphs of the side-by-side run, checked: INT8 made from the candidate, fixed sizes."""
    reference: Path
    candidate: Path
    int8: Path
    size: tuple[int, int]  # the reference's: the size of the side-by-side run
    candidate_size: tuple[int, int]
    described: dict[str, str]  # graph label -> what it is

    @property
    def resize(self) -> bool:
        return self.candidate_size != self.size


def check_candidate(reference: Path, candidate: Path, int8: Path | None) -> Candidate:
    """The graphs named by --reference, --candidate and --candidate-int8, or ValueError/ConfigError naming the file."""
    from densehybrid_ros.runtime import resolve_card
    from densehybrid_ros.runtime.quantize import default_output

    int8 = int8 if int8 is not None else default_output(candidate)
    for flag, path in (("--reference", reference), ("--candidate", candidate)):
        if not Path(path).is_file():
            raise ValueError(f"{flag} {path}: model file not found")
    if not Path(int8).is_file():
        raise ValueError(f"--candidate-int8 {int8}: model file not found; write it with `densehybrid quantize --model "
                         f"{candidate} --out {int8} --calib-data <image or split folder>`")
    ref, cand, q = resolve_card(reference), resolve_card(candidate), resolve_card(int8)
    if cand.quantization:
        raise ValueError(f"--candidate {candidate} is an INT8 graph; pass the float graph it was quantized from")
    if not q.quantization:
        raise ValueError(f"--candidate-int8 {int8} is not an INT8 graph (its card has no quantization section)")
    made_from = str((q.quantization.get("reference") or {}).get("sha256", ""))
    if made_from != cand.sha256:
        raise ValueError(f"--candidate-int8 {int8} was quantized from another graph (sha256 {made_from[:12] or '?'}), "
                         f"not from --candidate {candidate} (sha256 {cand.sha256[:12]})")
    size = _fixed_size(ref, "--reference", reference)
    cand_size = _fixed_size(cand, "--candidate", candidate)

    def describe_graph(card: Any, path: Path) -> str:
        net = (card.training or {}).get("network_config") or {}
        blends = "/".join(net.get("decoder_blends") or ("conv3x3",) * 3)
        width = int(net.get("decoder_width", 128))
        text = (f"{card.name} (`{path}`, {card.input_height}x{card.input_width}, sha256 {card.sha256[:12]}; decoder "
                f"blends {blends}, width {width}, stride-4 width {int(net.get('stride4_width') or 0) or width}")
        ckpt = (card.training or {}).get("checkpoint")
        text += f"; weights of {ckpt}, step {card.training.get('step')})" if ckpt else ")"
        if card.quantization:
            c = card.quantization.get("calibration") or {}
            text += (f"; {card.quantization.get('format', 'INT8')}, {card.quantization.get('method')}, calibrated on "
                     f"{c.get('frames')} frames of `{c.get('source')}`, first "
                     f"{card.quantization.get('float_first_convolutions', 0)} convolutions and the score head in float")
        return text

    described = {"today's graph": describe_graph(ref, reference), "new graph": describe_graph(cand, candidate),
                 "new graph INT8": describe_graph(q, int8)}
    return Candidate(Path(reference), Path(candidate), Path(int8), size, cand_size, described)


def _ratio_cells(t: Any, name: str, reference: str) -> str:
    if reference not in t.wall:
        return "- | -"
    med, q1, q3 = t.ratio(name, reference=reference)
    return f"{med:.3f} ({q1:.3f}-{q3:.3f}) | {t.ratio(name, reference=reference, clock='cpu')[0]:.3f}"


def render_speed(t: Any, scale: list, cand: Candidate, runtimes: list[str], machine: dict[str, str], command: str,
                 notes: list[str]) -> str:
    """Markdown of a --candidate run: today's graph, the new graph and its INT8 copy side by side (`t`, a
    cli.runtime_speed.RuntimeTiming whose pipelines are "<runtime> <graph>"), then the new graph's scale table."""
    from densehybrid_ros.cli.runtime_speed import scale_markdown

    h, w = t.size
    headline = f"onnxruntime {GRAPHS[0]}"
    lines = ["## Today's graph, the new graph and the new graph in INT8", "",
             f"Produced by `{command}` ({machine['date']}; load average {machine['load average at start']} at the "
             f"start, {machine['load average at end']} at the end; {machine['cores']}).", ""]
    lines += [f"- {label}: {text}." for label, text in cand.described.items()]
    lines += [f"- {n}." for n in notes]
    lines += ["", f"One run of {t.rounds} interleaved rounds at {h}x{w}: every pipeline is `Backend.infer` on the same "
              "frame (a rendered road scene), the order rotating each round. Ratios are medians of the per-round "
              "ratios (interquartile range in brackets), below 1 is faster; wall clock and CPU time (the processor "
              "time of this process, which does not grow while other jobs hold the cores).", "",
              f"| runtime | graph | median ms | p90 ms | frames/s | CPU ms | / today's graph on onnxruntime, wall | "
              f"CPU | / today's graph on the same runtime, wall | CPU |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for runtime in runtimes:
        for graph in GRAPHS:
            name = f"{runtime} {graph}"
            if name in t.wall:
                med = t.median_ms(name)
                lines.append(f"| {runtime} | {graph} | {med:.1f} | {1000 * np.percentile(t.wall[name], 90):.1f} | "
                             f"{1000 / med:.2f} | {1000 * np.median(t.cpu[name]):.1f} | "
                             f"{_ratio_cells(t, name, headline)} | {_ratio_cells(t, name, f'{runtime} {GRAPHS[0]}')} |")
            else:
                lines.append(f"| {runtime} | {graph} | not run: {t.skipped.get(name, 'not loaded')} | | | | | | | |")
    if t.note:
        lines.append(f"\n{t.note}.")
    lines.append("")
    new = f"onnxruntime {GRAPHS[1]}"
    if new in t.wall and headline in t.wall:
        wall, cpu = t.ratio(new, reference=headline)[0], t.ratio(new, reference=headline, clock="cpu")[0]
        met = {True: "met", False: "not met"}
        lines.append(f"New graph / today's graph, both FP32 on onnxruntime: {wall:.3f} wall clock, {cpu:.3f} CPU time "
                     f"({1 / wall:.2f}x and {1 / cpu:.2f}x as fast). Target at most {SPEED_TARGET:.2f} (2x): "
                     f"{met[wall <= SPEED_TARGET]} on the wall clock, {met[cpu <= SPEED_TARGET]} on CPU time.")
        fastest = min(t.wall, key=lambda n: float(np.median(t.wall[n] / t.wall[headline])))
        lines.append(f"Fastest pipeline: {fastest}, {t.ratio(fastest, reference=headline)[0]:.3f} of today's graph "
                     f"on onnxruntime (wall), {t.ratio(fastest, reference=headline, clock='cpu')[0]:.3f} (CPU).")
    if scale:
        first, last = scale[0], scale[-1]
        lines += ["", "### Scale table: the new graph, FP32 and INT8", "",
                  "The new graph re-exported at each size from its own weights (`model/onnx_weights.py`, same export "
                  "settings) and quantized with the settings recorded in its INT8 card (calibration frames: "
                  "`--scale-calib-frames`; the ranges do not change the speed). Each size is its own interleaved run; "
                  "the ratios are to onnxruntime FP32 at the same size. MP = megapixels.", "",
                  scale_markdown(scale), ""]
        mp0, mp1 = (s.size[0] * s.size[1] / 1e6 for s in (first, last))
        growth = []
        for name in first.wall:
            if name in last.wall:
                c0, c1 = (1000 * float(np.median(s.cpu[name])) / mp for s, mp in ((first, mp0), (last, mp1)))
                growth.append(f"{name} {c0:.0f} -> {c1:.0f} ({c1 / c0:.2f}x)")
        if len(scale) > 1:
            lines.append(f"CPU ms per megapixel from {first.size[0]}x{first.size[1]} to {last.size[0]}x"
                         f"{last.size[1]} ({mp1 / mp0:.0f}x the pixels): {'; '.join(growth)}. Linear in pixels would "
                         "keep it constant.")
        cut = [f"{s.size[0]}x{s.size[1]}: {s.note}" for s in scale if s.note]
        skipped = sorted({f"{n} ({why.splitlines()[0]})" for s in scale for n, why in s.skipped.items()})
        lines += [f"- {c}." for c in cut] + [f"- not run: {s}." for s in skipped]
    lines += ["", "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()
                                          if k not in ("date", "load average at start", "load average at end")) + ".",
              "", "How to read this: the machine may be shared (the load average above says how much); a job that "
              "slows it for a few seconds slows every pipeline of a round alike, so the per-round ratios hold while "
              "the absolute times do not. Today's graph is the speed reference kept from before the decoder study "
              "(docs/NETWORK_DESIGN.md); the new graph is timed at the same input size. onnxruntime runs with thread "
              "spinning off (spinning workers would steal the cores from the next pipeline in the round); OpenVINO "
              "with the latency hint, FP32 precision and no pinning (docs/QUANTIZATION.md)."]
    return "\n".join(lines) + "\n"


def run_candidate(args: argparse.Namespace) -> int:
    from densehybrid_ros.cli import runtime_speed
    from densehybrid_ros.config.validation import ConfigError

    try:
        if args.node_cost:
            raise ValueError("--candidate and --node-cost are separate runs; pass one of them")
        repeats = _check_int("--repeats", args.repeats if args.repeats is not None else (3 if args.quick else 20),
                             3, 10000)
        warmup = _check_int("--warmup", args.warmup if args.warmup is not None else (1 if args.quick else 2), 0, 100)
        scale_repeats = _check_int("--scale-repeats", args.scale_repeats if args.scale_repeats is not None
                                   else (3 if args.quick else 8), 3, 10000)
        calib_frames = _check_int("--scale-calib-frames", args.scale_calib_frames, 1, 1000)
        threads = _check_int("--threads", args.threads, 1, 64)
        if not 1 <= args.budget <= 3600:
            raise ValueError(f"--budget={args.budget} is outside its valid range [1, 3600]")
        runtimes = parse_runtimes(args.runtimes)
        scale_sizes = ([] if args.scale_sizes.strip().lower() in ("", "none") else parse_sizes(args.scale_sizes))
        cand = check_candidate(args.reference, args.candidate, args.candidate_int8)
    except (ValueError, ConfigError) as e:
        print(f"densehybrid benchmark: {e}", file=sys.stderr)
        return 2
    command = command_line(args)
    machine = machine_description(threads)
    print(command, flush=True)
    notes = []
    with tempfile.TemporaryDirectory(prefix="densehybrid-candidate-") as tmp:
        fp32, int8 = cand.candidate, cand.int8
        if cand.resize:
            # Like for like: the ratio is only meaningful at the reference's input size.
            from densehybrid_ros.runtime import resolve_card

            h, w = cand.size
            int8_card = resolve_card(int8)
            frames = int((int8_card.quantization.get("calibration") or {}).get("frames", 32))
            print(f"re-exporting the new graph at {h}x{w} (its own is {cand.candidate_size[0]}x"
                  f"{cand.candidate_size[1]}) and quantizing it on {frames} frames", flush=True)
            fp32 = runtime_speed.export_at(cand.candidate, cand.size, Path(tmp) / f"new_{h}x{w}.onnx")
            int8 = runtime_speed.quantize_at(int8_card, fp32, Path(tmp) / f"new_{h}x{w}_int8.onnx", frames=frames)
            notes.append(f"the new graph and its INT8 copy were timed re-exported at {h}x{w}, the reference's size "
                         f"(same weights and export settings; INT8 with its card's settings, {frames} calibration "
                         "frames)")
        t0 = time.perf_counter()
        timing = runtime_speed.time_runtimes(dict(zip(GRAPHS, (cand.reference, fp32, int8))),
                                             runtime_speed.frame_of(cand.size), runtimes, threads, repeats, warmup,
                                             args.budget)
        print(f"{cand.size[0]}x{cand.size[1]}: " + ", ".join(f"{n} {timing.median_ms(n):.1f} ms" for n in timing.wall)
              + f" ({timing.rounds} rounds, {time.perf_counter() - t0:.0f} s)", flush=True)
    scale: list = []

    def render(progress: str | None = None) -> str:
        machine["load average at end"] = load_average()
        return render_speed(timing, scale, cand, runtimes, machine, command, notes + ([progress] if progress else []))

    for i, (h, w) in enumerate(scale_sizes):
        if args.write is not None:  # a long scale table on a loaded machine: what is measured is written already
            progress = f"scale table in progress: {i} of {len(scale_sizes)} sizes measured (this section is rewritten " \
                       "when the run ends)"
            _write_atomic(args.write, merge_speed(args.write.read_text() if args.write.is_file() else "# Benchmarks\n",
                                                  render(progress)))
        try:
            scale += runtime_speed.scale_table(cand.candidate, cand.int8, [(h, w)], runtimes, threads, scale_repeats,
                                               args.budget, frames=calib_frames,
                                               log=lambda text: print(f"scale {text}", flush=True))
        except Exception as e:  # what was measured before is not lost to a failed export or quantization
            notes.append(f"scale table stopped at {h}x{w}: {type(e).__name__}: {e}")
            print(f"densehybrid benchmark: scale table stopped at {h}x{w}: {e}", file=sys.stderr)
            break
    _report_section(render(), args.write, merge_speed, "side-by-side")
    return 0


# -- the command ------------------------------------------------------------------------------------------------

def _network_and_settings(args: argparse.Namespace) -> tuple[Any, dict[str, str], str]:
    """The network to benchmark, the export settings of the shipped graph, and a sentence saying which."""
    import torch

    from densehybrid_ros.config.model_card import load_model_card
    from densehybrid_ros.model.densehybrid import NetworkConfig, build_model, load_network_checkpoint

    settings = {"score_type": "hybrid", "scoring_resolution": "decoder", "score_dtype": "float32"}
    model_path = args.model
    if model_path is None and not args.untrained and Path("models").is_dir():
        cards = sorted(Path("models").glob("*.card.yaml"))
        model_path = cards[0] if cards else None
    if model_path is None:
        torch.manual_seed(0)
        return (build_model(NetworkConfig()).eval(), settings,
                "Network: untrained default configuration (ImageNet EfficientNet-Lite0, decoder width 128, K=14, "
                "seed 0); weights do not change the speed.")
    card = load_model_card(model_path)
    settings = {"score_type": card.score_type, "scoring_resolution": card.scoring_resolution,
                "score_dtype": card.score_dtype}
    training = card.training or {}
    ckpt = training.get("checkpoint")
    if ckpt and Path(str(ckpt)).is_file():
        net, _ = load_network_checkpoint(ckpt)
        return net, settings, f"Network: {card.name} ({card.model_path()}), weights from {ckpt}."
    if "network_config" not in training:
        raise ValueError(f"model card {card.card_path} has no training.network_config: cannot rebuild the network "
                         "for the torch pipelines; use --untrained")
    torch.manual_seed(int(training.get("seed", 0)))
    net = build_model(training["network_config"]).eval()
    return (net, settings, f"Network: the architecture and export settings of {card.name} ({card.model_path()}); "
                           "its checkpoint is not on this machine, so the weights are re-initialised (weights do "
                           "not change the speed).")


def _frame(h: int, w: int) -> np.ndarray:
    """A smooth deterministic frame (regions and edges like a photo, not per-pixel noise)."""
    import cv2

    small = np.random.default_rng(0).integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


MODE_FLAGS = ("node_cost", "candidate", "quick")  # written first, in this order


def command_line(args: argparse.Namespace) -> str:
    """The command that repeats this run, for every mode: the mode flags first, then each option that differs from
    its default in the parser's order (`--threads` always: every number depends on it)."""
    parser = argparse.ArgumentParser(add_help=False)
    configure(parser)
    options = [a for a in parser._actions if a.option_strings]
    options.sort(key=lambda a: MODE_FLAGS.index(a.dest) if a.dest in MODE_FLAGS else len(MODE_FLAGS))
    parts = ["densehybrid benchmark"]
    for action in options:
        value = getattr(args, action.dest, action.default)
        if value == action.default and action.dest != "threads":
            continue
        if action.nargs == 0:  # a flag
            parts.append(action.option_strings[0])
        else:
            parts.append(f"{action.option_strings[0]} {value:g}" if isinstance(value, float)
                         else f"{action.option_strings[0]} {value}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "candidate", None) is not None:
        return run_candidate(args)
    if getattr(args, "node_cost", False):
        return run_node_cost(args)
    try:
        sizes = parse_sizes(args.sizes or (QUICK_SIZE if args.quick else DEFAULT_SIZES))
        backends = parse_backends(args.backends)
        repeats = _check_int("--repeats", args.repeats if args.repeats is not None else (3 if args.quick else 20),
                             3, 10000)
        warmup = _check_int("--warmup", args.warmup if args.warmup is not None else (1 if args.quick else 3), 0, 100)
        threads = _check_int("--threads", args.threads, 1, 64)
        if not 1 <= args.budget <= 3600:
            raise ValueError(f"--budget={args.budget} is outside its valid range [1, 3600]")
    except ValueError as e:
        print(f"densehybrid benchmark: {e}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("densehybrid benchmark: needs torch (it exports the graphs it times and runs the eager baselines); "
              "install requirements/training.txt", file=sys.stderr)
        return 1
    import onnxruntime as ort

    from densehybrid_ros.model.export import export_onnx
    from densehybrid_ros.runtime import create_backend
    from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeOptions, session_options

    torch.set_num_threads(threads)
    command = command_line(args)
    machine = machine_description(threads)
    try:
        net, settings, model_note = _network_and_settings(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"densehybrid benchmark: {e}", file=sys.stderr)
        return 1
    print(f"{command}\n{model_note}")
    results = []
    ort_options = OnnxRuntimeOptions(threads=threads, spin=False, warmup=0)
    with tempfile.TemporaryDirectory(prefix="densehybrid-bench-") as tmp:
        for h, w in sizes:
            t0 = time.perf_counter()
            dh_path, sem_path = Path(tmp) / f"dh_{h}x{w}.onnx", Path(tmp) / f"sem_{h}x{w}.onnx"
            export_onnx(net, dh_path, height=h, width=w, **settings)
            export_onnx(net, sem_path, height=h, width=w, heads="semantic", **settings)
            frame = _frame(h, w)
            ours = create_backend(dh_path, threads=threads, spin=False, warmup=0)
            semantic = ort.InferenceSession(str(sem_path), session_options(ort_options),
                                            providers=ours.providers)
            feed = {"image": frame[None]}
            pipelines: dict[str, Callable[[], Any]] = {"onnxruntime": lambda: ours.infer(frame),
                                                       "semantic_graph": lambda: semantic.run(None, feed)}
            eager = None
            if "torch" in backends:
                eager = create_backend(dh_path, backend="torch", model=net, warmup=0)
                pipelines["torch"] = lambda: eager.infer(frame)
                pipelines["official_style"] = lambda: official_style_pipeline(net, frame)
            wall, cpu, rounds, note = measure_interleaved(pipelines, repeats, warmup, args.budget)
            # The graph overhead (ratio a) is a few per cent, smaller than the round-to-round noise of a shared
            # machine, and the eager pipelines make full rounds slow: add rounds of just the two graphs.
            pair = {k: pipelines[k] for k in ("onnxruntime", "semantic_graph")}
            pair_wall, pair_cpu, pair_rounds, _ = measure_interleaved(pair, repeats, 0, args.budget / 2)
            res = SizeResult((h, w), wall, cpu, rounds, note)
            res.pair_wall = {k: np.concatenate([wall[k], pair_wall[k]]) for k in pair}
            res.pair_cpu = {k: np.concatenate([cpu[k], pair_cpu[k]]) for k in pair}
            results.append(res)
            summary = ", ".join(f"{n} {1000 * res.stats(n)[0]:.1f} ms" for n in wall)
            print(f"{h}x{w}: {summary} ({rounds} rounds, {time.perf_counter() - t0:.0f} s)", flush=True)
            ours.close()
            if eager is not None:
                eager.close()
            del semantic
    machine["load average at end"] = load_average()
    report = render_markdown(results, machine, command, model_note, backends)
    print()
    print(report)
    if args.write is not None:
        # The --candidate section, the node-cost section (written by --node-cost runs) and what follows it are kept.
        existing = args.write.read_text() if args.write.is_file() else ""
        _write_atomic(args.write, merge_speed(report, speed_section(existing)) + carried_over(existing))
        print(f"wrote {args.write}")
    return 0
