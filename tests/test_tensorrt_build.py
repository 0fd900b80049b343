"""Engine building (runtime/tensorrt_engine.py): what the project asks TensorRT for, in which order, and what it does
when TensorRT fails.

Every test except the first runs against FAKE tensorrt/pycuda modules (tests/fake_tensorrt.py). They check the
project's control flow only: the flags set per precision, the layers pinned to FP32, the parser's errors reaching
the user with the node named, calibration and its cache, timing cache, DLA, progress, and that nothing is written
when a build fails. They do NOT show that TensorRT builds or runs this model: no TensorRT code runs here (the GPU
tests in test_tensorrt_gpu.py do that on a CUDA machine).
"""
import dataclasses
import json

import onnx
import pytest

import fake_tensorrt as fake
from densehybrid_ros.runtime import resolve_card
from densehybrid_ros.runtime.calibration import CalibrationBatches
from densehybrid_ros.runtime.engine_cache import check_engine, read_sidecar, sha256_file
from densehybrid_ros.runtime.tensorrt_engine import (
    BuildSettings, EngineBuildError, LayerView, OnnxParseError, PhaseLog, build_and_write, expected_key,
    head_sources, score_head_layers,
)

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"
SCORE_HEAD_OPS = {"ReduceLogSumExp", "ReduceMax", "Exp", "Min", "Abs", "Neg", "Softplus"}


@pytest.fixture(scope="module")
def card():
    return resolve_card(SHIPPED)


def _layers(path):
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    floats = {v.name for v in list(graph.value_info) + list(graph.output) + list(graph.input)
              if v.type.tensor_type.elem_type in (1, 10)}
    return [LayerView(n.name, n.op_type, tuple(n.input), tuple(n.output), all(o in floats for o in n.output))
            for n in graph.node if n.op_type != "Constant"]


@pytest.fixture(scope="module")
def onnx_layers():
    return _layers(SHIPPED)


def test_score_head_of_the_shipped_graph_is_what_gets_pinned(onnx_layers):
    """No fake here: the real graph's connectivity decides which layers stay in FP32."""
    pinned = score_head_layers(onnx_layers)
    kinds = {layer.name: layer.kind for layer in onnx_layers}
    assert SCORE_HEAD_OPS <= {kinds[n] for n in pinned}
    assert {"/class_head/class_head.2/Conv", "/ood_head/ood_head.2/Conv"} <= set(pinned)
    # The backbone, decoder and the integer class-id path stay free for FP16/INT8.
    assert not any(n.startswith(("/_blocks", "/decoder", "/_conv_stem")) for n in pinned)
    assert "/ArgMax" not in pinned and "/Cast_2" not in pinned
    assert len(pinned) < 0.1 * len(onnx_layers)


def test_a_graph_exported_without_raw_outputs_pins_its_score_head_too(onnx_layers, untrained_model):
    """The export default has no logits/ood_logit outputs: the head is found from its last convolutions."""
    assert head_sources(onnx_layers) == ("logits", "ood_logit")
    layers = _layers(untrained_model(64, 128))
    assert not {"logits", "ood_logit"} & {t for layer in layers for t in layer.outputs}
    sources = head_sources(layers)
    assert len(sources) == 2
    pinned = score_head_layers(layers, sources)
    kinds = {layer.name: layer.kind for layer in layers}
    # This exporter writes log-sum-exp out (ReduceMax, Exp, ReduceSum, Log) where the shipped graph has one node.
    assert SCORE_HEAD_OPS - {"ReduceLogSumExp"} <= {kinds[n] for n in pinned}
    score_producer = next(layer.name for layer in layers if "anomaly_score" in layer.outputs)
    float_producers = {layer.name for layer in layers if layer.float_outputs}
    assert score_producer in pinned or score_producer not in float_producers
    assert sum(kinds[n] == "Conv" for n in pinned) == 2  # the two heads' last convolutions
    assert not any(n.startswith(("/_blocks", "/decoder", "/_conv_stem")) for n in pinned)
    # Exactly the float layers of what `densehybrid quantize` keeps out of INT8 as the score head.
    from densehybrid_ros.runtime.quantize import float_nodes
    kept = float_nodes(onnx.load(str(untrained_model(64, 128))))["score_head"]
    assert set(pinned) == {n for n in kept if n in float_producers}


def _build(tmp_path, card, monkeypatch, precision="fp16", log=None, model=SHIPPED, **fake_options):
    trt, drv = fake.install(monkeypatch, **fake_options)
    settings = BuildSettings(precision=precision, timing_cache=tmp_path / "t.cache",
                             calibration=CalibrationBatches("synthetic", 2, (512, 1024))
                             if precision in ("int8", "best") else None,
                             calibration_cache=tmp_path / "m.int8.calib")
    engine = tmp_path / f"m.{precision}.engine"
    messages = [] if log is None else log
    result = build_and_write(engine, model, card, settings, trt=trt, gpu_name=fake.FAKE_GPU,
                             compute_capability="8.7", log=PhaseLog(messages.append))
    return engine, result, messages


