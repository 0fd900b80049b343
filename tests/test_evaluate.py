"""End to end: an untrained exported model (raw outputs) on a small synthetic split written by data/splits.py,
through the evaluate and calibrate commands; plus the breakdown groups on hand-made frames."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from densehybrid_ros.cli import main
from densehybrid_ros.config.model_card import load_model_card, sha256_of
from densehybrid_ros.core.scores import SCORE_TYPES
from densehybrid_ros.evaluation.breakdowns import BreakdownAccumulator
from densehybrid_ros.evaluation.metrics import pixel_metrics
from densehybrid_ros.evaluation.report import SCORE_LABELS
from densehybrid_ros.evaluation.runner import EvaluationConfig, EvaluationError, evaluate, score_maps
from densehybrid_ros.evaluation.streaming import ScoreBinning

HEIGHT, WIDTH = 64, 128
CONDITIONS = ("clear", "fog", "night")
# Small histograms keep the test's memory low; the accuracy of the default bits is tested in test_metrics.py.
SMALL = dict(bits=16, breakdown_bits=12, open_bits=12, threads=1, progress=False)


def write_split(root: Path, frames_per_condition: int, anomalies: bool = True) -> Path:
    """A small synthetic split written by the project's split writer (data/splits.py, documented layout)."""
    from densehybrid_ros.data.splits import write_split as write

    write(root, "test", seed=7, conditions=CONDITIONS, frames_per_condition=frames_per_condition,
          height=HEIGHT, width=WIDTH, anomalies_per_frame=(1, 2) if anomalies else (0, 0))
    return root / "test"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    assert main(["export", "--untrained", "--raw-outputs", "--out", str(out), "--height", str(HEIGHT),
                 "--width", str(WIDTH), "--no-verify"]) == 0
    return out


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return write_split(tmp_path_factory.mktemp("data"), 2)


def copy_model(model: Path, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, where / model.name)
    shutil.copy(model.with_name("tiny.card.yaml"), where / "tiny.card.yaml")
    return where / model.name


def test_evaluate_command_writes_report_plots_and_finite_metrics(model, split, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(model), "--data", str(split), "--out", str(out), "--threads", "1",
                 "--bits", "12", "--no-progress"]) == 0
    assert "AP" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    for png in ("pr_curves.png", "roc_curves.png", "by_condition.png", "distance_bands.png", "qualitative.png"):
        assert (out / png).stat().st_size > 5000, png
        assert f"]({png})" in report
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["images"] == 6 and set(m["data"]["conditions"]) == set(CONDITIONS)
    assert 0 <= m["closed_set"]["miou"] <= 1
    assert list(m["scores"]) == list(SCORE_TYPES)
    for name, s in m["scores"].items():
        for key in ("ap", "auroc", "fpr95"):
            assert 0 <= s["pooled"][key] <= 1, (name, key)
            assert 0 <= s["per_image"][key] <= 1, (name, key)
        assert 0 <= s["open_set"]["open_miou_two_fold"] <= 1
        assert [f["images"] for f in s["open_set"]["folds"]] == [3, 3]
        assert s["components"]["gt_components"] > 0 and math.isfinite(s["components"]["mean_siou"])
        assert set(s["condition"]) == set(CONDITIONS)
        assert sum(g["n_pos"] for g in s["distance"].values()) > 0
        assert sum(g["n_pos"] for g in s["size"].values()) == s["pooled"]["n_pos"]
    for name in SCORE_TYPES:  # every score type has its row in the Markdown table
        assert f"| {SCORE_LABELS[name]} |" in report


def test_pooled_metrics_equal_an_exact_recomputation(model, split):
    """The streaming runner against an independent exact computation over the same backend outputs."""
    from densehybrid_ros.data.adapters import open_split
    from densehybrid_ros.runtime import create_backend

    ev = evaluate(EvaluationConfig(model=model, data=split, out=None, components=False, qualitative=0,
                                   bits=20, breakdown_bits=12, open_bits=12, threads=1, progress=False))
    backend = create_backend(model, threads=1)
    scores = {t: [] for t in SCORE_TYPES}
    labels = []
    for sample in open_split(split):
        r = backend.infer(sample.image)
        maps = score_maps(r.logits, r.ood_logit, sample.anomaly.shape, SCORE_TYPES)
        for t in SCORE_TYPES:
            scores[t].append(maps[t].ravel())
        labels.append(sample.anomaly.ravel())
    labels = np.concatenate(labels)
    for t in SCORE_TYPES:
        exact = pixel_metrics(np.concatenate(scores[t]), labels)
        got = ev.metrics["scores"][t]["pooled"]
        assert got["n_pos"] == exact.n_pos and got["n_neg"] == exact.n_neg
        assert abs(got["ap"] - exact.ap) < 1e-4, t
        assert abs(got["auroc"] - exact.auroc) < 1e-4, t
        assert abs(got["fpr95"] - exact.fpr95) < 1e-4, t


