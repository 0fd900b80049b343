"""onnxruntime's GPU path: the TensorRT/CUDA execution provider options (a pure function) and the keyed engine cache
folder that gives the TensorRT provider's own engine cache the same staleness rules as native engines.

This onnxruntime build has no GPU providers, so no GPU session is created here; the options are checked as data
and the cache folder's policy on disk. A real session is created with the CPU entry of the same option list.
"""
import dataclasses
import json

import onnxruntime as ort
import pytest

from densehybrid_ros.runtime import create_backend, resolve_card
from densehybrid_ros.runtime.engine_cache import EngineStaleError
from densehybrid_ros.runtime.onnxruntime_backend import (
    CUDA_PROVIDER, ORT_CACHE_SIDECAR, ORT_CALIBRATION_TABLE, TRT_PROVIDER, OnnxRuntimeOptions, gpu_provider_options,
    ort_cache_root, ort_engine_key, prepare_trt_cache,
)

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"
ALL = [TRT_PROVIDER, CUDA_PROVIDER, "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def card():
    return resolve_card(SHIPPED)


def test_fp16_options_enable_fp16_and_both_caches(tmp_path):
    out = dict(gpu_provider_options(ALL, OnnxRuntimeOptions(precision="fp16", workspace_mb=1024), tmp_path))
    trt = out[TRT_PROVIDER]
    assert trt["trt_fp16_enable"] is True and trt["trt_int8_enable"] is False
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_timing_cache_enable"] is True and trt["trt_timing_cache_path"] == str(tmp_path)
    assert trt["trt_max_workspace_size"] == 1024 << 20
    assert "trt_dla_enable" not in trt
    assert out[CUDA_PROVIDER] == {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}
    assert out["CPUExecutionProvider"] == {}


def test_fp32_options_enable_neither_reduced_precision(tmp_path):
    trt = dict(gpu_provider_options(ALL, OnnxRuntimeOptions(precision="fp32"), tmp_path))[TRT_PROVIDER]
    assert trt["trt_fp16_enable"] is False and trt["trt_int8_enable"] is False


@pytest.mark.parametrize("precision", ["int8", "best"])
def test_int8_options_use_the_native_calibration_table(tmp_path, precision):
    trt = dict(gpu_provider_options(ALL, OnnxRuntimeOptions(precision=precision), tmp_path))[TRT_PROVIDER]
    assert trt["trt_int8_enable"] is True and trt["trt_fp16_enable"] is True
    assert trt["trt_int8_calibration_table_name"] == ORT_CALIBRATION_TABLE
    assert trt["trt_int8_use_native_calibration_table"] is True


def test_dla_device_and_dynamic_graph_options(tmp_path):
    out = dict(gpu_provider_options(ALL, OnnxRuntimeOptions(dla_core=1, device=2), tmp_path, dynamic_input=True))
    assert out[TRT_PROVIDER]["trt_dla_enable"] is True and out[TRT_PROVIDER]["trt_dla_core"] == 1
    assert out[TRT_PROVIDER]["device_id"] == 2
    assert out[CUDA_PROVIDER] == {"device_id": 2, "cudnn_conv_algo_search": "HEURISTIC"}


def test_options_keep_the_provider_order():
    assert [p for p, _ in gpu_provider_options(ALL, OnnxRuntimeOptions(), None)] == ALL
    assert TRT_PROVIDER not in dict(gpu_provider_options([CUDA_PROVIDER], OnnxRuntimeOptions(), None))


@pytest.mark.parametrize("options, message", [
    ({"precision": "int4"}, "precision='int4'"),
    ({"engine_policy": "never"}, "engine_policy='never'"),
    ({"device": -1}, "device must be"),
    ({"workspace_mb": 1}, "workspace_mb must be"),
])
def test_gpu_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        OnnxRuntimeOptions(**options)


def test_the_cpu_session_accepts_the_option_list(card):
    """A real session from the same (provider, options) list: what this install can run."""
    backend = create_backend(card, providers=["cpu"], precision="fp16", threads=1, warmup=0)
    assert backend.providers == ["CPUExecutionProvider"] and backend.engine_cache_dir is None
    backend.close()


def _key(card, options, trt="10.3.0", gpu="Orin"):
    return ort_engine_key(card, options, trt, gpu, "8.7")


def test_the_cache_folder_is_named_by_the_key_and_reused(card, tmp_path):
    options = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path))
    folder = prepare_trt_cache(card, options, _key(card, options))
    assert folder.parent == ort_cache_root(card, options) == tmp_path / "densehybrid_lite0_synthetic.ort-trt"
    recorded = json.loads((folder / ORT_CACHE_SIDECAR).read_text())
    assert recorded["onnx_sha256"] == card.sha256 and recorded["runtime"] == f"onnxruntime {ort.__version__}"
    (folder / "TensorrtExecutionProvider_cache.engine").write_bytes(b"built by onnxruntime")
    assert prepare_trt_cache(card, options, _key(card, options)) == folder
    assert (folder / "TensorrtExecutionProvider_cache.engine").is_file()


