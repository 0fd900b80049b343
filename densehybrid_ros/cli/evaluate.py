"""`densehybrid evaluate`: anomaly and open-set metrics of a model on a split, written as a report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from densehybrid_ros.core.scores import SCORE_TYPES

HELP = "anomaly / open-set metrics and a report for a model on a split"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True,
                        help="exported model (.onnx with its .card.yaml beside it), exported with --raw-outputs")
    parser.add_argument("--data", type=Path, required=True, help="split directory (synthetic or any adapter format)")
    parser.add_argument("--format", default="auto",
                        help="data set format: auto (default), synthetic, cityscapes, streethazards, fishyscapes, "
                             "smiyc, roadanomaly")
    parser.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    parser.add_argument("--out", type=Path, default=Path("docs/report"),
                        help="report directory: report.md, metrics.json, PNG plots (default docs/report)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="evaluate only N frames, spread over the split (it is ordered by condition)")
    parser.add_argument("--tau-from-card", action="store_true",
                        help="use the card's calibrated tau for its score type (components, qualitative grid, "
                             "open-mIoU at the operating point) instead of TPR 95%% on this split")
    parser.add_argument("--score-types", default=",".join(SCORE_TYPES),
                        help=f"comma-separated score types (default all: {','.join(SCORE_TYPES)})")
    parser.add_argument("--target-tpr", type=float, default=0.95, help="TPR of the operating point (default 0.95)")
    parser.add_argument("--no-components", action="store_true",
                        help="skip the component metrics (and their disk cache of raw outputs)")
    parser.add_argument("--qualitative", type=int, default=4, help="frames in the qualitative grid [0, 16] (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    parser.add_argument("--bits", type=int, default=20,
                        help="pooled histogram resolution in bits [12, 24] (default 20: error < 1e-4 on AP/FPR95; "
                             "breakdowns use min(16, bits); 12 is for quick looks only)")
    parser.add_argument("--update-card", action="store_true",
                        help="copy the deployed score's numbers from metrics.json into the model card's metrics "
                             "(the model file is untouched)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.model_card import load_model_card
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.evaluation.report import card_metrics, write_report
    from densehybrid_ros.evaluation.runner import EvaluationConfig, EvaluationError, evaluate

    if not 12 <= args.bits <= 24:
        print(f"densehybrid evaluate: --bits must be in [12, 24], got {args.bits}", file=sys.stderr)
        return 2
    try:
        config = EvaluationConfig(
            model=args.model, data=args.data, format=args.format, backend=args.backend, out=args.out,
            max_images=args.max_images, tau_from_card=args.tau_from_card,
            score_types=tuple(s.strip() for s in args.score_types.split(",") if s.strip()),
            target_tpr=args.target_tpr, bits=args.bits, components=not args.no_components,
            qualitative=args.qualitative, threads=args.threads, progress=not args.no_progress)
        evaluation = evaluate(config)
    except (EvaluationError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"densehybrid evaluate: {e}", file=sys.stderr)
        return 2
    paths = write_report(evaluation, args.out)
    m = evaluation.metrics
    main = m["model"]["score_type"] if m["model"]["score_type"] in m["scores"] else next(iter(m["scores"]))
    s = m["scores"][main]["pooled"]
    line = f"{main}: AP {_pct(s['ap'])}  AUROC {_pct(s['auroc'])}  FPR95 {_pct(s['fpr95'])}"
    if m.get("closed_set"):
        line += f"  mIoU {_pct(m['closed_set']['miou'])}"
        o = m["scores"][main].get("open_set")
        if o:
            line += f"  open-mIoU {_pct(o['open_miou_two_fold'])}"
    print(line)
    print(f"wrote {paths['report']} and {paths['metrics']} ({len(paths) - 2} plots)")
    if args.update_card:
        card = load_model_card(args.model, verify_sha=True)
        card.metrics = card_metrics(m, paths["metrics"])
        card.save(card.card_path)
        print(f"updated metrics in {card.card_path}")
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"
