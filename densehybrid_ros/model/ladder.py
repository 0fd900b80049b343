"""Ladder-style upsampling decoder of the SwiftNet / LDN family (Orsic et al. 2019; Kreso et al.), as used by
DenseHybrid (section 7.4): a small spatial pyramid pooling on the deepest features, then upsampling blocks that
add a lateral projection of the backbone features at strides 16, 8 and 4, producing the pre-logits `t` at 1/4 of
the input resolution.

Every unit is BN-ReLU-Conv (pre-activation), the ordering of SwiftNet's decoder. Upsampling resamples to the exact
size of the skip features, so inputs whose sides are not multiples of 32 need no padding.

Decoder variants (docs/NETWORK_DESIGN.md): the blend of each ladder step may be the original 3x3 convolution, a
depthwise-separable one or nothing (the step is then upsample + lateral sum, and the heads' BN-ReLU-1x1 mix it), and
the stride-4 step may be narrower than the rest of the decoder. The defaults build the original decoder with the
original tensor names, so trained weights and exported graphs keep loading.

Pyramid pooling uses windows of fixed size (in stride-32 cells) plus a global average, not grids relative to the
image: the network is trained on crops and run on full frames, and a fixed window means the same context at both
sizes; fixed windows are also static ONNX/TensorRT pooling ops at any (dynamic) input size.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.1


class BNReLUConv(nn.Sequential):
    """Pre-activation unit: BatchNorm -> ReLU -> Conv (no bias: the next BN or the sum absorbs it)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, bias: bool = False):
        super().__init__(
            nn.BatchNorm2d(in_ch, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias),
        )


class SpatialPyramidPooling(nn.Module):
    """Bottleneck, then average pooling at several window sizes plus a global average, fused by a 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, bottleneck: int = 128, level_ch: int = 42,
                 windows: Sequence[int] = (3, 7, 15)):
        super().__init__()
        for w in windows:
            if w < 2 or w % 2 == 0:
                raise ValueError(f"spp window sizes must be odd and >= 3 (centred 'same' pooling), got {w}")
        self.windows = tuple(int(w) for w in windows)
        self.bottleneck = BNReLUConv(in_ch, bottleneck)
        self.levels = nn.ModuleList(BNReLUConv(bottleneck, level_ch) for _ in self.windows)
        # No BatchNorm on the global level: its input is one value per image and channel, so batch statistics
        # over a small batch would be noise (and a batch of one would have none at all).
        self.global_level = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(bottleneck, level_ch, 1, bias=True))
        self.fuse = BNReLUConv(bottleneck + level_ch * (len(self.windows) + 1), out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(x)
        parts = [x]
        for w, level in zip(self.windows, self.levels):
            pooled = F.avg_pool2d(x, w, stride=1, padding=w // 2, count_include_pad=False)
            parts.append(level(pooled))
        g = self.global_level(x.mean(dim=(2, 3), keepdim=True))
        parts.append(g.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.fuse(torch.cat(parts, dim=1))


BLENDS = ("conv3x3", "separable", "none")


class SeparableBNReLUConv(nn.Sequential):
    """BN -> ReLU -> depthwise 3x3 -> pointwise 1x1: the 3x3 blend at 1/9 of its multiply-adds (plus a depthwise
    pass of one multiply-add per tap and channel). No BN or ReLU between the two convolutions: the pair is a low-rank
    factorisation of one 3x3 convolution, and the next unit's BN follows."""

    def __init__(self, channels: int):
        super().__init__(
            nn.BatchNorm2d(channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
        )


def make_blend(kind: str, width: int) -> nn.Module:
    if kind == "conv3x3":
        return BNReLUConv(width, width, kernel=3)
    if kind == "separable":
        return SeparableBNReLUConv(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"decoder blend must be one of {', '.join(BLENDS)}, got {kind!r}")


class UpsampleBlock(nn.Module):
    """x <- blend(upsample(squeeze(x), size of skip) + lateral(skip)), SwiftNet's ladder step.

    `squeeze` (a 1x1 BN-ReLU-Conv at the coarse resolution, only when out_width < in_width) narrows the step before
    upsampling, so the fine-resolution tensors carry out_width channels.
    """

    def __init__(self, skip_ch: int, width: int, blend: str = "conv3x3", out_width: int | None = None):
        super().__init__()
        out_width = width if out_width is None else out_width
        if out_width != width:
            self.squeeze = BNReLUConv(width, out_width, kernel=1)
        self.lateral = BNReLUConv(skip_ch, out_width, kernel=1)
        self.blend = make_blend(blend, out_width)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "squeeze"):
            x = self.squeeze(x)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.blend(x + self.lateral(skip))


class LadderDecoder(nn.Module):
    """Features at strides (4, 8, 16, 32) -> pre-logits t (N, width, H/4, W/4)."""

    def __init__(self, feature_channels: Sequence[int], width: int = 128, spp_windows: Sequence[int] = (3, 7, 15),
                 blends: Sequence[str] = ("conv3x3", "conv3x3", "conv3x3"), stride4_width: int | None = None):
        """blends: the blend of the steps to strides 16, 8 and 4 (BLENDS); stride4_width: channels of the stride-4
        step and of the output (None: width)."""
        super().__init__()
        c4, c8, c16, c32 = feature_channels
        if len(blends) != 3:
            raise ValueError(f"decoder blends: one per ladder step (strides 16, 8, 4), got {list(blends)}")
        level_ch = max(width // (len(spp_windows) + 1), 8)
        self.spp = SpatialPyramidPooling(c32, width, bottleneck=width, level_ch=level_ch, windows=spp_windows)
        self.up16 = UpsampleBlock(c16, width, blends[0])
        self.up8 = UpsampleBlock(c8, width, blends[1])
        self.up4 = UpsampleBlock(c4, width, blends[2], out_width=stride4_width)
        self.out_channels = width if stride4_width is None else stride4_width

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        f4, f8, f16, f32 = features
        x = self.spp(f32)
        x = self.up16(x, f16)
        x = self.up8(x, f8)
        return self.up4(x, f4)
