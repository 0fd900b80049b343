"""ADE20K as a source of negative instances (DenseHybrid paper, section 7.4), with the ``NegativeBank`` source API.

Two layouts are read:

* SceneParsing / ADEChallengeData2016 (the MIT scene-parsing benchmark release):
  ``images/{training,validation}/ADE_*.jpg`` with ``annotations/{training,validation}/ADE_*.png`` holding the 150
  class ids 1..150 (0 = other/unlabelled). It has no instance ids, so an instance is one connected region of one
  class (the DenseHybrid code pastes whole class regions; a connected region is closer to an object).
* Full ADE20K (ADE20K_2021_17_01 and earlier): ``images/ADE/<split>/<scene>/.../ADE_*.jpg`` with ``ADE_*_seg.png``
  beside it; class = R / 10 * 256 + G and the instance is the B channel value (CSAILVision ADE20K toolkit,
  ``loadAde20K``). Each distinct non-zero B value of an object is an instance.

Classes that are inliers of a driving scene (road, car, person, building, ...) are excluded by default for the
SceneParsing ids, so no negative teaches the detector that a car is anomalous; pass ``exclude_classes=()`` to keep
all. The full release has thousands of class ids and no exclusion is applied there.
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import cv2
import numpy as np

from densehybrid_ros.data.adapters import DatasetFormatError, read_label, read_rgb
from densehybrid_ros.data.negatives import crop_to_mask

# SceneParsing (objectInfo150) ids, 1-based as stored, of classes that appear as inliers in driving scenes.
DRIVING_SCENE_CLASSES: frozenset[int] = frozenset({
    1,    # wall
    2,    # building
    3,    # sky
    5,    # tree
    7,    # road
    10,   # grass
    12,   # sidewalk
    13,   # person
    14,   # earth
    18,   # plant
    21,   # car
    30,   # field
    33,   # fence
    44,   # signboard
    53,   # path
    81,   # bus
    84,   # truck
    88,   # streetlight
    92,   # dirt track
    94,   # pole
    95,   # land
    103,  # van
    117,  # minibike
    128,  # bicycle
    137,  # traffic light
})


class ADE20KNegatives:
    """Random ADE20K object instances: ``sample(rng) -> (rgb uint8 (h, w, 3), mask bool (h, w))``."""

    def __init__(self, root: str | Path, split: str = "training",
                 exclude_classes: Collection[int] = DRIVING_SCENE_CLASSES,
                 min_area_fraction: float = 0.002, max_area_fraction: float = 0.4, max_tries: int = 20):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ADE20K root {self.root} is not a directory")
        if not 0 <= min_area_fraction < max_area_fraction <= 1:
            raise ValueError(f"need 0 <= min_area_fraction < max_area_fraction <= 1, got "
                             f"{min_area_fraction}, {max_area_fraction}")
        self.exclude = frozenset(int(c) for c in exclude_classes)
        self.min_area, self.max_area = min_area_fraction, max_area_fraction
        self.max_tries = max_tries
        scene_parsing = self.root / "images" / split
        if scene_parsing.is_dir() and (self.root / "annotations" / split).is_dir():
            self.layout = "sceneparsing"
            self._items = [(p, self.root / "annotations" / split / f"{p.stem}.png")
                           for p in sorted(scene_parsing.glob("*.jpg"))]
            self._items = [(i, a) for i, a in self._items if a.is_file()]
        else:
            full = self.root / "images" / "ADE" / split
            base = full if full.is_dir() else self.root
            self.layout = "full"
            self.exclude = frozenset()  # SceneParsing ids do not apply to the full release
            self._items = [(p.with_name(p.name[: -len("_seg.png")] + ".jpg"), p)
                           for p in sorted(base.rglob("*_seg.png"))]
            self._items = [(i, s) for i, s in self._items if i.is_file()]
        if not self._items:
            raise DatasetFormatError(
                f"no ADE20K images found under {self.root} for split {split!r}: expected images/{split}/*.jpg + "
                f"annotations/{split}/*.png (ADEChallengeData2016) or images/ADE/{split}/**/ADE_*.jpg + *_seg.png")

    def __len__(self) -> int:
        return len(self._items)

    def _instances(self, ann_path: Path) -> np.ndarray:
        """Instance-id map (0 = not a usable instance)."""
        if self.layout == "sceneparsing":
            classes = read_label(ann_path)
            return classes.astype(np.int32)
        seg = cv2.imread(str(ann_path), cv2.IMREAD_COLOR)
        if seg is None:
            raise DatasetFormatError(f"cannot read ADE20K segmentation {ann_path}")
        b = seg[..., 0].astype(np.int32)          # OpenCV order is BGR: channel 0 is B = instance
        r, g = seg[..., 2].astype(np.int32), seg[..., 1].astype(np.int32)
        object_class = r // 10 * 256 + g
        return np.where(object_class > 0, b, 0)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(self.max_tries):
            image_path, ann_path = self._items[int(rng.integers(len(self._items)))]
            ids = self._instances(ann_path)
            values = [v for v in np.unique(ids).tolist() if v != 0 and v not in self.exclude]
            if not values:
                continue
            region = (ids == values[int(rng.integers(len(values)))]).astype(np.uint8)
            if self.layout == "sceneparsing":
                # One class region can be many objects; take one connected piece of it.
                n, comp = cv2.connectedComponents(region, connectivity=8)
                sizes = np.bincount(comp.ravel(), minlength=n)[1:]
                keep = np.flatnonzero(sizes >= self.min_area * region.size)
                if keep.size == 0:
                    continue
                region = (comp == 1 + int(keep[int(rng.integers(keep.size))])).astype(np.uint8)
            fraction = region.mean()
            if not self.min_area <= fraction <= self.max_area:
                continue
            image = read_rgb(image_path)
            if image.shape[:2] != region.shape:
                raise DatasetFormatError(f"ADE20K annotation {ann_path} size differs from its image {image_path}")
            return crop_to_mask(image, region.astype(bool))
        raise DatasetFormatError(f"no ADE20K instance within area fraction [{self.min_area}, {self.max_area}] found "
                                 f"in {self.max_tries} random images under {self.root}")
