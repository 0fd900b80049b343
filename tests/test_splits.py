"""Synthetic splits on disk (data/splits.py): byte-for-byte reproducibility from the seed, the file layout and
index, the reader, anomalies in every test frame, resuming an interrupted write, and `densehybrid make-data`."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from densehybrid_ros.data.splits import (DEFAULT_SPLITS, FRAME_SEED_BASE, frame_seed, read_index, read_split,
                                         write_split)
from densehybrid_ros.data.taxonomy import CONDITIONS, SYNTHETIC
from densehybrid_ros.data.world import render_scene

SMALL = dict(conditions=("clear", "fog", "night"), frames_per_condition=2, height=32, width=64,
             anomalies_per_frame=(1, 2))
K = SYNTHETIC.anomaly_label


def _hashes(split_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(split_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(split_dir.rglob("*")) if p.is_file() and p.name != ".progress.jsonl"}


def test_a_split_is_reproducible_byte_for_byte(tmp_path):
    write_split(tmp_path / "a", "test", seed=123, **SMALL)
    write_split(tmp_path / "b", "test", seed=123, **SMALL)
    a, b = _hashes(tmp_path / "a" / "test"), _hashes(tmp_path / "b" / "test")
    assert len(a) == 3 * 3 * 2 + 1  # image, annotation, depth per frame, plus index.json
    assert a == b
    write_split(tmp_path / "c", "test", seed=124, **SMALL)
    c = _hashes(tmp_path / "c" / "test")
    differing = [k for k in a if k.startswith("images/") and a[k] != c[k]]
    assert len(differing) == 6, "another seed gives other frames"


def test_layout_index_and_reader_match_the_renderer(tmp_path):
    index_path = write_split(tmp_path, "val", seed=7, **SMALL)
    index = read_index(tmp_path, "val")
    assert index_path == tmp_path / "val" / "index.json"
    assert index["num_classes"] == SYNTHETIC.num_classes == 14 and index["anomaly_label"] == K
    assert index["taxonomy"]["names"] == list(SYNTHETIC.names)
    assert (index["seed"], index["height"], index["width"]) == (7, 32, 64)
    frames = list(read_split(tmp_path, "val"))
    assert [(f.condition, f.name) for f in frames] == [(c, f"{i:05d}") for c in SMALL["conditions"] for i in range(2)]
    for f, rec in zip(frames, index["frames"]):
        for kind in ("images", "annotations", "depth"):
            assert (tmp_path / "val" / kind / f.condition / f"{f.name}.png").is_file()
        assert rec["seed"] >= FRAME_SEED_BASE, "split frames never collide with training seeds below 2**32"
        scene = render_scene(rec["seed"], 32, 64, f.condition, rec["layout"], len(rec["meta"]["anomalies"]))
        np.testing.assert_array_equal(f.image, scene.image)
        np.testing.assert_array_equal(f.label, scene.label)
        sky = scene.label == SYNTHETIC.index("sky")
        assert (f.depth[sky] == 0).all()
        np.testing.assert_allclose(f.depth[~sky], scene.depth[~sky], atol=0.006)
    only_fog = list(read_split(tmp_path, "val", conditions=["fog"]))
    assert [f.condition for f in only_fog] == ["fog", "fog"]


def test_every_test_frame_has_a_visible_anomaly(tmp_path):
    write_split(tmp_path, "test", seed=99, conditions=CONDITIONS, frames_per_condition=1, height=32, width=64,
                anomalies_per_frame=(1, 3))
    frames = list(read_split(tmp_path, "test"))
    assert sorted({f.condition for f in frames}) == sorted(CONDITIONS)
    for f in frames:
        areas = [a["pixel_area"] for a in f.meta["anomalies"]]
        assert 1 <= len(areas) <= 3 and max(areas) > 0
        assert (f.label == K).sum() == sum(areas)


def test_default_val_and_test_seeds_differ_and_cover_every_condition():
    val, test = DEFAULT_SPLITS["val"], DEFAULT_SPLITS["test"]
    assert val.seed != test.seed
    assert val.anomalies_per_frame[0] >= 1 and test.anomalies_per_frame[0] >= 1
    seeds = {frame_seed(s.seed, c, i) for s in (val, test) for c in CONDITIONS for i in range(20)}
    assert len(seeds) == 2 * len(CONDITIONS) * 20


def test_an_interrupted_write_resumes_to_the_same_bytes(tmp_path):
    class Interrupt(Exception):
        pass

    done = []

    def stop_after_three(n):
        done.append(n)
        if len(done) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        write_split(tmp_path / "r", "test", seed=5, progress=stop_after_three, **SMALL)
    assert not (tmp_path / "r" / "test" / "index.json").exists()
    # a damaged frame on disk is detected by its hash and rendered again
    damaged = tmp_path / "r" / "test" / "images" / "clear" / "00000.png"
    damaged.write_bytes(b"not a png")
    counted = []
    write_split(tmp_path / "r", "test", seed=5, progress=counted.append, **SMALL)
    write_split(tmp_path / "clean", "test", seed=5, **SMALL)
    assert len(counted) == 6
    assert _hashes(tmp_path / "r" / "test") == _hashes(tmp_path / "clean" / "test")


def test_resuming_with_other_parameters_is_refused(tmp_path):
    write_split(tmp_path, "test", seed=5, **SMALL)
    with pytest.raises(FileExistsError, match="other parameters"):
        write_split(tmp_path, "test", seed=6, **SMALL)
    write_split(tmp_path, "test", seed=6, overwrite=True, **SMALL)
    assert read_index(tmp_path, "test")["seed"] == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(conditions=("hail",)), "conditions"), (dict(frames_per_condition=0), "frames_per_condition"),
    (dict(height=4), "height"), (dict(anomalies_per_frame=(3, 1)), "anomalies_per_frame"),
    (dict(split="../x"), "split"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = dict(root=tmp_path, split="test", seed=1, **SMALL)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        write_split(**args)


def test_reading_a_missing_split_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make-data"):
        next(read_split(tmp_path, "test"))


def test_make_data_command_writes_and_resumes(tmp_path, capsys):
    from densehybrid_ros.cli import main
    argv = ["make-data", "--out", str(tmp_path), "--split", "val", "--seed", "3", "--frames-per-condition", "1",
            "--height", "32", "--width", "64", "--conditions", "clear,rain", "--anomalies", "1-2"]
    assert main(argv) == 0
    first = _hashes(tmp_path / "val")
    assert main(argv) == 0
    assert _hashes(tmp_path / "val") == first
    index = json.loads((tmp_path / "val" / "index.json").read_text())
    assert [f["condition"] for f in index["frames"]] == ["clear", "rain"]
    with pytest.raises(SystemExit):
        main(argv[:-2] + ["--anomalies", "9"])
    assert "--anomalies" in capsys.readouterr().err


def test_a_split_of_another_name_needs_a_seed_of_its_own(tmp_path):
    # Without it the test split's seed would make a copy of test under another name ("train" included).
    with pytest.raises(ValueError, match="'train' is not one of val, test; .*needs its own --seed"):
        write_split(tmp_path, "train", **SMALL)
    with pytest.raises(ValueError, match="the seed of a fixed split"):
        write_split(tmp_path, "train", seed=DEFAULT_SPLITS["test"].seed, **SMALL)
    assert not any(tmp_path.iterdir())