def test_refuse_never_lets_the_session_build_a_missing_or_unfinished_cache(card, tmp_path):
    refuse = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path), engine_policy="refuse")
    with pytest.raises(EngineStaleError, match=r"(?s)no onnxruntime TensorRT engine cache .*build-engine"):
        prepare_trt_cache(card, refuse, _key(card, refuse))
    assert not (tmp_path / "densehybrid_lite0_synthetic.ort-trt").exists()  # nothing prepared for a build
    # A build cut short: the key was written, no engine followed.
    folder = prepare_trt_cache(card, OnnxRuntimeOptions(engine_cache_dir=str(tmp_path)), _key(card, refuse))
    with pytest.raises(EngineStaleError, match="holds no engine"):
        prepare_trt_cache(card, refuse, _key(card, refuse))
    (folder / "TensorrtExecutionProvider_cache.engine").write_bytes(b"built by onnxruntime")
    assert prepare_trt_cache(card, refuse, _key(card, refuse)) == folder


def test_an_outdated_cache_is_refused_with_every_difference(card, tmp_path):
    options = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path), engine_policy="refuse")
    prepare_trt_cache(card, OnnxRuntimeOptions(engine_cache_dir=str(tmp_path)), _key(card, options))
    with pytest.raises(EngineStaleError) as e:
        prepare_trt_cache(card, options, _key(card, options, trt="10.4.0", gpu="Thor"))
    msg = str(e.value)
    assert "TensorRT version: engine built for 10.3.0, now 10.4.0" in msg and "GPU: engine built for Orin" in msg
    assert "--runtime onnxruntime" in msg


def test_an_outdated_cache_is_replaced_under_rebuild(card, tmp_path):
    options = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path))
    old = prepare_trt_cache(card, options, _key(card, options))
    (tmp_path / "densehybrid_lite0_synthetic.ort-trt" / "not-ours").mkdir()
    new = prepare_trt_cache(card, options, _key(card, options, trt="10.4.0"))
    assert new != old and not old.exists() and new.is_dir()
    assert (tmp_path / "densehybrid_lite0_synthetic.ort-trt" / "not-ours").is_dir(), "only keyed folders go"


def test_another_model_gets_another_cache_folder(card, tmp_path):
    options = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path))
    other = dataclasses.replace(card, sha256="0" * 64)
    assert prepare_trt_cache(card, options, _key(card, options)) != \
        prepare_trt_cache(other, options, _key(other, options))


def test_int8_needs_the_calibration_cache_and_copies_it_in(card, tmp_path):
    options = OnnxRuntimeOptions(engine_cache_dir=str(tmp_path), precision="int8")
    with pytest.raises(FileNotFoundError, match="densehybrid build-engine .* --precision int8"):
        prepare_trt_cache(card, options, _key(card, options))
    (tmp_path / "densehybrid_lite0_synthetic.int8.calib").write_bytes(b"TRT-10300-EntropyCalibration2\n")
    key = _key(card, options)
    assert key.calibration_cache_sha256 is not None
    folder = prepare_trt_cache(card, options, key)
    assert (folder / ORT_CALIBRATION_TABLE).read_bytes() == b"TRT-10300-EntropyCalibration2\n"
