"""Which model an empty `model` parameter means: the named default, never the first *.onnx by name order."""
from __future__ import annotations

from pathlib import Path

import pytest

from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.ros.detector_node import DEFAULT_MODEL_NAME, find_default_model, resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


def test_an_empty_model_parameter_means_the_shipped_default():
    assert DEFAULT_MODEL_NAME == "densehybrid_lite0_camvid.onnx"
    assert resolve_model_path("") == ROOT / "models" / DEFAULT_MODEL_NAME


def test_a_named_model_is_used_as_given(tmp_path):
    assert resolve_model_path(str(tmp_path / "other.onnx")) == tmp_path / "other.onnx"


def test_the_default_is_found_among_other_models_whatever_their_names(tmp_path):
    for name in ("a_real.onnx", DEFAULT_MODEL_NAME, "densehybrid_lite0_synthetic.int8.onnx"):
        (tmp_path / name).write_bytes(b"")
    assert find_default_model([tmp_path]) == tmp_path / DEFAULT_MODEL_NAME


def test_the_first_folder_holding_the_default_wins(tmp_path):
    share, checkout = tmp_path / "share", tmp_path / "checkout"
    for d in (share, checkout):
        d.mkdir()
    (share / "other.onnx").write_bytes(b"")
    (checkout / DEFAULT_MODEL_NAME).write_bytes(b"")
    assert find_default_model([share, checkout]) == checkout / DEFAULT_MODEL_NAME


def test_default_missing_with_several_candidates_is_an_error_listing_them(tmp_path):
    for name in ("b_real.onnx", "a_synthetic.int8.onnx"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ConfigError) as e:
        find_default_model([tmp_path])
    text = str(e.value)
    assert "parameter 'model'" in text and DEFAULT_MODEL_NAME in text
    assert str(tmp_path / "a_synthetic.int8.onnx") in text and str(tmp_path / "b_real.onnx") in text


def test_default_missing_and_no_model_at_all_is_an_error_naming_the_folders(tmp_path):
    share, checkout = tmp_path / "share", tmp_path / "checkout"
    checkout.mkdir()
    with pytest.raises(ConfigError) as e:
        find_default_model([share, checkout])
    text = str(e.value)
    assert "parameter 'model'" in text and DEFAULT_MODEL_NAME in text
    assert str(share) in text and str(checkout) in text
