"""Start a decoder variant from a trained network (docs/NETWORK_DESIGN.md, `model.partial_init` in training configs).

Tensors whose name and shape agree are copied. A 3x3 blend that became depthwise-separable is factorised, not
started fresh: for each input channel i the trained kernel W[:, i] (out x 9) is replaced by its best rank-1
approximation (SVD) p_i d_i^T, so pointwise(depthwise(x)) = sum_i p_i (d_i * x_i) is the closest separable
convolution to the trained one (in the Frobenius norm of each input channel's slice). Everything else keeps the
fresh initialisation of the new network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from densehybrid_ros.model.densehybrid import DenseHybridNet
from densehybrid_ros.model.ladder import BNReLUConv, SeparableBNReLUConv


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)
    factorised: dict[str, float] = field(default_factory=dict)  # blend -> share of the kernel's energy kept
    fresh: list[str] = field(default_factory=list)  # tensors of the new network left at their initialisation
    unused: list[str] = field(default_factory=list)  # tensors of the source network with no place in the new one

    def summary(self) -> str:
        parts = [f"{len(self.copied)} tensors copied"]
        if self.factorised:
            parts.append("3x3 blends factorised into separable ones (kernel energy kept): " + ", ".join(
                f"{k} {100 * v:.1f}%" for k, v in self.factorised.items()))
        if self.fresh:
            parts.append(f"fresh: {', '.join(self.fresh)}")
        if self.unused:
            parts.append(f"not carried over: {', '.join(self.unused)}")
        return "; ".join(parts)


def separable_from_conv3x3(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(out, in, 3, 3) kernel -> depthwise (in, 1, 3, 3), pointwise (out, in, 1, 1), share of energy kept."""
    out_ch, in_ch, kh, kw = weight.shape
    per_input = weight.double().permute(1, 0, 2, 3).reshape(in_ch, out_ch, kh * kw)  # (in, out, 9)
    u, s, vh = torch.linalg.svd(per_input, full_matrices=False)
    depthwise = vh[:, 0, :].reshape(in_ch, 1, kh, kw)
    pointwise = (u[:, :, 0] * s[:, :1]).T.reshape(out_ch, in_ch, 1, 1)
    kept = float((s[:, 0] ** 2).sum() / (s ** 2).sum().clamp_min(1e-30))
    return depthwise.to(weight.dtype), pointwise.to(weight.dtype), kept


@torch.no_grad()
def transfer_weights(source: DenseHybridNet, target: DenseHybridNet) -> TransferReport:
    """Copy (or factorise) what `source` can give `target`, in place; see the module docstring."""
    report = TransferReport()
    src_state = source.state_dict()
    tgt_state = target.state_dict()
    new_state = dict(tgt_state)
    used: set[str] = set()

    for name, module in target.named_modules():
        if not isinstance(module, SeparableBNReLUConv):
            continue
        src_module = _get(source, name)
        if not isinstance(src_module, BNReLUConv) or src_module[2].kernel_size != (3, 3) or \
                src_module[2].weight.shape[:2] != module[3].weight.shape[:2]:
            continue
        depthwise, pointwise, kept = separable_from_conv3x3(src_module[2].weight)
        new_state[f"{name}.2.weight"] = depthwise
        new_state[f"{name}.3.weight"] = pointwise
        used.add(f"{name}.2.weight")
        report.factorised[name] = kept

    for key, value in tgt_state.items():
        if key in report_keys(report):
            continue
        src = src_state.get(key)
        if src is not None and src.shape == value.shape and key not in used:
            new_state[key] = src.clone()
            used.add(key)
            report.copied.append(key)
        else:
            report.fresh.append(key)
    report.unused = [k for k in src_state if k not in used and not k.endswith("num_batches_tracked")]
    target.load_state_dict(new_state, strict=True)
    report.fresh = _collapse(report.fresh)
    report.unused = _collapse(report.unused)
    return report


def report_keys(report: TransferReport) -> set[str]:
    return {f"{name}.{i}.weight" for name in report.factorised for i in (2, 3)}


def _get(net: nn.Module, name: str) -> nn.Module | None:
    try:
        return net.get_submodule(name)
    except AttributeError:
        return None


def _collapse(keys: list[str]) -> list[str]:
    """Tensor names -> their modules, in order, for a readable log line."""
    out: dict[str, None] = {}
    for k in keys:
        if k.endswith("num_batches_tracked"):
            continue
        out[k.rsplit(".", 1)[0]] = None
    return list(out)
