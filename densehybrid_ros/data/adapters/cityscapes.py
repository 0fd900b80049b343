"""Cityscapes (Cordts et al., CVPR 2016) with the 19 evaluation classes ("train ids").

Layout (as distributed; cityscapesScripts README):
    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (made by createTrainIdLabelImgs.py)

``*_labelTrainIds.png`` is used when present, else ``*_labelIds.png`` is mapped with the official id -> trainId
table (cityscapesScripts/helpers/labels.py); ids with trainId 255 or -1 become void. Cityscapes has no anomalies,
so ``anomaly`` is 0 on labelled pixels and 255 on void; ``semantic`` never contains the anomaly label 19.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from densehybrid_ros.data.adapters import (
    INLIER, UNSPECIFIED_CONDITION, DatasetFormatError, EvalSample, SplitBase, check_same_size, read_label,
    read_rgb,
)
from densehybrid_ros.data.taxonomy import VOID_LABEL, Taxonomy

CITYSCAPES = Taxonomy(
    names=("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
    colours=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
             (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
             (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)

# label id -> train id of the 19 evaluated classes (cityscapesScripts labels.py); every other id is void:
# 0-6 (unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground), 9 parking,
# 10 rail track, 14 guard rail, 15 bridge, 16 tunnel, 18 polegroup, 29 caravan, 30 trailer, and -1 license plate
# (stored as 255 in 8-bit files).
_EVALUATED = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
              27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_ID_TO_TRAIN_ID = np.full(256, VOID_LABEL, np.uint8)
for _id, _train in _EVALUATED.items():
    LABEL_ID_TO_TRAIN_ID[_id] = _train

IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesSplit(SplitBase):
    """Cityscapes frames of one split ("train", "val", "test"; test labels are withheld by the benchmark)."""

    format = "cityscapes"
    taxonomy = CITYSCAPES

    def __init__(self, root: str | Path, split: str = "val", require_labels: bool = True):
        super().__init__(root)
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            have = sorted(p.name for p in (self.root / "leftImg8bit").glob("*") if p.is_dir())
            raise DatasetFormatError(f"Cityscapes split {split!r} not found: {image_dir} is missing "
                                     f"(splits present: {have})")
        self.split = split
        for image_path in sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")):
            stem = image_path.name[: -len(IMAGE_SUFFIX)]
            gt_dir = self.root / "gtFine" / split / image_path.parent.name
            train_ids = gt_dir / f"{stem}_gtFine_labelTrainIds.png"
            label_ids = gt_dir / f"{stem}_gtFine_labelIds.png"
            label = train_ids if train_ids.is_file() else label_ids if label_ids.is_file() else None
            if label is None and require_labels:
                continue
            self._frames.append((stem, image_path, label))
        self._require_frames(f"labelled Cityscapes images (*{IMAGE_SUFFIX} with gtFine labels) in {image_dir}")

    def _load(self, frame) -> EvalSample:
        stem, image_path, label_path = frame
        image = read_rgb(image_path)
        if label_path is None:
            semantic = np.full(image.shape[:2], VOID_LABEL, np.uint8)
        else:
            raw = read_label(label_path)
            check_same_size(image, raw, label_path)
            if label_path.name.endswith("_labelTrainIds.png"):
                semantic = raw.copy()
                semantic[semantic >= CITYSCAPES.num_classes] = VOID_LABEL
            else:
                semantic = LABEL_ID_TO_TRAIN_ID[raw]
        anomaly = np.where(semantic == VOID_LABEL, VOID_LABEL, INLIER).astype(np.uint8)
        return EvalSample(stem, image, semantic, anomaly, None, UNSPECIFIED_CONDITION)
