"""A network rebuilt from its exported ONNX graph (model/onnx_weights.py) computes what the graph computes, and
training can start from an exported model (`init_from: x.onnx`)."""
import hashlib
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from densehybrid_ros.config.training import load_training_config
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.model.densehybrid import NetworkConfig, build_model, normalise_uint8_nhwc
from densehybrid_ros.model.export import export_onnx
from densehybrid_ros.model.onnx_weights import OnnxWeightsError, network_from_onnx, refit_folded_batchnorm
from densehybrid_ros.training.loop import train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "densehybrid_ros" / "training" / "configs" / "tiny_test.yaml"
H, W = 64, 128


def _trained_like(seed: int = 0) -> torch.nn.Module:
    """A tiny network whose every BN has non-trivial statistics and affine values (as after training), so that a
    folding mistake shows in the outputs."""
    torch.manual_seed(seed)
    net = build_model(NetworkConfig(num_classes=14, decoder_width=32, spp_windows=(3,)), pretrained_backbone=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        net.train()
        for _ in range(3):
            net(torch.rand(2, 3, H, W) * 2 - 1)
        # A dead channel, as ImageNet training leaves many: folding its near-zero scale gives subnormal weights.
        net.backbone._blocks[1]._bn0.weight[:4] = 1e-37
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(_trained_like(), path, height=H, width=W, raw_outputs=True)
    return path


def _images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def _graph_raw_outputs(path: Path, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image[None]})))
    return out["logits"], out["ood_logit"]


def _assert_computes_graph_outputs(net, path: Path, image: np.ndarray, note: str = "") -> None:
    """The eval-mode network's (class logits, dataset-posterior logit) equal the graph's raw outputs on `image`."""
    logits, ood_logit = _graph_raw_outputs(path, image)
    with torch.no_grad():
        s, g = net.eval()(normalise_uint8_nhwc(torch.from_numpy(image[None])))
    assert np.abs(s.numpy() - logits).max() < 1e-4 * max(1.0, np.abs(logits).max()), note
    assert np.abs(g.numpy() - ood_logit).max() < 1e-4 * max(1.0, np.abs(ood_logit).max()), note


def test_rebuilt_network_computes_the_graphs_raw_outputs(exported):
    net, card, _ = network_from_onnx(exported)
    assert card.num_classes == 14
    for image in _images(2):
        _assert_computes_graph_outputs(net, exported, image)


def test_rebuilt_weights_have_no_subnormal_values(exported):
    import onnx
    from onnx import numpy_helper
    folded = [numpy_helper.to_array(i) for i in onnx.load(str(exported)).graph.initializer]
    tiny = np.finfo(np.float32).tiny
    assert any(((np.abs(a) > 0) & (np.abs(a) < tiny)).any() for a in folded if a.dtype == np.float32)
    net, _, _ = network_from_onnx(exported)
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            assert not ((value.abs() > 0) & (value.abs() < tiny)).any(), key


def test_only_the_bn_after_the_last_backbone_block_is_folded_out_of_the_decoder(exported):
    _, _, folded = network_from_onnx(exported)
    assert folded == ["decoder.spp.bottleneck.0"]


