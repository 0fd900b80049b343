"""A trainable DenseHybridNet rebuilt from an exported ONNX graph and its model card.

Why: a shipped model may be the only copy of its weights (training checkpoints stay on the machine that trained
them); fine-tuning it further (`init_from: some_model.onnx` in a training config) needs the network back.

The exporter keeps every decoder and head tensor under its state-dict name (`model.<key>`), but folds each
backbone BatchNorm (Conv -> BN, eval mode) into the convolution before it, so those convolutions come back with a
bias. The rebuilt backbone therefore holds the folded weights in its convolutions and an identity BN after each one
(mean 0, var 1 - eps, scale 1) whose shift is the folded bias: the same function in eval mode, and still a
trainable, frozen-statistics BN as training uses it (`freeze_backbone_bn`).

Decoder BNs can be folded too. The SPP bottleneck's BN reads only the last backbone block, so the exporter folds
it into that block's projection as well. In a network with a narrow stride-4 stage (`stride4_width`), that stage's
squeeze BN reads only the stride-8 blend's pointwise convolution, which has no bias: that convolution comes back with
the folded weight and its BN as an identity whose shift is the folded bias. Rebuilt as identities these BNs are
exact in eval mode, but a decoder BN trains on batch statistics, which would then normalise a feature the trained
network never normalised. `refit_folded_batchnorm` gives each the statistics of its input over a few training images,
with scale and shift set to undo them (keeping any folded shift), so the eval function is unchanged and train mode
starts close to it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from densehybrid_ros.config.model_card import ModelCard, load_model_card
from densehybrid_ros.model.densehybrid import DenseHybridNet, build_model

# Exported node names of the backbone convolutions and the BN each one was folded with.
_BACKBONE_CONV = re.compile(r"^/(?P<module>_conv_stem|_blocks\.\d+/_(?:expand|depthwise|project)_conv)/Conv$")
_BN_AFTER = {"_conv_stem": "_bn0", "_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}
_STATE_PREFIX = "model."  # ExportWrapper holds the network as `.model`


class OnnxWeightsError(RuntimeError):
    """The ONNX file cannot be turned back into a DenseHybridNet (the message names the file)."""


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # Identical tensors (e.g. the two heads' BN statistics, both estimated on the same pre-logits) are stored once
    # and reached through Identity nodes.
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _flush_subnormals(t: torch.Tensor) -> torch.Tensor:
    """Zero the subnormal values. Folding W * gamma / sigma with the near-zero gammas of dead channels leaves
    13% of the shipped backbone's weights subnormal (below 1.2e-38), and CPU arithmetic on subnormals is slow:
    training from such weights ran at 5 s a step instead of 1.2."""
    return torch.where(t.abs() < torch.finfo(t.dtype).tiny, torch.zeros_like(t), t)


def _identity_bn(bn: nn.BatchNorm2d, shift: torch.Tensor) -> dict[str, torch.Tensor]:
    n = bn.num_features
    return {"weight": torch.ones(n), "bias": shift.float(), "running_mean": torch.zeros(n),
            "running_var": torch.full((n,), 1.0 - bn.eps), "num_batches_tracked": torch.zeros((), dtype=torch.long)}


def network_from_onnx(model_path: str | Path) -> tuple[DenseHybridNet, ModelCard, list[str]]:
    """(eval-mode network computing the graph's raw outputs, its card, names of folded decoder BNs).

    Strict: every tensor of the network must come from the graph and every backbone convolution of the graph must
    be used; anything else raises OnnxWeightsError naming the file.
    """
    import onnx

    path = Path(model_path)
    card = load_model_card(path)
    net_cfg = (card.training or {}).get("network_config")
    if not net_cfg:
        raise OnnxWeightsError(f"{path}: its model card has no training.network_config to rebuild the network from")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # protobuf raises several types for truncated files
        raise OnnxWeightsError(f"{path} is unreadable or not an ONNX model: {e}") from e
    values = _initializers(graph)
    net = build_model(net_cfg, pretrained_backbone=False)
    target = net.state_dict()
    state: dict[str, torch.Tensor] = {}

    for node in graph.node:
        m = _BACKBONE_CONV.match(node.name) if node.op_type == "Conv" else None
        if m is None:
            continue
        module = m.group("module").replace("/", ".")
        conv_key = f"backbone.{module}.weight"
        parent, _, leaf = module.rpartition(".")
        bn_prefix = ".".join(p for p in ("backbone", parent, _BN_AFTER[leaf]) if p)
        weight, bias = _folded_conv(path, node, values, target, conv_key)
        state[conv_key] = weight
        bn = net.get_submodule(bn_prefix)
        for name, value in _identity_bn(bn, bias).items():
            state[f"{bn_prefix}.{name}"] = value

    # A decoder BN whose input is a decoder convolution (the 64-wide stride-4 stage's squeeze BN reads the stride-8
    # blend's pointwise convolution) is folded into that convolution: weight and shift under generated names.
    shifts: dict[str, torch.Tensor] = {}
    consumers = {x: n for n in graph.node for x in n.input}
    for node in graph.node:
        if node.op_type != "Conv" or not node.name.startswith("/decoder/") or \
                node.input[1].startswith(_STATE_PREFIX):
            continue
        consumer = consumers.get(node.output[0])
        bn_name = _previous_sibling(_module_of(consumer.name)) if consumer is not None else None
        if bn_name is None or not isinstance(_submodule(net, bn_name), nn.BatchNorm2d):
            raise OnnxWeightsError(f"{path}: decoder convolution {node.name} has unnamed weights and no folded "
                                   f"BatchNorm after it")
        conv_key = f"{_module_of(node.name)}.weight"
        state[conv_key], shifts[bn_name] = _folded_conv(path, node, values, target, conv_key)

    folded: dict[str, None] = {}  # ordered set of BN module names
    for key, like in target.items():
        if key in state:
            continue
        stored = values.get(_STATE_PREFIX + key)
        if stored is not None:
            state[key] = torch.from_numpy(np.array(stored)).to(like.dtype).reshape(like.shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith((".weight", ".bias", ".running_mean", ".running_var")) and \
                isinstance(net.get_submodule(key.rsplit(".", 1)[0]), nn.BatchNorm2d) and not key.startswith("backbone."):
            folded[key.rsplit(".", 1)[0]] = None
        else:
            raise OnnxWeightsError(f"{path}: tensor {key} is neither in the graph nor a folded BatchNorm")
    for prefix in folded:
        # Its shift went into the folded convolution's bias: the backbone's, kept there, or a decoder one's, which
        # has no bias of its own and hands it back to the BN.
        bn = net.get_submodule(prefix)
        for name, value in _identity_bn(bn, shifts.get(prefix, torch.zeros(bn.num_features))).items():
            state[f"{prefix}.{name}"] = value
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise OnnxWeightsError(f"{path}: rebuilt weights do not fit the card's network_config: {e}") from e
    return net.eval(), card, list(folded)


def _folded_conv(path: Path, node, values: dict[str, np.ndarray], target: dict[str, torch.Tensor],
                 conv_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a convolution the exporter folded a BN into, checked against the network's `conv_key`."""
    if len(node.input) != 3 or any(x not in values for x in node.input[1:]):
        raise OnnxWeightsError(f"{path}: convolution {node.name} has no folded weight and bias")
    weight, bias = (_flush_subnormals(torch.from_numpy(values[x].copy())) for x in node.input[1:])
    if conv_key not in target or target[conv_key].shape != weight.shape:
        raise OnnxWeightsError(f"{path}: {node.name} {tuple(weight.shape)} does not fit {conv_key} "
                               f"{tuple(target[conv_key].shape) if conv_key in target else '(absent)'}")
    return weight, bias


def _module_of(node_name: str) -> str:
    """'/decoder/up8/blend/blend.3/Conv' -> 'decoder.up8.blend.3' (the exporter scopes a Sequential's child as
    '<parent>.<index>')."""
    parts = node_name.strip("/").split("/")[:-1]
    out: list[str] = []
    for part in parts:
        if out and part.startswith(out[-1] + "."):
            out[-1] = part
        else:
            out.append(part)
    return ".".join(out)


def _previous_sibling(module: str) -> str | None:
    """'decoder.up4.squeeze.1' -> 'decoder.up4.squeeze.0': the BN before a Sequential's ReLU."""
    parent, _, index = module.rpartition(".")
    return f"{parent}.{int(index) - 1}" if index.isdigit() and int(index) > 0 else None


def _submodule(net: nn.Module, name: str) -> nn.Module | None:
    try:
        return net.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def refit_folded_batchnorm(net: DenseHybridNet, folded: list[str], images: Iterable[torch.Tensor]) -> None:
    """Give each folded (identity) decoder BN the per-channel mean and variance of its input over `images`
    (normalised (N,3,H,W) batches) and the scale and shift that undo them: eval output unchanged, train-mode
    output close to it."""
    if not folded:
        return
    modules = {name: net.get_submodule(name) for name in folded}
    sums = {name: [0.0, 0.0, 0] for name in folded}

    def hook(name):
        def record(_module, inputs):
            x = inputs[0].double()
            sums[name][0] = sums[name][0] + x.sum(dim=(0, 2, 3))
            sums[name][1] = sums[name][1] + (x * x).sum(dim=(0, 2, 3))
            sums[name][2] += x.shape[0] * x.shape[2] * x.shape[3]
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    # Each module's own mode, restored as it was: net.train(True) would also switch the BatchNorms the caller froze
    # (freeze_backbone_bn) back to training, and the next forward would update their running statistics.
    modes = {m: m.training for m in net.modules()}
    try:
        net.eval()
        for x in images:
            net.pre_logits(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    for name, bn in modules.items():
        s, sq, count = sums[name]
        if count == 0:
            raise ValueError("refit_folded_batchnorm: no images were given")
        mean = s / count
        var = (sq / count - mean * mean).clamp_min(0.0)
        std = torch.sqrt(var + bn.eps)
        # From the identity-with-shift y = w x + b to (x - mean) / std * W + B with the same eval output.
        scale = bn.weight.clone()
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(std.float() * scale)
        bn.bias.copy_(mean.float() * scale + bn.bias)
