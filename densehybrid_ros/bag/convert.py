"""Frame-sequence datasets into rosbag2: a folder of camera images (sorted by name, one drive) and, optionally, a
folder of label images with the same names (single-channel ids: 0..K-1 inlier classes, K anomaly, 255 void).

CamVid, StreetHazards and similar sets ship their sequences this way; colour-coded labels must be mapped to ids
first (the data-set adapters in densehybrid_ros/data/adapters do that for training).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densehybrid_ros.bag.drives import DEFAULT_START_NS
from densehybrid_ros.bag.files import (CAMERA_INFO, CLOCK, COMPRESSED_IMAGE, IMAGE, BagError, camera_info_message,
                                       clock_message, compressed_message, create_bag, image_message)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class FrameFolder:
    images: Path
    labels: Path | None = None
    label_suffix: str = ""          # e.g. "_L" when labels are named <stem>_L.png
    fps: float = 10.0
    compressed: bool = False
    storage: str = "sqlite3"
    namespace: str = "/camera"
    frame_id: str = "camera"
    start_ns: int = DEFAULT_START_NS
    focal: float | None = None      # pixels; default: a 60 degree horizontal field of view
    anomaly_label: int | None = None


def frame_pairs(images: Path, labels: Path | None, label_suffix: str = "") -> list[tuple[Path, Path | None]]:
    """(image, label) paths in name order; BagError naming the first image without its label."""
    if not images.is_dir():
        raise BagError(f"image folder {images} does not exist")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BagError(f"image folder {images} has no images ({', '.join(IMAGE_SUFFIXES)})")
    if labels is None:
        return [(f, None) for f in files]
    if not labels.is_dir():
        raise BagError(f"label folder {labels} does not exist")
    by_stem = {p.stem: p for p in labels.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for f in files:
        label = by_stem.get(f.stem + label_suffix)
        if label is None:
            raise BagError(f"image {f} has no label {labels / (f.stem + label_suffix)}.* in {labels}")
        pairs.append((f, label))
    return pairs


def _read(path: Path, flags: int) -> np.ndarray:
    array = cv2.imread(str(path), flags)
    if array is None:
        raise BagError(f"{path} is not a readable image")
    return array


def convert_frames(folder: FrameFolder, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Write the frames to a new bag at `out` (atomically); returns the description stored in the bag."""
    from tqdm import tqdm

    if not 0.5 <= folder.fps <= 120:
        raise BagError(f"--fps must be in [0.5, 120], got {folder.fps!r}")
    pairs = frame_pairs(folder.images, folder.labels, folder.label_suffix)
    ns_prefix = folder.namespace.rstrip("/")
    image_topic = f"{ns_prefix}/image/compressed" if folder.compressed else f"{ns_prefix}/image"
    size = None
    with create_bag(out, folder.storage) as bag:
        bag.add_topic(image_topic, COMPRESSED_IMAGE if folder.compressed else IMAGE)
        bag.add_topic(f"{ns_prefix}/camera_info", CAMERA_INFO)
        if folder.labels is not None:
            bag.add_topic(f"{ns_prefix}/labels", IMAGE)
        bag.add_topic("/clock", CLOCK)
        for k, (image_path, label_path) in enumerate(tqdm(pairs, desc="frames", unit="frame", disable=not progress,
                                                          leave=False)):
            ns = folder.start_ns + round(k * 1e9 / folder.fps)
            bgr = _read(image_path, cv2.IMREAD_COLOR)
            if size is None:
                size = bgr.shape[:2]
            elif bgr.shape[:2] != size:
                raise BagError(f"{image_path} is {bgr.shape[1]}x{bgr.shape[0]}, the first frame {size[1]}x{size[0]}: "
                               f"one bag holds one camera")
            rgb = np.ascontiguousarray(bgr[..., ::-1])
            if folder.compressed:
                bag.write(image_topic, ns, compressed_message(rgb, ns, folder.frame_id))
            else:
                bag.write(image_topic, ns, image_message(rgb, "rgb8", ns, folder.frame_id))
            h, w = size
            focal = folder.focal or (w / 2.0) / np.tan(np.radians(30.0))
            bag.write(f"{ns_prefix}/camera_info", ns,
                      camera_info_message(h, w, float(focal), w / 2.0, h / 2.0, ns, folder.frame_id))
            if label_path is not None:
                label = _read(label_path, cv2.IMREAD_UNCHANGED)
                if label.ndim != 2 or label.dtype != np.uint8:
                    raise BagError(f"label {label_path} must be a single-channel 8-bit id image, got shape "
                                   f"{label.shape} {label.dtype} (map colour-coded labels to ids first)")
                if label.shape != size:
                    raise BagError(f"label {label_path} is {label.shape[1]}x{label.shape[0]}, its image "
                                   f"{w}x{h}")
                bag.write(f"{ns_prefix}/labels", ns, image_message(label, "mono8", ns, folder.frame_id))
            bag.write("/clock", ns, clock_message(ns))
        description = {"tool": "densehybrid bag convert", "images": str(folder.images),
                       "labels": None if folder.labels is None else str(folder.labels), "frames": len(pairs),
                       "fps": folder.fps, "image_topic": image_topic,
                       "labels_topic": None if folder.labels is None else f"{ns_prefix}/labels",
                       "camera_info_topic": f"{ns_prefix}/camera_info"}
        if folder.anomaly_label is not None:
            description["anomaly_label"] = int(folder.anomaly_label)
        bag.describe(description)
    return description
