"""`densehybrid build-engine` (argument checks, --check, the no-TensorRT path) and the TensorRT part of `densehybrid
doctor`, on this machine (no tensorrt, no GPU).

The last tests drive the whole command against FAKE tensorrt/pycuda modules (tests/fake_tensorrt.py) to check its
control flow only (build, "up to date", --force, the smoke run through the backend); they do not show that TensorRT
builds this model.
"""
import pytest

import fake_tensorrt as fake
from densehybrid_ros.cli import main
from densehybrid_ros.cli.doctor import FAIL, INFO, Report
from densehybrid_ros.cli.doctor_tensorrt import check_tensorrt, node_settings
from densehybrid_ros.runtime.engine_cache import read_sidecar
from densehybrid_ros.runtime.tensorrt_backend import missing_requirements

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"
NO_TENSORRT = bool(missing_requirements())


def build_engine(*args):
    return main(["build-engine", *map(str, args)])


@pytest.mark.parametrize("args, message", [
    (["--calib-frames", "0"], "--calib-frames 0: expected an integer in [1, 10000]"),
    (["--workspace", "8"], "--workspace 8: expected MB"),
    (["--dla-core", "9"], "--dla-core 9: expected a DLA core index"),
    (["--dla-core", "0", "--precision", "fp32"], "DLA runs FP16 and INT8 only"),
    (["--precision", "int8", "--calib-data", "no/such/folder"], "--calib-data no/such/folder: not a folder"),
    (["--min-shape", "256x512"], "go together: give all three"),
    (["--min-shape", "256x512", "--opt-shape", "512x1024", "--max-shape", "1080x1920"],
     "apply to dynamic-size graphs"),
    (["--min-shape", "2x256x512x3", "--opt-shape", "512x1024", "--max-shape", "1080x1920"], "one RGB image"),
    (["--min-shape", "big", "--opt-shape", "512x1024", "--max-shape", "1080x1920"], "expected HxW or 1xHxWx3"),
    (["--min-shape", "512x1024", "--opt-shape", "256x512", "--max-shape", "1080x1920"], "min <= opt <= max"),
    (["--runtime", "onnxruntime", "--precision", "best"], "precision best is not an option"),
])
def test_invalid_arguments_are_named_before_anything_runs(args, message, capsys, tmp_path):
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("densehybrid build-engine: error:") and message in err
    assert not list(tmp_path.iterdir())


def test_a_missing_model_is_named(capsys, tmp_path):
    assert build_engine("--model", tmp_path / "none.onnx") == 2
    assert "model file not found" in capsys.readouterr().err


def test_bad_choices_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_engine("--model", SHIPPED, "--precision", "int4")
    assert "invalid choice: 'int4'" in capsys.readouterr().err


@pytest.mark.skipif(not NO_TENSORRT, reason="tensorrt + pycuda + a GPU are present here")
def test_without_tensorrt_nothing_is_written_and_the_reason_given(capsys, tmp_path):
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path) == 1
    err = capsys.readouterr().err
    assert "cannot build here: missing tensorrt" in err and "No engine was written" in err
    assert not list(tmp_path.iterdir())


def test_check_lists_why_and_the_fix(capsys, tmp_path):
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--check") == 1
    out = capsys.readouterr().out
    assert f"no engine file {tmp_path}/densehybrid_lite0_synthetic.fp16.engine" in out
    assert "fix: densehybrid build-engine --model models/densehybrid_lite0_synthetic.onnx --precision fp16" in out


def test_doctor_on_this_machine_reports_each_gap_with_what_to_do(capsys, tmp_path):
    report = Report()
    check_tensorrt(report, None, params_file=tmp_path / "none.yaml")
    out = capsys.readouterr().out
    if NO_TENSORRT:
        assert f"[{INFO:>4}] tensorrt: not installed; on a Jetson: JetPack's TensorRT bindings" in out
        assert "make install-tensorrt" in out
        assert "GPU: no CUDA GPU found" in out
    assert "engine (fp16, defaults)" in out or "engine: no configured model" in out
    assert report.failures == 0, "TensorRT is optional while the node runs onnxruntime"