def test_model_without_raw_outputs_is_refused(model, tmp_path):
    copy = copy_model(model, tmp_path / "m")
    card = load_model_card(copy)
    card.outputs = ["class_id", "anomaly_score", "confidence"]
    card.save(card.card_path)
    with pytest.raises(EvaluationError, match="--raw-outputs"):
        evaluate(EvaluationConfig(model=copy, data=tmp_path, out=None, **SMALL))


def test_calibrate_writes_tau_into_a_copied_card_and_the_card_still_loads(model, split, tmp_path, capsys):
    copy = copy_model(model, tmp_path / "m")
    sha_before = sha256_of(copy)
    assert main(["calibrate", "--model", str(copy), "--data", str(split), "--threads", "1", "--no-progress"]) == 0
    assert "tau =" in capsys.readouterr().out
    card = load_model_card(copy, verify_sha=True)  # the model file is untouched: its sha still matches
    assert sha256_of(copy) == sha_before
    cal = card.calibration
    assert cal is not None and math.isfinite(cal.tau) and cal.target_tpr == 0.95
    assert cal.score_type == card.score_type and cal.split == str(split)
    assert cal.achieved_tpr >= 0.95 and 0 <= cal.fpr <= 1

    # The node's rule, score > tau, on the graph's own anomaly_score keeps >= 95% of the anomaly pixels.
    from densehybrid_ros.data.adapters import open_split
    from densehybrid_ros.runtime import create_backend

    backend = create_backend(copy, threads=1)
    hit = total = 0
    for sample in open_split(split):
        score = backend.infer(sample.image).anomaly_score
        positive = sample.anomaly == 1
        hit += np.count_nonzero(score[positive] > cal.tau)
        total += np.count_nonzero(positive)
    assert hit / total == pytest.approx(cal.achieved_tpr, abs=1e-3)

    # --tau-from-card then uses exactly that tau as the deployed score's operating point.
    ev = evaluate(EvaluationConfig(model=copy, data=split, out=None, tau_from_card=True, qualitative=0,
                                   score_types=("hybrid", "max_logit"), **SMALL))
    op = ev.metrics["scores"]["hybrid"]["operating_point"]
    assert op["source"] == "model card" and op["tau"] == cal.tau
    assert ev.metrics["scores"]["max_logit"]["operating_point"]["source"].startswith("TPR")


def test_calibrate_on_a_split_without_anomalies_fails_with_a_clear_message(model, tmp_path, capsys):
    clean = write_split(tmp_path / "clean", 1, anomalies=False)
    copy = copy_model(model, tmp_path / "m")
    assert main(["calibrate", "--model", str(copy), "--data", str(clean), "--threads", "1", "--no-progress"]) == 2
    assert "no anomaly pixels" in capsys.readouterr().err
    assert load_model_card(copy).calibration is None


def test_calibrating_another_score_than_the_graph_outputs_is_refused(model, split, tmp_path, capsys):
    copy = copy_model(model, tmp_path / "m")
    assert main(["calibrate", "--model", str(copy), "--data", str(split), "--score-type", "entropy",
                 "--no-progress"]) == 2
    assert "wrong score" in capsys.readouterr().err


def test_update_card_copies_the_numbers_of_metrics_json(model, split, tmp_path):
    copy = copy_model(model, tmp_path / "m")
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(copy), "--data", str(split), "--out", str(out), "--threads", "1",
                 "--bits", "12", "--score-types", "hybrid,entropy", "--no-components", "--qualitative", "0",
                 "--update-card", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    card = load_model_card(copy, verify_sha=True)
    assert card.metrics["ap"] == pytest.approx(m["scores"]["hybrid"]["pooled"]["ap"], abs=1e-6)
    assert card.metrics["open_miou"] == pytest.approx(m["scores"]["hybrid"]["open_set"]["open_miou_two_fold"],
                                                      abs=1e-6)
    assert card.metrics["report"].endswith("metrics.json")


def test_bad_arguments_are_named(model, split, tmp_path, capsys):
    assert main(["evaluate", "--model", str(model), "--data", str(split), "--score-types", "hybrid,nonsense",
                 "--out", str(tmp_path)]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "missing.onnx"), "--data", str(split),
                 "--out", str(tmp_path)]) == 2
    assert "missing.onnx" in capsys.readouterr().err


# -- breakdown groups on hand-made frames ----------------------------------------------------------------------

