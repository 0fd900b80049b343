"""Decoder variants timed against a reference graph under onnxruntime, interleaved in one run (docs/NETWORK_DESIGN.md).

Each variant is a `NetworkConfig` change, built with untrained weights (timing does not depend on their values:
they are seeded, with no subnormal numbers) and exported with the project's exporter (`export_onnx`, the options of
the shipped graph: 512x1024, raw outputs). The reference is an existing .onnx file, by default the shipped model,
so "today's graph" is exactly the one the node loads. Sessions use the backend's own settings
(`runtime.onnxruntime_backend.session_options`), spinning off, and rounds are interleaved with the order rotated
(`evaluation.timing.measure_interleaved`), so load on a shared machine hits every graph alike; ratios are per round.

    python -m densehybrid_ros.cli.network_speed --threads 2 --repeats 30
    python -m densehybrid_ros.cli.network_speed --variants sep4_sep8 --profile sep4_sep8 --profile today
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.model.densehybrid import NetworkConfig

REFERENCE = "today"
DEFAULT_REFERENCE_MODEL = Path(__file__).resolve().parents[2] / "models" / "densehybrid_lite0_synthetic.onnx"

# name -> NetworkConfig fields that differ from the original network (the shipped model's).
# "original" is today's network through today's exporter (pads folded into the convolutions).
VARIANTS: dict[str, dict[str, Any]] = {
    "original": {},
    "sep4": {"decoder_blends": ["conv3x3", "conv3x3", "separable"]},
    "sep4_sep8": {"decoder_blends": ["conv3x3", "separable", "separable"]},
    "sep_all": {"decoder_blends": ["separable", "separable", "separable"]},
    "none4": {"decoder_blends": ["conv3x3", "conv3x3", "none"]},
    "none4_sep8": {"decoder_blends": ["conv3x3", "separable", "none"]},
    "w64_4": {"stride4_width": 64},
    "w32_4_sep8": {"stride4_width": 32, "decoder_blends": ["conv3x3", "separable", "conv3x3"]},
    "w32_4_sep": {"stride4_width": 32, "decoder_blends": ["separable", "separable", "conv3x3"]},
    "w64_4_sep": {"stride4_width": 64, "decoder_blends": ["separable", "separable", "conv3x3"]},
    "w64_4_sep_all": {"stride4_width": 64, "decoder_blends": ["separable", "separable", "separable"]},
    "w32_4_sep_all": {"stride4_width": 32, "decoder_blends": ["separable", "separable", "separable"]},
}


def network_config(variant: str, num_classes: int = 14) -> NetworkConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return NetworkConfig(num_classes=num_classes, pretrained_backbone=False, **VARIANTS[variant])


def export_variant(variant: str, out: Path, height: int, width: int, seed: int = 0) -> dict[str, Any]:
    """Export the untrained variant to `out` as the shipped graph is exported; returns its size figures."""
    import torch

    from densehybrid_ros.model.densehybrid import DenseHybridNet
    from densehybrid_ros.model.export import export_onnx

    torch.manual_seed(seed)
    net = DenseHybridNet(network_config(variant)).eval()
    randomise_batchnorms(net, seed)
    export_onnx(net, out, height=height, width=width, raw_outputs=True, name=f"speed_{variant}",
                training={"untrained": True, "seed": seed})
    decoder = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("backbone."))
    return {"params": sum(p.numel() for p in net.parameters()), "decoder_and_head_params": decoder,
            "decoder_gmac": decoder_gmac(net, height, width)}


def randomise_batchnorms(net: Any, seed: int = 0) -> None:
    """Give every BN distinct, trained-like parameters. Freshly initialised BNs are all identical (scale 1, shift 0,
    mean 0, variance 1): the exporter then stores the two heads' BNs once and onnxruntime fuses them into the
    convolution before, a shortcut no trained network gets (its heads' BNs have different scales and shifts)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def decoder_gmac(net: Any, height: int, width: int) -> float:
    """Multiply-adds (1e9) of the decoder's and heads' convolutions for one (height, width) frame."""
    import torch

    total = [0]

    def count(module, inputs, output):
        k = module.weight[0].numel()  # (in / groups) * kh * kw
        total[0] += k * output.numel()

    handles = [m.register_forward_hook(count) for name, m in net.named_modules()
               if isinstance(m, torch.nn.Conv2d) and not name.startswith("backbone.")]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, height, width))
    finally:
        for h in handles:
            h.remove()
    return total[0] / 1e9


