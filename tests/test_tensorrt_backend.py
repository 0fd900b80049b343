"""The `tensorrt` backend: its error path on this machine (real: no tensorrt here), and its control flow against FAKE
tensorrt/pycuda modules (tests/fake_tensorrt.py).

The fake-module tests check only what the project does: the engine policy at construction (rebuild, refuse, an
engine TensorRT cannot deserialize), the order of the per-frame calls (one upload, one enqueue, the downloads, ONE
synchronisation), that the bytes reach the right outputs at the input's resolution, that results do not alias the
reused page-locked buffers, and that close() frees every CUDA resource. The fake engine's outputs are a fixed
pattern of the input, not a segmentation: these tests never stand for "TensorRT works" (test_tensorrt_gpu.py).
"""
import dataclasses

import numpy as np
import pytest

import fake_tensorrt as fake
from densehybrid_ros.runtime import create_backend, resolve_card
from densehybrid_ros.runtime.engine_cache import EngineStaleError, read_sidecar, write_engine
from densehybrid_ros.runtime.tensorrt_backend import TensorRTOptions, missing_requirements

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"


@pytest.fixture(scope="module")
def card():
    return resolve_card(SHIPPED)


def _frame(h=512, w=1024, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected(rgb):
    return (rgb[..., 0] // 20) % 14, rgb[..., 1].astype(np.float32) / 10 - 5


def test_without_tensorrt_the_backend_says_what_is_missing_and_how_to_get_it():
    """Real: this machine has no tensorrt, pycuda or GPU."""
    missing = missing_requirements()
    if not missing:
        pytest.skip("tensorrt + pycuda + a GPU are present here")
    with pytest.raises(RuntimeError) as e:
        create_backend(SHIPPED, backend="tensorrt", precision="int8", engine_policy="refuse")
    msg = str(e.value)
    assert "needs tensorrt + pycuda + a CUDA GPU" in msg and f"missing here: {', '.join(missing)}" in msg
    assert "make install-tensorrt" in msg and "docs/JETSON.md" in msg


@pytest.mark.parametrize("options, message", [
    ({"precision": "int4"}, "precision='int4'"),
    ({"engine_policy": "maybe"}, "engine_policy='maybe'"),
    ({"dla_core": 0, "precision": "fp32"}, "DLA runs FP16 and INT8 only"),
    ({"cuda_binding": "opencl"}, "cuda_binding='opencl'"),
    ({"device": -1}, "device must be"),
])
def test_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        TensorRTOptions(**options)


def test_unknown_options_are_named():
    with pytest.raises(ValueError, match="unknown option.*'engine_path'"):
        create_backend(SHIPPED, backend="tensorrt", engine_path="x")


def _backend(card, tmp_path, monkeypatch, **options):
    fake.install(monkeypatch, **{k: options.pop(k) for k in ("version", "num_dla_cores") if k in options})
    options.setdefault("engine_cache_dir", str(tmp_path))
    options.setdefault("warmup", 1)
    return create_backend(card, backend="tensorrt", **options)


def test_an_int8_qdq_graph_is_refused_with_the_way_to_int8_on_the_gpu(card):
    """Real, no fake needed: the refusal comes before any TensorRT import. `densehybrid quantize` writes uint8
    activations with zero points, which TensorRT's ONNX parser refuses (symmetric quantization only)."""
    from densehybrid_ros.runtime.base import ModelLoadError

    qdq = dataclasses.replace(card, quantization={"method": "minmax", "activations": "uint8 asymmetric"})
    with pytest.raises(ModelLoadError, match=r"densehybrid_lite0_synthetic\.onnx is an INT8 QDQ graph.*"
                                             r"engine_precision: int8"):
        create_backend(qdq, backend="tensorrt")


def test_a_dla_engine_runs_on_the_dla_core_it_was_built_for(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch, precision="fp16", dla_core=1, engine_policy="rebuild",
                       num_dla_cores=2)
    try:
        assert backend._engine.runs_on_dla_core == 1
    finally:
        backend.close()


def test_rebuild_policy_builds_a_missing_engine_then_segments_through_it(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        engine = tmp_path / "densehybrid_lite0_synthetic.fp16.engine"
        assert backend.engine_path == engine and read_sidecar(engine).key.precision == "fp16"
        assert "build_serialized_network" in fake.names()
        rgb = _frame()
        result = backend.infer(rgb)
        class_id, score = _expected(rgb)
        np.testing.assert_array_equal(result.class_id, class_id)
        np.testing.assert_array_equal(result.anomaly_score, score)
        assert result.class_id.dtype == np.uint8 and result.anomaly_score.dtype == np.float32
        assert result.logits.shape == (14, 128, 256) and result.ood_logit.shape == (128, 256)
    finally:
        backend.close()


def test_one_synchronisation_per_frame_after_every_copy_and_the_enqueue(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        fake.CALLS.clear()
        backend.infer(_frame())
        frame_calls = [n for n in fake.names() if n not in ("ctx_push", "ctx_pop")]
        assert frame_calls == ["htod_async", "execute_async_v3"] + ["dtoh_async"] * 5 + ["synchronize"]
    finally:
        backend.close()


def test_frames_of_another_size_are_resized_and_results_come_back_at_their_size(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        result = backend.infer(_frame(256, 512))
        assert result.shape == (256, 512) and result.anomaly_score.shape == (256, 512)
    finally:
        backend.close()


def test_results_do_not_alias_the_reused_host_buffers(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        a_in, b_in = _frame(seed=1), _frame(seed=2)
        a = backend.infer(a_in)
        backend.infer(b_in)
        np.testing.assert_array_equal(a.class_id, _expected(a_in)[0])
    finally:
        backend.close()


def test_same_input_checks_as_every_backend(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        with pytest.raises(ValueError, match="expected dtype uint8"):
            backend.infer(np.zeros((512, 1024, 3), np.float32))
        with pytest.raises(ValueError, match="expected 3 channels"):
            backend.infer(np.zeros((512, 1024, 4), np.uint8))
    finally:
        backend.close()


def test_close_frees_every_cuda_resource(card, tmp_path, monkeypatch):
    backend = _backend(card, tmp_path, monkeypatch)
    assert fake.LIVE["device"] and fake.LIVE["host"] and fake.LIVE["contexts"] == 1
    backend.close()
    assert not fake.LIVE["device"] and not fake.LIVE["host"] and fake.LIVE["contexts"] == 0
    with pytest.raises(RuntimeError, match="was closed"):
        backend.infer(_frame())
    backend.close()  # idempotent


def test_refuse_policy_names_what_differs_and_builds_nothing(card, tmp_path, monkeypatch):
    _backend(card, tmp_path, monkeypatch).close()  # a valid engine for TensorRT 10.3.0
    with pytest.raises(EngineStaleError) as e:
        _backend(card, tmp_path, monkeypatch, version="10.4.0", engine_policy="refuse")
    msg = str(e.value)
    assert "TensorRT version: engine built for 10.3.0, now 10.4.0" in msg
    assert "densehybrid build-engine --model models/densehybrid_lite0_synthetic.onnx --precision fp16" in msg
    assert "build_serialized_network" not in fake.names() and "deserialize_cuda_engine" not in fake.names()
    assert fake.LIVE["contexts"] == 0, "a failed construction releases the CUDA context"


def test_rebuild_policy_replaces_a_stale_engine(card, tmp_path, monkeypatch):
    _backend(card, tmp_path, monkeypatch).close()
    backend = _backend(card, tmp_path, monkeypatch, version="10.4.0")
    try:
        assert read_sidecar(backend.engine_path).key.tensorrt_version == "10.4.0"
    finally:
        backend.close()


def _undeserializable_engine(card, tmp_path, monkeypatch):
    """An engine whose sidecar matches but whose bytes TensorRT rejects."""
    good = _backend(card, tmp_path, monkeypatch)
    path = good.engine_path
    good.close()
    write_engine(path, b"\x00garbage", read_sidecar(path).key)
    return path


def test_an_engine_tensorrt_cannot_deserialize_is_refused_with_the_fix(card, tmp_path, monkeypatch):
    _undeserializable_engine(card, tmp_path, monkeypatch)
    with pytest.raises(EngineStaleError, match="(?s)cannot deserialize.*densehybrid build-engine"):
        _backend(card, tmp_path, monkeypatch, engine_policy="refuse")
    assert fake.LIVE["contexts"] == 0


def test_an_engine_tensorrt_cannot_deserialize_is_rebuilt(card, tmp_path, monkeypatch):
    path = _undeserializable_engine(card, tmp_path, monkeypatch)
    backend = _backend(card, tmp_path, monkeypatch)
    try:
        assert fake.calls("deserialize_cuda_engine")[0] == len(b"\x00garbage")
        assert "build_serialized_network" in fake.names()
        assert path.read_bytes() != b"\x00garbage"
    finally:
        backend.close()


def test_an_explicit_engine_file_is_used_as_given(card, tmp_path, monkeypatch):
    _backend(card, tmp_path, monkeypatch).close()
    src = tmp_path / "densehybrid_lite0_synthetic.fp16.engine"
    backend = _backend(card, tmp_path / "elsewhere", monkeypatch, engine=str(src), engine_policy="refuse")
    try:
        assert backend.engine_path == src and "build_serialized_network" not in fake.names()
    finally:
        backend.close()


def test_a_card_for_another_model_makes_the_engine_stale(card, tmp_path, monkeypatch):
    _backend(card, tmp_path, monkeypatch).close()
    other = dataclasses.replace(card, sha256="0" * 64)
    with pytest.raises(EngineStaleError, match="ONNX model sha256: engine built for 21c69bedc73e"):
        fake.install(monkeypatch)
        create_backend(other, backend="tensorrt", engine_cache_dir=str(tmp_path), engine_policy="refuse")
