"""Binary anomaly benchmarks: Fishyscapes, SegmentMeIfYouCan, RoadAnomaly (labels: inlier / anomaly / void only).

These sets carry no class labels (DenseHybrid paper, section 5), so ``semantic`` is None and only ``anomaly``
(0 inlier, 1 anomaly, 255 void) is filled.

* SegmentMeIfYouCan (Chan et al., NeurIPS 2021 datasets track; adynathos/road-anomaly-benchmark, datasets/tracks.py):
  ``dataset_AnomalyTrack/images/<fid>.jpg`` or ``dataset_ObstacleTrack/images/<fid>.webp`` with
  ``labels_masks/<fid>_labels_semantic.png``: 0 not anomalous (road for ObstacleTrack), 1 anomaly/obstacle,
  255 void. Only the validation frames have public labels; frames without labels are skipped.
  The ObstacleTrack scene (first ``_``-separated part of the frame id, e.g. ``snowstorm1``, ``driveway`` = night)
  is reported as the condition.
* RoadAnomaly (Lis et al., ICCV 2019; the data set's readme.md): ``frame_list.json``,
  ``frames/<name>.jpg|webp`` and ``frames/<name>.labels/labels_semantic.png`` with background 0 and anomaly 2;
  there is no void.
* Fishyscapes (Blum et al., IJCV 2021): the benchmark publishes its validation sets through bdl-benchmark /
  TensorFlow Datasets with masks 0 in-distribution, 1 out-of-distribution, 255 void; exported copies on disk come in
  two common layouts, both read here: ``original/<id>.png|jpg`` + ``labels/<id>.png`` (used by PEBAL, RPL and
  successors) and ``<id>_rgb.jpg|png`` + ``<id>_labels.png`` side by side (used by DenseHybrid's FS Static loader).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from densehybrid_ros.data.adapters import (
    ANOMALY, INLIER, UNSPECIFIED_CONDITION, DatasetFormatError, EvalSample, SplitBase, check_same_size, read_label,
    read_rgb,
)
from densehybrid_ros.data.taxonomy import VOID_LABEL

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")


def _binary_mask(raw: np.ndarray, inlier_values, anomaly_values, path: Path, strict: bool = True) -> np.ndarray:
    """Map a benchmark's label values to 0/1/255; with ``strict`` unknown values are an error, else void."""
    out = np.full(raw.shape, VOID_LABEL, np.uint8)
    out[np.isin(raw, inlier_values)] = INLIER
    out[np.isin(raw, anomaly_values)] = ANOMALY
    if strict:
        known = np.isin(raw, list(inlier_values) + list(anomaly_values) + [VOID_LABEL])
        if not known.all():
            bad = np.unique(raw[~known])[:8].tolist()
            raise DatasetFormatError(f"label {path} has values {bad}; expected inlier {list(inlier_values)}, "
                                     f"anomaly {list(anomaly_values)} or void 255")
    return out


class _BinarySplit(SplitBase):
    inlier_values: tuple[int, ...] = (0,)
    anomaly_values: tuple[int, ...] = (1,)

    def _load(self, frame) -> EvalSample:
        name, image_path, label_path, condition = frame
        image = read_rgb(image_path)
        raw = read_label(label_path)
        check_same_size(image, raw, label_path)
        anomaly = _binary_mask(raw, self.inlier_values, self.anomaly_values, label_path)
        return EvalSample(name, image, None, anomaly, None, condition)


def _find_image(directory: Path, stem: str) -> Path | None:
    for ext in _IMAGE_EXTS:
        p = directory / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


class SegmentMeIfYouCanSplit(_BinarySplit):
    """SMIYC AnomalyTrack or ObstacleTrack directory (``images/`` + ``labels_masks/``)."""

    format = "smiyc"
    LABEL_SUFFIX = "_labels_semantic.png"

    def __init__(self, root: str | Path):
        super().__init__(root)
        image_dir, label_dir = self.root / "images", self.root / "labels_masks"
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetFormatError(f"SegmentMeIfYouCan root {self.root} needs images/ and labels_masks/")
        obstacle_track = "obstacle" in self.root.name.lower()
        for label_path in sorted(label_dir.glob(f"*{self.LABEL_SUFFIX}")):
            fid = label_path.name[: -len(self.LABEL_SUFFIX)]
            image_path = _find_image(image_dir, fid)
            if image_path is None:
                raise DatasetFormatError(f"SMIYC label {label_path} has no image {fid}.jpg/.webp/.png in {image_dir}")
            condition = fid.split("_")[0] if obstacle_track else UNSPECIFIED_CONDITION
            self._frames.append((fid, image_path, label_path, condition))
        self._require_frames(f"SMIYC labels (*{self.LABEL_SUFFIX}) in {label_dir}")
        self.unlabelled_images = sum(1 for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS) - len(self)


class RoadAnomalySplit(_BinarySplit):
    """RoadAnomaly (``frames/<name>.<ext>`` + ``frames/<name>.labels/labels_semantic.png``; anomaly = 2)."""

    format = "roadanomaly"
    inlier_values = (0,)
    anomaly_values = (2,)

    def __init__(self, root: str | Path):
        super().__init__(root)
        frames_dir = self.root / "frames"
        if not frames_dir.is_dir():
            raise DatasetFormatError(f"RoadAnomaly root {self.root} needs a frames/ directory")
        listing = self.root / "frame_list.json"
        if listing.is_file():
            names = [Path(n).stem for n in json.loads(listing.read_text())]
        else:
            names = sorted(p.name[: -len(".labels")] for p in frames_dir.glob("*.labels") if p.is_dir())
        for stem in names:
            image_path = _find_image(frames_dir, stem)
            label_path = frames_dir / f"{stem}.labels" / "labels_semantic.png"
            if image_path is None or not label_path.is_file():
                raise DatasetFormatError(f"RoadAnomaly frame {stem!r}: need frames/{stem}.jpg|webp and "
                                         f"frames/{stem}.labels/labels_semantic.png")
            self._frames.append((stem, image_path, label_path, UNSPECIFIED_CONDITION))
        self._require_frames("RoadAnomaly frames")


class FishyscapesSplit(_BinarySplit):
    """Fishyscapes Lost&Found or Static validation data exported to disk (two layouts, see module doc)."""

    format = "fishyscapes"

    def __init__(self, root: str | Path):
        super().__init__(root)
        original, labels = self.root / "original", self.root / "labels"
        if original.is_dir() and labels.is_dir():
            for image_path in sorted(p for p in original.iterdir() if p.suffix.lower() in _IMAGE_EXTS):
                label_path = labels / f"{image_path.stem}.png"
                if label_path.is_file():
                    self._frames.append((image_path.stem, image_path, label_path, UNSPECIFIED_CONDITION))
        else:
            for label_path in sorted(self.root.rglob("*_labels.png")):
                stem = label_path.name[: -len("_labels.png")]
                image_path = _find_image(label_path.parent, f"{stem}_rgb")
                if image_path is None:
                    raise DatasetFormatError(f"Fishyscapes label {label_path} has no {stem}_rgb.jpg/.png beside it")
                name = str(label_path.parent.relative_to(self.root) / stem)
                self._frames.append((name, image_path, label_path, UNSPECIFIED_CONDITION))
        self._require_frames("Fishyscapes frames (original/ + labels/, or *_rgb.* + *_labels.png)")
