"""Training on real drives: the camvid source (train + val, flat-ground depth), the synthetic pool mixed in and
relabelled into CamVid's classes, real-object cutouts as negatives, and a tiny run end to end. The CamVid tree,
the object folder and the synthetic pool are small ones the tests write."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from densehybrid_ros.config.training import load_training_config
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.data.adapters.camvid import CAMVID, SYNTHETIC_TO_CAMVID
from densehybrid_ros.data.negatives import ProceduralNegatives
from densehybrid_ros.data.paste import NEGATIVE_TARGET
from densehybrid_ros.data.real_objects import CutoutNegatives, ObjectInstance, extract_objects
from densehybrid_ros.data.taxonomy import SYNTHETIC, VOID_LABEL
from densehybrid_ros.training.datasets import (
    CamVidFrames, MixedFrames, TrainingSamples, ground_labels, synthetic_to_camvid_lut,
)
from densehybrid_ros.training.loop import train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "densehybrid_ros" / "training" / "configs" / "tiny_test.yaml"
H, W = 96, 128
STEMS = {"train": ["0006R0_f00930", "0006R0_f00960", "0016E5_00390"], "val": ["0016E5_07959"]}
ROAD, PAVEMENT = CAMVID.index("road"), CAMVID.index("pavement")
OBJECT_COLOUR = (250, 0, 250)  # a colour the frames never have


def camvid_label() -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)             # sky
    lab[20:45] = 1                               # building
    lab[45:] = ROAD
    lab[45:, :24] = lab[45:, -24:] = PAVEMENT
    lab[-4:] = 11                                # void (file id)
    return lab


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid") / "CamVid"
    for split, stems in STEMS.items():
        for d in (root / split, root / f"{split}annot"):
            d.mkdir(parents=True)
        for i, stem in enumerate(stems):
            rgb = np.random.default_rng(sum(map(ord, stem))).integers(60, 160, (H, W, 3), dtype=np.uint8)
            cv2.imwrite(str(root / split / f"{stem}.png"), rgb)
            cv2.imwrite(str(root / f"{split}annot" / f"{stem}.png"), camvid_label())

    def instances():
        for i in range(3):
            rgb = np.zeros((40, 30, 3), np.uint8)
            rgb[:] = OBJECT_COLOUR
            alpha = np.zeros((40, 30), np.uint8)
            alpha[2:-2, 2:-2] = 255
            yield ObjectInstance(f"box{i}", rgb, alpha, f"box{i}")
    objects = tmp_path_factory.mktemp("objects") / "train"
    extract_objects(instances(), objects, "boxes", "test", min_pixels=1)
    return root, objects, tmp_path_factory.mktemp("pool")


def camvid_config(data, *overrides):
    root, objects, pool = data
    return load_training_config(TINY, [
        "data.source=camvid", f"data.root={root}", f"data.objects_dir={objects}", f"data.cache_dir={pool}",
        "model.num_classes=11", "data.crop=[64, 96]", "stage=densehybrid", "data.negatives=true",
        "loss.margin=0", *overrides])


def test_trainval_reads_both_splits_with_flat_ground_depth(data):
    samples = TrainingSamples(camvid_config(data, "data.split=trainval").data, 0, 11)
    frames = samples.frames
    assert isinstance(frames, CamVidFrames) and len(frames) == 4 and frames.taxonomy is CAMVID
    seen = {frames.frame(i)[0].tobytes() for i in range(4)}
    assert len(seen) == 4                          # four distinct frames: train's three and val's one
    image, label, depth = frames.frame(3)
    assert label[label != VOID_LABEL].max() < 11 and (label == VOID_LABEL).any()
    assert np.all(depth[: int(0.45 * H)] == 0)    # above the horizon: no ground to stand on
    below = depth[int(0.55 * H):, 0]
    assert np.all(below > 0) and np.all(np.diff(below) < 0)  # nearer further down the frame
    assert len(TrainingSamples(camvid_config(data, "data.split=train").data, 0, 11).frames) == 3


def test_synthetic_classes_map_onto_camvid_by_name():
    lut = synthetic_to_camvid_lut()
    assert set(SYNTHETIC_TO_CAMVID) == set(SYNTHETIC.names)
    for i, name in enumerate(SYNTHETIC.names):
        assert CAMVID.names[lut[i]] == SYNTHETIC_TO_CAMVID[name]
    assert lut[SYNTHETIC.index("road")] == ROAD and lut[SYNTHETIC.index("sidewalk")] == PAVEMENT
    assert lut[VOID_LABEL] == VOID_LABEL and lut[SYNTHETIC.num_classes] == VOID_LABEL  # void, anomaly: not classes
    assert ground_labels(CAMVID) == (ROAD, PAVEMENT)
    assert ground_labels(SYNTHETIC) == (0, 1, 9)   # the synthetic world's default is unchanged


def test_mixing_draws_the_synthetic_share_and_relabels_it(data):
    cfg = camvid_config(data, "data.synthetic_fraction=0.3")
    frames = TrainingSamples(cfg.data, 0, 11).frames
    assert isinstance(frames, MixedFrames)
    n_real = len(frames.real)
    draws = [frames.draw(np.random.default_rng([5, i])) for i in range(2000)]
    share = np.mean([d >= n_real for d in draws])
    assert 0.26 < share < 0.34
    image, label, depth = frames.frame(n_real)     # a pool frame: the synthetic world, CamVid's labels
    raw = frames.pool.frame(0)[1]
    assert np.array_equal(label, synthetic_to_camvid_lut()[raw])
    assert set(np.unique(label)) <= set(range(11)) | {VOID_LABEL} and depth is not None


def test_real_cutouts_are_pasted_on_camvid_frames(data):
    samples = TrainingSamples(camvid_config(data, "data.objects_weight=1.0", "data.paste_probability=1.0",
                                            "data.harmonised_fraction=1.0").data, 3, 11)
    bank = samples.negatives
    assert isinstance(bank.sources[0], CutoutNegatives) and isinstance(bank.sources[1], ProceduralNegatives)
    assert bank.weights[0] == 1.0
    pasted = 0
    for i in range(8):
        s = samples.make(1, i)
        neg = s.ood_target == NEGATIVE_TARGET
        pasted += int(neg.any())
        if neg.any():
            assert np.all(s.label[neg] == VOID_LABEL)           # no class for a pasted object
            # the object's magenta, colour-matched part of the way towards the frame, not the frame's grey
            assert s.image[neg][:, 1].mean() < s.image[neg][:, [0, 2]].mean() - 20
    assert pasted >= 6


def test_bad_camvid_settings_are_refused_naming_the_key(data, tmp_path):
    with pytest.raises(ConfigError, match="data.objects_dir"):
        TrainingSamples(camvid_config(data, f"data.objects_dir={tmp_path}").data, 0, 11)
    # The synthetic world's obstacles are what the anomaly benchmarks measure: never pasted in training.
    mixed = tmp_path / "mixed"
    shutil.copytree(data[1], mixed)
    rgb, alpha = np.full((40, 30, 3), 90, np.uint8), np.full((40, 30), 255, np.uint8)
    extract_objects(iter([ObjectInstance("tyre", rgb, alpha, "tyre0")]), mixed, "world_obstacles", "world",
                    min_pixels=1)
    with pytest.raises(ConfigError, match=r"evaluation-only source\(s\) world_obstacles"):
        TrainingSamples(camvid_config(data, f"data.objects_dir={mixed}").data, 0, 11)
    with pytest.raises(ConfigError, match="data.synthetic_fraction"):
        load_training_config(TINY, ["data.synthetic_fraction=0.2"])          # source synthetic: nothing to mix
    with pytest.raises(ConfigError, match="data.split"):
        camvid_config(data, "data.split=training")
    with pytest.raises(ConfigError, match="data.synthetic_fraction"):
        camvid_config(data, "data.synthetic_fraction=0.95")


@pytest.mark.slow
def test_a_tiny_camvid_run_trains_eleven_classes(data, tmp_path):
    result = train(camvid_config(data, "optim.steps=3", "data.synthetic_fraction=0.25"), tmp_path / "run",
                   log=lambda *a, **k: None)
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["taxonomy"]["names"] == list(CAMVID.names)
    assert np.isfinite(result.last_scalars["loss_class"]) and np.isfinite(result.last_scalars["p_out_negative"])
    # training flushes subnormals while it runs and leaves the process as it found it
    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
