"""`densehybrid gallery`: a grid of synthetic scenes, every condition x every layout, each frame above its label
colouring, plus a row with anomalies and the class legend; prints the generator throughput it measured."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "render a gallery of synthetic scenes for every condition"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("docs/gallery.png"), help="output PNG (default docs/gallery.png)")
    parser.add_argument("--seed", type=int, default=3, help="base seed [0, 2**31) (default 3)")
    parser.add_argument("--height", type=int, default=256, help="render height of each frame [64, 1024] (default 256)")
    parser.add_argument("--width", type=int, default=512, help="render width of each frame [128, 2048] (default 512)")
    parser.add_argument("--conditions", default=None,
                        help="comma-separated conditions to show (default all seven); anomaly rows use clear, rain "
                             "and night among them (or the first)")
    parser.add_argument("--cell-width", type=int, default=320, help="width of a grid cell in the PNG [64, 2048] (default 320)")


def _label_colours():
    import numpy as np

    from densehybrid_ros.data.taxonomy import SYNTHETIC, VOID_LABEL
    lut = np.zeros((256, 3), np.uint8)
    lut[: SYNTHETIC.num_classes] = SYNTHETIC.colours
    lut[SYNTHETIC.anomaly_label] = SYNTHETIC.anomaly_colour
    lut[VOID_LABEL] = (0, 0, 0)
    return lut


def _caption(img, text: str) -> None:
    import cv2
    scale = max(0.35, img.shape[1] / 900)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (w + 8, h + base + 6), (0, 0, 0), -1)
    cv2.putText(img, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _legend(width: int):
    import cv2
    import numpy as np

    from densehybrid_ros.data.taxonomy import SYNTHETIC
    names = list(SYNTHETIC.names) + ["anomaly"]
    colours = list(SYNTHETIC.colours) + [SYNTHETIC.anomaly_colour]
    per_row = 8
    rows = (len(names) + per_row - 1) // per_row
    h = 34
    img = np.full((rows * h + 8, width, 3), 255, np.uint8)
    cw = width // per_row
    for i, (n, c) in enumerate(zip(names, colours)):
        x, y = (i % per_row) * cw + 8, (i // per_row) * h + 8
        cv2.rectangle(img, (x, y), (x + 22, y + 20), tuple(int(v) for v in c), -1)
        cv2.putText(img, n, (x + 28, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from densehybrid_ros.data.taxonomy import CONDITIONS
    from densehybrid_ros.data.world import LAYOUTS, render_scene

    if not 64 <= args.height <= 1024 or not 128 <= args.width <= 2048 or not 64 <= args.cell_width <= 2048:
        print("densehybrid gallery: --height in [64, 1024], --width in [128, 2048], --cell-width in [64, 2048]")
        return 2
    if not 0 <= args.seed < 2 ** 31:
        print(f"densehybrid gallery: --seed must be in [0, 2**31), got {args.seed}")
        return 2
    conditions = CONDITIONS if args.conditions is None else tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        print(f"densehybrid gallery: --conditions must be a subset of {','.join(CONDITIONS)}, got {args.conditions!r}")
        return 2
    cv2.setNumThreads(1)
    lut = _label_colours()
    cw = args.cell_width
    ch = int(round(cw * args.height / args.width))
    rows = []
    cpu, n = 0.0, 0
    with_anomalies = [c for c in ("clear", "rain", "night") if c in conditions] or [conditions[0]]
    plan = [(c, 0) for c in conditions] + [(c, 2) for c in with_anomalies]
    for r, (cond, anomalies) in enumerate(plan):
        cells = []
        for k, layout in enumerate(LAYOUTS):
            seed = args.seed + 101 * r + k if anomalies == 0 else args.seed + 7919 * (r + 1) + k
            t = time.process_time()
            scene = render_scene(seed, args.height, args.width, cond, layout, anomalies)
            cpu += time.process_time() - t
            n += 1
            img = cv2.resize(scene.image, (cw, ch), interpolation=cv2.INTER_AREA)
            lab = cv2.resize(lut[scene.label], (cw, ch), interpolation=cv2.INTER_NEAREST)
            _caption(img, f"{cond} / {layout}" + (f" / {anomalies} anomalies" if anomalies else ""))
            cell = np.concatenate([img, lab], axis=0)
            cell = cv2.copyMakeBorder(cell, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cells.append(cell)
        rows.append(np.concatenate(cells, axis=1))
    grid = np.concatenate(rows, axis=0)
    grid = np.concatenate([grid, _legend(grid.shape[1])], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), grid[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        print(f"densehybrid gallery: could not write {args.out}")
        return 1
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]}): {n} scenes at {args.height}x{args.width}, "
          f"{60.0 * n / cpu:.0f} frames/min on one core ({cpu / n * 1000:.0f} ms CPU per frame)")
    return 0