def test_distance_bands_use_same_distance_inliers():
    binning = ScoreBinning(0.0, 1.0, bits=12)
    acc = BreakdownAccumulator(binning, distance_edges=(0, 10, 20), size_edges=(0, 0.1, 1))
    anomaly = np.array([[1, 0, 0, 255], [1, 0, 0, 0]], np.uint8)
    depth = np.array([[5, 5, 15, 5], [15, 15, 0, 25]], np.float32)  # 0 = unknown, 25 = beyond the bands
    # Near band (0-10 m): anomaly 0.9 above the near inlier 0.1 -> perfect. Far band (10-20 m): anomaly 0.2 below
    # both far inliers (0.3, 0.8) -> AP 1/3, FPR95 1. The 5 m inlier (0.1) and the unknown/25 m pixels stay out.
    score = np.array([[0.9, 0.1, 0.3, 5.0], [0.2, 0.8, 7.0, 7.0]], np.float32)
    acc.add(binning.bins(score), anomaly, "clear", depth)
    r = acc.result()
    near, far = r["distance"]["0-10 m"], r["distance"]["10-20 m"]
    assert (near["n_pos"], near["n_neg"], near["ap"], near["fpr95"]) == (1, 1, 1.0, 0.0)
    assert (far["n_pos"], far["n_neg"], far["ap"], far["fpr95"]) == (1, 2, pytest.approx(1 / 3), 1.0)
    assert r["condition"]["clear"]["n_pos"] == 2 and r["condition"]["clear"]["n_neg"] == 5


def test_size_bins_split_positives_and_share_all_inliers():
    binning = ScoreBinning(0.0, 1.0, bits=12)
    acc = BreakdownAccumulator(binning, size_edges=(0, 0.05, 1))
    anomaly = np.zeros((10, 10), np.uint8)
    anomaly[0, 0] = 1  # 1% of the frame: small
    anomaly[5:9, 5:9] = 1  # 16%: large
    score = np.zeros((10, 10), np.float32)
    score[0, 0] = -1.0  # the small obstacle is missed, the large one found
    score[5:9, 5:9] = 2.0
    acc.add(binning.bins(score), anomaly, "fog", None)
    r = acc.result()
    small, large = r["size"]["0-5 % of frame"], r["size"]["5-100 % of frame"]
    assert (small["n_pos"], large["n_pos"]) == (1, 16)
    assert small["n_neg"] == large["n_neg"] == 83
    assert large["ap"] == 1.0 and small["fpr95"] == 1.0
    assert r["distance"] == {}  # no depth: no distance table


def test_max_images_takes_frames_from_every_condition_for_evaluation_and_calibration(model, split, tmp_path):
    from densehybrid_ros.evaluation.calibrate import calibrate

    # The split holds clear, fog, night (2 frames each) in that order; the first 3 frames would be clear and fog.
    ev = evaluate(EvaluationConfig(model=model, data=split, out=None, max_images=3, components=False, qualitative=0,
                                   **SMALL))
    data = ev.metrics["data"]
    assert data["images"] == 3 and data["conditions"] == {c: 1 for c in CONDITIONS}, data
    calibrated = calibrate(copy_model(model, tmp_path / "c"), split, max_images=3, threads=1,
                           progress=False)
    assert calibrated.images == 3


def test_calibrating_on_frames_of_another_taxonomy_is_refused_and_the_card_kept(split, tmp_path):
    from densehybrid_ros.evaluation.calibrate import CalibrationError, calibrate

    root = Path(__file__).resolve().parents[1] / "models"
    for suffix in (".onnx", ".card.yaml"):
        shutil.copy(root / f"densehybrid_lite0_camvid{suffix}", tmp_path / f"camvid{suffix}")
    card = tmp_path / "camvid.card.yaml"
    card.write_text(card.read_text().replace("densehybrid_lite0_camvid.onnx", "camvid.onnx"))
    before = card.read_text()
    with pytest.raises(CalibrationError, match="has K=14 classes but model .*camvid.onnx has K=11"):
        calibrate(tmp_path / "camvid.onnx", split, threads=1, progress=False)  # the synthetic world's 14 classes
    assert card.read_text() == before


def test_report_links_the_evaluation_doc_from_wherever_inside_docs_it_is_written():
    from densehybrid_ros.evaluation.report import _evaluation_doc_link

    root = Path(__file__).resolve().parents[1]
    for folder in (root / "docs" / "report", root / "docs" / "report" / "synthetic_fast",
                   root / "docs" / "report" / "camvid" / "benchmark"):
        link = _evaluation_doc_link(folder)
        assert (folder / link).resolve() == (root / "docs" / "EVALUATION.md").resolve(), (folder, link)
