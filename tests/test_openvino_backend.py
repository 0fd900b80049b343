"""The OpenVINO backend on real exported graphs: the same contract and graph checks as onnxruntime, the same
outputs (the shipped graph included, whose ReduceLogSumExp OpenVINO 2026.4 misreads without our conversion), INT8 QDQ
graphs compile, `backend: auto` picks what this machine offers, and a machine without openvino gets a clear error."""
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from densehybrid_ros.ros.testing import export_untrained_model
from densehybrid_ros.runtime import ModelLoadError, create_backend, resolve_card
from densehybrid_ros.runtime.calibration import CalibrationBatches
from densehybrid_ros.runtime.selection import MachineFacts, choose_backend, machine_facts

# Found, not imported: importing OpenVINO at collection would load its runtime (and its TBB threads) into the
# process for every other test of the session.
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OPENVINO, reason="openvino not installed (optional: pip install -r "
                                                               "requirements/openvino.txt)")

SHIPPED = Path("models/densehybrid_lite0_synthetic.onnx")
H, W = 128, 256


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    export_untrained_model(root / "fixed.onnx", H, W, seed=5)
    export_untrained_model(root / "dynamic.onnx", H, W, seed=5, dynamic=True)
    return root


def _frames(size, n=2):
    batches = CalibrationBatches("synthetic", 6, size)
    return [batches.frame(i) for i in range(1, 1 + n)]


def _agree(a, b, rgb):
    ra, rb = a.infer(rgb), b.infer(rgb)
    assert rb.class_id.shape == ra.class_id.shape == rgb.shape[:2]
    assert rb.class_id.dtype == ra.class_id.dtype and rb.anomaly_score.dtype == np.float32
    return ra, rb


@needs_openvino
@pytest.mark.slow  # two exports (~15 s each on a quiet machine)
def test_parity_with_onnxruntime_on_fixed_and_dynamic_graphs(models):
    for name, sizes in (("fixed", [(H, W), (200, 300)]), ("dynamic", [(H, W), (96, 320)])):
        ref = create_backend(models / f"{name}.onnx", threads=1)
        ov = create_backend(models / f"{name}.onnx", backend="openvino", threads=1)
        assert ov.name == "openvino" and ov.execution_precision() == "f32"
        for size in sizes:
            for rgb in _frames(size, 1):
                ra, rb = _agree(ref, ov, rgb)
                assert np.mean(ra.class_id == rb.class_id) > 0.995
                assert np.corrcoef(ra.anomaly_score.ravel(), rb.anomaly_score.ravel())[0, 1] > 0.9999
                np.testing.assert_allclose(rb.confidence, ra.confidence, atol=1e-3)


@needs_openvino
def test_shipped_graph_scores_match_onnxruntime():
    """The shipped graph computes logsumexp with ReduceLogSumExp: without the backend's conversion OpenVINO
    2026.4 reduces it over every axis and the scores differ by ~10 nats while the class ids still agree."""
    card = resolve_card(SHIPPED)
    ref = create_backend(SHIPPED, threads=2)
    ov = create_backend(SHIPPED, backend="openvino", threads=2)
    rgb = _frames((512, 1024), 1)[0]
    ra, rb = _agree(ref, ov, rgb)
    assert np.array_equal(ra.class_id, rb.class_id)
    assert np.abs(ra.anomaly_score - rb.anomaly_score).max() < 1e-3
    assert np.mean((ra.anomaly_score > card.tau) != (rb.anomaly_score > card.tau)) < 1e-4
    np.testing.assert_allclose(rb.logits, ra.logits, atol=1e-3)


