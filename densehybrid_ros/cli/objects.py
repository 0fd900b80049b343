"""`densehybrid objects <action>`: folders of object cutouts (RGBA) for training negatives and held-out anomalies
(data/real_objects.py; sources and licences in docs/DATA_SOURCES.md).

    densehybrid objects extract --reader voc --root VOCdevkit/VOC2012 --out DIR --name voc --licence "..."
    densehybrid objects extract --reader world --count 300 --out DIR --name world_obstacles
    densehybrid objects extract --reader davis --root DAVIS --frame-step 3 --out DIR --name davis2016
    densehybrid objects list --dir DIR
    densehybrid objects check-disjoint --train DIR --heldout DIR

Exit codes: 0 fine, 1 check-disjoint found shared content, 2 bad arguments or unreadable data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "real object cutouts (RGBA) for training negatives and held-out anomalies"


def configure(parser: argparse.ArgumentParser) -> None:
    from densehybrid_ros.data.real_objects import READERS

    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    ext = sub.add_parser("extract", help="cut the objects of one source into RGBA PNGs under --out/--name/")
    ext.add_argument("--reader", required=True, choices=sorted(READERS), help="source layout (see module doc)")
    ext.add_argument("--root", type=Path, default=None, help="source folder (not used by world and packaged)")
    ext.add_argument("--out", type=Path, required=True, help="cutout folder (outside the repository)")
    ext.add_argument("--name", default=None, help="source name in the folder (default: the reader's name)")
    ext.add_argument("--licence", default="", help="licence of the source, recorded in the manifest")
    ext.add_argument("--min-pixels", type=int, default=400, help="skip objects with fewer pixels (default 400)")
    ext.add_argument("--max-objects", type=int, default=None, help="stop after N objects")
    ext.add_argument("--max-aspect", type=float, default=3.0,
                     help="skip objects more than this many times wider than tall (default 3)")
    ext.add_argument("--count", type=int, default=200, help="objects to make (world and packaged; default 200)")
    ext.add_argument("--seed", type=int, default=0, help="seed (world and packaged; default 0)")
    ext.add_argument("--sequences", default=None,
                     help="davis: comma-separated sequences to read (default: the DAVIS 2016 ones whose object is "
                          "not a person, vehicle or ridden bicycle/horse)")
    ext.add_argument("--frame-step", type=int, default=1, help="davis: keep every n-th frame (default 1)")
    ext.add_argument("--render-height", type=int, default=1024,
                     help="frame height for the world reader (default 1024; width is twice it)")
    ext.add_argument("--no-progress", action="store_true", help="no progress bar")

    lst = sub.add_parser("list", help="summarise a cutout folder per source")
    lst.add_argument("--dir", type=Path, required=True)

    dis = sub.add_parser("check-disjoint", help="check that held-out objects share nothing with training objects")
    dis.add_argument("--train", type=Path, required=True)
    dis.add_argument("--heldout", type=Path, required=True)


def _extract(args) -> int:
    import cv2
    from tqdm import tqdm

    from densehybrid_ros.data.real_objects import GENERATED, READERS, extract_objects

    cv2.setNumThreads(1)
    if args.reader not in GENERATED and args.root is None:
        raise ValueError(f"--reader {args.reader} needs --root (the source folder)")
    options = {"count": args.count, "seed": args.seed}
    if args.reader == "world":
        options.update(height=args.render_height, width=2 * args.render_height)
    if args.reader == "davis":
        options.update(frame_step=args.frame_step,
                       sequences=None if args.sequences is None else
                       [q.strip() for q in args.sequences.split(",") if q.strip()])
    elif args.sequences is not None or args.frame_step != 1:
        raise ValueError("--sequences and --frame-step apply to --reader davis only")
    instances = READERS[args.reader](args.root, **options)
    name = args.name or args.reader
    with tqdm(desc=f"objects {name}", unit="object", disable=args.no_progress) as bar:
        counts = extract_objects(instances, args.out, name, args.reader,
                                 root=None if args.root is None else str(args.root.resolve()),
                                 licence=args.licence, min_pixels=args.min_pixels, max_objects=args.max_objects,
                                 max_aspect=args.max_aspect, progress=bar.update)
    print(f"{name}: wrote {counts['written']} objects to {args.out / name} (skipped: {counts['skipped_small']} "
          f"smaller than {args.min_pixels} px, {counts['skipped_wide']} more than {args.max_aspect}x wider than "
          f"tall); {counts['total_in_folder']} objects in {args.out}")
    return 0


def _list(args) -> int:
    from densehybrid_ros.data.real_objects import MANIFEST, load_manifest

    if not (args.dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{args.dir} has no {MANIFEST}")
    manifest = load_manifest(args.dir)
    for name, info in sorted(manifest["sources"].items()):
        objs = [o for o in manifest["objects"] if o["source"] == name]
        px = sorted(o["pixels"] for o in objs)
        median = px[len(px) // 2] if px else 0
        print(f"{name}: {len(objs)} objects (median {median} px), reader {info['reader']}, "
              f"root {info.get('root')}, licence: {info.get('licence') or '(not given)'}")
    return 0


def _disjoint(args) -> int:
    from densehybrid_ros.data.real_objects import check_disjoint

    problems = check_disjoint(args.train, args.heldout)
    if problems:
        print("\n".join(problems))
        return 1
    print(f"{args.heldout} shares no source, origin file or cutout with {args.train}")
    return 0


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.data.real_objects import ObjectSourceError

    try:
        return {"extract": _extract, "list": _list, "check-disjoint": _disjoint}[args.action](args)
    except (FileNotFoundError, ObjectSourceError, ValueError) as e:
        print(f"densehybrid objects {args.action}: {e}", file=sys.stderr)
        return 2