def test_an_fp16_build_of_a_graph_without_raw_outputs_pins_its_score_head(tmp_path, monkeypatch, untrained_model):
    model = untrained_model(64, 128)
    _, result, messages = _build(tmp_path, resolve_card(model), monkeypatch, "fp16", model=model)
    layers = _layers(model)
    pinned = score_head_layers(layers, head_sources(layers))
    assert pinned and result.info["pinned_fp32_layers"] == pinned
    assert any(f"score head pinned to FP32: {len(pinned)} layers" in m for m in messages), messages


def test_fp16_build_sets_fp16_pins_the_score_head_and_writes_engine_and_sidecar(tmp_path, card, monkeypatch,
                                                                                  onnx_layers):
    engine, result, messages = _build(tmp_path, card, monkeypatch, "fp16")
    order = [n for n in fake.names() if n in ("create_network", "parse_from_file", "set_flag",
                                               "build_serialized_network")]
    assert order[:2] == ["create_network", "parse_from_file"] and order[-1] == "build_serialized_network"
    assert fake.calls("create_network") == [0]  # TensorRT 10: explicit batch is the only mode
    desc = fake.engine_description(engine)
    assert desc["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert desc["pinned"] == score_head_layers(onnx_layers)
    sidecar = read_sidecar(engine)
    assert sidecar.key == expected_key(card, "fp16", "10.3.0", fake.FAKE_GPU, "8.7")
    assert sidecar.build["pinned_fp32_layers"] == desc["pinned"]
    assert check_engine(engine, sidecar.key).ok


def test_fp32_build_sets_no_reduced_precision_and_pins_nothing(tmp_path, card, monkeypatch):
    engine, result, _ = _build(tmp_path, card, monkeypatch, "fp32")
    desc = fake.engine_description(engine)
    assert desc["flags"] == [] and desc["pinned"] == []


def test_progress_names_phases_with_elapsed_time_and_layer_count(tmp_path, card, monkeypatch):
    _, _, messages = _build(tmp_path, card, monkeypatch, "fp16")
    text = "\n".join(messages)
    for phase in ("parse:", "configure:", "build:", "write:"):
        assert phase in text
    assert "262 layers" in text  # the fake parser's layer count of the shipped graph
    assert "Building engine started (2 steps)" in text  # TensorRT 10 IProgressMonitor callbacks reach the log
    assert all(m.startswith("[") and " s] " in m for m in messages)


def test_tensorrt_8_networks_are_created_with_the_explicit_batch_flag(tmp_path, card, monkeypatch):
    _build(tmp_path, card, monkeypatch, "fp32", version="8.6.1")
    assert fake.calls("create_network") == [1]


def test_parser_errors_name_the_failing_node(tmp_path, card, monkeypatch):
    with pytest.raises(OnnxParseError) as e:
        _build(tmp_path, card, monkeypatch, "fp16", unsupported_ops=("Softplus",))
    msg = str(e.value)
    assert "'/Softplus' (Softplus)" in msg and "No importer registered for op: Softplus" in msg
    assert "UNSUPPORTED_NODE" in msg and SHIPPED in msg
    assert not list(tmp_path.glob("*.engine*"))


def test_a_failed_build_writes_nothing(tmp_path, card, monkeypatch):
    with pytest.raises(EngineBuildError, match="could not build the fp16 engine"):
        _build(tmp_path, card, monkeypatch, "fp16", build_fails=True)
    assert not list(tmp_path.glob("*.engine*"))


def test_int8_calibrates_then_reuses_its_cache_on_rebuild(tmp_path, card, monkeypatch):
    engine, _, first = _build(tmp_path, card, monkeypatch, "int8")
    assert len(fake.calls("htod")) == 2  # two calibration batches uploaded
    assert "calibrate: batch 2/2" in "\n".join(first)
    cache = tmp_path / "m.int8.calib"
    assert cache.read_bytes().startswith(b"TRT-FAKE-EntropyCalibration2")
    assert read_sidecar(engine).key.calibration_cache_sha256 == sha256_file(cache)
    assert not fake.LIVE["device"], "the calibrator's device buffer is freed after the build"
    assert fake.LIVE["contexts"] == 0, "the CUDA context the build retained for calibration is released"
    engine.unlink()
    _, result, second = _build(tmp_path, card, monkeypatch, "int8")
    assert fake.calls("htod") == [] and "reusing calibration cache" in "\n".join(second)
    assert result.info["calibration_cache_reused"] is True
    assert fake.engine_description(engine)["flags"] == ["INT8", "OBEY_PRECISION_CONSTRAINTS"]


def test_best_sets_fp16_and_int8(tmp_path, card, monkeypatch):
    engine, _, _ = _build(tmp_path, card, monkeypatch, "best")
    assert fake.engine_description(engine)["flags"] == ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"]


def test_int8_without_calibration_data_is_refused_before_building():
    with pytest.raises(ValueError, match="needs calibration data"):
        BuildSettings(precision="int8")


def test_timing_cache_is_saved_and_a_foreign_one_replaced(tmp_path, card, monkeypatch):
    (tmp_path / "t.cache").write_bytes(b"foreign")
    _, _, messages = _build(tmp_path, card, monkeypatch, "fp16")
    assert "made on another device" in "\n".join(messages)
    assert (tmp_path / "t.cache").read_bytes() == b"fake-timing-cache"


def test_dla_needs_a_device_with_dla_cores(tmp_path, card, monkeypatch):
    trt, _ = fake.install(monkeypatch, num_dla_cores=0)
    with pytest.raises(EngineBuildError, match="no DLA"):
        build_and_write(tmp_path / "e", SHIPPED, card, BuildSettings(precision="fp16", dla_core=0), trt=trt,
                        log=PhaseLog(lambda m: None))
    trt, _ = fake.install(monkeypatch, num_dla_cores=2)
    with pytest.raises(EngineBuildError, match="DLA cores 0..1"):
        build_and_write(tmp_path / "e", SHIPPED, card, BuildSettings(precision="fp16", dla_core=2), trt=trt,
                        log=PhaseLog(lambda m: None))
    build_and_write(tmp_path / "e", SHIPPED, card, BuildSettings(precision="fp16", dla_core=1), trt=trt,
                    log=PhaseLog(lambda m: None))
    desc = fake.engine_description(tmp_path / "e")
    assert desc["dla_core"] == 1 and "GPU_FALLBACK" in desc["flags"]
    assert read_sidecar(tmp_path / "e").key.dla_core == 1


def test_dla_with_fp32_is_rejected():
    with pytest.raises(ValueError, match="DLA runs FP16 and INT8 only"):
        BuildSettings(precision="fp32", dla_core=0)


def test_an_onnx_file_that_does_not_match_its_card_is_not_built(tmp_path, card, monkeypatch):
    trt, _ = fake.install(monkeypatch)
    wrong = dataclasses.replace(card, sha256="0" * 64)
    with pytest.raises(EngineBuildError, match="was replaced"):
        build_and_write(tmp_path / "e", SHIPPED, wrong, BuildSettings(), trt=trt, log=PhaseLog(lambda m: None))
    assert fake.calls("parse_from_file") == []


def test_shapes_for_a_fixed_graph_are_an_error(tmp_path, card, monkeypatch):
    trt, _ = fake.install(monkeypatch)
    shapes = {"image": ((1, 256, 512, 3), (1, 512, 1024, 3), (1, 512, 1024, 3))}
    with pytest.raises(EngineBuildError, match="fixed shape"):
        build_and_write(tmp_path / "e", SHIPPED, card, BuildSettings(shapes=shapes), trt=trt,
                        log=PhaseLog(lambda m: None))


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory, card):
    """The shipped graph with a dynamic H and W, and its card."""
    folder = tmp_path_factory.mktemp("dynamic")
    model = onnx.load(SHIPPED)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"
    path = folder / "dyn.onnx"
    onnx.save(model, str(path))
    dyn = dataclasses.replace(card, model_file="dyn.onnx", sha256=sha256_file(path), input_height=None,
                              input_width=None)
    dyn.save(folder / "dyn.card.yaml")
    return path, resolve_card(path)


