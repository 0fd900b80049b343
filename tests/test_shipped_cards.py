"""Every model in models/ names the data it was trained and measured on, and the terms that come with it.

The cards are rewritten by `densehybrid calibrate`, `evaluate --update-card`, `camvid report` and `quantize`; a
rewrite once dropped the CamVid card's data sources. The provenance files in models/provenance/ are what `densehybrid
export --provenance` writes into a card, so the card and its file must agree.
"""
from pathlib import Path

import pytest

from densehybrid_ros.config.model_card import load_model_card, load_provenance

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted((ROOT / "models").glob("*.card.yaml"))
PROVENANCE = ROOT / "models" / "provenance"
INT8_SUFFIX = "_int8"


def _provenance_for(card_name: str) -> Path:
    # An INT8 copy is its float model's weights: same data, same terms.
    base = card_name[: -len(INT8_SUFFIX)] if card_name.endswith(INT8_SUFFIX) else card_name
    return PROVENANCE / f"{base}.yaml"


def test_every_shipped_model_has_a_card():
    onnx_files = sorted((ROOT / "models").glob("*.onnx"))
    assert onnx_files and len(CARDS) == len(onnx_files)


@pytest.mark.parametrize("path", CARDS, ids=[p.name for p in CARDS])
def test_card_lists_its_data_sources_and_their_terms(path):
    card = load_model_card(path)  # checks each entry's name, used_for and licence
    provenance = load_provenance(_provenance_for(card.name))
    assert card.data_sources == provenance.data_sources
    assert card.training.get("summary") == provenance.summary
    names = " ".join(s["name"] for s in card.data_sources)
    assert "EfficientNet-Lite0" in names  # the pretrained backbone is a data source too
    if "camvid" in card.name:
        camvid = next(s for s in card.data_sources if s["name"].startswith("CamVid"))
        assert "CC BY-NC" in camvid["licence"]
        assert any(s["used_for"].startswith("evaluation only") for s in card.data_sources)  # held-out objects


def test_every_provenance_file_belongs_to_a_shipped_model():
    names = {load_model_card(p).name for p in CARDS}
    for path in PROVENANCE.glob("*.yaml"):
        assert path.stem in names, f"{path} describes no model in models/"


@pytest.mark.parametrize("path", CARDS, ids=[p.name for p in CARDS])
def test_card_metrics_are_those_of_the_committed_report_it_names(path):
    import json

    card = load_model_card(path)
    assert card.metrics, f"{path.name}: no measured metrics (densehybrid evaluate or camvid report --update-card)"
    report = json.loads((ROOT / card.metrics["report"]).read_text())
    pooled = report["scores"][card.score_type]["pooled"]
    assert card.metrics["ap"] == pytest.approx(pooled["ap"], abs=1e-6)
    assert card.metrics["fpr95"] == pytest.approx(pooled["fpr95"], abs=1e-6)
    assert "test" in card.metrics["split"]  # measured on held-out frames, never on the calibration split
    assert "val" in card.calibration.split
