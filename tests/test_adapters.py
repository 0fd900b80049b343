"""Data set adapters: each reads a tiny tree that the test writes in the real data set's layout and encoding."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.data.adapters import DatasetFormatError, EvalSample, detect_format, open_split
from densehybrid_ros.data.adapters.ade20k import ADE20KNegatives
from densehybrid_ros.data.adapters.cityscapes import CITYSCAPES
from densehybrid_ros.data.adapters.streethazards import STREETHAZARDS
from densehybrid_ros.data.negatives import NegativeBank
from densehybrid_ros.data.taxonomy import SYNTHETIC

H, W = 12, 20


def write_rgb(path: Path, rgb: np.ndarray, alpha: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha:
        bgr = np.dstack([bgr, np.full(rgb.shape[:2], 255, np.uint8)])
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if path.suffix == ".webp" else []  # >100 = lossless WebP
    assert cv2.imwrite(str(path), bgr, params), path


def write_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label), path


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def stripes(values) -> np.ndarray:
    """A label map with one vertical stripe per value, so every value is present."""
    cols = np.array_split(np.arange(W), len(values))
    out = np.zeros((H, W), np.uint8)
    for v, c in zip(values, cols):
        out[:, c] = v
    return out


# --- Cityscapes -------------------------------------------------------------------------------------------------

def make_cityscapes(root: Path):
    city = "frankfurt"
    # label ids: 7 road, 26 car, 0 unlabeled, 9 parking, 33 bicycle, 24 person, 255 (license plate -1 as uint8)
    ids = stripes([7, 26, 0, 9, 33, 24, 255])
    write_rgb(root / "leftImg8bit/val" / city / f"{city}_000000_000294_leftImg8bit.png", image(0))
    write_label(root / "gtFine/val" / city / f"{city}_000000_000294_gtFine_labelIds.png", ids)
    # A frame with ready-made train ids (createTrainIdLabelImgs.py output) next to its label ids.
    write_rgb(root / "leftImg8bit/val" / city / f"{city}_000001_000019_leftImg8bit.png", image(1))
    write_label(root / "gtFine/val" / city / f"{city}_000001_000019_gtFine_labelIds.png", ids)
    write_label(root / "gtFine/val" / city / f"{city}_000001_000019_gtFine_labelTrainIds.png",
                stripes([0, 13, 255, 255, 18, 11, 255]))
    return ids


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    split = open_split(tmp_path, split="val")
    assert split.format == "cityscapes" and len(split) == 2 and split.taxonomy is CITYSCAPES
    for sample in split:  # both the mapped label ids and the stored train ids decode the same
        assert isinstance(sample, EvalSample)
        assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
        assert np.array_equal(sample.semantic, stripes([0, 13, 255, 255, 18, 11, 255]))
        assert np.array_equal(sample.anomaly, np.where(sample.semantic == 255, 255, 0))
        assert sample.depth is None
    assert np.array_equal(split[0].image, image(0))
    assert split[0].name == "frankfurt_000000_000294"


def test_cityscapes_missing_split_names_the_splits_present(tmp_path):
    make_cityscapes(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"'train'.*\['val'\]"):
        open_split(tmp_path, format="cityscapes", split="train")


# --- StreetHazards ----------------------------------------------------------------------------------------------

def make_streethazards(root: Path):
    values = list(range(1, 15))  # file values 1..14 (unlabeled .. anomaly)
    ann = stripes(values)
    write_rgb(root / "test/images/test/t5/300.png", image(2), alpha=True)  # the release's PNGs carry alpha
    write_label(root / "test/annotations/test/t5/300.png", ann)
    write_rgb(root / "test/images/test/t6/5000.png", image(3), alpha=True)
    write_label(root / "test/annotations/test/t6/5000.png", ann)
    write_rgb(root / "train/images/training/t1/0.png", image(4), alpha=True)
    write_label(root / "train/annotations/training/t1/0.png", stripes([1, 2, 8, 4]))
    return ann


def test_streethazards_decodes_file_values_to_k_plus_one_labels(tmp_path):
    ann = make_streethazards(tmp_path)
    split = open_split(tmp_path)  # default split: test
    assert split.format == "streethazards" and len(split) == 2
    assert STREETHAZARDS.num_classes == 12 and STREETHAZARDS.anomaly_label == 12
    sample = split[0]
    assert sample.condition == "t5" and sample.name == "t5/300"
    assert np.array_equal(sample.image, image(2))  # alpha dropped
    # 1 unlabeled->0, 2 building->1, 3 fence->2, 4 other->void, 5 pedestrian->3, ..., 13 sign->11, 14 anomaly->12
    expected = {1: 0, 2: 1, 3: 2, 4: 255, 5: 3, 6: 4, 7: 5, 8: 6, 9: 7, 10: 8, 11: 9, 12: 10, 13: 11, 14: 12}
    for value, label in expected.items():
        assert np.all(sample.semantic[ann == value] == label), (value, label)
    assert STREETHAZARDS.names[6] == "road" and STREETHAZARDS.names[9] == "car"
    assert np.array_equal(sample.anomaly[ann == 14], np.ones((ann == 14).sum(), np.uint8))
    assert np.all(sample.anomaly[ann == 4] == 255)
    assert np.all(sample.anomaly[(ann != 14) & (ann != 4)] == 0)
    assert [s.condition for s in split] == ["t5", "t6"]


def test_streethazards_training_split_and_pointing_at_train_dir(tmp_path):
    make_streethazards(tmp_path)
    for root in (tmp_path, tmp_path / "train"):
        split = open_split(root, format="streethazards", split="training")
        assert len(split) == 1
        assert np.array_equal(np.unique(split[0].semantic), [0, 1, 6, 255])
    with pytest.raises(ValueError, match="split must be one of"):
        open_split(tmp_path, format="streethazards", split="val")


# --- SegmentMeIfYouCan ------------------------------------------------------------------------------------------

def test_smiyc_obstacle_track_webp_and_scene_conditions(tmp_path):
    root = tmp_path / "dataset_ObstacleTrack"
    lab = stripes([0, 1, 255, 0])
    write_rgb(root / "images/snowstorm1_00_00_51.868.webp", image(5))
    write_label(root / "labels_masks/snowstorm1_00_00_51.868_labels_semantic.png", lab)
    write_rgb(root / "images/driveway_0001.webp", image(6))
    write_label(root / "labels_masks/driveway_0001_labels_semantic.png", stripes([0, 0, 1, 255]))
    write_rgb(root / "images/gravel_0002.webp", image(7))  # test frame: labels withheld
    split = open_split(root)
    assert split.format == "smiyc" and len(split) == 2 and split.unlabelled_images == 1
    by_name = {s.name: s for s in split}
    sample = by_name["snowstorm1_00_00_51.868"]
    assert sample.semantic is None and sample.condition == "snowstorm1"
    assert np.array_equal(sample.anomaly, lab)
    assert np.array_equal(sample.image, image(5))  # lossless WebP
    assert by_name["driveway_0001"].condition == "driveway"


def test_smiyc_anomaly_track_rejects_unknown_label_values(tmp_path):
    root = tmp_path / "dataset_AnomalyTrack"
    write_rgb(root / "images/validation0000.jpg", image(8))
    write_label(root / "labels_masks/validation0000_labels_semantic.png", stripes([0, 1, 255]))
    sample = open_split(root)[0]
    assert sample.condition == "unspecified" and sample.image.shape == (H, W, 3)
    assert np.array_equal(sample.anomaly, stripes([0, 1, 255]))
    write_label(root / "labels_masks/validation0000_labels_semantic.png", stripes([0, 1, 7]))
    with pytest.raises(DatasetFormatError, match=r"values \[7\]"):
        open_split(root)[0]


# --- RoadAnomaly ------------------------------------------------------------------------------------------------

def test_roadanomaly_anomaly_is_value_2(tmp_path):
    names = ["animals01_Guiguinto_railway_station_Calves", "zebra_crossing01"]
    write_rgb(tmp_path / "frames" / f"{names[0]}.jpg", image(9))
    write_label(tmp_path / "frames" / f"{names[0]}.labels" / "labels_semantic.png", stripes([0, 2, 0]))
    write_rgb(tmp_path / "frames" / f"{names[1]}.webp", image(10))
    write_label(tmp_path / "frames" / f"{names[1]}.labels" / "labels_semantic.png", stripes([2, 0]))
    (tmp_path / "frame_list.json").write_text(json.dumps([f"{names[0]}.jpg", f"{names[1]}.webp"]))
    split = open_split(tmp_path)
    assert split.format == "roadanomaly" and [s.name for s in split] == names
    assert np.array_equal(split[0].anomaly, stripes([0, 1, 0]))
    assert np.array_equal(split[1].anomaly, stripes([1, 0]))
    assert split[1].semantic is None and not np.any(split[0].anomaly == 255)


# --- Fishyscapes ------------------------------------------------------------------------------------------------

def test_fishyscapes_original_labels_layout(tmp_path):
    root = tmp_path / "LostAndFound"
    write_rgb(root / "original/0000_04_Maurener_Weg_8_000000_000030.png", image(11))
    write_label(root / "labels/0000_04_Maurener_Weg_8_000000_000030.png", stripes([255, 0, 1, 0]))
    split = open_split(root)
    assert split.format == "fishyscapes" and len(split) == 1
    assert np.array_equal(split[0].anomaly, stripes([255, 0, 1, 0]))
    assert np.array_equal(split[0].image, image(11))


def test_fishyscapes_rgb_labels_pairs(tmp_path):
    root = tmp_path / "fs_static"
    for i in range(3):
        write_rgb(root / f"{i}_rgb.png", image(12 + i))
        write_label(root / f"{i}_labels.png", stripes([0, 1, 255][i:] + [0, 1, 255][:i]))
    split = open_split(root)
    assert split.format == "fishyscapes" and [s.name for s in split] == ["0", "1", "2"]
    assert np.array_equal(split[2].anomaly, stripes([255, 0, 1]))


# --- synthetic splits ---------------------------------------------------------------------------------------------

def make_synthetic(root: Path):
    k = SYNTHETIC.anomaly_label
    frames = []
    for i, cond in enumerate(("clear", "fog", "fog")):
        stem = f"{i:06d}"
        write_rgb(root / "test/images" / cond / f"{stem}.png", image(20 + i))
        write_label(root / "test/annotations" / cond / f"{stem}.png", stripes([0, 10, k, 255, 12]))
        depth_cm = np.tile(np.arange(W, dtype=np.uint16) * 150, (H, 1))
        write_label(root / "test/depth" / cond / f"{stem}.png", depth_cm)
        frames.append({"name": stem, "condition": cond, "anomalies": 1})
    index = {"taxonomy": {"names": list(SYNTHETIC.names), "colours": [list(c) for c in SYNTHETIC.colours]},
             "seed": 3, "frames": frames}
    (root / "test/index.json").write_text(json.dumps(index))


def test_synthetic_split_reads_labels_depth_and_conditions(tmp_path):
    make_synthetic(tmp_path)
    assert detect_format(tmp_path / "test") == "synthetic" and detect_format(tmp_path) == "synthetic"
    split = open_split(tmp_path / "test")
    assert len(split) == 3 and split.conditions == ["clear", "fog"]
    sample = split[1]
    assert sample.name == "fog/000001" and sample.condition == "fog"
    assert np.array_equal(sample.image, image(21))
    k = SYNTHETIC.anomaly_label
    assert np.array_equal(sample.semantic, stripes([0, 10, k, 255, 12]))
    assert np.array_equal(sample.anomaly, stripes([0, 0, 1, 255, 0]))
    assert sample.depth.dtype == np.float32
    assert np.allclose(sample.depth[0], np.arange(W) * 1.5)  # cm -> m
    fog = open_split(tmp_path, split="test", condition="fog")
    assert len(fog) == 2 and {s.condition for s in fog} == {"fog"}


def test_synthetic_index_listing_a_missing_frame_is_an_error(tmp_path):
    make_synthetic(tmp_path)
    (tmp_path / "test/images/fog/000002.png").unlink()
    with pytest.raises(DatasetFormatError, match="000002"):
        open_split(tmp_path / "test")


# --- format detection and errors -----------------------------------------------------------------------------

def test_open_split_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_split(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="cannot tell the format"):
        open_split(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown data set format 'kitti'"):
        open_split(tmp_path / "empty", format="kitti")


def test_split_indexing_bounds(tmp_path):
    make_streethazards(tmp_path)
    split = open_split(tmp_path)
    assert split[-1].name == "t6/5000"
    with pytest.raises(IndexError, match="out of range"):
        split[2]


def test_colour_label_image_is_rejected(tmp_path):
    make_streethazards(tmp_path)
    colour = np.dstack([stripes([1, 2]), stripes([3, 4]), stripes([5, 6])])
    write_label(tmp_path / "test/annotations/test/t5/300.png", colour)
    with pytest.raises(DatasetFormatError, match="colour visualisation"):
        open_split(tmp_path)[0]


# --- ADE20K negatives -----------------------------------------------------------------------------------------

def make_ade_sceneparsing(root: Path):
    ann = np.zeros((40, 60), np.uint8)
    ann[20:, :] = 7            # road: a driving-scene class, must never be a negative
    ann[2:10, 2:12] = 20       # chair, two separate pieces
    ann[5:15, 40:55] = 20
    ann[25:35, 20:30] = 42     # box, on the road
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    write_rgb(root / "images/training/ADE_train_00000001.jpg", rgb)
    write_label(root / "annotations/training/ADE_train_00000001.png", ann)
    return ann


def test_ade20k_sceneparsing_instances_are_connected_non_driving_regions(tmp_path):
    ann = make_ade_sceneparsing(tmp_path)
    source = ADE20KNegatives(tmp_path, min_area_fraction=0.01)
    assert source.layout == "sceneparsing" and len(source) == 1
    pieces = {(8, 10), (10, 15), (10, 10)}
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(30):
        rgb, mask = source.sample(rng)
        assert rgb.dtype == np.uint8 and mask.all()  # rectangular pieces fill their box
        assert mask.shape in pieces
        seen.add(mask.shape)
    assert seen == pieces  # both chair pieces and the box, never the road
    a, b = source.sample(np.random.default_rng(4)), source.sample(np.random.default_rng(4))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    bank = NegativeBank(sources=[source])
    assert bank.sample(np.random.default_rng(1))[1].any()


def test_ade20k_full_release_seg_png_instances(tmp_path):
    seg = np.zeros((30, 40, 3), np.uint8)  # RGB: class = R/10*256 + G, instance = B
    seg[2:12, 2:12] = (10, 5, 1)     # class 261, instance 1
    seg[15:28, 20:38] = (0, 77, 2)   # class 77, instance 2
    scene = tmp_path / "images/ADE/training/urban/street"
    write_rgb(scene / "ADE_train_00000002.jpg", np.full((30, 40, 3), 128, np.uint8))
    write_rgb(scene / "ADE_train_00000002_seg.png", seg)
    source = ADE20KNegatives(tmp_path, min_area_fraction=0.01)
    assert source.layout == "full"
    shapes = {source.sample(np.random.default_rng(s))[1].shape for s in range(12)}
    assert shapes == {(10, 10), (13, 18)}


def test_ade20k_missing_tree_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetFormatError, match="no ADE20K images"):
        ADE20KNegatives(tmp_path)