def test_doctor_fails_when_the_node_is_configured_for_tensorrt_and_it_is_missing(capsys, tmp_path):
    params = tmp_path / "detector.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    backend: tensorrt\n    model: {SHIPPED}\n"
                      f"    engine_policy: refuse\n    engine_cache_dir: {tmp_path}\n")
    assert node_settings(params)["backend"] == "tensorrt"
    report = Report()
    check_tensorrt(report, None, params_file=params)
    out = capsys.readouterr().out
    if NO_TENSORRT:
        assert f"[{FAIL}] tensorrt" in out and f"[{FAIL}] GPU" in out
    assert f"[{FAIL}] engine (fp16, {params})" in out
    assert "the node will refuse to start" in out and "densehybrid build-engine --model" in out
    assert report.failures >= 1


def test_doctor_command_runs_here(capsys):
    assert main(["doctor", "--no-infer"]) == 0
    out = capsys.readouterr().out
    assert "GPU" in out and "engine (" in out


# -- against the fake modules: control flow only ----------------------------------------------------------------

def test_build_then_up_to_date_then_force(capsys, tmp_path, monkeypatch):
    fake.install(monkeypatch)
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--build-only") == 0
    engine = tmp_path / "densehybrid_lite0_synthetic.fp16.engine"
    assert read_sidecar(engine).key.gpu_name == fake.FAKE_GPU
    assert (tmp_path / "densehybrid_lite0_synthetic.sm87.timing.cache").is_file()
    out = capsys.readouterr().out
    assert "score head pinned to FP32" in out and "build: done" in out
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--build-only") == 0
    assert "is up to date" in capsys.readouterr().out
    fake.CALLS.clear()
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--build-only", "--force") == 0
    assert "build_serialized_network" in fake.names()
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--check") == 0
    assert "matches this machine and model" in capsys.readouterr().out


def test_without_build_only_the_engine_is_loaded_and_run_through_the_backend(capsys, tmp_path, monkeypatch):
    fake.install(monkeypatch)
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path) == 0
    assert "engine loads and runs" in capsys.readouterr().out
    assert len(fake.calls("execute_async_v3")) == 23  # 3 warm-up + 20 timed frames
    assert not fake.LIVE["device"] and fake.LIVE["contexts"] == 0


def test_a_parser_error_is_printed_with_the_node_and_exit_1(capsys, tmp_path, monkeypatch):
    fake.install(monkeypatch, unsupported_ops=("ReduceLogSumExp",))
    assert build_engine("--model", SHIPPED, "--engine-cache-dir", tmp_path, "--build-only") == 1
    assert "'/ReduceLogSumExp' (ReduceLogSumExp)" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.engine"))


def test_doctor_checks_the_engine_of_the_nodes_default_model_not_the_first_card_by_name(capsys, tmp_path):
    # models/ holds the real-data and the synthetic model; an empty `model` parameter means DEFAULT_MODEL_NAME.
    import shutil
    from pathlib import Path

    from densehybrid_ros.cli.doctor_tensorrt import _configured_card
    from densehybrid_ros.ros.detector_node import DEFAULT_MODEL_NAME

    shipped = Path(SHIPPED)
    for name in ("a_first_by_name", Path(DEFAULT_MODEL_NAME).stem):
        shutil.copy(shipped, tmp_path / f"{name}.onnx")
        card = shipped.with_name(shipped.stem + ".card.yaml").read_text()
        (tmp_path / f"{name}.card.yaml").write_text(card.replace(f"model_file: {shipped.name}", f"model_file: {name}.onnx"))
    card = _configured_card({"model": ""}, tmp_path)
    assert card is not None and card.model_path() == tmp_path / DEFAULT_MODEL_NAME
    (tmp_path / DEFAULT_MODEL_NAME).unlink()
    assert _configured_card({"model": ""}, tmp_path) is None, "no guessing when the default is missing"
