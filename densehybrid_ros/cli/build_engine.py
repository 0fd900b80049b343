"""`densehybrid build-engine`: build (or check) the TensorRT engine of a model on this device.

Engines are built on the machine that runs them (a Jetson builds its own): TensorRT engines are tied to the
TensorRT version and the GPU. The engine is written atomically beside the model (`<model>.<precision>.engine`)
with a sidecar JSON that the node checks before loading it (runtime/engine_cache.py), so this is also the command
the node's "engine is stale" message tells you to run.

Every argument is checked before TensorRT is imported, so mistakes are reported at once and the same checks run
on machines without a GPU. `--check` needs no TensorRT at all: it lists every difference between the engine on disk
and this machine/model.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

HELP = "build the TensorRT engine of a model on this device (FP32/FP16/INT8, cached with a sidecar)"

PRECISIONS = ("fp32", "fp16", "int8", "best")
DEFAULT_CALIB_FRAMES = 256
MAX_CALIB_FRAMES = 10_000


class UsageError(ValueError):
    """A command-line value is invalid; the message names the option."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="exported model (.onnx with its card, or the card)")
    parser.add_argument("--precision", default="fp16", choices=PRECISIONS,
                        help="fp32, fp16 (default), int8 (entropy calibration) or best (FP16 + INT8)")
    parser.add_argument("--engine", type=Path, default=None,
                        help="engine file to write (default: <model>.<precision>[.dlaN].engine beside the model or "
                             "in --engine-cache-dir)")
    parser.add_argument("--engine-cache-dir", type=Path, default=None,
                        help="folder for engines, calibration and timing caches (default: beside the model)")
    parser.add_argument("--calib-data", default="synthetic",
                        help="INT8 calibration frames: an image folder, a split folder (e.g. data_cache/synthetic/val)"
                             " or 'synthetic' (rendered from the synthetic world; default)")
    parser.add_argument("--calib-frames", type=int, default=DEFAULT_CALIB_FRAMES,
                        help=f"INT8 calibration frames, evenly spaced over the source [1, {MAX_CALIB_FRAMES}] "
                             f"(default {DEFAULT_CALIB_FRAMES})")
    parser.add_argument("--workspace", type=int, default=2048, help="builder workspace in MB [16, 1048576] (default "
                                                                     "2048; 1024 on 8 GB Jetsons)")
    parser.add_argument("--dla-core", type=int, default=None,
                        help="build for this DLA core (Jetson Xavier/Orin) with GPU fallback; fp16/int8 only")
    parser.add_argument("--min-shape", default=None, help="dynamic graphs: smallest input, HxW or 1xHxWx3")
    parser.add_argument("--opt-shape", default=None, help="dynamic graphs: input size to optimise for")
    parser.add_argument("--max-shape", default=None, help="dynamic graphs: largest input")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="TensorRT timing cache to reuse and update (default: <model>.sm<CC>.timing.cache)")
    parser.add_argument("--no-timing-cache", action="store_true", help="do not read or write a timing cache")
    parser.add_argument("--precision-constraints", default="obey", choices=("obey", "prefer"),
                        help="how strictly the FP32 score head is kept in FP32 (default obey; prefer lets TensorRT "
                             "fall back with a warning)")
    parser.add_argument("--build-only", action="store_true",
                        help="write the engine and stop (default: also load it and time a few frames)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the engine on disk is up to date")
    parser.add_argument("--check", action="store_true",
                        help="only say whether the engine on disk can be used here, listing every difference "
                             "(exit 1 when it cannot); needs no TensorRT")
    parser.add_argument("--runtime", default="tensorrt", choices=("tensorrt", "onnxruntime"),
                        help="tensorrt: a native engine (default); onnxruntime: fill the TensorRT execution "
                             "provider's engine cache instead")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose builder log")


def parse_shape(text: str, option: str) -> tuple[int, int, int, int]:
    """'512x1024' or '1x512x1024x3' -> (1, 512, 1024, 3)."""
    parts = re.split(r"[xX,]", text.strip())
    if not all(re.fullmatch(r"\d+", p) for p in parts) or len(parts) not in (2, 4):
        raise UsageError(f"{option} {text!r}: expected HxW or 1xHxWx3 (e.g. 512x1024)")
    dims = tuple(int(p) for p in parts)
    shape = (1, dims[0], dims[1], 3) if len(dims) == 2 else dims
    if shape[0] != 1 or shape[3] != 3:
        raise UsageError(f"{option} {text!r}: the graph takes one RGB image (1, H, W, 3)")
    if not (32 <= shape[1] <= 8192 and 32 <= shape[2] <= 8192):
        raise UsageError(f"{option} {text!r}: each side must be in [32, 8192]")
    return shape  # type: ignore[return-value]


