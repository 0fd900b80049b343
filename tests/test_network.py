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


# -- decoder variants (docs/NETWORK_DESIGN.md) ------------------------------------------------------------------------

def test_default_config_is_the_original_network_and_old_configs_rebuild_it():
    # A card or checkpoint written before the variant keys existed holds only these four keys.
    old = build_model({"num_classes": 14, "decoder_width": 128, "spp_windows": [3, 7, 15]}, pretrained_backbone=False)
    shapes = {k: tuple(v.shape) for k, v in old.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in
                      build_model(NetworkConfig(), pretrained_backbone=False).state_dict().items()}
    for step in ("up16", "up8", "up4"):
        assert shapes[f"decoder.{step}.blend.2.weight"] == (128, 128, 3, 3)
        assert f"decoder.{step}.squeeze.2.weight" not in shapes
    assert shapes["class_head.2.weight"] == (14, 128, 1, 1)
    assert old.config.decoder_blends == ("conv3x3",) * 3 and old.config.stride4_width == 0


@pytest.mark.parametrize("blends, stride4_width", [
    (("separable", "separable", "separable"), 0),
    (("conv3x3", "separable", "none"), 0),
    (("conv3x3", "separable", "conv3x3"), 16),
    (("none", "none", "separable"), 8),
])
def test_decoder_variants_keep_the_output_contract_and_train(blends, stride4_width):
    torch.manual_seed(0)
    config = NetworkConfig(num_classes=5, decoder_width=32, decoder_blends=blends, stride4_width=stride4_width,
                           pretrained_backbone=False)
    model = DenseHybridNet(config).train()
    s, g = model(torch.randn(2, 3, 96, 160))
    assert s.shape == (2, 5, 24, 40) and g.shape == (2, 24, 40)
    assert model.pre_logits(torch.randn(1, 3, 64, 64)).shape[1] == config.head_width
    (s.logsumexp(1).mean() + torch.nn.functional.softplus(g).mean()).backward()
    for name, p in model.named_parameters():
        if name.startswith("decoder.up4.") and p.dim() == 4:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    b = build_model(model.config.to_dict(), pretrained_backbone=False)
    b.load_state_dict(model.state_dict(), strict=True)


def test_a_separable_blend_has_a_ninth_of_the_multiply_adds():
    from densehybrid_ros.cli.network_speed import decoder_gmac
    full = decoder_gmac(DenseHybridNet(NetworkConfig(pretrained_backbone=False)), 256, 512)
    sep = decoder_gmac(DenseHybridNet(NetworkConfig(pretrained_backbone=False, decoder_blends=["separable"] * 3)),
                       256, 512)
    # Per output position of each blend: 128*128*9 multiply-adds against 128*9 + 128*128; the stride-4 blend alone
    # has 64x128 positions at 256x512.
    per_position_saved = 128 * 128 * 9 - (128 * 9 + 128 * 128)
    assert full - sep > per_position_saved * 64 * 128 / 1e9
    assert sep < 0.25 * full


@pytest.mark.parametrize("field, value, named", [
    ("decoder_blends", ("conv3x3", "conv5x5", "none"), "decoder_blends"),
    ("decoder_blends", ("conv3x3",), "decoder_blends"),
    ("stride4_width", 4, "stride4_width"),
    ("stride4_width", 256, "stride4_width"),
])
def test_bad_decoder_variants_are_refused_naming_the_field(field, value, named):
    with pytest.raises(ValueError, match=named):
        NetworkConfig(**{field: value})


def test_a_separable_factorisation_of_a_separable_kernel_is_exact():
    from densehybrid_ros.model.transfer import separable_from_conv3x3
    torch.manual_seed(0)
    pointwise = torch.randn(6, 4)
    depthwise = torch.randn(4, 3, 3)
    kernel = pointwise[:, :, None, None] * depthwise[None]  # rank 1 in each input channel's slice
    dw, pw, kept = separable_from_conv3x3(kernel)
    x = torch.randn(1, 4, 9, 11)
    full = torch.nn.functional.conv2d(x, kernel, padding=1)
    factored = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, dw, padding=1, groups=4), pw)
    assert kept == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(full, factored, atol=1e-5)


def test_transfer_to_a_separable_decoder_copies_and_factorises():
    from densehybrid_ros.model.transfer import transfer_weights
    torch.manual_seed(0)
    source = build_model(NetworkConfig(num_classes=5, decoder_width=16), pretrained_backbone=False)
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        # Make the stride-4 blend exactly separable, so that its factorisation loses nothing.
        conv = source.decoder.up4.blend[2]
        conv.weight.copy_(torch.randn(16, 16)[:, :, None, None] * torch.randn(16, 3, 3)[None])
    source.eval()
    target = build_model(NetworkConfig(num_classes=5, decoder_width=16,
                                       decoder_blends=["conv3x3", "conv3x3", "separable"]),
                         pretrained_backbone=False).eval()
    report = transfer_weights(source, target)
    assert list(report.factorised) == ["decoder.up4.blend"] and report.factorised["decoder.up4.blend"] > 0.999
    assert not report.fresh and report.unused == []
    assert torch.equal(target.backbone._blocks[3]._expand_conv.weight, source.backbone._blocks[3]._expand_conv.weight)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        (s0, g0), (s1, g1) = source(x), target(x)
    assert torch.allclose(s0, s1, atol=1e-4) and torch.allclose(g0, g1, atol=1e-4)


def test_transfer_to_a_narrower_stride4_stage_starts_those_layers_fresh():
    from densehybrid_ros.model.transfer import transfer_weights
    source = build_model(NetworkConfig(num_classes=5, decoder_width=16), pretrained_backbone=False)
    target = build_model(NetworkConfig(num_classes=5, decoder_width=16, stride4_width=8), pretrained_backbone=False)
    report = transfer_weights(source, target)
    assert {"decoder.up4.squeeze.2", "decoder.up4.lateral.2", "decoder.up4.blend.2", "class_head.2"} <= \
        set(report.fresh)
    assert "decoder.up8.blend.2.weight" in report.copied


def test_every_timed_variant_builds_and_trained_like_batchnorms_differ_between_the_heads():
    from densehybrid_ros.cli.network_speed import VARIANTS, network_config, randomise_batchnorms
    for name in VARIANTS:
        net = DenseHybridNet(network_config(name))
        assert net.config.pretrained_backbone is False
    randomise_batchnorms(net, seed=3)
    # Identical head BNs would be exported once and fused by onnxruntime: a speed-up no trained network gets.
    assert not torch.equal(net.class_head[0].weight, net.ood_head[0].weight)
    assert not torch.equal(net.class_head[0].running_var, net.ood_head[0].running_var)


@pytest.mark.parametrize("node, op, part", [
    ("/_blocks.3/Clip_output_0_nchwc", "Conv", "backbone"),
    ("/decoder/up4/blend/blend.3/Conv_output_0_nchwc", "Conv", "decoder: step to stride 4"),
    ("/ood_head/ood_head.2/Conv_output_0_nchwc", "Conv", "heads"),
    ("ReorderOutput_token_183", "ReorderOutput", "layout conversions and pads"),
    ("/_blocks.1/_depthwise_conv/Pad", "Pad", "layout conversions and pads"),
    ("/ReduceSum", "ReduceSum", "pre/post-processing"),
])
def test_profiled_nodes_are_assigned_to_their_part_of_the_network(node, op, part):
    from densehybrid_ros.cli.network_speed import network_part
    assert network_part(node, op) == part
