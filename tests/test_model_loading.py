"""The ONNX Runtime backend loads the very bytes it checked against the model card, and refuses a model whose
weights sit in external data files the card's sha256 does not cover (docs/RELIABILITY.md, "Known issues" 8)."""
import shutil
from pathlib import Path

import pytest
import yaml

from densehybrid_ros.config.model_card import card_path_for, sha256_of
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.runtime import ModelLoadError, create_backend, resolve_card
from densehybrid_ros.runtime.onnx_file import external_data_files

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "densehybrid_lite0_synthetic.onnx"


def _copy(tmp_path, name="m"):
    model = tmp_path / f"{name}.onnx"
    shutil.copyfile(SHIPPED, model)
    card = yaml.safe_load(card_path_for(SHIPPED).read_text())
    card["model_file"] = model.name
    card_path_for(model).write_text(yaml.safe_dump(card, sort_keys=False))
    return model


def test_a_file_swapped_after_the_card_check_is_not_loaded(tmp_path):
    model = _copy(tmp_path)
    card = resolve_card(model)  # checks the sha256 of the file as it is now
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a weight byte: still a loadable graph
    model.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"{model}.*corrupt or was replaced"):
        create_backend(card, threads=1, warmup=0)


def test_a_model_with_external_data_is_refused_naming_the_file(tmp_path):
    onnx = pytest.importorskip("onnx")  # a training dependency: only to write such a model

    model = _copy(tmp_path, "external")
    proto = onnx.load(str(model))
    onnx.save_model(proto, str(model), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="external.weights", size_threshold=1024)
    assert (tmp_path / "external.weights").is_file()
    assert external_data_files(model.read_bytes()) == ["external.weights"]
    card_file = card_path_for(model)
    card = yaml.safe_load(card_file.read_text())
    card["sha256"] = sha256_of(model)  # the card matches the .onnx file: only the weights are outside it
    card_file.write_text(yaml.safe_dump(card, sort_keys=False))
    with pytest.raises(ModelLoadError, match=r"external\.onnx.*external data file\(s\) external\.weights"):
        create_backend(model, threads=1, warmup=0)


def test_no_external_data_in_the_shipped_model_nor_in_bytes_that_are_not_a_model():
    assert external_data_files(SHIPPED.read_bytes()) == []
    assert external_data_files(b"\xff" * 100) == []
