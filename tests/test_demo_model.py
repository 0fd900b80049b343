"""`densehybrid demo` replays the synthetic world: it runs the synthetic-world model by default, whatever the node's
default model is, and refuses a model of another taxonomy (its truth is synthetic-world labels)."""
import shutil
from pathlib import Path

import yaml

from densehybrid_ros.cli import demo, main
from densehybrid_ros.data.taxonomy import SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_MODEL = ROOT / "models" / "densehybrid_lite0_synthetic.onnx"


def test_the_demo_defaults_to_the_synthetic_world_model_by_an_absolute_path():
    assert demo.SYNTHETIC_MODEL == SYNTHETIC_MODEL and SYNTHETIC_MODEL.is_absolute()


def test_a_model_with_other_classes_is_refused_naming_both_taxonomies_and_the_synthetic_model(tmp_path, capsys):
    model = tmp_path / "real.onnx"
    shutil.copy(SYNTHETIC_MODEL, model)
    card = yaml.safe_load(SYNTHETIC_MODEL.with_name("densehybrid_lite0_synthetic.card.yaml").read_text())
    card["model_file"] = model.name
    card["classes"][0]["name"] = "sky_renamed"
    (tmp_path / "real.card.yaml").write_text(yaml.safe_dump(card))
    assert main(["demo", "--model", str(model), "--out", str(tmp_path / "out"), "--no-ros", "--no-benchmark",
                 "--threads", "1"]) == 2
    out = capsys.readouterr().out
    assert "sky_renamed" in out and f"not the synthetic world's {list(SYNTHETIC.names)}" in out
    assert f"--model {SYNTHETIC_MODEL}" in out
    assert not (tmp_path / "out").exists(), "nothing written"
