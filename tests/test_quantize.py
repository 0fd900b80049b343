"""`densehybrid quantize` on real exported graphs: the INT8 graph keeps the float graph's contract (inputs, outputs,
dtypes, shapes), its card is tied to it by sha256 and says how it was made, the score head stays float, it agrees
with the float graph, and the same data gives the same INT8 graph."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from densehybrid_ros.config.model_card import load_model_card, sha256_of
from densehybrid_ros.evaluation.calibrate import CalibrationResult, write_calibration
from densehybrid_ros.ros.testing import export_untrained_model
from densehybrid_ros.runtime import create_backend
from densehybrid_ros.runtime.calibration import CalibrationBatches
from densehybrid_ros.runtime.quantize import (
    OPENVINO_UNSAFE_OPS, QuantizationError, QuantizeSettings, float_nodes, quantize_model, quantized_node_summary,
    score_sources,
)

SHIPPED = Path("models/densehybrid_lite0_synthetic.onnx")
H, W = 128, 256
FRAMES = 4


def _quiet(*_: object) -> None:
    pass


SOURCES = [{"name": "a data set", "used_for": "training", "licence": "research only"}]


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    path = export_untrained_model(tmp_path_factory.mktemp("fp32") / "m.onnx", H, W, seed=3)
    card = load_model_card(path)
    card.data_sources = SOURCES
    card.save(card.card_path)
    return path


@pytest.fixture(scope="module")
def int8(float_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m_int8.onnx"
    card = quantize_model(float_model, out, QuantizeSettings(frames=FRAMES), log=_quiet)
    return out, card


def _io(path: Path) -> list[tuple]:
    graph = onnx.load(str(path)).graph
    return [(v.name, v.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
            for v in list(graph.input) + list(graph.output)]


@pytest.mark.slow  # the module's export and quantization (~15 s on a quiet machine) are paid here
def test_int8_graph_keeps_the_contract_and_its_card_is_tied_to_it(float_model, int8):
    out, card = int8
    assert _io(out) == _io(float_model)
    loaded = load_model_card(out)  # verifies the sha256
    assert loaded.sha256 == sha256_of(out) != load_model_card(float_model).sha256
    ref = load_model_card(float_model)
    assert [c.name for c in loaded.classes] == [c.name for c in ref.classes]
    assert (loaded.input_height, loaded.input_width, loaded.score_type) == (H, W, ref.score_type)
    assert loaded.tau == ref.tau and "densehybrid calibrate" in loaded.quantization["tau"]
    q = loaded.quantization
    assert q["method"] == "minmax" and q["per_channel"] is True
    assert q["calibration"]["frames"] == FRAMES and q["calibration"]["source"] == "synthetic"
    assert q["calibration"]["fingerprint"] == CalibrationBatches("synthetic", FRAMES, (H, W)).fingerprint()
    assert q["reference"]["sha256"] == ref.sha256
    assert loaded.metrics == {}  # the float model's numbers are not this graph's
    assert loaded.data_sources == SOURCES  # trained on the same data, under the same terms
    summary = quantized_node_summary(out)
    # Float: the two heads' last convolutions and the first nine (stem and blocks 0-2 of EfficientNet-Lite0).
    assert summary["int8_convolutions"] > 40 and summary["float_convolutions"] == 2 + 9
    assert len(q["float_nodes"]["first_convolutions"]) == 9 and q["float_first_convolutions"] == 9


def test_score_head_and_input_normalisation_stay_float(int8):
    out, card = int8
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}
    head = card.quantization["float_nodes"]["score_head"]
    by_name = {n.name: n for n in graph.node}
    kinds = {by_name[n].op_type for n in head}
    # This graph has no raw outputs: the head is found from the last convolutions, ArgMax of the class id included.
    assert {"Conv", "ArgMax", "Exp", "Softplus", "Resize"} <= kinds
    for name in head:
        for t in by_name[name].input:
            src = producers.get(t)
            assert src is None or src.op_type != "DequantizeLinear" or by_name[name].op_type == "Conv" and \
                t == by_name[name].input[0], f"{name} reads a dequantized tensor {t} other than its conv input"
    for n in graph.node:  # nothing in the head is quantized after it: no QuantizeLinear reads a head output
        if n.op_type == "QuantizeLinear":
            assert producers[n.input[0]].name not in head
    assert [by_name[n].op_type for n in card.quantization["float_nodes"]["input"]] == ["Transpose", "Cast", "Mul",
                                                                                       "Sub"]
    assert not any(n.op_type in OPENVINO_UNSAFE_OPS and any(
        producers.get(t) is not None and producers[t].op_type == "DequantizeLinear" for t in n.input)
        and any(m.op_type == "QuantizeLinear" and m.input[0] in n.output for m in graph.node) for n in graph.node)


def test_float_nodes_of_the_shipped_graph():
    """Found from the real graph's connectivity, the same layers a TensorRT build pins to FP32, plus ArgMax."""
    model = onnx.load(str(SHIPPED))
    assert score_sources(model) == ("logits", "ood_logit")
    keep = float_nodes(model)
    head = set(keep["score_head"])
    assert {"/class_head/class_head.2/Conv", "/ood_head/ood_head.2/Conv", "/ArgMax", "/ReduceLogSumExp",
            "/Softplus"} <= head
    assert not any(n.startswith(("/_blocks", "/decoder", "/_conv_stem/Conv")) for n in head)
    assert keep["input"][:4] == ["/Transpose", "/Cast", "/Mul", "/Sub"]
    assert "stem" in float_nodes(model, exclude_stem=True)
    first = float_nodes(model, float_first=9)["first_convolutions"]
    assert first[0] == "/_conv_stem/Conv" and all(n.startswith("/_blocks.") for n in first[1:])
    assert max(int(n.split(".")[1].split("/")[0]) for n in first[1:]) == 2