@needs_openvino
@pytest.mark.parametrize("axes, keepdims", [([1], 0), ([1], 1), ([2, 3], 0), (None, 1)])
def test_reduce_log_sum_exp_conversion_matches_onnxruntime(tmp_path, axes, keepdims):
    from densehybrid_ros.runtime.openvino_backend import core_with_fixes

    attrs = {"keepdims": keepdims, **({"axes": axes} if axes is not None else {})}
    node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "rlse.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    x = (np.random.default_rng(0).standard_normal((1, 5, 4, 6)) * 20).astype(np.float32)  # exp overflows unshifted
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = core_with_fixes().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@needs_openvino
@pytest.mark.slow  # a quantization and an OpenVINO compile in a child process
def test_int8_qdq_graph_compiles_and_agrees(models, tmp_path):
    """QDQ graphs of `densehybrid quantize` run on OpenVINO. Compiled in a child process first: QDQ pairs around
    Concat or BatchNormalization crash OpenVINO 2026.4 (segmentation fault), which must fail this test, not pytest."""
    from densehybrid_ros.runtime.quantize import QuantizeSettings, quantize_model

    out = tmp_path / "fixed_int8.onnx"
    quantize_model(models / "fixed.onnx", out, QuantizeSettings(frames=2), log=lambda *_: None)
    code = textwrap.dedent(f"""
        import numpy as np
        from densehybrid_ros.runtime import create_backend
        b = create_backend({str(out)!r}, backend="openvino", threads=1)
        print(b.infer(np.zeros(({H}, {W}, 3), np.uint8)).class_id.shape)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"OpenVINO on the INT8 graph exited {done.returncode}: {done.stderr[-2000:]}"
    ref = create_backend(out, threads=1)
    ov = create_backend(out, backend="openvino", threads=1)
    for rgb in _frames((H, W)):
        ra, rb = _agree(ref, ov, rgb)
        # Two INT8 implementations round differently at a few pixels; far above chance (1/14) and close to 1.
        assert np.mean(ra.class_id == rb.class_id) > 0.9
        assert np.corrcoef(ra.anomaly_score.ravel(), rb.anomaly_score.ravel())[0, 1] > 0.98


@needs_openvino
def test_backends_share_the_process_core_and_outlive_each_other(models):
    """With a Core per backend, released after compiling, the long test process that built many backends died of
    heap corruption, and with one Core it did not (docs/RELIABILITY.md entry 14); every backend compiles on it."""
    from densehybrid_ros.runtime.openvino_backend import core_with_fixes

    assert core_with_fixes() is core_with_fixes()
    first = create_backend(models / "fixed.onnx", backend="openvino", threads=1)
    second = create_backend(models / "dynamic.onnx", backend="openvino", threads=1)
    rgb = _frames((H, W), 1)[0]
    before = second.infer(rgb)
    first.close()
    after = second.infer(rgb)
    assert np.array_equal(before.class_id, after.class_id)
    np.testing.assert_array_equal(before.anomaly_score, after.anomaly_score)


@needs_openvino
def test_the_bytes_compiled_are_the_ones_the_card_vouches_for(models, tmp_path):
    import shutil

    from densehybrid_ros.config.validation import ConfigError

    for suffix in (".onnx", ".card.yaml"):
        shutil.copy(models / f"fixed{suffix}", tmp_path / f"fixed{suffix}")
    card = resolve_card(tmp_path / "fixed.onnx")  # checked here...
    data = bytearray((tmp_path / "fixed.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "fixed.onnx").write_bytes(bytes(data))  # ...and replaced before the backend reads it
    with pytest.raises(ConfigError, match=r"fixed\.onnx is corrupt or was replaced"):
        create_backend(card, backend="openvino", threads=1)


@needs_openvino
def test_two_threads_get_their_own_frames_results_and_cancel_stops_a_run(models):
    import threading

    backend = create_backend(models / "dynamic.onnx", backend="openvino", threads=1)
    try:
        frames = _frames((H, W), 2)
        alone = [backend.infer(f) for f in frames]
        got = {}

        def worker(i):
            for _ in range(20):
                r = backend.infer(frames[i])
                if not np.array_equal(r.class_id, alone[i].class_id):
                    got[i] = "another frame's result"
                    return
            got.setdefault(i, "ok")
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == {0: "ok", 1: "ok"}

        big = np.zeros((2048, 4096, 3), np.uint8)
        outcome = []

        def long_run():
            try:
                backend.infer(big)
                outcome.append("finished")
            except Exception as e:  # noqa: BLE001 - OpenVINO raises its own type for a cancelled request
                outcome.append(type(e).__name__)
        t = threading.Thread(target=long_run)
        t.start()
        while t.is_alive():  # cancel until the run in flight sees it
            backend.cancel()
            t.join(0.05)
        assert outcome and outcome[0] != "finished", outcome
        assert np.array_equal(backend.infer(frames[0]).class_id, alone[0].class_id)  # later runs unaffected
    finally:
        backend.close()


@needs_openvino
def test_graph_checks_and_options(models, tmp_path):
    card = (models / "fixed.card.yaml").read_text()
    (tmp_path / "m.onnx").write_bytes((models / "fixed.onnx").read_bytes())
    (tmp_path / "m.card.yaml").write_text(card.replace("fixed.onnx", "m.onnx").replace(f"input_height: {H}",
                                                                                        "input_height: 256"))
    with pytest.raises(ModelLoadError, match=r"m.onnx: the graph's input size 128x256 disagrees with its card"):
        create_backend(tmp_path / "m.onnx", backend="openvino", threads=1)
    with pytest.raises(ValueError, match="hint='fast' is not one of latency, throughput"):
        create_backend(models / "fixed.onnx", backend="openvino", hint="fast")
    with pytest.raises(ValueError, match="OpenVINO device 'MAGIC' is not available here; available: CPU"):
        create_backend(models / "fixed.onnx", backend="openvino", device="MAGIC")
    with pytest.raises(ValueError, match="unknown option.*providers.*openvino"):
        create_backend(models / "fixed.onnx", backend="openvino", providers=["cpu"])


def test_auto_choice_on_machines_of_each_kind():
    gpu = MachineFacts("aarch64", "", "ARMv8", None, ())
    assert choose_backend(gpu).backend == "tensorrt"
    # TensorRT's parser refuses the QDQ graph's asymmetric (uint8, zero point) activations.
    choice = choose_backend(gpu, quantized=True)
    assert choice.backend == "onnxruntime" and "engine_precision: int8" in choice.reason
    x86_gpu = MachineFacts("x86_64", "GenuineIntel", "Intel Xeon", "2026.4.1", ())
    assert choose_backend(x86_gpu).backend == "tensorrt"
    assert choose_backend(x86_gpu, quantized=True).backend == "openvino"
    intel = MachineFacts("x86_64", "GenuineIntel", "Intel Xeon", "2026.4.1", ("tensorrt",))
    assert choose_backend(intel).backend == choose_backend(intel, quantized=True).backend == "openvino"
    amd = MachineFacts("x86_64", "AuthenticAMD", "AMD EPYC", "2026.4.1", ("a CUDA GPU",))
    assert choose_backend(amd).backend == "onnxruntime"  # FP32: the same CPU time on both there
    assert choose_backend(amd, quantized=True).backend == "openvino"
    bare = MachineFacts("x86_64", "GenuineIntel", "Intel Xeon", None, ("tensorrt",))
    choice = choose_backend(bare, quantized=True)
    assert choice.backend == "onnxruntime" and "requirements/openvino.txt" in choice.reason
    arm = MachineFacts("aarch64", "", "Cortex-A78AE", "2026.4.1", ("a CUDA GPU",))
    assert choose_backend(arm).backend == choose_backend(arm, quantized=True).backend == "onnxruntime"


@pytest.mark.slow  # a quantization
def test_auto_on_this_machine_loads_what_it_chose(models, tmp_path):
    from densehybrid_ros.runtime.quantize import QuantizeSettings, quantize_model

    int8 = tmp_path / "int8.onnx"
    quantize_model(models / "fixed.onnx", int8, QuantizeSettings(frames=1), log=lambda *_: None)
    facts = machine_facts()
    for path, quantized in ((models / "fixed.onnx", False), (int8, True)):
        expected = choose_backend(facts, quantized)
        backend = create_backend(path, backend="auto", threads=1, spin=False)
        assert backend.name == expected.backend and backend.auto_reason == expected.reason
        if HAVE_OPENVINO and facts.arch == "x86_64" and quantized:
            assert backend.name == "openvino"
    with pytest.raises(ValueError, match="unknown option.*thread"):  # a typo is still a typo under auto
        create_backend(models / "fixed.onnx", backend="auto", thread=1)


def test_missing_openvino_is_a_clear_error(models, monkeypatch):
    """Runs whether or not openvino is installed: its import is made to fail."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    from densehybrid_ros.runtime.openvino_backend import OpenVINOUnavailable, openvino_version

    with pytest.raises(OpenVINOUnavailable, match="pip install -r requirements/openvino.txt"):
        create_backend(models / "fixed.onnx", backend="openvino")
    assert openvino_version() is None
    assert choose_backend(machine_facts(), quantized=True).backend != "openvino"
