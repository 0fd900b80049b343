"""Seeded validation/test splits of the synthetic world on disk (StreetHazards-like), and their reader.

Layout (docs/DATA.md)::

    <root>/<split>/images/<condition>/<frame>.png        RGB
    <root>/<split>/annotations/<condition>/<frame>.png   uint8 labels: 0..K-1 inliers, K anomaly, 255 void
    <root>/<split>/depth/<condition>/<frame>.png         uint16 centimetres, 0 = no depth (sky)
    <root>/<split>/index.json                            taxonomy, K, seed, size, frames with condition + meta

Everything written is a function of the arguments only (no timestamps, no host names; PNGs via OpenCV, which
encodes deterministically), so a split is reproducible byte for byte from its seed. Frame seeds live in
[2**32, 2**33): training code drawing seeds below 2**32 can never render a validation or test frame.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .taxonomy import CONDITIONS, SYNTHETIC
from .world import LAYOUTS, render_scene

FORMAT = "densehybrid-synthetic-split"
VERSION = 1
FRAME_SEED_BASE = 1 << 32
CENTIMETRES_PER_METRE = 100.0
MAX_DEPTH_CM = 65535
PROGRESS_FILE = ".progress.jsonl"
# A frame whose anomalies all ended up hidden is re-rendered with the next attempt's seed (evaluation frames
# must contain an obstacle); this bounds the retries.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class SplitSpec:
    """Default parameters of a named split (docs/DATA.md lists them)."""
    seed: int
    frames_per_condition: int
    anomalies_per_frame: tuple[int, int]
    height: int = 512
    width: int = 1024


DEFAULT_SPLITS = {
    "val": SplitSpec(seed=20_220_701, frames_per_condition=40, anomalies_per_frame=(1, 3)),
    "test": SplitSpec(seed=20_220_923, frames_per_condition=80, anomalies_per_frame=(1, 3)),
}


@dataclass
class SplitFrame:
    name: str
    condition: str
    image: np.ndarray          # (H, W, 3) uint8 RGB
    label: np.ndarray          # (H, W) uint8
    depth: np.ndarray          # (H, W) float32 metres, 0 = no depth (sky)
    meta: dict = field(default_factory=dict)


def frame_seed(split_seed: int, condition: str, index: int, attempt: int = 0) -> int:
    """The render seed of frame `index` of `condition` in a split with seed `split_seed`."""
    state = np.random.SeedSequence([int(split_seed), CONDITIONS.index(condition), int(index), int(attempt)])
    return FRAME_SEED_BASE + int(state.generate_state(1, np.uint32)[0])


def frame_plan(split_seed: int, condition: str, index: int, anomalies_per_frame: tuple[int, int]) -> tuple[str, int]:
    """(layout, anomaly count) of a frame: layouts cycle so every condition sees all four equally."""
    ci = CONDITIONS.index(condition)
    layout = LAYOUTS[(index + ci) % len(LAYOUTS)]
    lo, hi = anomalies_per_frame
    rng = np.random.default_rng([int(split_seed), ci, int(index), 99])
    return layout, int(rng.integers(lo, hi + 1))


def depth_to_png(depth: np.ndarray, label: np.ndarray) -> np.ndarray:
    cm = np.clip(np.rint(depth * CENTIMETRES_PER_METRE), 1, MAX_DEPTH_CM).astype(np.uint16)
    cm[label == SYNTHETIC.index("sky")] = 0
    return cm


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a truncated PNG behind."""
    tmp = path.with_name(path.name + ".tmp.png")
    if not cv2.imwrite(str(tmp), array):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)


def _check_write_args(split, conditions, frames_per_condition, height, width, anomalies_per_frame) -> None:
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"split must be a plain directory name such as 'val' or 'test', got {split!r}")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise ValueError(f"conditions must be a non-empty subset of {CONDITIONS}, got {list(conditions)!r}")
    if not isinstance(frames_per_condition, int) or not 1 <= frames_per_condition <= 100_000:
        raise ValueError(f"frames_per_condition must be an integer in [1, 100000], got {frames_per_condition!r}")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or not 16 <= v <= 8192:
            raise ValueError(f"{name} must be an integer in [16, 8192], got {v!r}")
    lo, hi = anomalies_per_frame
    if not 0 <= lo <= hi <= 8:
        raise ValueError(f"anomalies_per_frame must be (lo, hi) with 0 <= lo <= hi <= 8, got {anomalies_per_frame!r}")


