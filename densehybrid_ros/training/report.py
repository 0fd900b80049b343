"""Training report: loss curves and settings of the runs behind a shipped model, from their scalars.csv files.

`python -m densehybrid_ros.training.report --runs runs/synthetic_stage1 runs/synthetic_stage2 --out models/training`
writes `<out>.png` (curves) and `<out>.md` (settings, steps, wall time, final values).
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import yaml

CURVES = (
    ("loss_class", "class loss (CE, inliers)"),
    ("loss_dataset_posterior", "dataset-posterior BCE"),
    ("loss_likelihood", "likelihood term: logsumexp(s) on negatives"),
    ("pixel_accuracy", "pixel accuracy (training crops)"),
    ("p_out_inlier", "mean P(d_out|x) on inliers"),
    ("p_out_negative", "mean P(d_out|x) on negatives"),
)


def read_scalars(run: Path) -> dict[str, list[float]]:
    with open(run / "scalars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{run / 'scalars.csv'} has no rows")
    out: dict[str, list[float]] = {k: [] for k in rows[0]}
    for row in rows:
        for k, v in row.items():
            out[k].append(float(v) if v not in ("", None) else math.nan)
    return out


def _final(values: list[float]) -> float:
    finite = [v for v in values[-5:] if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def write_report(runs: list[Path], out: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = [read_scalars(r) for r in runs]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    offset = 0.0
    for run, s in zip(runs, scalars):
        steps = [offset + v for v in s["step"]]
        for ax, (key, title) in zip(axes.flat, CURVES):
            if key in s and any(not math.isnan(v) for v in s[key]):
                ax.plot(steps, s[key], label=run.name)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step (stages concatenated)", fontsize=8)
        offset = steps[-1]
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    png = out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)

    lines = ["# Training report", "", f"![curves]({png.name})", "",
             "| run | stage | steps | crop | batch | lr | wall time | final class loss | final pixel acc. |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for run, s in zip(runs, scalars):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        minutes = s["elapsed_s"][-1] / 60.0
        lines.append(f"| {run.name} | {cfg['stage']} | {int(s['step'][-1])} | {cfg['data']['crop']} | "
                     f"{cfg['optim']['batch_size']} | {cfg['optim']['lr']} | {minutes:.0f} min | "
                     f"{_final(s['loss_class']):.3f} | {_final(s['pixel_accuracy']):.3f} |")
    lines += ["", "Final values are means of the last five logged points. Loss weights and every other setting are in "
              "each run's config below.", ""]
    for run in runs:
        lines += [f"## {run.name} config", "", "```yaml", (run / "config.yaml").read_text().rstrip(), "```", ""]
    md = out.with_suffix(".md")
    md.write_text("\n".join(lines))
    return png, md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True, help="path without suffix; .png and .md are written")
    args = parser.parse_args(argv)
    png, md = write_report(args.runs, args.out)
    print(f"wrote {png} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
