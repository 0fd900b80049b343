"""TensorRT on a real GPU: engines built from the shipped ONNX against onnxruntime on the CPU, on held-out frames.

Acceptance: FP16 class agreement >= 99.5%, INT8 >= 98% (FP32 >= 99.9%), anomaly-score AP within 1 point of
onnxruntime CPU. Skipped, with the reason, where tensorrt, pycuda or a CUDA GPU is missing (every development
machine of this project so far: none of this has run there). `make gpu-check` runs the same comparison with
timing and writes a report.
"""
import numpy as np
import pytest

from densehybrid_ros.runtime.tensorrt_backend import missing_requirements

MISSING = missing_requirements()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(bool(MISSING),
                       reason=f"needs tensorrt + pycuda + a CUDA GPU (missing here: {', '.join(MISSING)})"),
]

SHIPPED = "models/densehybrid_lite0_synthetic.onnx"
FRAMES = 28  # 4 per condition of the synthetic test split


@pytest.fixture(scope="module")
def card():
    from densehybrid_ros.runtime import resolve_card

    return resolve_card(SHIPPED)


@pytest.fixture(scope="module")
def held_out(card, tmp_path_factory):
    """(samples, onnxruntime CPU results) on frames of the held-out test split."""
    from densehybrid_ros.cli.gpu_check import held_out_frames
    from densehybrid_ros.runtime import create_backend

    samples, _ = held_out_frames(None, tmp_path_factory.mktemp("heldout"), FRAMES,
                                 (card.input_height, card.input_width))
    cpu = create_backend(card, providers=["cpu"], warmup=0)
    reference = [cpu.infer(s.image) for s in samples]
    cpu.close()
    return samples, reference


@pytest.fixture(scope="module")
def engines(card, tmp_path_factory):
    from densehybrid_ros.runtime.calibration import CalibrationBatches
    from densehybrid_ros.runtime.cuda_memory import device_info, load_cuda_api
    from densehybrid_ros.runtime.engine_cache import calibration_cache_path_for, engine_path_for
    from densehybrid_ros.runtime.tensorrt_engine import BuildSettings, PhaseLog, build_and_write

    folder = tmp_path_factory.mktemp("engines")
    cuda = load_cuda_api()
    with cuda.activate():
        gpu, cc = device_info(cuda)
    out = {}
    try:
        for precision in ("fp32", "fp16", "int8"):
            batches = CalibrationBatches("synthetic", 64, (card.input_height, card.input_width)) \
                if precision == "int8" else None
            settings = BuildSettings(precision=precision, calibration=batches, timing_cache=folder / "timing.cache",
                                     calibration_cache=calibration_cache_path_for(card.model_path(), folder))
            path = engine_path_for(card.model_path(), precision, folder)
            build_and_write(path, card.model_path(), card, settings, cuda_api=cuda, gpu_name=gpu,
                            compute_capability=cc, log=PhaseLog(print))
            out[precision] = path
    finally:
        cuda.close()
    return out


def _run(card, engine, precision, samples):
    from densehybrid_ros.runtime import create_backend

    backend = create_backend(card, backend="tensorrt", engine=str(engine), precision=precision,
                             engine_policy="refuse", warmup=2)
    try:
        return [backend.infer(s.image) for s in samples]
    finally:
        backend.close()


@pytest.mark.parametrize("precision, agreement", [("fp32", 0.999), ("fp16", 0.995), ("int8", 0.98)])
def test_engine_agrees_with_onnxruntime_cpu(card, held_out, engines, precision, agreement):
    from densehybrid_ros.cli.gpu_check import compare

    samples, reference = held_out
    results = _run(card, engines[precision], precision, samples)
    c = compare(reference, results, [s.anomaly for s in samples])
    print(f"{precision}: agreement {c.class_agreement:.5f}, score correlation {c.score_correlation:.5f}, "
          f"AP {100 * c.ap_reference:.2f} -> {100 * c.ap_candidate:.2f}, FPR95 {100 * c.fpr95_reference:.2f} -> "
          f"{100 * c.fpr95_candidate:.2f}")
    assert c.class_agreement >= agreement
    assert abs(c.ap_difference) <= 1.0


def test_results_have_the_contract_of_every_backend(card, held_out, engines):
    samples, reference = held_out
    result = _run(card, engines["fp16"], "fp16", samples[:1])[0]
    ref = reference[0]
    assert result.class_id.dtype == np.uint8 and result.class_id.shape == ref.class_id.shape
    assert result.anomaly_score.dtype == np.float32 and np.isfinite(result.anomaly_score).all()
    assert result.logits.shape == ref.logits.shape and result.ood_logit.shape == ref.ood_logit.shape


def test_an_up_to_date_engine_is_loaded_not_rebuilt(card, engines):
    from densehybrid_ros.runtime import create_backend
    from densehybrid_ros.runtime.engine_cache import read_sidecar

    before = read_sidecar(engines["fp16"]).built_at
    backend = create_backend(card, backend="tensorrt", engine=str(engines["fp16"]), engine_policy="rebuild")
    backend.close()
    assert read_sidecar(engines["fp16"]).built_at == before


def test_close_returns_the_gpu_memory(card, engines):
    import pycuda.driver as cuda

    from densehybrid_ros.runtime import create_backend

    cuda.init()
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        free_before, _ = cuda.mem_get_info()
        backend = create_backend(card, backend="tensorrt", engine=str(engines["fp16"]), engine_policy="refuse")
        free_loaded, _ = cuda.mem_get_info()
        backend.close()
        free_after, _ = cuda.mem_get_info()
    finally:
        cuda.Context.pop()
        ctx.detach()
    assert free_loaded < free_before
    assert free_after >= free_before - (16 << 20)  # allocator slack, not the engine's buffers