def test_int8_agrees_with_fp32_on_synthetic_frames(float_model, int8):
    out, _ = int8
    a, b = create_backend(float_model, threads=1), create_backend(out, threads=1)
    # Frames the calibration did not see (calibration renders seeds from 3 << 32 on; these are other frames).
    frames = CalibrationBatches("synthetic", 12, (H, W))
    agree, corr = [], []
    for i in (7, 9, 11):
        rgb = frames.frame(i)
        ra, rb = a.infer(rgb), b.infer(rgb)
        assert rb.class_id.dtype == ra.class_id.dtype and rb.anomaly_score.dtype == np.float32
        agree.append(np.mean(ra.class_id == rb.class_id))
        corr.append(np.corrcoef(ra.anomaly_score.ravel(), rb.anomaly_score.ravel())[0, 1])
    # An untrained network has near-tied logits, so argmax flips far more than a trained one's (measured here:
    # ~0.87 agreement, score correlation ~0.99); a broken quantization (wrong scales, quantized head) falls far below.
    assert min(agree) > 0.7, agree
    assert min(corr) > 0.95, corr


@pytest.mark.slow  # a second quantization
def test_same_data_gives_the_same_int8_graph(float_model, int8, tmp_path):
    out, _ = int8
    again = quantize_model(float_model, tmp_path / "again.onnx", QuantizeSettings(frames=FRAMES), log=_quiet)
    assert again.sha256 == sha256_of(out)


def test_recalibrating_tau_keeps_the_quantization_section(int8, tmp_path):
    out, _ = int8
    for suffix in (".onnx", ".card.yaml"):
        (tmp_path / f"q{suffix}").write_bytes(out.with_name(out.stem + suffix).read_bytes())
    (tmp_path / "q.card.yaml").write_text((tmp_path / "q.card.yaml").read_text().replace("m_int8.onnx", "q.onnx"))
    result = CalibrationResult(tau=-4.5, target_tpr=0.95, achieved_tpr=0.95, fpr=0.1, split="val",
                               anomaly_pixels=10, inlier_pixels=90,
                               score_type=load_model_card(tmp_path / "q.onnx").score_type, images=3, seconds=1.0)
    card = write_calibration(tmp_path / "q.onnx", result)
    reloaded = load_model_card(tmp_path / "q.onnx")
    assert reloaded.tau == -4.5 and reloaded.quantization == card.quantization
    assert reloaded.quantization["method"] == "minmax"


def test_bad_requests_are_refused_naming_what_is_wrong(float_model, int8, tmp_path):
    out, _ = int8
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_model(out, tmp_path / "twice.onnx", QuantizeSettings(frames=1), log=_quiet)
    with pytest.raises(QuantizationError, match="overwrite the float model"):
        quantize_model(float_model, float_model, QuantizeSettings(frames=1), log=_quiet)
    with pytest.raises(QuantizationError, match="not in .*no_such_node"):
        quantize_model(float_model, tmp_path / "x.onnx", QuantizeSettings(frames=1, exclude=["no_such_node"]),
                       log=_quiet)
    with pytest.raises(ValueError, match="calibration method 'kl'"):
        QuantizeSettings(method="kl")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))  # nothing half-written
    done = subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "quantize", "--model", str(float_model),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "exists; pass --force" in done.stderr