def test_dynamic_graphs_need_min_opt_max_and_get_a_profile(tmp_path, dynamic_model, monkeypatch):
    path, card = dynamic_model
    trt, _ = fake.install(monkeypatch)
    with pytest.raises(EngineBuildError, match="dynamic shape .* give --min-shape"):
        build_and_write(tmp_path / "e", path, card, BuildSettings(), trt=trt, log=PhaseLog(lambda m: None))
    shapes = {"image": ((1, 256, 512, 3), (1, 512, 1024, 3), (1, 1080, 1920, 3))}
    build_and_write(tmp_path / "e", path, card, BuildSettings(shapes=shapes), trt=trt, log=PhaseLog(lambda m: None))
    assert fake.engine_description(tmp_path / "e")["profile"]["image"] == [list(s) for s in shapes["image"]]
    assert read_sidecar(tmp_path / "e").key.input_shapes == {
        "image": {"min": [1, 256, 512, 3], "opt": [1, 512, 1024, 3], "max": [1, 1080, 1920, 3]}}


def test_bad_shape_ranges_are_rejected():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BuildSettings(shapes={"image": ((1, 512, 1024, 3), (1, 256, 512, 3), (1, 1080, 1920, 3))})


def test_sidecar_is_plain_json_a_person_can_read(tmp_path, card, monkeypatch):
    engine, _, _ = _build(tmp_path, card, monkeypatch, "fp16")
    d = json.loads((tmp_path / "m.fp16.engine.json").read_text())
    for field in ("tensorrt_version", "gpu_name", "compute_capability", "precision", "input_shapes", "onnx_sha256",
                  "calibration_cache_sha256", "engine_sha256", "built_at"):
        assert field in d
