"""`densehybrid <command>`: the umbrella CLI. Each command lives in its own module of this package exposing
HELP (one line), configure(parser) and run(args) -> exit code; modules are imported only when their command runs,
so `densehybrid --help` works on a vehicle without torch.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# command -> module; a command whose module is absent from this install is not offered.
COMMANDS = {
    "demo": "densehybrid_ros.cli.demo",
    "export": "densehybrid_ros.cli.export",
    "benchmark": "densehybrid_ros.cli.benchmark",
    "make-data": "densehybrid_ros.cli.make_data",
    "gallery": "densehybrid_ros.cli.gallery",
    "train": "densehybrid_ros.cli.train",
    "evaluate": "densehybrid_ros.cli.evaluate",
    "calibrate": "densehybrid_ros.cli.calibrate",
    "doctor": "densehybrid_ros.cli.doctor",
    "build-engine": "densehybrid_ros.cli.build_engine",
    "gpu-check": "densehybrid_ros.cli.gpu_check",
    "camvid": "densehybrid_ros.cli.camvid",
    "objects": "densehybrid_ros.cli.objects",
    "bag": "densehybrid_ros.cli.bag",
    "fuzz": "densehybrid_ros.cli.fuzz",
    "soak": "densehybrid_ros.cli.soak",
    "quantize": "densehybrid_ros.cli.quantize",
    "batch-graph": "densehybrid_ros.cli.batch_graph",
}

# One-line help per command, kept here so `densehybrid --help` needs no heavy import.
SUMMARIES = {
    "demo": "segment example frames with the shipped model; write overlays and the benchmark table",
    "export": "export a trained checkpoint to ONNX with a model card",
    "benchmark": "latency per backend and input size, with side-by-side ratios",
    "make-data": "write the seeded synthetic validation/test splits to disk",
    "gallery": "render a gallery of synthetic scenes for every condition",
    "train": "train DenseHybrid (closed set, then mixed-content fine-tuning)",
    "evaluate": "anomaly / open-set metrics and a report for a model on a split",
    "calibrate": "choose tau at a target TPR and write it into the model card",
    "doctor": "check the installation: runtimes, ROS 2, model files",
    "build-engine": "build the TensorRT engine of a model on this device (FP32/FP16/INT8, cached with a sidecar)",
    "gpu-check": "CUDA machines: build FP32/FP16/INT8 engines, compare with onnxruntime CPU, time them, report",
    "camvid": "CamVid road frames: completeness check, drive sequences, real-frame anomaly benchmark",
    "objects": "real object cutouts (RGBA) for training negatives and held-out anomalies",
    "bag": "rosbag2 tools: make synthetic drives, convert frame folders, play, record, evaluate the node on a bag",
    "fuzz": "fuzz the detector node process with adversarial camera messages and check its accounting",
    "soak": "soak, lifecycle-under-traffic and shutdown runs of the detector node process, with figures",
    "quantize": "INT8 copy of a model (onnxruntime QDQ, per-channel weights, calibrated on project frames)",
    "batch-graph": "copy of a model with a batch axis (checked), for one node serving several cameras",
}


def available_commands() -> dict[str, str]:
    out = {}
    for name, module in COMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out[name] = module
        except ModuleNotFoundError:
            pass
    return out


def build_parser(commands: dict[str, str] | None = None) -> argparse.ArgumentParser:
    commands = available_commands() if commands is None else commands
    parser = argparse.ArgumentParser(prog="densehybrid", description="DenseHybrid open-set segmentation for the "
                                     "densehybrid_ros node: data, training, export, calibration, evaluation, "
                                     "quantization, bags, benchmarks and checks. `densehybrid <command> --help` "
                                     "documents each command.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in commands:
        sub.add_parser(name, help=SUMMARIES.get(name, ""), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    if not argv or argv[0] not in commands:
        parser = build_parser(commands)
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"densehybrid: unknown command {argv[0]!r}; choose from {', '.join(commands)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(commands[name])
    parser = argparse.ArgumentParser(prog=f"densehybrid {name}", description=getattr(module, "HELP", SUMMARIES[name]))
    module.configure(parser)
    args = parser.parse_args(rest)
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.runtime.base import ModelLoadError

    try:
        return int(module.run(args) or 0)
    except (ConfigError, ModelLoadError) as e:
        # The project's own refusals name the file or setting; a traceback adds nothing for the user.
        print(f"densehybrid {name}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
