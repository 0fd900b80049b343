"""The evaluation report: report.md (Markdown tables), metrics.json (machine-readable) and PNG plots.

metrics.json is the source of every number in report.md and of the numbers copied into the model card
(`card_metrics`), so the three can never disagree.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.core.open_set import open_set_map
from densehybrid_ros.core.overlay import colourise
from densehybrid_ros.evaluation.runner import Evaluation

SCORE_LABELS = {
    "hybrid": "hybrid (eq. 6)", "generative": "generative only", "discriminative": "discriminative only",
    "max_softmax": "max-softmax", "max_logit": "max-logit", "entropy": "entropy", "eel": "EEL",
}


def _pct(x: Any, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def _num(x: Any, fmt: str = ".4g") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{fmt}}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _label(name: str) -> str:
    return SCORE_LABELS.get(name, name)


# -- markdown -------------------------------------------------------------------------------------------------


def render_markdown(m: dict[str, Any], plots: dict[str, str], evaluation_doc_link: str = "../EVALUATION.md") -> str:
    """`evaluation_doc_link`: docs/EVALUATION.md relative to the report's folder (the default fits docs/report/)."""
    scores = m["scores"]
    main = m["model"]["score_type"] if m["model"]["score_type"] in scores else next(iter(scores))
    d = m["data"]
    out = [f"# Evaluation: {m['model']['name']} on {Path(d['path']).name}", ""]
    out.append(f"Model `{m['model']['file']}` (sha256 `{m['model']['sha256'][:12]}…`, deployed score "
               f"**{m['model']['score_type']}**, scores at {m['model']['scoring_resolution']} resolution) on "
               f"`{d['path']}` ({d['format']}, {d['images']} images: "
               + ", ".join(f"{c} {n}" for c, n in d["conditions"].items()) + "). "
               f"Backend {m['model']['backend']}; {m['timing']['seconds']:.0f} s in total. "
               f"Definitions: [docs/EVALUATION.md]({evaluation_doc_link}) (numbers in %, void excluded).")
    out.append("")

    out.append("## Pixel-level anomaly detection")
    out.append("")
    out.append("Pooled over every pixel of the split; per image: mean over the "
               f"{scores[main]['per_image']['images']} images that contain anomalies.")
    out.append("")
    rows = []
    for name, s in scores.items():
        p, q = s["pooled"], s["per_image"]
        rows.append([_label(name), _pct(p["ap"]), _pct(p["auroc"]), _pct(p["fpr95"]),
                     _pct(q["ap"]), _pct(q["auroc"]), _pct(q["fpr95"])])
    out.append(_table(["score", "AP", "AUROC", "FPR95", "AP / image", "AUROC / image", "FPR95 / image"], rows))
    out.append("")
    for key in ("pr", "roc"):
        if key in plots:
            out.append(f"![{key}]({plots[key]})")
    out.append("")

    closed = m.get("closed_set")
    if closed is not None:
        out.append("## Closed-set and open-set recognition")
        out.append("")
        out.append(f"Closed-set mIoU (inlier pixels): **{_pct(closed['miou'])}**. Open-mIoU (paper eq. 16) with "
                   "the two-fold protocol: tau at TPR "
                   f"{100 * m['settings']['target_tpr']:g}% on one fold, measured on the other "
                   f"({m['settings']['folds']}), weighted by image count.")
        out.append("")
        rows = []
        for name, s in scores.items():
            o = s.get("open_set")
            if not o:
                continue
            fa, fb = o["folds"]
            rows.append([_label(name), _pct(o["open_miou_two_fold"]), _pct(fa["open_miou"]),
                         _num(fa["tau"]), _pct(fb["open_miou"]), _num(fb["tau"]),
                         _pct(o.get("open_miou_at_operating_point")),
                         _pct((closed["miou"] or 0) - (o["open_miou_two_fold"] or 0))
                         if o["open_miou_two_fold"] is not None else "–"])
        out.append(_table(["score", "open-mIoU", "fold A", "tau from B", "fold B", "tau from A",
                           "open-mIoU at split tau", "closed - open"], rows))
        out.append("")
        o = scores[main].get("open_set", {})
        per_class = o.get("open_iou_at_operating_point", {})
        rows = [[c, _pct(v), _pct(per_class.get(c))] for c, v in closed["iou"].items()]
        out.append(f"Per class (open-IoU: {_label(main)} at the split's operating point):")
        out.append("")
        out.append(_table(["class", "IoU (closed)", "open-IoU"], rows))
        out.append("")

    if any("components" in s for s in scores.values()):
        out.append("## Component level (SegmentMeIfYouCan)")
        out.append("")
        s0 = m["settings"]
        out.append("Binary map score > tau at each score's operating point (TPR >= "
                   f"{100 * s0['target_tpr']:g}% on this split, or the model card's tau); predicted components < "
                   f"{s0['component_min_pred_area']} px dropped, ground-truth components < "
                   f"{s0['component_min_gt_area']} px void (SMIYC ObstacleTrack sizes scaled to this resolution).")
        out.append("")
        rows = []
        for name, s in scores.items():
            c = s.get("components")
            if not c:
                continue
            rows.append([_label(name), _num(c["tau"]), _pct(c["mean_siou"]), _pct(c["mean_ppv"]),
                         _pct(c["f1"].get("0.25")), _pct(c["f1"].get("0.5")), _pct(c["f1"].get("0.75")),
                         _pct(c["f1"]["mean"]), str(c["gt_components"]), str(c["pred_components"])])
        out.append(_table(["score", "tau", "sIoU", "PPV", "F1@0.25", "F1@0.5", "F1@0.75", "mean F1",
                           "GT comps", "pred comps"], rows))
        out.append("")

    conditions = list(scores[main]["condition"])
    if conditions:
        out.append("## By condition")
        out.append("")
        header = ["condition", "images"] + (["mIoU"] if closed else [])
        header += [f"AP {_label(n)}" for n in scores] + [f"FPR95 {_label(main)}"]
        rows = []
        for c in conditions:
            row = [c, str(scores[main]["condition"][c]["images"])]
            if closed:
                row.append(_pct(closed["by_condition"].get(c)))
            row += [_pct(scores[n]["condition"].get(c, {}).get("ap")) for n in scores]
            row.append(_pct(scores[main]["condition"][c]["fpr95"]))
            rows.append(row)
        out.append(_table(header, rows))
        out.append("")
        if "condition" in plots:
            out.append(f"![by condition]({plots['condition']})")
            out.append("")

    bands = list(scores[main].get("distance", {}))
    if bands:
        out.append("## By distance (paper table 3)")
        out.append("")
        out.append("Anomaly pixels and same-distance inlier pixels in each band (depth of the split).")
        out.append("")
        header = ["metric", "score"] + bands
        rows = []
        for metric in ("ap", "fpr95"):
            for n in scores:
                rows.append([metric.upper() if metric == "ap" else "FPR95", _label(n)]
                            + [_pct(scores[n]["distance"][b][metric], 1) for b in bands])
        rows.append(["anomaly px", ""] + [str(scores[main]["distance"][b]["n_pos"]) for b in bands])
        out.append(_table(header, rows))
        out.append("")
        if "distance" in plots:
            out.append(f"![by distance]({plots['distance']})")
            out.append("")

    sizes = list(scores[main].get("size", {}))
    if sizes:
        out.append("## By obstacle size")
        out.append("")
        out.append("Anomaly pixels of ground-truth components whose area (fraction of the frame) is in the bin, "
                   "against all inlier pixels of the split; components: SMIYC sIoU of the "
                   f"{_label(main)} map at its operating point.")
        out.append("")
        comp = scores[main].get("components_by_size", {})
        rows = []
        for b in sizes:
            g = scores[main]["size"][b]
            cb = comp.get(b, {})
            rows.append([b, str(g["n_pos"]), _pct(g["ap"]), _pct(g["fpr95"]),
                         str(cb.get("components", "–")), _pct(cb.get("mean_siou"))])
        out.append(_table(["size", "anomaly px", f"AP {_label(main)}", "FPR95", "GT comps", "mean sIoU"], rows))
        out.append("")

    if "qualitative" in plots:
        out.append("## Qualitative")
        out.append("")
        out.append(f"Input, ground truth, closed-set prediction, {_label(main)} score and the open-set map "
                   "(anomaly colour where score > tau).")
        out.append("")
        out.append(f"![qualitative]({plots['qualitative']})")
        out.append("")
    return "\n".join(out)