def validate(args: argparse.Namespace, card=None) -> dict:
    """Every check that needs no TensorRT; returns the build settings as plain values (UsageError otherwise)."""
    if args.calib_frames < 1 or args.calib_frames > MAX_CALIB_FRAMES:
        raise UsageError(f"--calib-frames {args.calib_frames}: expected an integer in [1, {MAX_CALIB_FRAMES}]")
    if not 16 <= args.workspace <= 1 << 20:
        raise UsageError(f"--workspace {args.workspace}: expected MB in [16, {1 << 20}]")
    if args.dla_core is not None:
        if not 0 <= args.dla_core <= 7:
            raise UsageError(f"--dla-core {args.dla_core}: expected a DLA core index in [0, 7]")
        if args.precision == "fp32":
            raise UsageError("--dla-core: DLA runs FP16 and INT8 only; use --precision fp16 or int8")
    if args.precision in ("int8", "best") and args.calib_data != "synthetic" and not Path(args.calib_data).is_dir():
        raise UsageError(f"--calib-data {args.calib_data}: not a folder (an image folder, a split folder or "
                         "'synthetic')")
    if args.runtime == "onnxruntime" and args.precision == "best":
        raise UsageError("--runtime onnxruntime: precision best is not an option of the TensorRT execution provider; "
                         "use fp16 or int8")
    given = [args.min_shape, args.opt_shape, args.max_shape]
    shapes = {}
    if any(g is not None for g in given):
        if not all(g is not None for g in given):
            raise UsageError("--min-shape, --opt-shape and --max-shape go together: give all three")
        rng = tuple(parse_shape(g, o) for g, o in zip(given, ("--min-shape", "--opt-shape", "--max-shape")))
        if not all(a <= b <= c for a, b, c in zip(*rng)):
            raise UsageError(f"shapes must satisfy min <= opt <= max per side, got {rng[0]}, {rng[1]}, {rng[2]}")
        if card is not None and not card.dynamic_input:
            raise UsageError(f"--min/--opt/--max-shape apply to dynamic-size graphs; {card.model_path()} has the "
                             f"fixed input {card.input_height}x{card.input_width}")
        shapes = {"image": rng}
    elif card is not None and card.dynamic_input:
        from densehybrid_ros.runtime.tensorrt_backend import DEFAULT_DYNAMIC_SHAPES
        shapes = dict(DEFAULT_DYNAMIC_SHAPES)
    return {"shapes": shapes}


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.runtime import resolve_card

    try:
        validate(args)
        card = resolve_card(args.model)
        values = validate(args, card)
    except (UsageError, ConfigError, FileNotFoundError) as e:
        print(f"densehybrid build-engine: error: {e}", file=sys.stderr)
        return 2
    cache_dir = args.engine_cache_dir
    if args.runtime == "onnxruntime":
        return _fill_onnxruntime_cache(card, args)
    if args.check:
        return _check(card, args, values["shapes"])

    from densehybrid_ros.runtime.tensorrt_backend import missing_requirements

    missing = missing_requirements()
    if missing:
        print(f"densehybrid build-engine: cannot build here: missing {', '.join(missing)} (TensorRT engines need "
              "tensorrt + pycuda + a CUDA GPU; docs/JETSON.md). No engine was written.", file=sys.stderr)
        return 1

    from densehybrid_ros.runtime.calibration import CalibrationBatches, CalibrationDataError
    from densehybrid_ros.runtime.cuda_memory import device_info, load_cuda_api
    from densehybrid_ros.runtime.engine_cache import (
        build_command, calibration_cache_path_for, engine_path_for, timing_cache_path_for,
    )
    from densehybrid_ros.runtime.tensorrt_engine import (
        BuildSettings, EngineBuildError, OnnxParseError, PhaseLog, build_and_write, check_model_engine,
        load_tensorrt,
    )

    trt = load_tensorrt()
    cuda_api = load_cuda_api()
    with cuda_api.activate():
        gpu_name, cc = device_info(cuda_api)
    model = card.model_path()
    engine = args.engine or engine_path_for(model, args.precision, cache_dir, args.dla_core)
    check, _ = check_model_engine(card, args.precision, engine_path=engine, cache_dir=cache_dir,
                                  dla_core=args.dla_core, shapes=values["shapes"] or None)
    print(f"model {model} (sha256 {card.sha256[:12]}), TensorRT {trt.__version__}, GPU {gpu_name} (sm {cc})")
    if check.ok and not args.force:
        print(f"engine {engine} is up to date (use --force to rebuild)")
    else:
        if check.status != "missing":
            print(f"rebuilding: {check.describe()}")
        size = (card.input_height, card.input_width) if not card.dynamic_input else values["shapes"]["image"][1][1:3]
        try:
            batches = CalibrationBatches(args.calib_data, args.calib_frames, size) \
                if args.precision in ("int8", "best") else None
            timing = None if args.no_timing_cache else \
                (args.timing_cache or timing_cache_path_for(model, cc, cache_dir))
            settings = BuildSettings(precision=args.precision, workspace_mb=args.workspace, dla_core=args.dla_core,
                                     shapes=values["shapes"], timing_cache=timing, calibration=batches,
                                     calibration_cache=calibration_cache_path_for(model, cache_dir),
                                     precision_constraints=args.precision_constraints, verbose=args.verbose)
            build_and_write(engine, model, card, settings, trt=trt, cuda_api=cuda_api, gpu_name=gpu_name,
                            compute_capability=cc, log=PhaseLog(print))
        except (OnnxParseError, EngineBuildError, CalibrationDataError, ValueError) as e:
            cuda_api.close()
            print(f"densehybrid build-engine: {e}", file=sys.stderr)
            return 1
    cuda_api.close()
    if args.build_only:
        return 0
    return _smoke(card, args, engine, build_command(model, args.precision, args.engine, args.dla_core))


