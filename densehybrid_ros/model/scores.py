"""The scores of core/scores.py in torch, for training and for the exported graph. Same names, same maths."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from densehybrid_ros.core.scores import DEFAULT_EEL_ALPHA, SCORE_TYPES


def _f(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def log_likelihood(class_logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    return torch.logsumexp(_f(class_logits), dim=dim)


def log_dataset_posterior(ood_logit: torch.Tensor) -> torch.Tensor:
    return F.logsigmoid(_f(ood_logit))


def dataset_posterior(ood_logit: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(_f(ood_logit))


def hybrid_score(class_logits: torch.Tensor, ood_logit: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """DenseHybrid eq. 6: ln P(d_out|x) - logsumexp(s)."""
    return F.logsigmoid(_f(ood_logit)) - log_likelihood(class_logits, dim)


def generative_score(class_logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    return -log_likelihood(class_logits, dim)


def discriminative_score(ood_logit: torch.Tensor) -> torch.Tensor:
    return dataset_posterior(ood_logit)


def max_softmax_score(class_logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    s = _f(class_logits)
    return 1.0 - torch.exp(s.amax(dim=dim) - torch.logsumexp(s, dim=dim))


def max_logit_score(class_logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    return -_f(class_logits).amax(dim=dim)


def entropy_score(class_logits: torch.Tensor, dim: int = -3) -> torch.Tensor:
    log_p = torch.log_softmax(_f(class_logits), dim=dim)
    return (-(log_p.exp() * log_p).sum(dim=dim)).clamp_min(0.0)


def eel_score(class_logits: torch.Tensor, dim: int = -3, alpha: float = DEFAULT_EEL_ALPHA) -> torch.Tensor:
    return alpha * entropy_score(class_logits, dim) - log_likelihood(class_logits, dim)


def compute_score(score_type: str, class_logits: torch.Tensor, ood_logit: torch.Tensor) -> torch.Tensor:
    fns = {
        "hybrid": lambda: hybrid_score(class_logits, ood_logit),
        "generative": lambda: generative_score(class_logits),
        "discriminative": lambda: discriminative_score(ood_logit),
        "max_softmax": lambda: max_softmax_score(class_logits),
        "max_logit": lambda: max_logit_score(class_logits),
        "entropy": lambda: entropy_score(class_logits),
        "eel": lambda: eel_score(class_logits),
    }
    assert set(fns) == set(SCORE_TYPES)
    if score_type not in fns:
        raise ValueError(f"unknown score type {score_type!r}; valid: {', '.join(SCORE_TYPES)}")
    return fns[score_type]()
