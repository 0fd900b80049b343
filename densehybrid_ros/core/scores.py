"""Anomaly scores of DenseHybrid and its baselines, in numpy (the torch twin is model/scores.py).

Conventions: class logits `s` carry the K classes on `axis` (default -3, so (K,H,W) and (N,K,H,W) both work);
the dataset-posterior logit `g` is the logit of P(d_out|x) with the class axis removed. Every score is
"higher = more anomalous". float16 inputs are computed in float32: logsumexp over K float16 logits of
magnitude > 11 overflows exp() in half precision.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

DEFAULT_EEL_ALPHA = 1.0  # ComsAmy paper, section V (alpha in eq. 6)


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.float64:
        return x
    return x.astype(np.float32, copy=False)


def log_likelihood(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """Unnormalised log-likelihood ln p^(x) = logsumexp(s) (DenseHybrid eq. 3-4)."""
    s = _as_float(class_logits)
    peak = np.max(s, axis=axis, keepdims=True)
    return np.squeeze(peak, axis=axis) + np.log(np.sum(np.exp(s - peak), axis=axis))


def class_posterior(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """P(y|x) = softmax(s)."""
    s = _as_float(class_logits)
    z = np.exp(s - np.max(s, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """ln sigmoid(x) = -softplus(-x), exact for |x| up to the float range (log(sigmoid(x)) gives -inf at x < -88)."""
    x = _as_float(x)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def dataset_posterior(ood_logit: np.ndarray) -> np.ndarray:
    """P(d_out|x) = sigmoid(g) (eq. 5); computed as exp(log_sigmoid) so that it never overflows."""
    return np.exp(log_sigmoid(ood_logit))


def log_dataset_posterior(ood_logit: np.ndarray) -> np.ndarray:
    """ln P(d_out|x)."""
    return log_sigmoid(ood_logit)


def hybrid_score(class_logits: np.ndarray, ood_logit: np.ndarray, axis: int = -3) -> np.ndarray:
    """DenseHybrid eq. 6: ln P(d_out|x) - ln p^(x)."""
    return log_sigmoid(ood_logit) - log_likelihood(class_logits, axis=axis)


def generative_score(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """Generative-only score -ln p^(x) = -logsumexp(s) (the negative free energy's sign flipped)."""
    return -log_likelihood(class_logits, axis=axis)


def discriminative_score(ood_logit: np.ndarray) -> np.ndarray:
    """Discriminative-only score P(d_out|x)."""
    return dataset_posterior(ood_logit)


def max_softmax_score(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """1 - max_c P(c|x) (Hendrycks & Gimpel)."""
    s = _as_float(class_logits)
    # max softmax = exp(max s - logsumexp s); no K-sized softmax tensor needed.
    return 1.0 - np.exp(np.max(s, axis=axis) - log_likelihood(s, axis=axis))


def max_logit_score(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """-max_c s_c (Hendrycks et al., StreetHazards)."""
    return -np.max(_as_float(class_logits), axis=axis)


def entropy_score(class_logits: np.ndarray, axis: int = -3) -> np.ndarray:
    """Softmax entropy H(P(y|x)) = logsumexp(s) - sum_c P(c|x) s_c, computed on max-shifted logits."""
    s = _as_float(class_logits)
    shifted = s - np.max(s, axis=axis, keepdims=True)
    z = np.exp(shifted)
    total = np.sum(z, axis=axis)
    # Clamp: rounding can give -1e-7 for a one-hot posterior, and an entropy is never negative.
    return np.maximum(np.log(total) - np.sum(z * shifted, axis=axis) / total, 0.0)


def eel_score(class_logits: np.ndarray, axis: int = -3, alpha: float = DEFAULT_EEL_ALPHA) -> np.ndarray:
    """Energy-entropy score (ComsAmy eq. 6): alpha * H - E with E = logsumexp(s)."""
    return alpha * entropy_score(class_logits, axis=axis) - log_likelihood(class_logits, axis=axis)


ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# name -> f(class_logits (K,H,W) or (N,K,H,W), ood_logit (H,W) or (N,H,W)). The names are the model card's
# `score_type` values and the evaluation report's rows.
SCORE_FUNCTIONS: dict[str, ScoreFn] = {
    "hybrid": lambda s, g: hybrid_score(s, g),
    "generative": lambda s, g: generative_score(s),
    "discriminative": lambda s, g: discriminative_score(g),
    "max_softmax": lambda s, g: max_softmax_score(s),
    "max_logit": lambda s, g: max_logit_score(s),
    "entropy": lambda s, g: entropy_score(s),
    "eel": lambda s, g: eel_score(s),
}
SCORE_TYPES = tuple(SCORE_FUNCTIONS)


def compute_score(score_type: str, class_logits: np.ndarray, ood_logit: np.ndarray) -> np.ndarray:
    try:
        fn = SCORE_FUNCTIONS[score_type]
    except KeyError:
        raise ValueError(f"unknown score type {score_type!r}; valid: {', '.join(SCORE_TYPES)}") from None
    return fn(class_logits, ood_logit)