def _check(card, args, shapes) -> int:
    from densehybrid_ros.runtime.engine_cache import build_command
    from densehybrid_ros.runtime.tensorrt_engine import check_model_engine

    check, key = check_model_engine(card, args.precision, engine_path=args.engine, cache_dir=args.engine_cache_dir,
                                    dla_core=args.dla_core, shapes=shapes or None)
    if check.ok:
        print(check.describe())
        return 0
    print(f"engine {check.engine_path} cannot be used ({check.status}):")
    for reason in check.reasons():
        print(f"  - {reason}")
    unknown = [f for f in ("tensorrt_version", "gpu_name") if getattr(key, f) is None]
    if unknown:
        print(f"  (not compared, unknown on this machine: {', '.join(unknown)})")
    print("fix: " + build_command(card.model_path(), args.precision, args.engine, args.dla_core))
    return 1


def _smoke(card, args, engine: Path, command: str) -> int:
    """Load the engine through the backend (the node's path) and time a few frames: a build that cannot run is
    caught here, not on the vehicle."""
    import numpy as np

    from densehybrid_ros.runtime import create_backend

    backend = create_backend(card, backend="tensorrt", engine=str(engine), precision=args.precision,
                             engine_policy="refuse", dla_core=args.dla_core, warmup=3)
    try:
        size = backend.input_size or (512, 1024)
        frame = np.zeros((*size, 3), np.uint8)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            backend.infer(frame)
            times.append(time.perf_counter() - t0)
        print(f"engine loads and runs: {1000 * float(np.median(times)):.2f} ms per {size[0]}x{size[1]} frame "
              f"(median of 20, host copies included)")
    finally:
        backend.close()
    return 0


def _fill_onnxruntime_cache(card, args) -> int:
    """Create one onnxruntime session with the TensorRT provider: it builds and caches its engine now, not when the
    node starts."""
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        print("densehybrid build-engine: this onnxruntime has no TensorrtExecutionProvider (install onnxruntime-gpu "
              f"built with TensorRT); available: {', '.join(ort.get_available_providers())}", file=sys.stderr)
        return 1
    from densehybrid_ros.runtime import create_backend

    t0 = time.perf_counter()
    backend = create_backend(card, backend="onnxruntime", providers=["tensorrt", "cuda", "cpu"],
                             precision=args.precision, engine_policy="rebuild", warmup=1,
                             engine_cache_dir=str(args.engine_cache_dir or ""), workspace_mb=args.workspace,
                             dla_core=args.dla_core)
    print(f"onnxruntime TensorRT engine cache ready in {backend.engine_cache_dir} "
          f"({time.perf_counter() - t0:.0f} s; providers {', '.join(backend.providers)})")
    backend.close()
    return 0
