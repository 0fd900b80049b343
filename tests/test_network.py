"""DenseHybridNet: output shapes for any input size, both heads trainable, config round trip, normalisation."""
import pytest
import torch

from densehybrid_ros.model.densehybrid import (
    DenseHybridNet, NetworkConfig, build_model, normalise_uint8_nhwc,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DenseHybridNet(NetworkConfig(num_classes=14, decoder_width=32)).eval()


@pytest.mark.parametrize("size, out", [((256, 512), (64, 128)), ((64, 96), (16, 24))])
def test_outputs_at_quarter_resolution(net, size, out):
    with torch.no_grad():
        s, g = net(torch.randn(2, 3, *size))
    assert s.shape == (2, 14, *out)
    assert g.shape == (2, *out)


@pytest.mark.parametrize("size", [(250, 333), (33, 47), (97, 130)])
def test_sizes_not_divisible_by_32(net, size):
    with torch.no_grad():
        s, g = net(torch.randn(1, 3, *size))
    h, w = s.shape[-2:]
    assert abs(h - size[0] / 4) <= 1 and abs(w - size[1] / 4) <= 1
    assert g.shape == (1, h, w)
    assert torch.isfinite(s).all() and torch.isfinite(g).all()


def test_gradients_reach_both_heads_and_the_backbone():
    torch.manual_seed(0)
    model = DenseHybridNet(NetworkConfig(num_classes=5, decoder_width=16, pretrained_backbone=False)).train()
    s, g = model(torch.randn(2, 3, 64, 64))
    # class loss only reaches f, the dataset-posterior loss only g; the shared trunk gets both
    (s.logsumexp(1).mean() + torch.nn.functional.softplus(g).mean()).backward()
    for name in ("class_head.2.weight", "ood_head.2.weight", "decoder.up4.blend.2.weight",
                 "backbone._conv_stem.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_heads_are_separate_so_each_loss_trains_its_own_head():
    torch.manual_seed(0)
    model = DenseHybridNet(NetworkConfig(num_classes=3, decoder_width=16, pretrained_backbone=False)).train()
    _, g = model(torch.randn(2, 3, 64, 64))
    g.mean().backward()
    assert model.class_head[2].weight.grad is None
    assert model.ood_head[2].weight.grad.abs().sum() > 0


def test_pretrained_backbone_is_the_imagenet_one():
    from densehybrid_ros.model.efficientnet_lite import imagenet_weights_path
    model = build_model({"num_classes": 3, "decoder_width": 16})
    ref = torch.load(imagenet_weights_path(), weights_only=True)
    assert torch.equal(model.backbone._blocks[15]._project_conv.weight, ref["_blocks.15._project_conv.weight"])


def test_build_model_round_trips_a_checkpoint():
    torch.manual_seed(1)
    a = build_model(NetworkConfig(num_classes=4, decoder_width=24, spp_windows=(3, 5)),
                    pretrained_backbone=False).eval()
    stored = a.config.to_dict()
    b = build_model(stored, pretrained_backbone=False).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        sa, ga = a(x)
        sb, gb = b(x)
    assert torch.equal(sa, sb) and torch.equal(ga, gb)


def test_bad_config_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="num_classes"):
        NetworkConfig(num_classes=0)
    with pytest.raises(ValueError, match="spp_windows"):
        NetworkConfig(spp_windows=(4,))
    with pytest.raises(ValueError, match="unknown keys.*widht"):
        build_model({"widht": 3})


def test_normalisation_maps_uint8_to_minus_one_one_nchw():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).reshape(1, 1, 1, 3).expand(2, 4, 5, 3).contiguous()
    y = normalise_uint8_nhwc(x)
    assert y.shape == (2, 3, 4, 5) and y.dtype == torch.float32
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N,H,W,3\)"):
        normalise_uint8_nhwc(torch.zeros(1, 3, 4, 5, dtype=torch.uint8))
