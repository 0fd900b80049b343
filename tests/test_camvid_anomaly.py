"""The real-frame anomaly benchmark writer, on a small CamVid tree and object folder that the tests write."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.cli import main as cli_main
from densehybrid_ros.data.adapters import open_split
from densehybrid_ros.data.camvid_anomaly import (
    BenchmarkConfig, camvid_pseudo_depth, ground_distance, write_benchmark,
)
from densehybrid_ros.data.real_objects import ObjectInstance, extract_objects

H, W = 90, 120
HORIZON = 0.49 * H
STEMS = ["Seq05VD_f00030", "0001TP_008550", "Seq05VD_f00000"]


def camvid_label() -> np.ndarray:
    """Sky, buildings, road with pavement at the sides, a void bonnet strip: CamVid file ids."""
    lab = np.zeros((H, W), np.uint8)                     # 0 sky
    lab[20:45] = 1                                       # 1 building
    lab[45:] = 3                                         # 3 road
    lab[45:, :20] = lab[45:, -20:] = 4                   # 4 pavement
    lab[-6:] = 11                                        # void
    return lab


def write_camvid(root: Path) -> Path:
    for split in ("test",):
        for i, stem in enumerate(STEMS):
            rgb = np.random.default_rng(i).integers(60, 200, (H, W, 3), dtype=np.uint8)
            for d in (root / split, root / f"{split}annot"):
                d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / f"{stem}.png"), rgb)
            cv2.imwrite(str(root / f"{split}annot" / f"{stem}.png"), camvid_label())
    return root


def write_objects(out: Path) -> Path:
    def instances():
        for i in range(4):
            h, w = 30 + 10 * i, 24 + 6 * i
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[:] = (250, 20 + 50 * i, 10)              # saturated colours the frames never have
            alpha = np.zeros((h, w), np.uint8)
            alpha[2:-2, 2:-2] = 255
            yield ObjectInstance(f"box{i}", rgb, alpha, f"box{i}")
    extract_objects(instances(), out, "boxes", "test", min_pixels=1)
    return out


@pytest.fixture
def data(tmp_path):
    return write_camvid(tmp_path / "CamVid"), write_objects(tmp_path / "objects")


def test_ground_distance_gives_row_based_scale_whatever_the_focal():
    for focal in (100.0, 900.0):
        d = ground_distance(H, W, HORIZON, 1.3, focal)
        assert np.all(d[: int(HORIZON)] == 0)             # sky: no ground
        col = d[int(HORIZON) + 1:, 0]
        assert np.all(np.diff(col) < 0)                   # nearer further down
        rows = np.arange(int(HORIZON) + 1, H) + 0.5 - HORIZON
        # paste.py's size focal * h / d equals h * (row - horizon) / camera height: no focal left.
        assert np.allclose(focal * 1.0 / col, rows / 1.3, rtol=1e-5)
    near = ground_distance(H, W, HORIZON, 1.3, float(W), min_distance_m=5.0)
    assert np.all(near[near > 0] >= 5.0) and near[-1, 0] == 0
    # Training's helper: the same geometry with the paste's own focal length, nothing cut near the camera.
    assert np.array_equal(camvid_pseudo_depth(H, W, 700.0), ground_distance(H, W, HORIZON, 1.3, 700.0))


def test_benchmark_labels_pasted_pixels_as_anomaly_and_void_as_255(data, tmp_path):
    root, objects = data
    index_path = write_benchmark(root, objects, tmp_path / "bench")
    index = json.loads(index_path.read_text())
    assert index["num_classes"] == 11 and index["anomaly_label"] == 11 and index["taxonomy"]["names"][3] == "road"
    assert [f["name"] for f in index["frames"]] == ["0001TP_008550", "Seq05VD_f00000", "Seq05VD_f00030"]
    source = camvid_label()
    for f in index["frames"]:
        image = cv2.imread(str(index_path.parent / f["image"]))[..., ::-1]
        labels = cv2.imread(str(index_path.parent / f["annotation"]), cv2.IMREAD_UNCHANGED)
        pasted = labels == 11
        assert pasted.sum() == f["anomaly_pixels"] > 0 and 1 <= len(f["boxes"]) <= 2
        assert np.all(labels[(source == 11) & ~pasted] == 255)                # void
        keep = ~pasted & (source != 11)
        assert np.array_equal(labels[keep], source[keep])                     # classes untouched elsewhere
        # Pasted pixels carry the objects' red (colour-matched part way), not the grey-ish frame.
        assert image[pasted][:, 0].mean() > image[~pasted][:, 0].mean() + 20
        for y0, x0, y1, x1 in f["boxes"]:
            assert y1 > HORIZON                          # stands below the horizon, on the ground
    split = open_split(tmp_path / "bench")               # what `densehybrid evaluate --data` opens
    assert split.format == "synthetic" and split.taxonomy.num_classes == 11 and len(split) == 3
    sample = split[0]
    assert sample.condition == "0001TP" and np.array_equal(sample.anomaly == 1, sample.semantic == 11)


def test_benchmark_sizes_follow_the_row(data, tmp_path):
    """Objects standing lower in the frame (nearer) are taller: height ~ (row - horizon)."""
    root, objects = data
    index = json.loads(write_benchmark(root, objects, tmp_path / "b", objects_per_frame=(2, 2),
                                       config=BenchmarkConfig(objects_per_frame=(2, 2), min_distance_m=0.0,
                                                              object_height_m=(1.0, 1.0), min_size_px=1)
                                       ).read_text())
    boxes = [b for f in index["frames"] for b in f["boxes"] if b[2] < H - 1 and b[0] > 0]  # not clipped
    assert boxes
    for y0, x0, y1, x1 in boxes:
        expected = (y1 - HORIZON) / 1.3                  # 1 m objects, bottom row ~ contact row
        assert abs((y1 - y0) - expected) <= 0.25 * expected + 3


def test_benchmark_is_deterministic_and_resumes(data, tmp_path):
    root, objects = data
    a = write_benchmark(root, objects, tmp_path / "a").parent
    b = write_benchmark(root, objects, tmp_path / "b").parent
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    victim = a / "images/Seq05VD/Seq05VD_f00000.png"
    original = victim.read_bytes()
    victim.write_bytes(b"truncated")
    write_benchmark(root, objects, tmp_path / "a")
    assert victim.read_bytes() == original                # the damaged frame is written again, identically
    with pytest.raises(FileExistsError, match="other parameters"):
        write_benchmark(root, objects, tmp_path / "a", seed=1)
    write_benchmark(root, objects, tmp_path / "a", seed=1, overwrite=True)
    assert victim.read_bytes() != original


def test_benchmark_command(data, tmp_path, capsys):
    root, objects = data
    out = tmp_path / "bench"
    assert cli_main(["camvid", "anomaly-benchmark", "--root", str(root), "--objects", str(objects), "--out",
                     str(out), "--max-frames", "2", "--no-progress"]) == 0
    assert "index.json" in capsys.readouterr().out
    assert len(json.loads((out / "test/index.json").read_text())["frames"]) == 2
    assert cli_main(["camvid", "anomaly-benchmark", "--root", str(root), "--objects", str(tmp_path), "--out",
                     str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.slow  # two ONNX exports and an evaluation: 15-30 s on 2 shared cores
def test_evaluate_reads_the_benchmark_with_a_camvid_sized_model(data, tmp_path, capsys):
    """The layout contract with `densehybrid evaluate`: an untrained K=11 model (numbers meaningless) runs over the
    benchmark and reports anomaly metrics per drive; a K=14 model is refused as a different taxonomy."""
    import torch

    torch.set_num_threads(1)
    root, objects = data
    write_benchmark(root, objects, tmp_path / "bench")
    model = tmp_path / "k11.onnx"
    assert cli_main(["export", "--untrained", "--raw-outputs", "--num-classes", "11", "--out", str(model),
                     "--height", "64", "--width", "96", "--no-verify"]) == 0
    assert cli_main(["evaluate", "--model", str(model), "--data", str(tmp_path / "bench"), "--out",
                     str(tmp_path / "report"), "--threads", "1", "--no-progress", "--bits", "12"]) == 0
    metrics = json.loads((tmp_path / "report/metrics.json").read_text())
    hybrid = metrics["scores"]["hybrid"]
    assert 0 <= hybrid["pooled"]["ap"] <= 1 and hybrid["pooled"]["n_pos"] > 0
    assert sorted(hybrid["condition"]) == ["0001TP", "Seq05VD"] and hybrid["components"]["gt_components"] > 0
    capsys.readouterr()
    k14 = tmp_path / "k14.onnx"
    assert cli_main(["export", "--untrained", "--raw-outputs", "--out", str(k14), "--height", "64", "--width", "96",
                     "--no-verify"]) == 0
    assert cli_main(["evaluate", "--model", str(k14), "--data", str(tmp_path / "bench"), "--out",
                     str(tmp_path / "r14"), "--no-progress"]) == 2
    assert "K=11" in capsys.readouterr().err
