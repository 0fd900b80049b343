"""Engine cache: the sidecar round trip, the key, every reason an engine is not used, and the rebuild|refuse policy.

No TensorRT is involved: the cache decides from files and the key alone, so all of it runs here. The "engine" bytes
are arbitrary; only their hash matters to the cache.
"""
import dataclasses
import json
import os

import pytest

from densehybrid_ros.runtime import resolve_card
from densehybrid_ros.runtime.engine_cache import (
    KEY_FIELDS, EngineError, EngineKey, EngineStaleError, Sidecar, build_command, check_engine, compare_keys,
    engine_path_for, key_digest, read_sidecar, resolve_engine, sha256_file, sidecar_path_for, write_atomic,
    write_engine,
)
from densehybrid_ros.runtime.tensorrt_engine import expected_key

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"

KEY = EngineKey(tensorrt_version="10.3.0", gpu_name="Orin (nvgpu)", compute_capability="8.7", precision="int8",
                input_shapes={"image": [1, 512, 1024, 3]}, onnx_sha256="a" * 64, calibration_cache_sha256="c" * 64,
                dla_core=None)

# One changed value per key field: each must be reported, by its own name.
CHANGES = {
    "tensorrt_version": "10.4.0",
    "gpu_name": "NVIDIA A100-SXM4-40GB",
    "compute_capability": "8.0",
    "precision": "fp16",
    "input_shapes": {"image": [1, 720, 1280, 3]},
    "onnx_sha256": "b" * 64,
    "calibration_cache_sha256": "d" * 64,
    "dla_core": 0,
    "runtime": "onnxruntime 1.31.1",
}


def test_every_key_field_has_a_change_case():
    assert set(CHANGES) == set(KEY_FIELDS) == {f.name for f in dataclasses.fields(EngineKey)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_key_difference_is_reported_by_name(name, tmp_path):
    engine = tmp_path / "m.int8.engine"
    write_engine(engine, b"serialized", KEY)
    current = dataclasses.replace(KEY, **{name: CHANGES[name]})
    if name == "precision":  # an fp16 key does not compare calibrations; keep this case about precision only
        current = dataclasses.replace(current, calibration_cache_sha256=None)
    check = check_engine(engine, current)
    assert check.status == "stale"
    assert [d.field for d in check.differences] == [name]
    assert KEY_FIELDS[name] in check.describe()


def test_every_difference_is_listed_not_just_the_first(tmp_path):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"serialized", KEY)
    current = dataclasses.replace(KEY, tensorrt_version="10.4.0", compute_capability="8.9", onnx_sha256="e" * 64)
    check = check_engine(engine, current)
    assert [d.field for d in check.differences] == ["tensorrt_version", "compute_capability", "onnx_sha256"]
    text = check.describe()
    assert "10.3.0" in text and "10.4.0" in text and "8.7" in text and "8.9" in text


def test_unknown_values_here_are_not_compared_but_precision_and_model_always_are():
    unknown = dataclasses.replace(KEY, tensorrt_version=None, gpu_name=None, compute_capability=None,
                                  calibration_cache_sha256=None)
    assert compare_keys(KEY, unknown) == []
    assert [d.field for d in compare_keys(KEY, dataclasses.replace(unknown, onnx_sha256="f" * 64))] == ["onnx_sha256"]


def test_a_calibration_change_does_not_invalidate_an_fp16_engine():
    fp16 = dataclasses.replace(KEY, precision="fp16", calibration_cache_sha256=None)
    assert compare_keys(fp16, dataclasses.replace(fp16, calibration_cache_sha256="9" * 64)) == []


def test_sidecar_round_trip_keeps_every_field(tmp_path):
    engine = tmp_path / "m.engine"
    written = write_engine(engine, b"serialized", KEY, model_name="m", onnx_path="models/m.onnx",
                           build={"workspace_mb": 512, "pinned_fp32_layers": ["/ReduceLogSumExp"]})
    read = read_sidecar(engine)
    assert read.key == KEY
    assert read.engine_sha256 == written.engine_sha256
    assert read.build["pinned_fp32_layers"] == ["/ReduceLogSumExp"]
    assert read.model_name == "m" and read.onnx_path == "models/m.onnx" and read.built_at
    assert Sidecar.from_json(read.to_json()).key == KEY


def test_engine_written_atomically_leaves_no_temporary_files(tmp_path):
    engine = tmp_path / "sub" / "m.engine"
    write_engine(engine, b"x" * 1000, KEY)
    assert sorted(p.name for p in engine.parent.iterdir()) == ["m.engine", "m.engine.json"]
    assert check_engine(engine, KEY).ok


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.engine"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.engine"]


def test_missing_engine(tmp_path):
    check = check_engine(tmp_path / "none.engine", KEY)
    assert check.status == "missing" and not check.ok


