"""`densehybrid train`: stage 1 closed-set training or stage 2 DenseHybrid fine-tuning from a YAML config.

Multi-process / multi-GPU: `python -m torch.distributed.run --nproc_per_node=N -m densehybrid_ros.cli train ...`
(torchrun sets the rank variables; gloo on CPU, nccl on GPU). See docs/TRAINING.md.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

HELP = "train DenseHybrid (closed set, then mixed-content fine-tuning) from a YAML config"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="training YAML, e.g. densehybrid_ros/training/configs/synthetic_stage1.yaml")
    parser.add_argument("--out", required=True, help="run folder for last.pt, scalars.csv, tb/, config.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt exactly")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop at this global step (the schedule still spans optim.steps)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.steps=100 --set data.num_workers=0")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.training import load_training_config
    from densehybrid_ros.config.validation import ConfigError

    try:
        config = load_training_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"densehybrid train: {e}", file=sys.stderr)
        return 2
    if args.max_steps is not None and args.max_steps < 1:
        print(f"densehybrid train: --max-steps={args.max_steps} must be >= 1", file=sys.stderr)
        return 2
    import torch
    if args.threads is not None:
        if args.threads < 1:
            print(f"densehybrid train: --threads={args.threads} must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    from densehybrid_ros.training.loop import train

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    if main_rank:
        print(f"densehybrid train: config {args.config} (stage {config.stage}); outputs in {args.out}/ "
              f"(last.pt, scalars.csv, tb/ for tensorboard --logdir {args.out}/tb)", flush=True)
    try:
        result = train(config, args.out, resume=args.resume, max_steps=args.max_steps)
    except (ConfigError, FileNotFoundError) as e:
        print(f"densehybrid train: {e}", file=sys.stderr)
        return 2
    if main_rank:
        print(f"densehybrid train: step {result.step}/{result.total_steps} in {result.seconds:.0f} s; "
              f"checkpoint {result.checkpoint}", flush=True)
    if result.interrupted:
        return 128 + signal.SIGINT
    return 0
