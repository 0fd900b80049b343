"""The boundary / temporal score filters (core/alert_filters.py), the alert's use of them, the measures of the CamVid
report (evaluation/camvid_report.py) on hand-built inputs, and the report command end to end on a tiny CamVid tree
and object folder that the test writes (an untrained model: the numbers are meaningless, the plumbing is not)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
from densehybrid_ros.core.alert_filters import (
    TemporalFusion, boundary_distance, class_boundaries, fuse_scores, open_score, suppress_near_boundaries,
)
from densehybrid_ros.evaluation.camvid_report import (
    FrameOut, boundary_fp_counts, candidate_score, choose_candidate, flagged_shares, pasted_region, previous_frames,
    replay_alert,
)

WHOLE_FRAME = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


# -- core/alert_filters.py ---------------------------------------------------------------------------------------------
def test_boundary_distance_counts_pixels_from_both_sides_of_a_class_edge():
    c = np.zeros((6, 12), np.uint8)
    c[:, 5:] = 3                                       # the edge lies between columns 4 and 5
    b = class_boundaries(c)
    assert b[:, 4].all() and b[:, 5].all() and b.sum() == 12
    d = boundary_distance(c)
    assert np.allclose(d[0], [4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6])
    assert np.isinf(boundary_distance(np.zeros((4, 4), np.uint8))).all()   # one class: no boundary anywhere
    s = np.arange(72, dtype=np.float32).reshape(6, 12)
    out = suppress_near_boundaries(s, c, 2)
    near = np.abs(np.arange(12) - 4.5) <= 2.5          # columns 2..7
    assert np.all(np.isneginf(out[:, near])) and np.array_equal(out[:, ~near], s[:, ~near])
    assert np.array_equal(suppress_near_boundaries(s, c, 0), s)


def test_opening_removes_thin_lines_and_keeps_blobs():
    s = np.zeros((40, 40), np.float32)
    s[10, :] = 5.0                                     # a one-pixel line across the frame (a class boundary)
    s[20:24, 5:35] = 4.0                               # a 4-pixel-wide band
    s[30:38, 10:18] = 7.0                              # an 8x8 blob
    s[0, 0] = np.nan
    o3 = open_score(s, 3)
    assert o3[10].max() == 0.0                         # the line is gone
    assert o3[20:24, 5:35].min() == 4.0                # wider than the kernel: kept whole
    assert o3[30:38, 10:18].min() == 7.0 and np.isnan(o3[0, 0])
    o5 = open_score(s, 5)
    assert o5[20:24].max() == 0.0 and o5[30:38, 10:18].min() == 7.0
    assert np.all(o5[~np.isnan(s)] <= s[~np.isnan(s)])  # never raises a score
    assert np.array_equal(open_score(s, 1), s, equal_nan=True)


def test_temporal_fusion_needs_consecutive_frames_and_restarts_on_a_new_size():
    flicker, steady = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    f = TemporalFusion("min", 3)
    frames = [np.full((4, 4), v, np.float32) for v in (5.0, 1.0, 4.0, 6.0)]
    frames[1][0, 0] = 9.0
    out = [f.update(x) for x in frames]
    assert out[0][1, 1] == 5.0                          # no history yet: the frame itself
    assert out[1][1, 1] == 1.0 and out[1][0, 0] == 5.0
    assert out[2][1, 1] == 1.0                          # min over 5, 1, 4
    assert out[3][1, 1] == 1.0 and out[3][0, 0] == 4.0  # min over 1 (9 at 0,0), 4, 6
    assert f.update(np.full((2, 2), 8.0, np.float32))[0, 0] == 8.0   # another size: history dropped
    m = TemporalFusion("mean", 2)
    m.update(np.full((2, 2), 2.0, np.float32))
    assert np.allclose(m.update(np.full((2, 2), 4.0, np.float32)), 3.0)
    assert np.array_equal(TemporalFusion("none", 3).update(flicker + 1), steady + 1)
    assert np.allclose(fuse_scores([np.ones((2, 2)), np.zeros((2, 2)), np.full((2, 2), 2.0)], "mean"), 1.0)
    with pytest.raises(ValueError, match="mode"):
        TemporalFusion("max", 2)
    with pytest.raises(ValueError, match="positive integer"):
        TemporalFusion("min", 0)


# -- the alert with its score filters -----------------------------------------------------------------------------------
def _blob(h=60, w=80, box=None, line_row=None):
    s = np.full((h, w), -10.0, np.float32)
    if box is not None:
        y0, y1, x0, x1 = box
        s[y0:y1, x0:x1] = 5.0
    if line_row is not None:
        s[line_row:line_row + 2, :] = 5.0
    return s


def test_alert_with_temporal_min_ignores_a_blob_seen_in_one_frame_only():
    cfg = AlertConfig(corridor=WHOLE_FRAME, tau=0.0, raise_frames=1, window_frames=1, clear_frames=1,
                      temporal_fusion="min", temporal_frames=2)
    det = ObstacleAlertDetector(cfg)
    assert not det.update(_blob()).frame_hit
    assert not det.update(_blob(box=(10, 20, 10, 20))).frame_hit      # new this frame: the min is low
    assert det.update(_blob(box=(10, 20, 10, 20))).frame_hit          # there in two consecutive frames
    assert not det.update(_blob(box=(30, 40, 50, 60))).frame_hit      # moved far: no overlap with the last frame
    det.reset()                                        # forgets the history: the first frame is judged alone
    assert det.update(_blob(box=(30, 40, 50, 60))).frame_hit
    assert not det.update(_blob(box=(10, 20, 10, 20))).frame_hit
    plain = ObstacleAlertDetector(AlertConfig(corridor=WHOLE_FRAME, tau=0.0))
    assert plain.update(_blob(box=(10, 20, 10, 20))).frame_hit


def test_alert_opening_drops_boundary_lines_and_equals_filtering_the_whole_frame():
    corridor = ((0.25, 1.0), (0.43, 0.55), (0.57, 0.55), (0.75, 1.0))
    cfg = AlertConfig(corridor=corridor, tau=0.0, score_opening_px=5, min_area_fraction=0.001)
    det = ObstacleAlertDetector(cfg)
    line = _blob(line_row=50)
    assert ObstacleAlertDetector(AlertConfig(corridor=corridor, tau=0.0)).update(line).frame_hit
    assert not det.update(line).frame_hit
    assert det.update(_blob(box=(45, 55, 35, 45))).frame_hit
    # The alert filters only the corridor's box (plus the kernel's reach): its peak equals the whole frame's.
    rng = np.random.default_rng(0)
    s = cv2.GaussianBlur(rng.normal(0, 3, (60, 80)).astype(np.float32), (0, 0), 1.5)
    state = det.update(s)
    mask = det.corridor_mask(60, 80)
    assert state.peak_score == pytest.approx(float(open_score(s, 5)[mask].max()))


def test_alert_filter_settings_are_validated_and_reach_the_alert_from_the_node_parameters():
    with pytest.raises(ConfigError, match="temporal_fusion"):
        AlertConfig(temporal_fusion="max").validate()
    with pytest.raises(ConfigError, match="score_opening_px"):
        AlertConfig(score_opening_px=65).validate()
    with pytest.raises(ConfigError, match="temporal_frames"):
        DetectorConfig.from_values({"temporal_frames": 0})

    class Card:
        tau = -1.0
        classes = []
    built = DetectorConfig.from_values({"temporal_fusion": "mean", "temporal_frames": 4,
                                        "score_opening_px": 7}).alert_config_for(Card())
    assert (built.temporal_fusion, built.temporal_frames, built.score_opening_px) == ("mean", 4, 7)
    det = ObstacleAlertDetector(AlertConfig(corridor=WHOLE_FRAME, tau=0.0, temporal_fusion="min"))
    det.update(_blob(box=(10, 20, 10, 20)))
    det.update_config(temporal_frames=4)                # new fusion settings: the history starts afresh, so a blob
    assert det.update(_blob(box=(30, 40, 50, 60))).frame_hit   # elsewhere is judged alone, not against the old one
    det.update_config(clear_frames=2)                   # other settings keep the history
    assert not det.update(_blob(box=(10, 20, 10, 20))).frame_hit


# -- the report's measures ----------------------------------------------------------------------------------------------
def _frame(score, sequence="A", class_id=None, semantic=None, history=(), anomaly=None, name="f"):
    h, w = score.shape
    return FrameOut(name, sequence, np.zeros((h, w), np.uint8) if class_id is None else class_id, score, score,
                    semantic, np.zeros((h, w), np.uint8) if anomaly is None else anomaly, list(history))


def test_boundary_fp_counts_split_false_positives_by_distance_to_the_edge():
    semantic = np.zeros((10, 20), np.uint8)
    semantic[:, 10:] = 3                               # edge between columns 9 and 10
    semantic[:, 0] = 255                               # a void column: never counted, but its edge is a boundary
    flagged = np.zeros((10, 20), bool)
    flagged[:, 0] = True                               # on void: not a false positive
    flagged[:, 9] = True                               # on the class edge
    flagged[:, 17] = True                              # 7 px from the class edge
    pred = np.zeros((10, 20), np.uint8)                # a prediction without any boundary
    c = boundary_fp_counts(flagged, semantic, pred, ks=(2, 8))
    assert c["labelled"].tolist() == [190, 20]
    # k=2: columns 1..3 (void edge) and 7..12 (class edge) are near; of the false positives only column 9.
    assert c["gt"].tolist()[0] == [90, 10]
    assert c["gt"].tolist()[1] == [180, 20]            # k=8: columns 1..18
    assert c["pred"].tolist() == [[0, 0], [0, 0]]


def test_flagged_shares_and_candidate_scores():
    a = np.zeros((10, 10), np.float32)
    a[:2] = 1.0                                        # 20% above 0.5
    b = np.zeros((10, 10), np.float32)
    f = flagged_shares([a, b], 0.5)
    assert f["mean"] == pytest.approx(0.1) and f["max"] == pytest.approx(0.2) and f["frames"] == 2
    now = np.full((4, 4), 3.0, np.float32)
    frame = _frame(now, history=[np.full((4, 4), 1.0, np.float32), np.full((4, 4), 0.0, np.float32)])
    assert candidate_score((("temporal", "min", 2),), frame).max() == 1.0
    assert candidate_score((("temporal", "min", 3),), frame).max() == 0.0
    assert candidate_score((("temporal", "mean", 2),), frame).max() == 2.0
    assert candidate_score((), frame) is now


def test_replay_counts_states_onsets_and_rates_per_drive():
    cfg = AlertConfig(corridor=WHOLE_FRAME, tau=0.0, raise_frames=2, window_frames=3, clear_frames=2)
    hit, clean = _blob(box=(10, 30, 10, 30)), _blob()
    # Drive A: hit, hit (alert), clean, clean (clear), hit (warning); drive B starts afresh: one hit.
    seq = [("A", hit), ("A", hit), ("A", clean), ("A", clean), ("A", hit), ("B", hit)]
    frames = [_frame(s, sequence=d) for d, s in seq]
    r = replay_alert(frames, [f.score for f in frames], cfg, lambda drive: 2.0 if drive == "A" else 1.0)
    assert r["states"] == ["warning", "alert", "alert", "clear", "warning", "warning"]
    a, b, total = r["drives"]["A"], r["drives"]["B"], r["total"]
    assert (a["alert"], a["warning"], a["alert_onsets"], a["warning_onsets"]) == (2, 2, 1, 2)
    assert a["minutes"] == pytest.approx(5 * 2 / 60) and a["alert_per_minute"] == pytest.approx(2 / (10 / 60))
    assert (b["warning"], b["alert"]) == (1, 0)
    assert total["frames"] == 6 and total["alert"] == 2 and total["warning"] == 3


def test_choice_rule_keeps_obstacles_first():
    def result(ap, tpr, recall, flagged):
        return {"ap": ap, "tpr_at_card_tau": tpr, "alert": {"obstacle_recall": recall},
                "clean_flagged_at_card_tau": {"mean": flagged}}
    results = {"baseline": result(0.80, 0.95, 0.90, 0.10),
               "cheap but blind": result(0.50, 0.60, 0.90, 0.01),        # AP and TPR fall: not kept
               "misses in the corridor": result(0.80, 0.95, 0.70, 0.02),  # alert recall falls: not kept
               "fair": result(0.79, 0.93, 0.88, 0.05),
               "better": result(0.81, 0.94, 0.90, 0.03)}
    chosen, notes = choose_candidate(results)
    assert chosen == "better"
    assert any(n.startswith("cheap but blind: loses obstacles (AP") for n in notes)
    assert any(n.startswith("misses in the corridor: loses obstacles (alert") for n in notes)
    assert choose_candidate({"baseline": results["baseline"], "x": result(0.8, 0.95, 0.9, 0.2)})[0] == "baseline"


def test_pasted_region_and_previous_frames():
    clean = np.zeros((5, 6, 3), np.uint8)
    pasted = clean.copy()
    pasted[1:3, 2:4, 0] = 200
    assert pasted_region(pasted, clean).sum() == 4

    class F:
        def __init__(self, name, sequence):
            self.name, self.sequence = name, sequence
    frames = [F("a1", "A"), F("a2", "A"), F("a3", "A"), F("b1", "B"), F("b2", "B")]
    prev = previous_frames(frames)
    assert prev == {"a1": [], "a2": ["a1"], "a3": ["a2", "a1"], "b1": [], "b2": ["b1"]}


# -- the command end to end ---------------------------------------------------------------------------------------------
H, W = 90, 120
TEST_STEMS = ["Seq05VD_f00000", "Seq05VD_f00030", "Seq05VD_f00060", "0001TP_008550"]
VAL_STEMS = ["0016E5_07959", "0016E5_07961", "0016E5_07963"]


def _write_camvid(root: Path) -> Path:
    lab = np.zeros((H, W), np.uint8)
    lab[20:45] = 1
    lab[45:] = 3
    lab[45:, :20] = lab[45:, -20:] = 4
    lab[-6:] = 11
    for split, stems in (("test", TEST_STEMS), ("val", VAL_STEMS)):
        for d in (root / split, root / f"{split}annot"):
            d.mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(stems):
            rgb = np.random.default_rng(i).integers(60, 200, (H, W, 3), dtype=np.uint8)
            cv2.imwrite(str(root / split / f"{stem}.png"), rgb)
            cv2.imwrite(str(root / f"{split}annot" / f"{stem}.png"), lab)
    return root


def _write_objects(out: Path) -> Path:
    from densehybrid_ros.data.real_objects import ObjectInstance, extract_objects

    def instances():
        for i in range(3):
            rgb = np.zeros((30 + 8 * i, 24, 3), np.uint8)
            rgb[:] = (250, 30 + 60 * i, 10)
            alpha = np.zeros(rgb.shape[:2], np.uint8)
            alpha[2:-2, 2:-2] = 255
            yield ObjectInstance(f"box{i}", rgb, alpha, f"box{i}")
    extract_objects(instances(), out, "boxes", "test", min_pixels=1)
    return out


@pytest.mark.slow  # one ONNX export, a calibration and the report: ~20-40 s on 2 shared cores
def test_report_command_writes_every_part_with_the_evaluate_numbers(tmp_path, capsys):
    import torch

    from densehybrid_ros.cli import main as cli_main
    from densehybrid_ros.data.camvid_anomaly import write_benchmark
    from densehybrid_ros.evaluation.runner import EvaluationConfig, evaluate

    torch.set_num_threads(1)
    root = _write_camvid(tmp_path / "CamVid")
    objects = _write_objects(tmp_path / "objects")
    write_benchmark(root, objects, tmp_path / "bench_test", split="test")
    write_benchmark(root, objects, tmp_path / "bench_val", split="val")
    model = tmp_path / "k11.onnx"
    assert cli_main(["export", "--untrained", "--raw-outputs", "--num-classes", "11", "--out", str(model),
                     "--height", "64", "--width", "96", "--no-verify"]) == 0
    out = tmp_path / "report"
    args = ["camvid", "report", "--model", str(model), "--root", str(root), "--benchmark",
            str(tmp_path / "bench_test"), "--val-benchmark", str(tmp_path / "bench_val"), "--out", str(out),
            "--no-progress"]
    capsys.readouterr()
    assert cli_main(args) == 2                          # no calibrated tau yet: named, nothing written
    assert "calibrate" in capsys.readouterr().err and not out.exists()
    assert cli_main(["calibrate", "--model", str(model), "--data", str(tmp_path / "bench_val"),
                     "--no-progress"]) == 0
    assert cli_main(args + ["--update-card"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # Part 1 equals `densehybrid evaluate` on the clean CamVid test frames (the same confusion, the same backend).
    ev = evaluate(EvaluationConfig(model=model, data=root, format="camvid", out=None, score_types=("hybrid",),
                                   components=False, qualitative=0, progress=False))
    assert m["closed_set"]["miou"] == pytest.approx(ev.metrics["closed_set"]["miou"])
    assert m["closed_set"]["frames"] == len(TEST_STEMS) and m["closed_set"]["label_size"] == [H, W]
    # Part 2 is evaluate's own run on the pasted test frames, summarised with its small/medium/large bands.
    bench = json.loads((out / "benchmark" / "metrics.json").read_text())
    assert m["benchmark"]["ap"] == bench["scores"]["hybrid"]["pooled"]["ap"]
    assert list(m["benchmark"]["by_size"]) == ["small", "medium", "large"]
    # Part 3: one state per clean frame, drives in time order.
    assert [p["name"] for p in m["false_alarms"]["per_frame"]] == sorted(TEST_STEMS, key=lambda s: (s[:6], s))
    assert set(m["false_alarms"]["alert"]["drives"]) == {"0001TP", "Seq05VD"}
    assert m["false_alarms"]["frame_seconds"]["Seq05VD"] == pytest.approx(1.0)
    # Part 4: every candidate on val and test, one chosen on val, the boundary bands measured.
    assert set(m["val"]["candidates"]) == set(m["test_candidates"]) and m["val"]["chosen"] in m["val"]["candidates"]
    assert set(m["val"]["boundary_study"]["bands"]) == {f"{b} k={k}" for b in ("gt", "pred") for k in (2, 4, 8)}
    assert "alert_modes" in m["test_candidates"]["baseline"]
    text = (out / "report.md").read_text()
    for heading in ("## 1. Closed-set", "## 2. Pasted real objects", "## 3. False alarms", "## 4. Boundary"):
        assert heading in text
    for figure in ("per_class_iou.png", "clean_drives.png", "boundary_fp.png", "candidates_val.png"):
        assert (out / figure).is_file() and figure in text
    assert "wrote" in capsys.readouterr().out
    from densehybrid_ros.config.model_card import load_model_card
    card = load_model_card(model, verify_sha=True)
    assert card.metrics["miou"] == pytest.approx(m["closed_set"]["miou"], abs=1e-6)
    assert card.metrics["ap"] == pytest.approx(m["benchmark"]["ap"], abs=1e-6)
    assert card.metrics["clean_drive_alert_frames"] == m["false_alarms"]["alert"]["total"]["alert"]