def _header(split, seed, conditions, frames_per_condition, height, width, anomalies_per_frame) -> dict:
    return {"format": FORMAT, "version": VERSION, "split": split, "seed": int(seed), "conditions": list(conditions),
            "frames_per_condition": int(frames_per_condition), "height": int(height), "width": int(width),
            "anomalies_per_frame": [int(anomalies_per_frame[0]), int(anomalies_per_frame[1])]}


def start_progress(split_dir: Path, header: dict, overwrite: bool) -> tuple[Path, dict[str, dict]]:
    """The progress log of a resumable split writer in `split_dir` and the records it already holds: started afresh
    (with `header` as its first line) when `overwrite`, when absent, or when written with other parameters."""
    progress_path = split_dir / PROGRESS_FILE
    if overwrite and progress_path.is_file():
        progress_path.unlink()
    split_dir.mkdir(parents=True, exist_ok=True)
    records = _load_progress(progress_path, header)
    if not records:
        progress_path.write_text(json.dumps(header, sort_keys=True) + "\n")
    return progress_path, records


def _load_progress(path: Path, header: dict) -> dict[str, dict]:
    """Records of frames already written by an earlier (possibly interrupted) run with the same parameters."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    if not lines:
        return {}
    try:
        old = json.loads(lines[0])
    except json.JSONDecodeError:
        return {}
    if old != header:
        raise FileExistsError(f"{path.parent} holds a split written with other parameters ({old}); "
                              f"pass overwrite=True (--overwrite) or choose another --out")
    records = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that frame is simply rendered again
        records[rec["condition"] + "/" + rec["name"]] = rec
    return records


def _verified(split_dir: Path, rec: dict) -> bool:
    for kind in ("image", "annotation", "depth"):
        p = split_dir / rec[kind]
        if not p.is_file() or _sha256(p) != rec["sha256"][kind]:
            return False
    return True


def write_split(root: str | os.PathLike, split: str, seed: int | None = None,
                conditions: Sequence[str] = CONDITIONS, frames_per_condition: int | None = None,
                height: int | None = None, width: int | None = None,
                anomalies_per_frame: tuple[int, int] | None = None, overwrite: bool = False,
                progress: Callable[[int], None] | None = None) -> Path:
    """Render and write a split; returns the path of its index.json.

    Unset arguments take the defaults of DEFAULT_SPLITS[split] (or of "test" for other names). Resumable: frames
    already on disk whose files match the recorded SHA-256 are kept; `progress(n)` is called per finished frame.
    """
    if split not in DEFAULT_SPLITS and seed is None:
        # Another name with the test seed would be a copy of the test split under that name (a model trained on a
        # split called "train" would have seen test).
        raise ValueError(f"split {split!r} is not one of {', '.join(DEFAULT_SPLITS)}; a split of another name needs "
                         "its own --seed (not a fixed split's seed)")
    spec = DEFAULT_SPLITS.get(split, DEFAULT_SPLITS["test"])
    seed = spec.seed if seed is None else int(seed)
    if split not in DEFAULT_SPLITS and seed in {s.seed for s in DEFAULT_SPLITS.values()}:
        raise ValueError(f"split {split!r} with seed {seed}: that is the seed of a fixed split; choose another")
    frames_per_condition = spec.frames_per_condition if frames_per_condition is None else frames_per_condition
    height = spec.height if height is None else height
    width = spec.width if width is None else width
    anomalies_per_frame = tuple(spec.anomalies_per_frame if anomalies_per_frame is None else anomalies_per_frame)
    conditions = tuple(conditions)
    _check_write_args(split, conditions, frames_per_condition, height, width, anomalies_per_frame)
    split_dir = Path(root) / split
    header = _header(split, seed, conditions, frames_per_condition, height, width, anomalies_per_frame)
    progress_path, records = start_progress(split_dir, header, overwrite)
    for kind in ("images", "annotations", "depth"):
        for cond in conditions:
            (split_dir / kind / cond).mkdir(parents=True, exist_ok=True)

    frames = []
    with progress_path.open("a") as log:
        for cond in conditions:
            for i in range(frames_per_condition):
                name = f"{i:05d}"
                rec = records.get(f"{cond}/{name}")
                if rec is None or not _verified(split_dir, rec):
                    rec = _render_frame(split_dir, seed, cond, i, name, height, width, anomalies_per_frame)
                    log.write(json.dumps(rec, sort_keys=True) + "\n")
                    log.flush()
                frames.append(rec)
                if progress is not None:
                    progress(1)

    index = dict(header)
    index.update({
        **SYNTHETIC.split_index_fields(),
        "depth_png": {"dtype": "uint16", "unit": "centimetre", "zero": "no depth (sky)",
                      "max_m": MAX_DEPTH_CM / CENTIMETRES_PER_METRE},
        "layouts": list(LAYOUTS),
        "frames": frames,
    })
    index_path = split_dir / "index.json"
    tmp = index_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, index_path)
    return index_path


def _render_frame(split_dir: Path, split_seed: int, cond: str, i: int, name: str, height: int, width: int,
                  anomalies_per_frame: tuple[int, int]) -> dict:
    layout, n_anomalies = frame_plan(split_seed, cond, i, anomalies_per_frame)
    for attempt in range(MAX_ATTEMPTS):
        fseed = frame_seed(split_seed, cond, i, attempt)
        scene = render_scene(fseed, height, width, cond, layout, n_anomalies)
        visible = sum(a["pixel_area"] > 0 for a in scene.meta["anomalies"])
        if n_anomalies == 0 or visible > 0:
            break
    else:  # pragma: no cover - placement keeps obstacles in view; this guards the split's promise anyway
        raise RuntimeError(f"{cond}/{name}: no visible anomaly after {MAX_ATTEMPTS} attempts")
    paths = {"image": f"images/{cond}/{name}.png", "annotation": f"annotations/{cond}/{name}.png",
             "depth": f"depth/{cond}/{name}.png"}
    _write_png(split_dir / paths["image"], np.ascontiguousarray(scene.image[..., ::-1]))
    _write_png(split_dir / paths["annotation"], scene.label)
    _write_png(split_dir / paths["depth"], depth_to_png(scene.depth, scene.label))
    meta = dict(scene.meta)
    meta["attempt"] = attempt
    return {"name": name, "condition": cond, "seed": fseed, "layout": layout, **paths,
            "sha256": {k: _sha256(split_dir / p) for k, p in paths.items()}, "meta": meta}


def read_index(root: str | os.PathLike, split: str) -> dict:
    path = Path(root) / split / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"no split index at {path}; write it with `densehybrid make-data --split {split}`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index (format={index.get('format')!r})")
    return index


def read_split(root: str | os.PathLike, split: str, conditions: Sequence[str] | None = None) -> Iterator[SplitFrame]:
    """Iterate the frames of a written split in index order (optionally only some conditions)."""
    index = read_index(root, split)
    split_dir = Path(root) / split
    wanted = None if conditions is None else set(conditions)
    for rec in index["frames"]:
        if wanted is not None and rec["condition"] not in wanted:
            continue
        bgr = cv2.imread(str(split_dir / rec["image"]), cv2.IMREAD_COLOR)
        label = cv2.imread(str(split_dir / rec["annotation"]), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(split_dir / rec["depth"]), cv2.IMREAD_UNCHANGED)
        if bgr is None or label is None or depth is None:
            raise FileNotFoundError(f"{split_dir}: frame {rec['condition']}/{rec['name']} is incomplete")
        yield SplitFrame(name=rec["name"], condition=rec["condition"], image=np.ascontiguousarray(bgr[..., ::-1]),
                         label=label, depth=depth.astype(np.float32) / CENTIMETRES_PER_METRE, meta=rec["meta"])