def _input_of(net, module_name: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = net.get_submodule(module_name).register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            net.eval().pre_logits(x)
    finally:
        handle.remove()
    return seen[0]


def test_refit_keeps_the_eval_function(exported):
    net, _, folded = network_from_onnx(exported)
    probe = normalise_uint8_nhwc(torch.from_numpy(_images(1, seed=9)))
    with torch.no_grad():
        before = net(probe)
    refit_folded_batchnorm(net, folded, [normalise_uint8_nhwc(torch.from_numpy(_images(4, seed=2)))])
    with torch.no_grad():
        after = net.eval()(probe)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_refit_leaves_every_module_in_the_mode_the_training_loop_set(exported):
    """Training starts from an exported model with the backbone BatchNorms frozen (eval) in a network in train mode;
    the refit must not switch them back, or the first forward updates their running statistics."""
    from densehybrid_ros.training.loop import set_train_mode

    net, _, folded = network_from_onnx(exported)
    set_train_mode(net, freeze_backbone_bn=True)
    modes = {name: m.training for name, m in net.named_modules()}
    assert not modes["backbone._bn0"] and modes["decoder"]
    buffers = {k: v.clone() for k, v in net.backbone.state_dict().items() if "running" in k or "num_batches" in k}
    batch = normalise_uint8_nhwc(torch.from_numpy(_images(4, seed=2)))
    refit_folded_batchnorm(net, folded, [batch])
    assert {name: m.training for name, m in net.named_modules()} == modes
    net(batch)  # the first training step's forward
    after = net.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in buffers.items())


def test_refitted_bn_in_train_mode_reproduces_its_eval_output(exported):
    """Train mode normalises by batch statistics: after the refit that undoes them, while the identity the
    rebuild starts with turns the feature into a normalised one the trained network never saw."""
    net, _, folded = network_from_onnx(exported)
    batch = normalise_uint8_nhwc(torch.from_numpy(_images(4, seed=2)))
    x = _input_of(net, folded[0], batch)
    bn = net.get_submodule(folded[0])
    with torch.no_grad():
        identity_gap = (bn.train()(x) - x).abs().mean() / x.abs().mean()
        bn.eval()
    refit_folded_batchnorm(net, folded, [batch])
    with torch.no_grad():
        refit_gap = (bn.train()(x) - bn.eval()(x)).abs().mean() / x.abs().mean()
    assert refit_gap < 1e-2 < identity_gap


def test_identity_refit_is_refused_without_images(exported):
    net, _, folded = network_from_onnx(exported)
    with pytest.raises(ValueError, match="no images"):
        refit_folded_batchnorm(net, folded, [])


def test_a_corrupt_graph_is_refused_naming_the_file(exported, tmp_path):
    bad = tmp_path / "tiny.onnx"
    bad.write_bytes(exported.read_bytes()[:5000])
    card = exported.with_name("tiny.card.yaml").read_text()
    sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    (tmp_path / "tiny.card.yaml").write_text(re.sub(r"sha256: \w+", f"sha256: {sha}", card))
    with pytest.raises(OnnxWeightsError, match=str(bad)):
        network_from_onnx(bad)


def test_a_model_without_its_card_is_refused(exported, tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(exported.read_bytes())
    with pytest.raises(ConfigError, match="model card not found"):
        network_from_onnx(lone)


@pytest.mark.timeout(300)
def test_fine_tuning_starts_from_an_exported_model(exported, tmp_path):
    # A DataLoader worker, as in the shipped configs: the refit must not run torch ops before the worker forks.
    config = load_training_config(TINY, [
        f"data.cache_dir={tmp_path / 'pool'}", "stage=densehybrid", "data.negatives=true", "data.num_workers=1",
        f"init_from={exported}", "optim.steps=1", "optim.lr=1e-9", "optim.lr_min=0", "optim.warmup_steps=0"])
    messages = []
    result = train(config, tmp_path / "run", log=lambda *a, **k: messages.append(" ".join(map(str, a))))
    weights = torch.load(result.checkpoint, weights_only=True)["model"]
    rebuilt, _, _ = network_from_onnx(exported)
    key = "backbone._blocks.3._expand_conv.weight"
    assert torch.allclose(weights[key], rebuilt.state_dict()[key], atol=1e-6)
    assert any("refitted the folded BatchNorm" in m for m in messages)


def test_fine_tuning_refuses_an_exported_model_of_another_shape(exported, tmp_path):
    config = load_training_config(TINY, [
        f"data.cache_dir={tmp_path / 'pool'}", "stage=densehybrid", "data.negatives=true",
        f"init_from={exported}", "model.decoder_width=48", "optim.steps=1"])
    with pytest.raises(ConfigError, match="decoder_width"):
        train(config, tmp_path / "run", log=lambda *a, **k: None)


@pytest.mark.parametrize("stride4_width", [0, 16], ids=["full_width_stride4", "narrow_stride4"])
def test_a_separable_decoder_is_rebuilt_from_its_graph(tmp_path, stride4_width):
    """With a narrow stride-4 stage (the shipped CamVid network) the exporter folds that stage's squeeze BN into the
    stride-8 blend's pointwise convolution, whose weights then have generated names: the rebuild must take them and
    hand the shift back to the BN, and the refit must keep that shift."""
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=14, decoder_width=32, spp_windows=(3,), stride4_width=stride4_width,
                                    decoder_blends=("separable", "separable", "separable")), pretrained_backbone=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "separable.onnx"
    export_onnx(net.eval(), path, height=H, width=W, raw_outputs=True)
    rebuilt, _, folded = network_from_onnx(path)
    assert rebuilt.config.decoder_blends == ("separable",) * 3
    assert ("decoder.up4.squeeze.0" in folded) == (stride4_width > 0)
    image = _images(1)[0]
    _assert_computes_graph_outputs(rebuilt, path, image, "as rebuilt")
    refit_folded_batchnorm(rebuilt, folded, [normalise_uint8_nhwc(torch.from_numpy(_images(4, seed=2)))])
    _assert_computes_graph_outputs(rebuilt, path, image, "after the refit")


