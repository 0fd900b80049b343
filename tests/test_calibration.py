"""INT8 calibration frames (runtime/calibration.py): shapes, dtype, determinism, sources, errors, the cache file's
reuse rules, and the onnxruntime CalibrationDataReader view fed to a real session of the shipped model."""
import cv2
import numpy as np
import onnxruntime as ort
import pytest

from densehybrid_ros.data.splits import FRAME_SEED_BASE, write_split
from densehybrid_ros.runtime.calibration import (
    CALIBRATION_SEED_BASE, CalibrationBatches, CalibrationCache, CalibrationDataError, evenly_spaced, fit_to_graph,
)

SIZE = (64, 128)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 96), (64, 128), (120, 240), (64, 128), (30, 60)]):
        sub = root / ("a" if i < 3 else "b")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_synthetic_batches_are_uint8_nhwc_at_the_graph_size():
    batches = CalibrationBatches("synthetic", 4, SIZE, batch_size=2)
    assert len(batches) == 2 and batches.frames == 4
    first = batches.batch(0)
    assert first.shape == (2, *SIZE, 3) and first.dtype == np.uint8 and first.flags.c_contiguous
    assert batches.batch_shape == (2, *SIZE, 3) and batches.dtype == np.uint8
    assert first.std() > 5  # a rendered scene, not a blank buffer


def test_synthetic_batches_are_deterministic():
    a, b = CalibrationBatches("synthetic", 2, SIZE), CalibrationBatches("synthetic", 2, SIZE)
    assert a.fingerprint() == b.fingerprint()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_synthetic_frames_cycle_conditions_and_never_reuse_evaluation_seeds():
    names = CalibrationBatches("synthetic", 7, SIZE).frame_names
    assert len({n.split("/")[1] for n in names}) == 7
    seeds = [int(n.split("/")[2]) for n in names]
    assert min(seeds) >= CALIBRATION_SEED_BASE >= 2 * FRAME_SEED_BASE  # val/test live in [2**32, 2**33)


def test_image_folder_frames_are_evenly_spaced_sorted_and_resized(image_folder):
    batches = CalibrationBatches(image_folder, 3, SIZE)
    assert batches.available == 5
    assert batches.frame_names == ["a/0.png", "a/2.png", "b/4.png"]
    for batch in batches:
        assert batch.shape == (1, *SIZE, 3)


def test_frames_resized_as_the_backend_does():
    rgb = np.random.default_rng(1).integers(0, 255, (128, 256, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_to_graph(rgb, SIZE), cv2.resize(rgb, (128, 64), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(fit_to_graph(rgb, (128, 256)), rgb)


def test_an_incomplete_last_batch_is_dropped(image_folder):
    batches = CalibrationBatches(image_folder, 5, SIZE, batch_size=2)
    assert len(batches) == 2 and batches.frames == 4


def test_a_split_folder_is_read_through_the_data_adapters(tmp_path):
    write_split(tmp_path, "val", conditions=("clear", "fog"), frames_per_condition=2, height=64, width=128)
    batches = CalibrationBatches(tmp_path / "val", 3, SIZE)
    assert batches.available == 4 and len(batches) == 3
    assert all(n.startswith("synthetic:") for n in batches.frame_names)
    assert batches.batch(2).shape == (1, *SIZE, 3)


def test_fingerprint_changes_with_what_is_calibrated_on(image_folder):
    base = CalibrationBatches(image_folder, 3, SIZE).fingerprint()
    assert CalibrationBatches(image_folder, 4, SIZE).fingerprint() != base
    assert CalibrationBatches(image_folder, 3, (64, 64)).fingerprint() != base


def test_evenly_spaced():
    assert evenly_spaced(10, 3) == [0, 4, 9]
    assert evenly_spaced(3, 10) == [0, 1, 2]


@pytest.mark.parametrize("source, frames, batch, message", [
    ("{missing}", 2, 1, "does not exist"),
    ("{file}", 2, 1, "is a file"),
    ("{empty}", 2, 1, "holds no images"),
    ("synthetic", 0, 1, "calibration frames must be an integer"),
    ("synthetic", 2, 4, "must be at least the batch size"),
    ("synthetic", 2, 0, "batch size must be an integer"),
])
def test_bad_sources_and_counts_are_named(tmp_path, source, frames, batch, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.png").write_bytes(b"x")
    source = source.format(missing=tmp_path / "nope", file=tmp_path / "file.png", empty=tmp_path / "empty")
    with pytest.raises(CalibrationDataError, match=message):
        CalibrationBatches(source, frames, SIZE, batch_size=batch)


def test_an_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    batches = CalibrationBatches(tmp_path, 1, SIZE)
    with pytest.raises(CalibrationDataError, match="broken.png"):
        batches.batch(0)


def test_onnxruntime_reader_feeds_the_shipped_graph():
    """The same batches drive onnxruntime static quantization: the reader's dict is what the real graph takes."""
    batches = CalibrationBatches("synthetic", 1, (512, 1024))
    reader = batches.onnxruntime_reader()
    first = reader.get_next()
    assert set(first) == {"image"} and first["image"].shape == (1, 512, 1024, 3)
    assert reader.get_next() is None
    reader.rewind()
    session = ort.InferenceSession("models/densehybrid_lite0_synthetic.onnx", providers=["CPUExecutionProvider"])
    class_id = session.run(["class_id"], reader.get_next())[0]
    assert class_id.shape == (1, 512, 1024) and class_id.max() < 14


def test_calibration_cache_is_reused_only_for_the_same_model_data_and_tensorrt(tmp_path):
    path = tmp_path / "m.int8.calib"
    cache = CalibrationCache(path, "a" * 64, "f" * 64, "10.3.0")
    assert cache.read() is None and "no calibration cache" in cache.mismatch()[0]
    cache.write(b"TRT-10300-EntropyCalibration2\n...")
    assert CalibrationCache(path, "a" * 64, "f" * 64, "10.3.0").read() == b"TRT-10300-EntropyCalibration2\n..."
    reasons = {
        "onnx_sha256": CalibrationCache(path, "b" * 64, "f" * 64, "10.3.0"),
        "data_fingerprint": CalibrationCache(path, "a" * 64, "e" * 64, "10.3.0"),
        "tensorrt_version": CalibrationCache(path, "a" * 64, "f" * 64, "10.4.0"),
    }
    for field, other in reasons.items():
        assert other.read() is None
        assert [m.split(":")[0] for m in other.mismatch()] == [field]


def test_an_edited_calibration_cache_is_not_reused(tmp_path):
    cache = CalibrationCache(tmp_path / "m.int8.calib", "a" * 64, "f" * 64, "10.3.0")
    cache.write(b"table")
    cache.path.write_bytes(b"edited")
    assert cache.read() is None and "changed since it was written" in cache.mismatch()[0]
