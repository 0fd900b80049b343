"""Readers for the synthetic splits and for real data sets, all yielding ``EvalSample`` in one label convention.

Convention (docs/DEVELOPING.md): ``semantic`` holds inlier classes ``0..K-1``, the anomaly label ``K`` and void
``255`` (None for binary benchmarks, which only label anomalies); ``anomaly`` is uint8 with 0 inlier, 1 anomaly,
255 void; ``depth`` is float32 metres (0 = unknown) or None. Each adapter documents where its encoding comes from;
docs/DATASETS.md lists the directory layouts.

``open_split(path)`` detects the format from the directory layout; pass ``format=`` to force one.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from densehybrid_ros.data.taxonomy import VOID_LABEL, Taxonomy

INLIER, ANOMALY = 0, 1
UNSPECIFIED_CONDITION = "unspecified"
FORMATS = ("synthetic", "cityscapes", "streethazards", "fishyscapes", "smiyc", "roadanomaly", "camvid")


@dataclass
class EvalSample:
    name: str
    image: np.ndarray                 # RGB uint8 (H, W, 3)
    semantic: np.ndarray | None       # uint8 (H, W): 0..K-1 inliers, K anomaly, 255 void; None for binary sets
    anomaly: np.ndarray               # uint8 (H, W): 0 inlier, 1 anomaly, 255 void
    depth: np.ndarray | None          # float32 metres (0 = unknown) or None
    condition: str                    # weather/light condition, town or scene; "unspecified" when unknown


class DatasetFormatError(ValueError):
    """A directory does not hold a data set in the expected layout, or a file has an unexpected encoding."""


class SplitBase(Sequence):
    """A random-access list of frames; subclasses fill ``self._frames`` and implement ``_load(frame)``."""

    format: str = ""
    taxonomy: Taxonomy | None = None

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.format or 'data set'} root {self.root} is not a directory")
        self._frames: list = []

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> EvalSample:  # type: ignore[override]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range 0..{len(self) - 1}")
        return self._load(self._frames[index])

    def __iter__(self) -> Iterator[EvalSample]:
        for frame in self._frames:
            yield self._load(frame)

    def _load(self, frame) -> EvalSample:
        raise NotImplementedError

    def _require_frames(self, what: str) -> None:
        if not self._frames:
            raise DatasetFormatError(f"no {what} found under {self.root}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, frames={len(self)})"


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file (PNG, JPEG, WebP; alpha dropped, grey expanded) as RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"cannot read image {path} (missing or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel 8-bit label PNG exactly (no colour conversion, palette indices kept)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetFormatError(f"cannot read label image {path} (missing or not an image)")
    if label.ndim == 3:
        # Some tools save grey labels as RGB with equal channels; anything else is a colour visualisation.
        if label.shape[2] >= 3 and np.array_equal(label[..., 0], label[..., 1]) and \
                np.array_equal(label[..., 1], label[..., 2]):
            label = label[..., 0]
        else:
            raise DatasetFormatError(f"label image {path} has {label.shape[2]} different channels; expected a "
                                     f"single-channel id map (is this the colour visualisation?)")
    if label.dtype != np.uint8:
        raise DatasetFormatError(f"label image {path} is {label.dtype}; expected 8-bit ids")
    return label


def check_same_size(image: np.ndarray, label: np.ndarray, path: Path) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DatasetFormatError(f"label {path} is {label.shape[1]}x{label.shape[0]} but its image is "
                                 f"{image.shape[1]}x{image.shape[0]}")


def anomaly_from_semantic(semantic: np.ndarray, anomaly_label: int) -> np.ndarray:
    """Binary anomaly map of a K+1 labelling: 1 at label K, 255 at void, 0 elsewhere."""
    out = np.where(semantic == VOID_LABEL, VOID_LABEL, INLIER).astype(np.uint8)
    out[semantic == anomaly_label] = ANOMALY
    return out


def detect_format(path: str | Path) -> str:
    """Name the format of the data set at ``path`` from its directory layout (see docs/DATASETS.md)."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"data set path {root} does not exist")
    if not root.is_dir():
        raise DatasetFormatError(f"data set path {root} is a file; expected a directory")
    if (root / "index.json").is_file() and (root / "images").is_dir():
        return "synthetic"
    if any((root / s / "index.json").is_file() for s in ("test", "val", "validation", "train")) and \
            not (root / "test" / "images" / "test").is_dir():
        return "synthetic"
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    from densehybrid_ros.data.adapters.camvid import looks_like_camvid
    if looks_like_camvid(root):
        return "camvid"
    if (root / "images" / "test").is_dir() and (root / "annotations" / "test").is_dir() or \
            (root / "images" / "training").is_dir() and (root / "annotations" / "training").is_dir() or \
            (root / "test" / "images" / "test").is_dir() or (root / "train" / "images" / "training").is_dir():
        return "streethazards"
    if (root / "images").is_dir() and (root / "labels_masks").is_dir():
        return "smiyc"
    if (root / "frames").is_dir() and (root / "frame_list.json").is_file() or \
            (root / "frames").is_dir() and any((root / "frames").glob("*.labels")):
        return "roadanomaly"
    if (root / "original").is_dir() and (root / "labels").is_dir() or \
            next(root.rglob("*_labels.png"), None) is not None:
        return "fishyscapes"
    raise DatasetFormatError(
        f"cannot tell the format of {root}: expected one of the layouts in docs/DATASETS.md "
        f"({', '.join(FORMATS)}); pass format= explicitly")


def open_split(path: str | Path, format: str = "auto", **options) -> SplitBase:
    """Open an evaluation split; returns a sequence of ``EvalSample`` (``len``, indexing, iteration).

    ``format`` is "auto" or one of FORMATS. ``options`` go to the adapter (e.g. ``split="val"`` for Cityscapes,
    ``split="test"`` for StreetHazards, ``condition="fog"`` for synthetic splits).
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "synthetic":
        from densehybrid_ros.data.adapters.synthetic import SyntheticSplit
        return SyntheticSplit(path, **options)
    if fmt == "cityscapes":
        from densehybrid_ros.data.adapters.cityscapes import CityscapesSplit
        return CityscapesSplit(path, **options)
    if fmt == "streethazards":
        from densehybrid_ros.data.adapters.streethazards import StreetHazardsSplit
        return StreetHazardsSplit(path, **options)
    if fmt == "fishyscapes":
        from densehybrid_ros.data.adapters.binary_benchmarks import FishyscapesSplit
        return FishyscapesSplit(path, **options)
    if fmt == "smiyc":
        from densehybrid_ros.data.adapters.binary_benchmarks import SegmentMeIfYouCanSplit
        return SegmentMeIfYouCanSplit(path, **options)
    if fmt == "roadanomaly":
        from densehybrid_ros.data.adapters.binary_benchmarks import RoadAnomalySplit
        return RoadAnomalySplit(path, **options)
    if fmt == "camvid":
        from densehybrid_ros.data.adapters.camvid import CamVidSplit
        return CamVidSplit(path, **options)
    raise ValueError(f"unknown data set format {format!r}; valid: 'auto', {', '.join(repr(f) for f in FORMATS)}")


__all__ = [
    "EvalSample", "SplitBase", "DatasetFormatError", "open_split", "detect_format", "read_rgb", "read_label",
    "anomaly_from_semantic", "FORMATS", "INLIER", "ANOMALY", "UNSPECIFIED_CONDITION",
]