def _session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeOptions, session_options

    so = session_options(OnnxRuntimeOptions(threads=threads, spin=False, warmup=0))
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


PARTS = (("/_conv_stem", "backbone"), ("/_blocks.", "backbone"), ("/Clip_", "backbone"),
         ("/decoder/spp/", "decoder: pyramid pooling"), ("/decoder/up16/", "decoder: step to stride 16"),
         ("/decoder/up8/", "decoder: step to stride 8"), ("/decoder/up4/", "decoder: step to stride 4"),
         ("/class_head/", "heads"), ("/ood_head/", "heads"))


def network_part(node: str, op: str) -> str:
    """The part of the network an optimised node belongs to, from the name onnxruntime gave it (the output it
    computes: a convolution fused with the BN-ReLU after it carries that BN-ReLU's name). Layout conversions and
    pads count apart; the rest is pre- and post-processing."""
    if op in ("ReorderInput", "ReorderOutput", "Pad"):
        return "layout conversions and pads"
    for prefix, part in PARTS:
        if node.startswith(prefix):
            return part
    return "pre/post-processing"


def profile_graph(path: Path, feed: dict[str, np.ndarray], threads: int, runs: int, workdir: Path,
                  top: int = 12) -> dict[str, Any]:
    """onnxruntime's own per-node timing: each node's median over `runs` frames (after two warm-up frames, whose
    first-touch allocations cost several times a normal frame), summed by operator type, and the `top` nodes."""
    session = _session(path, threads, str(workdir / f"profile_{path.stem}"))
    for _ in range(2 + runs):
        session.run(None, feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    node_type: dict[str, str] = {}
    for ev in trace:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        per_node[name].append(ev["dur"] / 1e3)
        node_type[name] = ev["args"].get("op_name", "?")
    median = {k: float(np.median(v[2:] if len(v) > 2 else v)) for k, v in per_node.items()}
    by_type: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    for k, ms in median.items():
        by_type[node_type[k]] += ms
        by_part[network_part(k, node_type[k])] += ms
    return {"frames": runs, "kernel_ms": sum(median.values()),
            "by_type": sorted(by_type.items(), key=lambda kv: -kv[1]),
            "by_part": sorted(by_part.items(), key=lambda kv: -kv[1]),
            "top_nodes": [(k, node_type[k], ms) for k, ms in sorted(median.items(), key=lambda kv: -kv[1])[:top]]}


def run(variants: list[str], reference_model: Path, height: int, width: int, threads: int, repeats: int,
        budget: float, profile: list[str], profile_runs: int, out_json: Path | None,
        extra: dict[str, Path] | None = None) -> dict[str, Any]:
    from densehybrid_ros.evaluation.timing import measure_interleaved

    rng = np.random.default_rng(0)
    feed = {"image": rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)}
    results: dict[str, Any] = {"height": height, "width": width, "threads": threads, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="network_speed_") as tmp:
        tmp_path = Path(tmp)
        paths = {REFERENCE: Path(reference_model)}
        for v in variants:
            paths[v] = tmp_path / f"{v}.onnx"
            results["variants"][v] = {"config": VARIANTS[v], **export_variant(v, paths[v], height, width)}
            print(f"exported {v}: {results['variants'][v]}", flush=True)
        for name, path in (extra or {}).items():
            paths[name] = Path(path)
            results["variants"][name] = {"file": str(path)}
        sessions = {k: _session(p, threads) for k, p in paths.items()}
        pipelines = {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}
        wall, cpu, rounds, note = measure_interleaved(pipelines, repeats, warmup=2, budget=budget)
        results.update(rounds=rounds, note=note, load_after=os.getloadavg())
        print(f"\n{height}x{width}, onnxruntime {threads} thread(s), {rounds} interleaved rounds {note}; "
              f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'graph':<14}{'median ms':>10}{'p90 ms':>9}{'cpu ms':>9}{'x today (wall)':>17}{'x today (cpu)':>16}")
        for k in paths:
            w_ratio = wall[k] / wall[REFERENCE]
            c_ratio = cpu[k] / cpu[REFERENCE]
            row = {"median_ms": 1e3 * float(np.median(wall[k])), "p90_ms": 1e3 * float(np.percentile(wall[k], 90)),
                   "cpu_ms": 1e3 * float(np.median(cpu[k])), "ratio_wall": float(np.median(w_ratio)),
                   "ratio_wall_iqr": [float(x) for x in np.percentile(w_ratio, [25, 75])],
                   "ratio_cpu": float(np.median(c_ratio))}
            results["variants"].setdefault(k, {}).update(row)
            print(f"{k:<14}{row['median_ms']:>10.1f}{row['p90_ms']:>9.1f}{row['cpu_ms']:>9.1f}"
                  f"{row['ratio_wall']:>11.3f} ({row['ratio_wall_iqr'][0]:.2f}-{row['ratio_wall_iqr'][1]:.2f})"
                  f"{row['ratio_cpu']:>12.3f}")
        del sessions
        for k in profile:
            if k not in paths:
                raise ValueError(f"--profile {k}: not among the timed graphs {', '.join(paths)}")
            prof = profile_graph(paths[k], feed, threads, profile_runs, tmp_path)
            results["variants"][k]["profile"] = prof
            print(f"\nprofile {k} ({prof['frames']} frames): kernels {prof['kernel_ms']:.1f} ms/frame")
            for op, ms in prof["by_type"][:10]:
                print(f"  {op:<28}{ms:8.1f} ms  {100 * ms / prof['kernel_ms']:5.1f}%")
            for part, ms in prof["by_part"]:
                print(f"  {part:<28}{ms:8.1f} ms  {100 * ms / prof['kernel_ms']:5.1f}%")
            for name, op, ms in prof["top_nodes"]:
                print(f"  {name[:60]:<62}{op:<16}{ms:7.1f} ms")
    if out_json is not None:
        tmp_json = out_json.with_name(out_json.name + ".tmp")
        tmp_json.write_text(json.dumps(results, indent=1))
        tmp_json.replace(out_json)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="all", help=f"comma-separated among {', '.join(VARIANTS)}, or all")
    p.add_argument("--reference", default=str(DEFAULT_REFERENCE_MODEL), help="today's graph (.onnx)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30, help="interleaved rounds")
    p.add_argument("--budget", type=float, default=900.0, help="wall seconds for the timed rounds")
    p.add_argument("--profile", action="append", default=[], help="graph to profile afterwards (repeatable)")
    p.add_argument("--profile-runs", type=int, default=10)
    p.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                   help="also time an exported model, e.g. a trained candidate (repeatable)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args(argv)
    variants = list(VARIANTS) if a.variants == "all" else [v.strip() for v in a.variants.split(",") if v.strip()]
    extra = {}
    for item in a.extra:
        name, _, path = item.partition("=")
        if not name or not path or not Path(path).is_file():
            p.error(f"--extra {item!r}: expected NAME=PATH of an existing .onnx file")
        if name in VARIANTS or name == REFERENCE or name in extra:
            p.error(f"--extra {item!r}: the name {name!r} is taken")
        extra[name] = Path(path)
    for v in variants:
        if v not in VARIANTS:
            p.error(f"--variants: unknown {v!r}; known: {', '.join(VARIANTS)}")
    if not Path(a.reference).is_file():
        p.error(f"--reference: {a.reference} not found")
    import torch
    torch.set_num_threads(1)
    run(variants, Path(a.reference), a.height, a.width, a.threads, a.repeats, a.budget, a.profile, a.profile_runs,
        a.json, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