@pytest.mark.timeout(300)
def test_partial_init_starts_a_separable_decoder_from_an_exported_model(exported, tmp_path):
    config = load_training_config(TINY, [
        f"data.cache_dir={tmp_path / 'pool'}", "stage=densehybrid", "data.negatives=true", "data.num_workers=0",
        f"init_from={exported}", "model.partial_init=true", "model.decoder_blends=[separable,separable,separable]",
        "optim.steps=1", "optim.lr=1e-9", "optim.lr_min=0", "optim.warmup_steps=0"])
    messages = []
    result = train(config, tmp_path / "run", log=lambda *a, **k: messages.append(" ".join(map(str, a))))
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt["network_config"]["decoder_blends"] == ["separable"] * 3
    source, _, _ = network_from_onnx(exported)
    key = "backbone._blocks.3._expand_conv.weight"
    assert torch.allclose(ckpt["model"][key], source.state_dict()[key], atol=1e-6)
    assert ckpt["model"]["decoder.up4.blend.2.weight"].shape == (32, 1, 3, 3)
    assert any("factorised" in m and "decoder.up4.blend" in m for m in messages)
    # The SPP bottleneck's BN is still the folded one: refitted as without partial init.
    assert any("refitted the folded BatchNorm" in m for m in messages)
    # Without partial_init the different decoder is an error naming the setting.
    strict = load_training_config(TINY, [
        f"data.cache_dir={tmp_path / 'pool'}", "stage=densehybrid", "data.negatives=true", f"init_from={exported}",
        "model.decoder_blends=[separable,separable,separable]", "optim.steps=1"])
    with pytest.raises(ConfigError, match="decoder_blends"):
        train(strict, tmp_path / "run2", log=lambda *a, **k: None)


def test_the_shipped_camvid_model_is_rebuilt_from_its_graph():
    """`init_from: models/densehybrid_lite0_camvid.onnx` (camvid_final_network_distill.yaml) needs the shipped
    network back exactly, with the narrow stride-4 stage's folded BN."""
    path = REPO / "models" / "densehybrid_lite0_camvid.onnx"
    net, card, folded = network_from_onnx(path)
    assert folded == ["decoder.spp.bottleneck.0", "decoder.up4.squeeze.0"]
    image = np.random.default_rng(3).integers(0, 256, (card.input_height, card.input_width, 3), dtype=np.uint8)
    _assert_computes_graph_outputs(net, path, image)
