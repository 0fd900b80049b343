"""`densehybrid soak`: long and disruptive runs of the detector node in its own process, with figures.

Scenarios:
- frames (default): --frames camera frames at --rate Hz with every image output subscribed; prints the node's RSS,
  thread and fd figures after warm-up and the RSS trend per 1000 frames (Theil-Sen); --plot writes the curves.
- lifecycle: --cycles deactivate/cleanup/configure/activate cycles over the lifecycle services while frames stream
  in, with threshold/corridor/overlay_alpha changes; checks no stale threshold after an acknowledged change.
- signals: --runs runs per signal of start, busy inference, SIGINT or SIGTERM; prints exit codes and exit times.

The default model is the shipped one (512x1024); on a shared machine use --nice. docs/RELIABILITY.md has the
figures and the commands that produced them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "soak, lifecycle-under-traffic and shutdown runs of the detector node process, with figures"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", choices=("frames", "lifecycle", "signals"), default="frames",
                        help="what to run (default frames)")
    parser.add_argument("--model", type=Path, default=None,
                        help="exported .onnx model (default: the shipped model in models/)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="use this tau (threshold_source: parameter), e.g. for an uncalibrated model")
    parser.add_argument("--frames", type=int, default=10_000, help="frames: frames to publish (default 10000)")
    parser.add_argument("--height", type=int, default=512, help="frame height (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="frame width (default 1024)")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate in Hz (default 30)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="frames: frames before the leak trend starts (default a tenth of --frames)")
    parser.add_argument("--cycles", type=int, default=100, help="lifecycle: cycles (default 100)")
    parser.add_argument("--runs", type=int, default=20, help="signals: runs per signal (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="backend_threads of the node (default 1)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the node process (default 0)")
    parser.add_argument("--plot", type=Path, default=None, help="frames: write the RSS/threads/fds plot (PNG)")
    parser.add_argument("--max-growth-mb", type=float, default=20.0,
                        help="frames: fail if RSS grows more than this after warm-up (default 20)")


def _model(args: argparse.Namespace) -> Path:
    from densehybrid_ros.ros.detector_node import resolve_model_path

    model = args.model if args.model is not None else resolve_model_path("")
    if not Path(model).is_file():
        raise SystemExit(f"--model {model}: no such file")
    return Path(model)


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.ros.node_process import prepare_ros_environment

    prepare_ros_environment()
    from densehybrid_ros.ros import soak

    model = _model(args)
    extra = {} if args.threshold is None else {"threshold_source": "parameter", "threshold": args.threshold}
    if args.scenario == "frames":
        report = soak.run_soak(str(model), frames=args.frames, height=args.height, width=args.width,
                               rate_hz=args.rate, warmup_frames=args.warmup, nice=args.nice,
                               backend_threads=args.threads, parameters=extra, progress=True)
        print(soak.soak_table(report))
        if args.plot is not None:
            print(f"plot: {soak.plot_soak(report, args.plot)}")
        trend = soak.leak_trend(report)
        failed = (not report.alive or report.exit_code != 0 or trend.growth_mb > args.max_growth_mb
                  or trend.threads[1] - trend.threads[0] > 2 or trend.fds[1] - trend.fds[0] > 2)
    elif args.scenario == "lifecycle":
        report = soak.run_lifecycle_traffic(str(model), cycles=args.cycles, height=args.height, width=args.width,
                                            rate_hz=args.rate, nice=args.nice, progress=True)
        (slope, low, high), threads, fds = soak.lifecycle_trend(report)
        print(f"cycles {report.cycles}, transitions ok {report.transitions_ok}, parameter changes "
              f"{report.parameter_changes}, frames sent {report.frames_sent}, served {report.served}, alerts checked "
              f"after a threshold change {report.alerts_checked}, stale {len(report.stale_alerts)}, "
              f"{report.seconds:.0f} s")
        print(f"RSS per cycle {slope:.3f} MB (95% {low:.3f} .. {high:.3f}); threads {threads[0]}-{threads[1]}; "
              f"fds {fds[0]}-{fds[1]}; RSS first/last {report.samples[0].rss_mb:.1f}/{report.samples[-1].rss_mb:.1f}"
              f" MB; SIGINT exit {report.exit_code} in {report.exit_seconds:.2f} s")
        for p in report.problems:
            print("PROBLEM:", p)
        failed = not report.passed
    else:
        runs = soak.run_signals(str(model), runs=args.runs, height=args.height, width=args.width, rate_hz=args.rate,
                                nice=args.nice, backend_threads=args.threads, progress=True)
        print(soak.signals_table(runs))
        slow = [r for r in runs if r.exit_code != 0 or r.seconds > 2.0]
        for r in slow:
            print(f"{r.signal}: exit {r.exit_code} after {r.seconds:.2f} s (busy={r.busy}); last output:\n{r.tail}\n")
        failed = bool(slow)
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0
