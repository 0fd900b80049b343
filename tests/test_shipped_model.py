"""The synthetic-world models the package ships (models/): each one's card and its quality on held-out frames.

Both run the same checks: densehybrid_lite0_synthetic (3x3 ladder blends) and densehybrid_lite0_synthetic_fast (the
faster network of docs/NETWORK_DESIGN.md, distilled from it).

The frames come from the synthetic world with seeds outside the training pool and outside the val split that
tau was calibrated on (docs/DATA.md: split frame seeds are >= 2**32, the training pool starts at 100000), so
nothing here is measured on data the model or its threshold were tuned on.
"""
from pathlib import Path

import numpy as np
import pytest

from densehybrid_ros.config.model_card import load_model_card

ROOT = Path(__file__).resolve().parents[1]
MODELS = [ROOT / "models" / "densehybrid_lite0_synthetic.onnx", ROOT / "models" / "densehybrid_lite0_synthetic_fast.onnx"]
HELD_OUT_SEED = 7_000_000  # not a training-pool seed (100000 + i, i < 1000), not a split seed (>= 2**32)


@pytest.fixture(scope="module", params=MODELS, ids=[m.stem for m in MODELS])
def card(request):
    return load_model_card(request.param)  # verifies the sha256 of the committed file


@pytest.fixture(scope="module")
def backend(card):
    from densehybrid_ros.runtime import create_backend
    return create_backend(card, threads=2)


def test_card_is_calibrated_and_carries_the_measured_metrics(card):
    assert card.num_classes == 14 and card.anomaly_label == 14
    assert card.calibration is not None and np.isfinite(card.tau)
    assert card.calibration.target_tpr == pytest.approx(0.95)
    assert "val" in card.calibration.split  # calibrated on val, never on test
    assert card.metrics, "metrics come from docs/report/metrics.json (densehybrid evaluate --update-card)"
    assert card.training, "the card says what the model was trained on"
    # ...and they are the numbers of the committed report it names, on the test split.
    import json
    report = json.loads((ROOT / card.metrics["report"]).read_text())
    hybrid = report["scores"]["hybrid"]["pooled"]
    assert "test" in card.metrics["split"]
    assert card.metrics["ap"] == pytest.approx(hybrid["ap"], abs=1e-6)
    assert card.metrics["fpr95"] == pytest.approx(hybrid["fpr95"], abs=1e-6)
    assert card.metrics["miou"] == pytest.approx(report["closed_set"]["miou"], abs=1e-6)


def test_held_out_clear_frames_are_segmented(card, backend):
    from densehybrid_ros.data.world import render_scene

    correct = total = 0
    for i in range(3):
        scene = render_scene(HELD_OUT_SEED + i, 512, 1024, condition="clear")
        result = backend.infer(scene.image)
        valid = scene.label < card.num_classes
        correct += int((result.class_id[valid] == scene.label[valid]).sum())
        total += int(valid.sum())
    assert correct / total > 0.85


def test_calibrated_tau_carries_over_to_unseen_obstacles_and_roads(card, backend):
    from densehybrid_ros.data.world import render_scene

    hits = false = n_anomaly = n_road = 0
    for i in range(4):
        scene = render_scene(HELD_OUT_SEED + 100 + i, 512, 1024, condition="clear", anomalies=2)
        score = backend.infer(scene.image).anomaly_score
        anomaly = scene.label == card.anomaly_label
        road = scene.label == 0
        hits += int((score[anomaly] > card.tau).sum())
        false += int((score[road] > card.tau).sum())
        n_anomaly += int(anomaly.sum())
        n_road += int(road.sum())
    assert n_anomaly > 0
    # tau was chosen for TPR 95% on the val split: it must carry over to unseen frames...
    assert hits / n_anomaly > 0.9
    # ...and the road ahead must not be flagged more often than the average inlier pixel of the val split.
    assert false / n_road < card.calibration.fpr
