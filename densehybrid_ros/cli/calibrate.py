"""`densehybrid calibrate`: choose tau at a target TPR on a calibration split and write it into the model card."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "choose tau at a target TPR and write it into the model card"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="exported model (.onnx, card beside it)")
    parser.add_argument("--data", type=Path, required=True, help="calibration split (with anomalies), e.g. val")
    parser.add_argument("--target-tpr", type=float, default=0.95,
                        help="fraction of anomaly pixels that must score above tau, in (0, 1] (default 0.95)")
    parser.add_argument("--score-type", default=None,
                        help="score to calibrate; must be the card's (the score the graph outputs; default)")
    parser.add_argument("--format", default="auto", help="data set format (default auto)")
    parser.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="use only N frames, spread over the split (it is ordered by condition)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    parser.add_argument("--dry-run", action="store_true", help="print tau without writing the card")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.evaluation.calibrate import CalibrationError, calibrate, write_calibration

    try:
        result = calibrate(args.model, args.data, target_tpr=args.target_tpr, score_type=args.score_type,
                           format=args.format, backend=args.backend, max_images=args.max_images,
                           threads=args.threads, progress=not args.no_progress)
        print(f"{result.score_type}: tau = {result.tau:.6g} at TPR {100 * result.achieved_tpr:.2f}% "
              f"(target {100 * result.target_tpr:g}%), FPR {100 * result.fpr:.2f}% on {result.images} images "
              f"of {result.split} ({result.seconds:.1f} s)")
        if not args.dry_run:
            card = write_calibration(args.model, result)
            print(f"wrote calibration to {card.card_path}")
    except (CalibrationError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"densehybrid calibrate: {e}", file=sys.stderr)
        return 2
    return 0