def test_engine_without_sidecar_is_not_trusted(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized")
    check = check_engine(engine, KEY)
    assert check.status == "no-sidecar"
    assert "not trusted" in check.describe()


def test_truncated_engine_is_caught_by_its_sha(tmp_path):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"serialized engine bytes", KEY)
    engine.write_bytes(b"serialized")  # cut short
    check = check_engine(engine, KEY)
    assert check.status == "corrupt"
    assert "truncated or replaced" in check.describe()


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something-else"}), "not a densehybrid engine sidecar"),
    (json.dumps({"format": "densehybrid-tensorrt-engine", "version": 99}), "sidecar version 99"),
    (json.dumps({"format": "densehybrid-tensorrt-engine", "version": 1}), "bad-sidecar"),
])
def test_unreadable_sidecars_are_named(tmp_path, content, reason):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"serialized", KEY)
    sidecar_path_for(engine).write_text(content)
    check = check_engine(engine, KEY)
    assert check.status == "bad-sidecar"
    assert reason in check.describe() or reason == check.status


def test_refuse_policy_names_every_difference_and_the_fix_command(tmp_path):
    engine = tmp_path / "m.int8.engine"
    write_engine(engine, b"serialized", KEY)
    current = dataclasses.replace(KEY, tensorrt_version="10.4.0", gpu_name="Other GPU")
    command = build_command("models/m.onnx", "int8")
    with pytest.raises(EngineStaleError) as e:
        resolve_engine(engine, current, "refuse", rebuild=lambda: pytest.fail("refuse must not build"),
                       command=command)
    msg = str(e.value)
    assert "TensorRT version: engine built for 10.3.0, now 10.4.0" in msg
    assert "GPU: engine built for Orin (nvgpu), now Other GPU" in msg
    assert "densehybrid build-engine --model models/m.onnx --precision int8" in msg


def test_refuse_policy_on_a_missing_engine_says_how_to_build_it(tmp_path):
    with pytest.raises(EngineStaleError, match="(?s)no engine file .*densehybrid build-engine --model m.onnx"):
        resolve_engine(tmp_path / "m.engine", KEY, "refuse", rebuild=lambda: None,
                       command=build_command("m.onnx", "fp16"))


def test_rebuild_policy_rebuilds_once_and_rechecks(tmp_path):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"old", dataclasses.replace(KEY, tensorrt_version="8.6.1"))
    built, messages = [], []

    def rebuild():
        built.append(1)
        write_engine(engine, b"new", KEY)

    check = resolve_engine(engine, KEY, "rebuild", rebuild, command="cmd", log=messages.append)
    assert check.ok and built == [1]
    assert "engine built for 8.6.1, now 10.3.0" in messages[0] and "cmd" in messages[0]


def test_a_rebuild_that_recalibrates_is_checked_against_the_new_calibration(tmp_path):
    # The INT8 engine was built with an older calibration cache; the rebuild calibrates again and rewrites it.
    engine, calib = tmp_path / "m.int8.engine", tmp_path / "m.int8.calib"
    calib.write_bytes(b"old table")
    write_engine(engine, b"old", dataclasses.replace(KEY, precision="int8", calibration_cache_sha256="0" * 64))

    def key():
        return dataclasses.replace(KEY, precision="int8", calibration_cache_sha256=sha256_file(calib))

    def rebuild():
        calib.write_bytes(b"new table")
        write_engine(engine, b"new", key())

    check = resolve_engine(engine, key, "rebuild", rebuild, command="cmd", log=lambda m: None)
    assert check.ok and check_engine(engine, key()).ok


def test_rebuild_that_produces_the_wrong_engine_is_an_error(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(EngineError, match="still not usable"):
        resolve_engine(engine, KEY, "rebuild", lambda: write_engine(engine, b"x", dataclasses.replace(
            KEY, precision="fp32")), command="cmd", log=lambda m: None)


def test_unknown_policy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="engine_policy='sometimes'"):
        resolve_engine(tmp_path / "m.engine", KEY, "sometimes", lambda: None, command="cmd")


def test_engine_file_names_carry_precision_and_dla(tmp_path):
    assert engine_path_for("models/m.onnx", "fp16").as_posix() == "models/m.fp16.engine"
    assert engine_path_for("models/m.card.yaml", "int8", dla_core=1).as_posix() == "models/m.int8.dla1.engine"
    assert engine_path_for("models/m.onnx", "fp32", cache_dir=tmp_path) == tmp_path / "m.fp32.engine"


def test_key_digest_is_stable_and_distinguishes_keys():
    assert key_digest(KEY) == key_digest(EngineKey.from_dict(json.loads(json.dumps(KEY.as_dict()))))
    assert key_digest(KEY) != key_digest(dataclasses.replace(KEY, precision="fp16"))


def test_expected_key_of_the_shipped_model_uses_its_card():
    card = resolve_card(SHIPPED)
    key = expected_key(card, "fp16", "10.3.0", "gpu", "8.7")
    assert key.onnx_sha256 == card.sha256
    assert key.input_shapes == {"image": [1, 512, 1024, 3]}


def test_a_card_whose_sha_differs_from_the_engines_onnx_makes_it_stale(tmp_path):
    """The card (and so the ONNX it vouches for) changed since the engine was built: the engine runs another model."""
    card = resolve_card(SHIPPED)
    engine = tmp_path / "m.fp16.engine"
    write_engine(engine, b"serialized", expected_key(card, "fp16", "10.3.0", "gpu", "8.7"))
    replaced = dataclasses.replace(card, sha256="0" * 64)
    check = check_engine(engine, expected_key(replaced, "fp16", "10.3.0", "gpu", "8.7"))
    assert [d.field for d in check.differences] == ["onnx_sha256"]
    assert "ONNX model sha256" in check.describe()
