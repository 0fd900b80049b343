"""`densehybrid bag evaluate` refuses a bag whose labels use another taxonomy than the model it is given (a CamVid
drive with the synthetic-world model, or the reverse), before starting anything."""
from pathlib import Path

import pytest

from densehybrid_ros.bag.evaluate import DEFAULT_MODEL, taxonomy_mismatch
from densehybrid_ros.bag.files import BagError
from densehybrid_ros.config.model_card import load_model_card
from densehybrid_ros.data.adapters.camvid import CAMVID
from densehybrid_ros.data.taxonomy import SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_card():
    return load_model_card(ROOT / "models" / "densehybrid_lite0_synthetic.onnx")


def test_a_synthetic_drive_matches_the_synthetic_model(synthetic_card):
    assert DEFAULT_MODEL == ROOT / "models" / "densehybrid_lite0_synthetic.onnx"
    description = {"anomaly_label": SYNTHETIC.anomaly_label, "classes": list(SYNTHETIC.names)}  # as bag make writes
    taxonomy_mismatch(description, synthetic_card, "/camera/labels")


def test_a_camvid_drive_with_the_synthetic_model_is_refused_naming_both_labels(synthetic_card):
    description = {"anomaly_label": CAMVID.anomaly_label}  # as bag convert --anomaly-label 11 writes
    with pytest.raises(BagError, match=r"anomaly label 11 \(model: 14\).*--model"):
        taxonomy_mismatch(description, synthetic_card, "/camera/labels")


def test_other_class_names_are_refused(synthetic_card):
    description = {"anomaly_label": 14, "classes": list(CAMVID.names) + ["x", "y", "z"]}
    with pytest.raises(BagError, match="classes"):
        taxonomy_mismatch(description, synthetic_card, "/camera/labels")


def test_a_bag_without_labels_has_nothing_to_disagree_with(synthetic_card):
    taxonomy_mismatch({"anomaly_label": 11}, synthetic_card, None)
