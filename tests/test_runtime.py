"""Backends on a real exported graph: onnxruntime and torch agree on the same weights; every bad frame and every
broken model file gets an error that names it; outputs always come back at the input's resolution."""
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
import torch
import yaml

from densehybrid_ros.config.model_card import load_model_card
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.data.taxonomy import SYNTHETIC
from densehybrid_ros.model.densehybrid import NetworkConfig, build_model
from densehybrid_ros.model.export import export_onnx
from densehybrid_ros.runtime import BACKEND_NAMES, InputError, ModelLoadError, create_backend

torch.set_num_threads(1)
H, W = 128, 256
K = SYNTHETIC.num_classes


def _photo(name: str, h: int = H, w: int = W) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(getattr(skimage.data, name)(), (w, h), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="session")
def network():
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=K, decoder_width=32))
    # Fresh BN statistics give near-constant maps; a few forward passes in train mode make the class map and the
    # scores vary across the image, so that agreement between runtimes is tested on non-trivial outputs.
    net.train()
    with torch.no_grad():
        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            net(torch.from_numpy(_photo(name, 96, 160)[None]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    return net.eval()


@pytest.fixture(scope="session")
def models(network, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    export_onnx(network, root / "fixed.onnx", height=H, width=W, raw_outputs=True)
    export_onnx(network, root / "dynamic.onnx", height=H, width=W, dynamic=True)
    export_onnx(network, root / "semantic.onnx", height=H, width=W, heads="semantic")
    return root


@pytest.fixture(scope="session")
def fixed(models):
    return create_backend(models / "fixed.onnx", threads=1)


def _copy_model(models: Path, dst: Path, stem: str = "fixed") -> Path:
    for suffix in (".onnx", ".card.yaml"):
        (dst / f"copy{suffix}").write_bytes((models / f"{stem}{suffix}").read_bytes())
    card = yaml.safe_load((dst / "copy.card.yaml").read_text())
    card["model_file"] = "copy.onnx"
    (dst / "copy.card.yaml").write_text(yaml.safe_dump(card))
    return dst / "copy.onnx"


# -- parity ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("graph", ["fixed", "dynamic"])
def test_onnxruntime_and_torch_agree_on_the_same_weights(network, models, graph):
    ours = create_backend(models / f"{graph}.onnx", threads=1)
    ref = create_backend(models / f"{graph}.onnx", backend="torch", model=network)
    sizes = [(H, W)] if graph == "fixed" else [(H, W), (96, 160), (75, 130)]
    for name, (h, w) in zip(("astronaut", "coffee", "chelsea"), sizes * 3):
        rgb = _photo(name, h, w)
        a, b = ours.infer(rgb), ref.infer(rgb)
        assert len(np.unique(b.class_id)) > 1, "degenerate test: one class everywhere"
        assert (a.class_id == b.class_id).mean() >= 0.999
        assert np.abs(a.anomaly_score - b.anomaly_score).max() < 1e-3
        assert np.abs(a.confidence - b.confidence).max() < 1e-4


def test_torch_backend_rebuilds_an_untrained_cli_export_from_its_card(tmp_path):
    from densehybrid_ros.cli import main
    out = tmp_path / "untrained.onnx"
    assert main(["export", "--untrained", "--seed", "5", "--out", str(out), "--height", "64", "--width", "96",
                 "--decoder-width", "16", "--raw-outputs", "--no-verify"]) == 0
    ours, ref = create_backend(out, threads=1), create_backend(out, backend="torch")  # no model= / checkpoint=
    assert "seed 5" in ref.weights_source
    rgb = _photo("rocket", 64, 96)
    a, b = ours.infer(rgb), ref.infer(rgb)
    # Raw logits compare the weights themselves (an untrained head gives near-uniform class maps).
    assert np.abs(a.logits - b.logits).max() < 1e-3
    assert np.abs(a.anomaly_score - b.anomaly_score).max() < 1e-3


def test_torch_backend_loads_a_training_checkpoint(network, models, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": network.state_dict(), "network_config": network.config.to_dict()}, ckpt)
    ref = create_backend(models / "fixed.onnx", backend="torch", checkpoint=ckpt)
    rgb = _photo("coffee")
    a, b = create_backend(models / "fixed.onnx", threads=1).infer(rgb), ref.infer(rgb)
    assert np.abs(a.logits - b.logits).max() < 1e-3


def test_torch_backend_names_a_card_without_weights(models):
    with pytest.raises(ModelLoadError, match="fixed.card.yaml.*checkpoint"):
        create_backend(models / "fixed.onnx", backend="torch")


# -- results --------------------------------------------------------------------------------------------------

def test_result_has_the_contract_types_at_the_input_resolution(fixed):
    r = fixed.infer(_photo("astronaut"))
    assert isinstance(r, SegmentationResult) and r.shape == (H, W)
    assert r.class_id.dtype == np.uint8 and r.class_id.max() < K
    assert r.anomaly_score.dtype == np.float32 and r.anomaly_score.shape == (H, W)
    assert r.confidence.dtype == np.float32 and 1 / K - 1e-6 <= r.confidence.min() <= r.confidence.max() <= 1
    assert r.logits.shape == (K, H // 4, W // 4) and r.ood_logit.shape == (H // 4, W // 4)
    assert fixed.input_size == (H, W) and fixed.name == "onnxruntime" and fixed.card.num_classes == K


def test_raw_outputs_are_absent_from_a_graph_exported_without_them(models):
    r = create_backend(models / "dynamic.onnx", threads=1).infer(_photo("chelsea"))
    assert r.logits is None and r.ood_logit is None


def test_fixed_graph_resizes_another_input_size_and_returns_maps_at_that_size(fixed):
    small = _photo("coffee")
    # Each pixel doubled: shrinking by area gives back `small` exactly, so the graph sees the same frame and the
    # outputs must be the 128x256 outputs brought up to 256x512.
    big = cv2.resize(small, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    a, b = fixed.infer(small), fixed.infer(big)
    assert b.shape == (2 * H, 2 * W) and b.anomaly_score.shape == b.confidence.shape == (2 * H, 2 * W)
    assert np.array_equal(b.class_id, np.repeat(np.repeat(a.class_id, 2, 0), 2, 1))  # nearest: no invented ids
    up = cv2.resize(a.anomaly_score, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
    assert np.abs(b.anomaly_score - up).max() < 1e-5
    assert b.logits.shape == a.logits.shape  # raw outputs stay at decoder resolution
    odd = fixed.infer(_photo("rocket", 97, 333))
    assert odd.shape == (97, 333) and odd.anomaly_score.shape == (97, 333)


def test_fixed_graph_without_resizing_names_both_sizes(models):
    strict = create_backend(models / "fixed.onnx", threads=1, resize_to_model=False, warmup=0)
    assert strict.infer(_photo("rocket")).shape == (H, W)
    with pytest.raises(InputError, match=r"200x300.*128x256"):
        strict.infer(_photo("rocket", 200, 300))


def test_dynamic_graph_runs_at_the_input_size_and_names_its_range(models):
    dyn = create_backend(models / "dynamic.onnx", threads=1, warmup=0)
    assert dyn.input_size is None
    assert dyn.infer(_photo("chelsea", 50, 75)).shape == (50, 75)
    with pytest.raises(InputError, match=r"20x300.*\[32, 8192\]"):
        dyn.infer(np.zeros((20, 300, 3), np.uint8))


# -- bad frames -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frame, message", [
    (np.zeros((H, W, 3), np.float32), "uint8"),
    (np.zeros((H, W, 3), np.uint16), "uint8"),
    (np.zeros((H, W), np.uint8), r"\(H, W, 3\).*grey"),
    (np.zeros((1, H, W, 3), np.uint8), r"\(H, W, 3\).*\(1, 128, 256, 3\)"),
    (np.zeros((H, W, 4), np.uint8), "3 channels.*got 4.*alpha"),
    (np.zeros((H, W, 1), np.uint8), "3 channels.*got 1"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((0, W, 3), np.uint8), "empty"),
    ([[[0, 0, 0]]], "numpy array.*list"),
])
def test_bad_frame_gets_a_value_error_naming_the_problem(fixed, frame, message):
    with pytest.raises(ValueError, match=message):
        fixed.infer(frame)


@pytest.mark.parametrize("view", ["bgr_reversed", "crop", "strided", "fortran", "read_only"])
def test_non_contiguous_and_read_only_frames_give_the_same_result_as_a_copy(fixed, view):
    rgb = _photo("astronaut")
    if view == "bgr_reversed":
        frame = np.ascontiguousarray(rgb[..., ::-1])[..., ::-1]  # an RGB view of a BGR buffer
    elif view == "crop":
        frame = np.pad(rgb, ((5, 5), (7, 7), (0, 0)))[5:-5, 7:-7]
    elif view == "strided":
        frame = cv2.resize(rgb, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)[::2, ::2]
    elif view == "fortran":
        frame = np.asfortranarray(rgb)
    else:
        frame = rgb.copy()
        frame.flags.writeable = False
    assert np.array_equal(frame, rgb)
    assert view == "read_only" or not frame.flags.c_contiguous
    a, b = fixed.infer(frame), fixed.infer(rgb)
    assert np.array_equal(a.class_id, b.class_id) and np.array_equal(a.anomaly_score, b.anomaly_score)


def test_read_only_frame_runs_on_the_torch_backend(network, models):
    frame = _photo("chelsea")
    frame.flags.writeable = False
    assert create_backend(models / "fixed.onnx", backend="torch", model=network, warmup=0).infer(frame).shape == (H, W)


# -- broken model files and bad settings -----------------------------------------------------------------------

def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        create_backend(tmp_path / "nowhere.onnx")


def test_card_pointing_at_a_missing_model_names_the_model_file(models, tmp_path):
    path = _copy_model(models, tmp_path)
    path.unlink()
    with pytest.raises(ConfigError, match="copy.onnx.*copy.card.yaml"):
        create_backend(tmp_path / "copy.card.yaml")


def test_corrupt_model_file_is_named(models, tmp_path):
    path = _copy_model(models, tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])  # flipped weight bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"{path}.*corrupt"):
        create_backend(path)


def test_unreadable_graph_is_named_even_without_the_checksum(models, tmp_path):
    path = _copy_model(models, tmp_path)
    path.write_bytes(path.read_bytes()[: 5000])  # truncated: not a parseable graph any more
    with pytest.raises(ModelLoadError, match=f"{path}"):
        create_backend(path, verify_sha=False)


def test_card_that_disagrees_with_the_graph_size_is_refused(models, tmp_path):
    path = _copy_model(models, tmp_path)
    card = yaml.safe_load((tmp_path / "copy.card.yaml").read_text())
    card["input_height"], card["input_width"] = 256, 512
    (tmp_path / "copy.card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError, match=r"copy.onnx.*128x256.*256x512"):
        create_backend(path)


def test_semantic_only_graph_cannot_drive_the_detector(models):
    with pytest.raises(ModelLoadError, match="semantic.onnx.*anomaly_score"):
        create_backend(models / "semantic.onnx")


def test_unknown_backend_lists_the_valid_ones(models):
    with pytest.raises(ValueError, match="magic.*onnxruntime, torch, tensorrt"):
        create_backend(models / "fixed.onnx", backend="magic")
    assert BACKEND_NAMES == ("onnxruntime", "torch", "tensorrt", "openvino", "auto")


def test_unknown_option_lists_the_valid_ones(models):
    with pytest.raises(ValueError, match="thread.*valid:.*threads"):
        create_backend(models / "fixed.onnx", thread=2)


@pytest.mark.parametrize("options, message", [
    ({"threads": -1}, r"threads.*\[0, 64\]"), ({"optimisation": "max"}, "optimisation.*all"),
    ({"warmup": 1000}, r"warmup.*\[0, 100\]"), ({"providers": ["MagicExecutionProvider"]}, "available: .*CPU"),
])
def test_bad_onnxruntime_options_name_the_setting(models, options, message):
    with pytest.raises(ValueError, match=message):
        create_backend(models / "fixed.onnx", **options)


def test_providers_default_to_the_best_available_and_accept_short_names(models):
    default = create_backend(models / "fixed.onnx", warmup=0)
    best = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()][0]
    assert default.providers[0] == best
    assert create_backend(models / "fixed.onnx", providers="cpu", warmup=0).providers == ["CPUExecutionProvider"]


def test_tensorrt_backend_says_what_is_missing(models):
    pytest.importorskip("torch")  # always present here; the point is the message on a machine without TensorRT
    try:
        import pycuda.driver  # noqa: F401
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt and pycuda are installed: the placeholder then refuses with another message")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="tensorrt backend not available: needs tensorrt \\+ pycuda \\+ a CUDA GPU"):
        create_backend(models / "fixed.onnx", backend="tensorrt")


def test_closed_backend_refuses_frames(models):
    backend = create_backend(models / "fixed.onnx", threads=1, warmup=0)
    with backend:
        backend.infer(_photo("rocket"))
    with pytest.raises(RuntimeError, match="closed"):
        backend.infer(_photo("rocket"))


def test_card_object_is_accepted_as_well_as_a_path(models):
    card = load_model_card(models / "fixed.onnx")
    assert create_backend(card, threads=1, warmup=0).infer(_photo("coffee")).shape == (H, W)


# -- densehybrid doctor ----------------------------------------------------------------------------------------

def test_doctor_passes_a_good_model_and_fails_a_corrupt_one_naming_it(models, tmp_path, capsys):
    from densehybrid_ros.cli import main
    path = _copy_model(models, tmp_path)
    assert main(["doctor", "--models", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "copy.onnx" in out and "sha256 ok" in out and "onnxruntime ok" in out
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["doctor", "--models", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "copy.onnx is corrupt" in out


def test_doctor_fails_a_model_without_a_card(models, tmp_path, capsys):
    from densehybrid_ros.cli import main
    (tmp_path / "lonely.onnx").write_bytes((models / "fixed.onnx").read_bytes())
    assert main(["doctor", "--models", str(tmp_path)]) == 1
    assert "lonely.onnx: no model card beside it" in capsys.readouterr().out
