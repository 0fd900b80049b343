"""`densehybrid fuzz`: adversarial camera messages against the detector node in its own process, over DDS.

Sends --messages generated messages per input transport (raw `image` and/or `image/compressed`, with `camera_info`
mixed in) to a node started as a separate process, and checks that the node never crashes and keeps serving the
valid frames interleaved with the bad ones, that every frame is accounted for in /diagnostics under the reason the
generator built it for (frames in = served + drops by reason, superseded included), that its memory, threads and
file descriptors stay bounded and that its warnings are throttled. Prints a summary table per transport; exit code
1 if any check failed. docs/RELIABILITY.md has the figures of a full run.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HELP = "fuzz the detector node process with adversarial camera messages and check its accounting"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000,
                        help="generated messages per transport, >= 1 (default 10000)")
    parser.add_argument("--transport", choices=("raw", "compressed", "both"), default="both",
                        help="node input transport to fuzz (default both: one node process each, in turn)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--model", type=Path, default=None,
                        help="exported .onnx model for the node (default: an untrained 128x256 export made in a "
                             "temporary folder; the fuzz tests the node, not the model)")
    parser.add_argument("--max-pixels", type=int, default=256 * 512,
                        help="the node's max_image_pixels; frames up to it and one pixel beyond are sent "
                             "(default 131072)")
    parser.add_argument("--batch", type=int, default=50,
                        help="messages between two accounting checkpoints, 1..99 (default 50)")
    parser.add_argument("--no-negative-stamps", action="store_true",
                        help="leave out header stamps with a negative sec field")
    parser.add_argument("--no-one-pixel-frames", action="store_true", help="leave out valid 1x1 frames")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the node process (default 0)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0,
                        help="fail if the node's RSS grows more than this after warm-up (default 64)")


def run(args: argparse.Namespace) -> int:
    if args.messages < 1:
        raise SystemExit("--messages must be >= 1")
    if not 1 <= args.batch <= 99:
        raise SystemExit("--batch must be in 1..99 (the node's camera queue holds 100 messages)")
    from densehybrid_ros.ros.node_process import prepare_ros_environment

    prepare_ros_environment()  # before rclpy: DDS transports for camera-sized frames, a domain of our own
    from densehybrid_ros.ros.fuzz import rss_growth_mb, run_fuzz, summary_table

    with tempfile.TemporaryDirectory(prefix="densehybrid_fuzz_") as tmp:
        model = args.model
        if model is None:
            from densehybrid_ros.ros.testing import export_untrained_model
            print("exporting an untrained 128x256 model for the node ...", flush=True)
            model = export_untrained_model(Path(tmp) / "untrained.onnx", 128, 256)
        elif not model.is_file():
            raise SystemExit(f"--model {model}: no such file")
        failed = False
        transports = ("raw", "compressed") if args.transport == "both" else (args.transport,)
        for transport in transports:
            report = run_fuzz(str(model), messages=args.messages, seed=args.seed, transport=transport,
                              max_pixels=args.max_pixels, batch=args.batch,
                              negative_stamps=not args.no_negative_stamps,
                              one_pixel_frames=not args.no_one_pixel_frames, nice=args.nice, progress=True)
            growth = rss_growth_mb(report)
            if growth > args.max_rss_growth_mb:
                report.problems.append(f"RSS grew {growth:.1f} MB after warm-up (limit {args.max_rss_growth_mb})")
            print(f"\n## {transport}: {report.messages} messages, seed {report.seed}\n")
            print(summary_table(report))
            print(f"RSS growth after warm-up: {growth:.1f} MB")
            if report.problems:
                failed = True
                print("FAILED:\n  " + "\n  ".join(report.problems))
                if report.error_lines:
                    print("the node's first errors:\n  " + "\n  ".join(report.error_lines))
            else:
                print("PASSED")
    return 1 if failed else 0
