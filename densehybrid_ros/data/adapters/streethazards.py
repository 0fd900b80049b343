"""StreetHazards (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022).

Layout (hendrycks/anomaly-seg, create_dataset.py):
    <root>/train/images/{training,validation}/<town>/<frame>.png   annotations mirrored under train/annotations/
    <root>/test/images/test/<town>/<frame>.png                      annotations mirrored under test/annotations/
Towns t1-t3 are training, t4 validation, t5-t6 test. Images are 1280x720 PNG (some with an alpha channel).

Annotation PNGs store ``1 + index`` into the list unlabeled, building, fence, other, pedestrian, pole, road line,
road, sidewalk, vegetation, car, wall, traffic sign, anomaly (values 1..14; the +1 keeps 0 free for the
segmentation code's ignore index; maintainer's answers in anomaly-seg issues #15 and #17). Following the DenseHybrid
evaluation (DenseHybrid repository, data/datasets/street_hazards/ and the authors' answer in its issue #8), "other"
is void, the remaining 12 classes (including "unlabeled", which is a trained background class in StreetHazards)
are inliers 0..11, and the anomaly is label 12 = K.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from densehybrid_ros.data.adapters import (
    DatasetFormatError, EvalSample, SplitBase, anomaly_from_semantic, check_same_size, read_label, read_rgb,
)
from densehybrid_ros.data.taxonomy import VOID_LABEL, Taxonomy

# File values (1..14) in StreetHazards order.
FILE_CLASSES = ("unlabeled", "building", "fence", "other", "pedestrian", "pole", "road_line", "road", "sidewalk",
                "vegetation", "car", "wall", "traffic_sign", "anomaly")
_COLOURS = {  # anomaly-seg create_dataset.py colours
    "unlabeled": (0, 0, 0), "building": (70, 70, 70), "fence": (190, 153, 153), "pedestrian": (220, 20, 60),
    "pole": (153, 153, 153), "road_line": (157, 234, 50), "road": (128, 64, 128), "sidewalk": (244, 35, 232),
    "vegetation": (107, 142, 35), "car": (0, 0, 142), "wall": (102, 102, 156), "traffic_sign": (220, 220, 0),
}
_INLIERS = tuple(n for n in FILE_CLASSES if n not in ("other", "anomaly"))
STREETHAZARDS = Taxonomy(names=_INLIERS, colours=tuple(_COLOURS[n] for n in _INLIERS),
                         anomaly_colour=(60, 250, 240))

# File value -> semantic label: inliers 0..11, anomaly K = 12, "other" and anything out of range void.
FILE_VALUE_TO_LABEL = np.full(256, VOID_LABEL, np.uint8)
for _value, _name in enumerate(FILE_CLASSES, start=1):
    if _name == "anomaly":
        FILE_VALUE_TO_LABEL[_value] = STREETHAZARDS.anomaly_label
    elif _name != "other":
        FILE_VALUE_TO_LABEL[_value] = STREETHAZARDS.index(_name)

_SPLIT_PARENT = {"training": "train", "validation": "train", "test": "test"}


class StreetHazardsSplit(SplitBase):
    """One StreetHazards split ("training", "validation" or "test"); ``condition`` is the town (t1..t6).

    ``root`` may be the extraction root (holding train/ and test/) or the train/ or test/ directory itself.
    """

    format = "streethazards"
    taxonomy = STREETHAZARDS

    def __init__(self, root: str | Path, split: str = "test"):
        super().__init__(root)
        if split not in _SPLIT_PARENT:
            raise ValueError(f"StreetHazards split must be one of {sorted(_SPLIT_PARENT)}, got {split!r}")
        base = self.root / _SPLIT_PARENT[split]
        if not (base / "images" / split).is_dir():
            base = self.root  # pointed at train/ or test/ directly
        image_dir, ann_dir = base / "images" / split, base / "annotations" / split
        if not image_dir.is_dir() or not ann_dir.is_dir():
            raise DatasetFormatError(f"StreetHazards split {split!r} not found under {self.root}: need "
                                     f"{_SPLIT_PARENT[split]}/images/{split}/ and {_SPLIT_PARENT[split]}/annotations/"
                                     f"{split}/")
        self.split = split
        for image_path in sorted(image_dir.glob("*/*.png")):
            ann = ann_dir / image_path.parent.name / image_path.name
            if ann.is_file():
                self._frames.append((image_path, ann))
        self._require_frames(f"StreetHazards frames with annotations in {image_dir}")

    def _load(self, frame) -> EvalSample:
        image_path, ann_path = frame
        image = read_rgb(image_path)
        raw = read_label(ann_path)
        check_same_size(image, raw, ann_path)
        semantic = FILE_VALUE_TO_LABEL[raw]
        anomaly = anomaly_from_semantic(semantic, STREETHAZARDS.anomaly_label)
        town = image_path.parent.name
        return EvalSample(f"{town}/{image_path.stem}", image, semantic, anomaly, None, town)
