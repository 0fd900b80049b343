"""The DenseHybrid network (Grcic, Bevandic, Segvic, ECCV 2022): EfficientNet-Lite0 + ladder decoder, and two
heads on the shared pre-logits t (section 3, fig. 2):

- class head f: t -> K logits s; softmax(s) is the class posterior P(y|x) and logsumexp(s) the unnormalised
  log-likelihood ln p^(x) (eq. 3-4);
- dataset-posterior head g: t -> one logit whose sigmoid is P(d_out|x) (eq. 5). The official code uses two channels
  and a softmax; sigmoid(a) = softmax([0, a])[1], so one channel is the same model with half the head.

The hybrid anomaly score (eq. 6) is computed from both outputs by model/scores.py (torch) or core/scores.py (numpy).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from densehybrid_ros.model.efficientnet_lite import FEATURE_STRIDES, EfficientNetLite0
from densehybrid_ros.model.ladder import BLENDS, BNReLUConv, LadderDecoder

OUTPUT_STRIDE = FEATURE_STRIDES[0]  # logits come out at 1/4 of the input resolution


@dataclass
class NetworkConfig:
    num_classes: int = 14
    decoder_width: int = 128
    # Average-pooling window sides (stride-32 cells, odd) of the pyramid pooling; a global level is always added.
    spp_windows: tuple[int, ...] = (3, 7, 15)
    pretrained_backbone: bool = True
    # Decoder variants (docs/NETWORK_DESIGN.md). The defaults are the original network: cards and checkpoints
    # written before these keys existed rebuild it unchanged.
    # Blend of the ladder steps to strides 16, 8 and 4: "conv3x3", "separable" (depthwise 3x3 + pointwise 1x1) or
    # "none" (upsample + lateral sum only).
    decoder_blends: tuple[str, ...] = ("conv3x3", "conv3x3", "conv3x3")
    # Channels of the stride-4 step and of the pre-logits t the heads read; 0: decoder_width.
    stride4_width: int = 0

    def __post_init__(self) -> None:
        self.spp_windows = tuple(int(w) for w in self.spp_windows)
        self.decoder_blends = tuple(self.decoder_blends)
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= 254:
            raise ValueError(f"num_classes must be an integer in [1, 254] (255 is void), got {self.num_classes!r}")
        if not isinstance(self.decoder_width, int) or not 8 <= self.decoder_width <= 1024:
            raise ValueError(f"decoder_width must be an integer in [8, 1024], got {self.decoder_width!r}")
        if not self.spp_windows or any(w < 3 or w % 2 == 0 or w > 63 for w in self.spp_windows):
            raise ValueError(f"spp_windows must be odd integers in [3, 63], got {self.spp_windows!r}")
        if len(self.decoder_blends) != 3 or any(b not in BLENDS for b in self.decoder_blends):
            raise ValueError(f"decoder_blends must be three of {', '.join(BLENDS)} (steps to strides 16, 8, 4), "
                             f"got {list(self.decoder_blends)!r}")
        if not isinstance(self.stride4_width, int) or not (self.stride4_width == 0 or
                                                            8 <= self.stride4_width <= self.decoder_width):
            raise ValueError(f"stride4_width must be 0 (= decoder_width) or an integer in [8, decoder_width="
                             f"{self.decoder_width}], got {self.stride4_width!r}")

    @property
    def head_width(self) -> int:
        """Channels of the pre-logits t."""
        return self.stride4_width or self.decoder_width

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spp_windows"] = list(self.spp_windows)
        d["decoder_blends"] = list(self.decoder_blends)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"network config: unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)


def normalise_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N,H,W,3) -> float (N,3,H,W) in [-1, 1], the EfficientNet-Lite input scaling ("rgb/127.5-1").

    The one normalisation used by training and inside the exported graph.
    """
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected an RGB batch (N,H,W,3), got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).to(torch.float32) * (1.0 / 127.5) - 1.0


class DenseHybridNet(nn.Module):
    """forward(x) -> (class_logits (N,K,h,w), ood_logit (N,h,w)); x is normalised RGB (N,3,H,W) in [-1, 1].

    h, w is the size of the stride-4 backbone features: H/4, W/4 when they divide, otherwise within one pixel of it
    (the backbone's fixed TF-SAME pads round down on odd sides). Consumers resample to the input size.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__()
        self.config = config or NetworkConfig()
        self.backbone = EfficientNetLite0(with_classifier=False)
        if self.config.pretrained_backbone:
            self.backbone.load_imagenet()
        c = self.config
        self.decoder = LadderDecoder(self.backbone.feature_channels, width=c.decoder_width,
                                     spp_windows=c.spp_windows, blends=c.decoder_blends,
                                     stride4_width=c.stride4_width or None)
        width = self.decoder.out_channels
        self.class_head = BNReLUConv(width, c.num_classes, kernel=1, bias=True)
        self.ood_head = BNReLUConv(width, 1, kernel=1, bias=True)
        self._init_decoder()

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _init_decoder(self) -> None:
        for module in (self.decoder, self.class_head, self.ood_head):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        # Heads start small and unbiased: uniform class posterior, P(d_out|x) = 0.5 everywhere.
        for head in (self.class_head, self.ood_head):
            nn.init.normal_(head[-1].weight, std=0.01)

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Shared pre-logits t (N, head_width, h, w)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a normalised RGB batch (N,3,H,W), got shape {tuple(x.shape)}")
        return self.decoder(self.backbone.features(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.pre_logits(x)
        return self.class_head(t), self.ood_head(t)[:, 0]


def build_model(config_dict: dict[str, Any] | NetworkConfig | None = None, *,
                pretrained_backbone: bool | None = None) -> DenseHybridNet:
    """Rebuild the network from the `network_config` dict stored in a checkpoint.

    `pretrained_backbone` overrides the stored flag (pass False when a checkpoint's weights will be loaded next).
    """
    if isinstance(config_dict, NetworkConfig):
        config = NetworkConfig.from_dict(config_dict.to_dict())
    else:
        config = NetworkConfig.from_dict(dict(config_dict or {}))
    if pretrained_backbone is not None:
        config.pretrained_backbone = bool(pretrained_backbone)
    return DenseHybridNet(config)


def load_network_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[DenseHybridNet, dict[str, Any]]:
    """Rebuild the network of a training checkpoint (docs/DEVELOPING.md) and load its weights strictly.

    Returns (eval-mode network, the checkpoint dict). Every failure raises an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}" + (" (a folder, not a file)" if path.is_dir() else ""))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated files and non-pickles raise several exception types
        # torch's own message suggests weights_only=False, which would run code from the file: not repeated.
        raise RuntimeError(f"checkpoint {path} is not a checkpoint written by `densehybrid train`, or it is "
                           f"truncated ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "network_config" not in ckpt:
        raise RuntimeError(f"checkpoint {path}: expected a dict with 'model' and 'network_config'")
    try:
        net = build_model(ckpt["network_config"], pretrained_backbone=False)
    except ValueError as e:
        raise RuntimeError(f"checkpoint {path}: bad network_config: {e}") from e
    try:
        net.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"checkpoint {path}: weights do not match its network_config: {e}") from e
    return net.eval(), ckpt
