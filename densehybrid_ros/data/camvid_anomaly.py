"""The real-frame anomaly benchmark: held-out objects pasted onto CamVid frames, in the manner of Fishyscapes Static
(Blum et al., which pastes objects onto Cityscapes validation frames).

Per frame (in drive order; everything is a function of the seed, the frame's index and the object folder):

* 1-2 objects are drawn from a cutout folder (data/real_objects.py) that training never pastes from;
* each stands on the ground (CamVid road or pavement) at a random contact point, sized by the flat-ground pinhole
  relation ``h_px = h_m * (y - y_horizon) / camera_height_m``: CamVid has no depth, and for a level camera over a
  flat road the pixel row alone gives the scale. This is data/paste.py's harmonised pasting fed with the row's
  ground distance as depth, so colour statistics are matched to the surroundings and edges are feathered the same
  way as the training pastes;
* labels: CamVid ids 0..10 stay, void (11) becomes 255, pasted pixels (alpha >= 0.5) become the anomaly label
  K = 11.

Written in the synthetic-split layout that ``densehybrid evaluate`` reads (data/adapters/synthetic.py)::

    <out>/<split>/images/<sequence>/<frame>.png        RGB, 480x360
    <out>/<split>/annotations/<sequence>/<frame>.png   0..10 CamVid classes, 11 pasted object, 255 void
    <out>/<split>/index.json                           taxonomy (CamVid, K = 11), seed, objects manifest, frames

so ``densehybrid evaluate --data <out>`` reports AP, AUROC, FPR95, open-mIoU, component metrics, and per-sequence
breakdowns (the condition is the drive). Resumable: frames on disk whose files match the recorded SHA-256 are kept.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from densehybrid_ros.data.adapters.camvid import CAMVID, CamVidSplit, decode_label
from densehybrid_ros.data.paste import NEGATIVE_TARGET, PasteConfig, paste_negatives
from densehybrid_ros.data.splits import _sha256, _write_png, start_progress

FORMAT = "densehybrid-camvid-anomaly"
VERSION = 1
BENCHMARK_SEED = 20_261_203
ROAD, PAVEMENT = CAMVID.index("road"), CAMVID.index("pavement")


@dataclass(frozen=True)
class BenchmarkConfig:
    objects_per_frame: tuple[int, int] = (1, 2)
    object_height_m: tuple[float, float] = (0.3, 1.5)
    # CamVid's camera looks level: the topmost road rows of the train labels lie at rows 177-200 of 360
    # (5th-75th percentile), so the horizon is about half way down the frame.
    horizon_fraction: float = 0.49
    camera_height_m: float = 1.3      # a windscreen-mounted camera of a car
    # Nearest contact point. Distances assume a focal length equal to the frame width (a 53-degree horizontal field
    # of view); they only bound where objects may stand: without it a draw near the bonnet fills a quarter of the
    # frame, which is a different test (an object filling the view) from Fishyscapes-style obstacles.
    min_distance_m: float = 5.0
    min_size_px: int = 12             # smaller pastes are a few pixels of noise, not an obstacle
    colour_match: tuple[float, float] = (0.4, 0.8)
    feather_px: tuple[float, float] = (0.8, 1.6)

    def __post_init__(self) -> None:
        lo, hi = self.objects_per_frame
        if not 1 <= lo <= hi <= 8:
            raise ValueError(f"objects_per_frame must satisfy 1 <= lo <= hi <= 8, got {self.objects_per_frame}")
        if not 0.05 <= self.horizon_fraction <= 0.95:
            raise ValueError(f"horizon_fraction must be in [0.05, 0.95], got {self.horizon_fraction}")
        if not self.min_distance_m >= 0:
            raise ValueError(f"min_distance_m must be >= 0, got {self.min_distance_m}")
        if not self.camera_height_m > 0:
            raise ValueError(f"camera_height_m must be positive, got {self.camera_height_m}")


def ground_distance(height: int, width: int, horizon_row: float, camera_height_m: float,
                    focal_px: float, min_distance_m: float = 0.0) -> np.ndarray:
    """Distance (m) of the flat ground seen at each pixel row; 0 (no ground) at and above the horizon and nearer
    than ``min_distance_m``.

    paste.py sizes an object as ``focal * h / d``, which with this ``d`` is ``h * (row - horizon) /
    camera_height``: the size does not depend on ``focal_px``, only the distances (and so ``min_distance_m``) do.
    """
    rows = np.arange(height, dtype=np.float32) + 0.5 - horizon_row
    d = np.where(rows > 0.5, camera_height_m * focal_px / np.maximum(rows, 0.5), 0.0).astype(np.float32)
    d[d < min_distance_m] = 0.0
    return np.repeat(d[:, None], width, axis=1)


def camvid_pseudo_depth(height: int, width: int, focal_px: float,
                        config: BenchmarkConfig = BenchmarkConfig()) -> np.ndarray:
    """Flat-ground distance per pixel for a CamVid frame (0 above the horizon), for harmonised pasting of training
    negatives on CamVid, which has no depth: pass the same ``focal_px`` as the ``PasteConfig`` (then the pasted
    size is ``h * (row - horizon) / camera_height`` as in this benchmark) and ground labels (3, 4)."""
    return ground_distance(height, width, config.horizon_fraction * height, config.camera_height_m, focal_px)


def frame_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), 13])


def make_frame(image: np.ndarray, semantic: np.ndarray, objects, rng: np.random.Generator,
               config: BenchmarkConfig = BenchmarkConfig()) -> tuple[np.ndarray, np.ndarray, list]:
    """Paste held-out objects on one frame; returns (image, labels with K at pasted pixels, boxes)."""
    h, w = semantic.shape
    focal = float(w)  # see BenchmarkConfig.min_distance_m
    depth = ground_distance(h, w, config.horizon_fraction * h, config.camera_height_m, focal, config.min_distance_m)
    paste_cfg = PasteConfig(min_instances=config.objects_per_frame[0], max_instances=config.objects_per_frame[1],
                            ground_labels=(ROAD, PAVEMENT), object_height_m=config.object_height_m, focal_px=focal,
                            colour_match=config.colour_match, feather_px=config.feather_px,
                            min_size_px=config.min_size_px)
    mixed = paste_negatives(image, semantic, objects, rng, depth=depth, harmonised=True, config=paste_cfg)
    labels = semantic.copy()
    labels[mixed.ood_target == NEGATIVE_TARGET] = CAMVID.anomaly_label
    return mixed.image, labels, mixed.boxes


def write_benchmark(camvid_root: str | Path, objects_dir: str | Path, out: str | Path, split: str = "test",
                    seed: int = BENCHMARK_SEED, objects_per_frame: tuple[int, int] = (1, 2),
                    max_frames: int | None = None, overwrite: bool = False,
                    progress: Callable[[int], None] | None = None,
                    config: BenchmarkConfig | None = None) -> Path:
    """Write the benchmark for one CamVid split; returns the path of its index.json (see the module doc)."""
    from densehybrid_ros.data.real_objects import CutoutNegatives

    config = config or BenchmarkConfig(objects_per_frame=tuple(objects_per_frame))
    objects = CutoutNegatives(objects_dir, verify=True)
    frames = CamVidSplit(camvid_root, split).frames
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be a positive integer, got {max_frames}")
        frames = frames[:max_frames]
    split_dir = Path(out) / split
    header = {"format": FORMAT, "version": VERSION, "split": split, "seed": int(seed), "config": asdict(config),
              "objects_manifest_sha256": objects.manifest_sha256, "frames": len(frames)}
    header = json.loads(json.dumps(header))  # tuples as lists, as the header reads back from the progress file
    progress_path, records = start_progress(split_dir, header, overwrite)
    from densehybrid_ros.data.adapters import read_label, read_rgb

    entries = []
    with progress_path.open("a") as log:
        for index, frame in enumerate(frames):
            key = f"{frame.sequence}/{frame.name}"
            rec = records.get(key)
            if rec is None or not _verified(split_dir, rec):
                image = read_rgb(frame.image)
                semantic = decode_label(read_label(frame.label), frame.label)
                pasted, labels, boxes = make_frame(image, semantic, objects, frame_rng(seed, index), config)
                paths = {"image": f"images/{frame.sequence}/{frame.name}.png",
                         "annotation": f"annotations/{frame.sequence}/{frame.name}.png"}
                for p in paths.values():
                    (split_dir / p).parent.mkdir(parents=True, exist_ok=True)
                _write_png(split_dir / paths["image"], np.ascontiguousarray(pasted[..., ::-1]))
                _write_png(split_dir / paths["annotation"], labels)
                rec = {"name": frame.name, "condition": frame.sequence, "video_frame": frame.number, **paths,
                       "anomaly_pixels": int((labels == CAMVID.anomaly_label).sum()),
                       "boxes": [list(map(int, b)) for b in boxes],
                       "sha256": {k: _sha256(split_dir / p) for k, p in paths.items()}}
                log.write(json.dumps(rec, sort_keys=True) + "\n")
                log.flush()
            entries.append(rec)
            if progress is not None:
                progress(1)
    index = dict(header)
    index.update({
        **CAMVID.split_index_fields(),
        "source": {"camvid_root": str(Path(camvid_root)), "objects": str(Path(objects_dir)),
                   "object_sources": objects.sources, "objects_count": len(objects)},
        "frames": entries,
    })
    index_path = split_dir / "index.json"
    tmp = index_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, index_path)
    return index_path


def _verified(split_dir: Path, rec: dict) -> bool:
    for kind in ("image", "annotation"):
        p = split_dir / rec[kind]
        if not p.is_file() or _sha256(p) != rec["sha256"][kind]:
            return False
    return True
