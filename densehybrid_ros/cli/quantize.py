"""`densehybrid quantize`: an INT8 copy of an exported graph (onnxruntime static quantization, QDQ, per-channel
weights) with its own card, calibrated on the project's frames; the score head stays float (runtime/quantize.py).

The result is another model file: run it with `--model <name>_int8.onnx` anywhere a model is taken (the node,
evaluate, benchmark). `--tau-data` recalibrates tau on the INT8 graph's own scores (as `densehybrid calibrate` does);
without it the card keeps the float model's tau and says so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "INT8 copy of a model (onnxruntime QDQ, per-channel, calibrated on project frames; score head in float)"


def configure(parser: argparse.ArgumentParser) -> None:
    from densehybrid_ros.runtime.quantize import DEFAULT_FRAMES, METHODS

    parser.add_argument("--model", type=Path, required=True, help="float model (.onnx with its card beside it)")
    parser.add_argument("--out", type=Path, default=None, help="INT8 model to write (default <model>_int8.onnx "
                                                               "beside the model; its card beside it)")
    parser.add_argument("--calib-data", default="synthetic",
                        help="calibration frames: 'synthetic' (rendered from calibration-only seeds; default), a "
                             "split folder (e.g. data_cache/synthetic/val) or an image folder; the same sources as "
                             "`densehybrid build-engine --precision int8`")
    parser.add_argument("--calib-frames", type=int, default=DEFAULT_FRAMES,
                        help=f"calibration frames, evenly spaced over the source (default {DEFAULT_FRAMES})")
    parser.add_argument("--method", default="minmax", choices=METHODS, help="activation range calibration "
                                                                             "(default minmax)")
    parser.add_argument("--moving-average", action="store_true",
                        help="minmax: average the per-frame ranges instead of taking the extremes over all frames")
    parser.add_argument("--percentile", type=float, default=99.999, help="cut of --method percentile, in %%")
    parser.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor instead of per "
                                                                  "output channel")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    parser.add_argument("--symmetric-activations", action="store_true", help="int8 activations around zero")
    parser.add_argument("--exclude-stem", action="store_true", help="keep the first convolution in float")
    parser.add_argument("--float-first", type=int, default=9,
                        help="keep the first N convolutions in float (default 9: EfficientNet-Lite0's stem and "
                             "blocks 0-2, which cost ~1 mIoU point quantized; 0 quantizes them)")
    parser.add_argument("--exclude", action="append", default=[], metavar="NODE",
                        help="keep this node in float (repeatable; names as in the graph)")
    parser.add_argument("--all-ops", action="store_true",
                        help="also quantize Concat and BatchNormalization (onnxruntime only: OpenVINO 2026.4 "
                             "crashes compiling those QDQ pairs)")
    parser.add_argument("--no-preprocess", action="store_true", help="skip onnxruntime's quant_pre_process")
    parser.add_argument("--size", default=None, help="dynamic graphs: calibration size HxW (default 512x1024)")
    parser.add_argument("--tau-data", type=Path, default=None,
                        help="recalibrate tau on this split with the INT8 graph (e.g. data_cache/synthetic/val)")
    parser.add_argument("--target-tpr", type=float, default=None, help="TPR for --tau-data (default: the float "
                                                                       "card's)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for --tau-data (default 2)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected HxW, e.g. 512x1024") from None
    return h, w


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.runtime.calibration import CalibrationDataError
    from densehybrid_ros.runtime.quantize import QuantizationError, QuantizeSettings, default_output, quantize_model

    try:
        settings = QuantizeSettings(calibration=args.calib_data, frames=args.calib_frames, method=args.method,
                                    per_channel=not args.per_tensor, reduce_range=args.reduce_range,
                                    symmetric_activations=args.symmetric_activations, exclude_stem=args.exclude_stem,
                                    exclude=args.exclude, preprocess=not args.no_preprocess, all_ops=args.all_ops,
                                    moving_average=args.moving_average, float_first=args.float_first,
                                    percentile=args.percentile, size=_size(args.size))
        out = args.out or default_output(args.model)
        if out.exists() and not args.force:
            raise ValueError(f"{out} exists; pass --force to replace it")
        # The tau options are used only after the graph is written: refuse them before any work, so a typo leaves
        # no INT8 graph behind with the float model's tau.
        if args.target_tpr is not None and not 0 < args.target_tpr <= 1:
            raise ValueError(f"--target-tpr must be in (0, 1], got {args.target_tpr}")
        if isinstance(args.threads, int) and args.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = onnxruntime's default), got {args.threads}")
        if args.tau_data is not None and not Path(args.tau_data).is_dir():
            raise ValueError(f"--tau-data {args.tau_data} is not a split folder")
        bar = None
        progress = None
        if not args.no_progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=args.calib_frames, desc="calibrating", unit="frame", dynamic_ncols=True)

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()
            except ImportError:
                pass
        try:
            card = quantize_model(args.model, out, settings, progress=progress,
                                  log=(bar.write if bar is not None else print))
        finally:
            if bar is not None:
                bar.close()
        if args.tau_data is not None:
            from densehybrid_ros.evaluation.calibrate import calibrate, write_calibration

            tpr = args.target_tpr or (card.calibration.target_tpr if card.calibration else 0.95)
            result = calibrate(out, args.tau_data, target_tpr=tpr, threads=args.threads,
                               progress=not args.no_progress)
            card = write_calibration(out, result)
            card.quantization["tau"] = f"recalibrated on the INT8 graph's scores ({result.split})"
            card.save(card.card_path)
            print(f"tau of the INT8 graph: {result.tau:.6g} at TPR {100 * result.achieved_tpr:.2f}% (FPR "
                  f"{100 * result.fpr:.2f}%) on {result.images} images of {result.split}")
        q = card.quantization
        print(f"{out}: {q['method']}, {q['calibration']['frames']} calibration frames, "
              f"{sum(len(v) for v in q['float_nodes'].values())} nodes in float")
    except (QuantizationError, CalibrationDataError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"densehybrid quantize: {e}", file=sys.stderr)
        return 2
    return 0
