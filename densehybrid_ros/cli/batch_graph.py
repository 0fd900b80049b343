"""`densehybrid batch-graph`: a copy of an exported model with a batch axis, for the multi-camera node.

The copy is written only after ONNX Runtime showed that a batch of different frames gives each frame the outputs
the original gives it alone (runtime/batch_graph.py); its card is the original's with the source recorded.

    densehybrid batch-graph --model models/densehybrid_lite0_synthetic.onnx
    multi_detector --ros-args -p model:=models/densehybrid_lite0_synthetic_batch.onnx -p "cameras:=[front, rear]"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "copy of a model with a batch axis (checked against the original), for one node serving several cameras"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="exported model (.onnx with its card beside it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="batch graph to write (default <model>_batch.onnx beside the model; card beside it)")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the check (default 1)")


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.runtime.batch_graph import write_batch_graph

    try:
        result = write_batch_graph(args.model, args.out, force=args.force, threads=args.threads)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"densehybrid batch-graph: {e}", file=sys.stderr)
        return 2
    print(f"{result.model}: batch axis added; a batch of different frames against each frame alone: class_id "
          f"mismatch {result.class_id_mismatch:.2%}, float outputs max abs error {result.score_max_abs_error:.2e}")
    return 0
