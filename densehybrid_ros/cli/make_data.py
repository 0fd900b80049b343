"""`densehybrid make-data`: write a seeded synthetic split (validation or test) to disk.

Defaults per split come from `data/splits.py` DEFAULT_SPLITS (docs/DATA.md): `val` seed 20220701, 40 frames per
condition; `test` seed 20220923, 80 frames per condition; both 512x1024, 1-3 anomalies per frame, all seven
conditions. Re-running the same command resumes: frames already written and matching their recorded SHA-256 are
kept, the rest are rendered.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "write the seeded synthetic validation/test splits to disk"


def _anomaly_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--anomalies must be N or LO-HI with integers in [0, 8], got {text!r}")
    lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[-1])
    if len(parts) > 2 or not 0 <= lo <= hi <= 8:
        raise argparse.ArgumentTypeError(f"--anomalies must be N or LO-HI with 0 <= LO <= HI <= 8, got {text!r}")
    return lo, hi


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("data_cache/synthetic"),
                        help="root directory; the split goes to <out>/<split>/ (default data_cache/synthetic)")
    parser.add_argument("--split", default="test",
                        help="split name: val or test use their fixed default seeds and sizes (default test)")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the split's fixed seed)")
    parser.add_argument("--frames-per-condition", type=int, default=None,
                        help="frames per condition [1, 100000] (default: 40 for val, 80 for test)")
    parser.add_argument("--height", type=int, default=None, help="frame height [16, 8192] (default 512)")
    parser.add_argument("--width", type=int, default=None, help="frame width [16, 8192] (default 1024)")
    parser.add_argument("--conditions", default=None,
                        help="comma-separated subset of clear,rain,fog,night,snow,dusk,sandstorm (default all)")
    parser.add_argument("--anomalies", type=_anomaly_range, default=None,
                        help="anomalies per frame, N or LO-HI in [0, 8] (default 1-3)")
    parser.add_argument("--overwrite", action="store_true", help="discard frames of an earlier run instead of resuming")


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from densehybrid_ros.data.splits import DEFAULT_SPLITS, write_split
    from densehybrid_ros.data.taxonomy import CONDITIONS

    # one core per generator process: the machine's other cores belong to training/evaluation jobs
    cv2.setNumThreads(1)
    conditions = CONDITIONS if args.conditions is None else tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    if args.split not in DEFAULT_SPLITS and args.seed is None:
        print(f"densehybrid make-data: --split {args.split!r} is not one of {', '.join(DEFAULT_SPLITS)}; a split of "
              "another name needs its own --seed", file=sys.stderr)
        return 2
    spec = DEFAULT_SPLITS.get(args.split, DEFAULT_SPLITS["test"])
    n = len(conditions) * (args.frames_per_condition or spec.frames_per_condition)
    start, cpu = time.time(), time.process_time()
    try:
        with tqdm(total=n, desc=f"make-data {args.split}", unit="frame") as bar:
            index = write_split(args.out, args.split, seed=args.seed, conditions=conditions,
                                frames_per_condition=args.frames_per_condition, height=args.height, width=args.width,
                                anomalies_per_frame=args.anomalies, overwrite=args.overwrite, progress=bar.update)
    except (ValueError, FileExistsError) as exc:
        print(f"densehybrid make-data: {exc}", file=sys.stderr)
        return 2
    wall, cpu = time.time() - start, time.process_time() - cpu
    # frames kept from an earlier run cost almost nothing; the rate is meaningful for a fresh write
    print(f"wrote {index} ({n} frames) in {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({60.0 * n / max(cpu, 1e-9):.0f} frames/min on one core)")
    return 0