# -- plots ---------------------------------------------------------------------------------------------------


def write_plots(ev: Evaluation, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    m = ev.metrics
    scores = m["scores"]
    names = list(scores)
    main = m["model"]["score_type"] if m["model"]["score_type"] in scores else names[0]
    colours = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}

    def save(fig, key: str, filename: str) -> None:
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110)
        plt.close(fig)
        plots[key] = filename

    if ev.curves:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for n, c in ev.curves.items():
            ax.plot(c["recall"], c["precision"], color=colours[n],
                    label=f"{_label(n)} (AP {_pct(scores[n]['pooled']['ap'], 1)})", lw=1.8 if n == main else 1.1)
        ax.set(xlabel="recall (TPR)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall")
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
        save(fig, "pr", "pr_curves.png")

        fig, ax = plt.subplots(figsize=(6, 4.5))
        for n, c in ev.curves.items():
            ax.plot(c["fpr"], c["tpr"], color=colours[n],
                    label=f"{_label(n)} (AUROC {_pct(scores[n]['pooled']['auroc'], 1)}, "
                          f"FPR95 {_pct(scores[n]['pooled']['fpr95'], 1)})", lw=1.8 if n == main else 1.1)
        ax.axhline(m["settings"]["target_tpr"], color="grey", ls=":", lw=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02), title="ROC")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        save(fig, "roc", "roc_curves.png")

    conditions = list(scores[main]["condition"])
    if conditions:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.8 / len(names)
        x = np.arange(len(conditions))
        for metric, ax in zip(("ap", "fpr95"), axes):
            for j, n in enumerate(names):
                vals = [scores[n]["condition"].get(c, {}).get(metric) for c in conditions]
                vals = [np.nan if v is None else 100 * v for v in vals]
                ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, color=colours[n], label=_label(n))
            ax.set_xticks(x, conditions, rotation=30)
            ax.set_ylabel("AP (%)" if metric == "ap" else "FPR95 (%)")
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("By condition")
        save(fig, "condition", "by_condition.png")

    bands = list(scores[main].get("distance", {}))
    if bands:
        edges = m["settings"]["distance_edges_m"]
        mids = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for metric, ax in zip(("ap", "fpr95"), axes):
            for n in names:
                vals = [scores[n]["distance"][b][metric] for b in bands]
                vals = [np.nan if v is None else 100 * v for v in vals]
                ax.plot(mids, vals, marker="o", color=colours[n], label=_label(n), lw=1.8 if n == main else 1.1)
            ax.set(xlabel="distance (m)", ylabel="AP (%)" if metric == "ap" else "FPR95 (%)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("By distance band")
        save(fig, "distance", "distance_bands.png")

    if ev.qualitative:
        rows = len(ev.qualitative)
        fig, axes = plt.subplots(rows, 5, figsize=(15, 2.0 * rows + 0.6), squeeze=False)
        k = len(ev.palette) - 1
        for r, q in enumerate(ev.qualitative):
            gt = q["semantic"] if q["semantic"] is not None else np.where(q["anomaly"] == 1, k, 255).astype(np.uint8)
            tau = q.get("tau")
            open_map = q["class_id"] if tau is None else open_set_map(q["class_id"], q["score"], tau, k)
            panels = [(q["image"], f"{q['name']} ({q['condition']})"), (colourise(gt, ev.palette), "ground truth"),
                      (colourise(q["class_id"], ev.palette), "closed-set prediction"), (None, f"{q['score_type']} score"),
                      (colourise(open_map, ev.palette), "open-set" + ("" if tau is not None else " (no tau)"))]
            for c, (img, title) in enumerate(panels):
                ax = axes[r][c]
                if img is None:
                    ax.imshow(q["score"], cmap="magma")
                else:
                    ax.imshow(img)
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        save(fig, "qualitative", "qualitative.png")
    return plots


# -- files ---------------------------------------------------------------------------------------------------


def _evaluation_doc_link(out: Path) -> str:
    """docs/EVALUATION.md relative to a report folder inside the repository (docs/report/, docs/report/camvid/...);
    reports written elsewhere keep the docs/report/ form."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "EVALUATION.md"
    folder = out.resolve()
    if doc.is_file() and folder.is_relative_to(doc.parents[1]):
        return os.path.relpath(doc, folder)
    return "../EVALUATION.md"


def write_report(ev: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write metrics.json, the PNG plots and report.md into `out` (created); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(ev.metrics, indent=1, allow_nan=False) + "\n")
    plots = write_plots(ev, out)
    report_path = out / "report.md"
    report_path.write_text(render_markdown(ev.metrics, plots, _evaluation_doc_link(out)) + "\n")
    return {"report": report_path, "metrics": metrics_path, **{k: out / v for k, v in plots.items()}}


def card_metrics(metrics: dict[str, Any], report_path: str | Path | None = None) -> dict[str, Any]:
    """The compact numbers for the model card's `metrics`, copied from metrics.json of the deployed score type."""
    score = metrics["model"]["score_type"]
    s = metrics["scores"].get(score)
    if s is None:
        raise ValueError(f"metrics.json has no results for the card's score type {score!r}")
    out: dict[str, Any] = {
        "split": metrics["data"]["path"], "images": metrics["data"]["images"], "score_type": score,
        "ap": s["pooled"]["ap"], "auroc": s["pooled"]["auroc"], "fpr95": s["pooled"]["fpr95"],
        "ap_per_image": s["per_image"]["ap"],
    }
    if metrics.get("closed_set"):
        out["miou"] = metrics["closed_set"]["miou"]
    if s.get("open_set"):
        out["open_miou"] = s["open_set"]["open_miou_two_fold"]
    if s.get("components"):
        out["component_f1"] = s["components"]["f1"]["mean"]
        out["component_siou"] = s["components"]["mean_siou"]
    if report_path is not None:
        out["report"] = str(report_path)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}
