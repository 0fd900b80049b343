"""EfficientNet-Lite0: the ImageNet weights load strictly and the network classifies real photos correctly."""
import cv2
import numpy as np
import pytest
import skimage.data
import torch

from densehybrid_ros.model.efficientnet_lite import (
    EfficientNetLite0, efficientnet_lite0, imagenet_weights_path,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def imagenet_net():
    return efficientnet_lite0(pretrained=True).eval()


def _imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    rgb = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0


@pytest.mark.parametrize("image, imagenet_class", [("chelsea", 285), ("coffee", 967)])
def test_imagenet_weights_classify_real_photos(imagenet_net, image, imagenet_class):
    # 285 = Egyptian cat, 967 = espresso
    with torch.no_grad():
        logits = imagenet_net(_imagenet_input(getattr(skimage.data, image)()))
    assert logits.argmax(1).item() == imagenet_class


def test_lite0_has_the_published_parameter_count(imagenet_net):
    n = sum(p.numel() for p in imagenet_net.parameters())
    assert n == 4_652_008  # 4.65 M, EfficientNet-Lite0 with the 1000-way classifier


def test_features_have_strides_4_8_16_32():
    net = EfficientNetLite0(with_classifier=False).eval()
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, 128, 192))
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    assert [f.shape[1] for f in feats] == list(net.feature_channels) == [24, 40, 112, 320]


def test_strict_load_rejects_a_missing_key():
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    del state["_blocks.7._depthwise_conv.weight"]
    with pytest.raises(RuntimeError, match="_blocks.7._depthwise_conv.weight"):
        EfficientNetLite0().load_state_dict_strict(state)
    with pytest.raises(RuntimeError, match="_blocks.7._depthwise_conv.weight"):
        EfficientNetLite0(with_classifier=False).load_state_dict_strict(state)


def test_strict_load_rejects_an_unexpected_key():
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    state["_blocks.3._se_reduce.weight"] = torch.zeros(4, 144, 1, 1)  # squeeze-excite: not in Lite
    with pytest.raises(RuntimeError, match="_se_reduce"):
        EfficientNetLite0(with_classifier=False).load_state_dict_strict(state)


def test_backbone_only_load_matches_the_classifier_model(imagenet_net):
    trunk = efficientnet_lite0(pretrained=True, with_classifier=False).eval()
    x = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(trunk.features(x)[-1], imagenet_net.features(x)[-1])


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        EfficientNetLite0().load_imagenet(missing)


def test_corrupt_weights_file_is_named(tmp_path):
    corrupt = tmp_path / "truncated.pth"
    corrupt.write_bytes(imagenet_weights_path().read_bytes()[:10_000])
    with pytest.raises(RuntimeError, match="truncated.pth"):
        EfficientNetLite0().load_imagenet(corrupt)
