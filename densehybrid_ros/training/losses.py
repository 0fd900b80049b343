"""The DenseHybrid training loss (Grcic et al., ECCV 2022, eq. 15) split into its named terms, plus the optional
energy-entropy (EEL) loss of the ComsAmy paper (section IV-B, eq. 7).

Pixels of a mixed-content crop fall into three sets, read from two label maps at logit resolution:
- `label` (N,H,W) int: class ids 0..K-1 for inlier pixels; 255 (void) for void and for pasted negatives;
- `ood_target` (N,H,W) int: 0 inlier, 1 negative (pasted), 255 ignore.

Terms (every one is a mean over the pixels it covers; a term with no pixels in the batch is exactly 0 and keeps
the graph, so DDP sees every parameter used):
- class loss (eq. 7): cross-entropy of softmax(s) over inlier pixels;
- dataset-posterior loss (eq. 14): binary cross-entropy of the one-channel logit of P(d_out|x),
  inliers -> d_in (target 0), negatives -> d_out (target 1);
- likelihood loss (the D_out half of eq. 12): mean of ln p^(x) = logsumexp(s) over negatives. It is unbounded
  below, so an optional margin m turns it into relu(logsumexp(s) - m): negatives whose log-likelihood is already
  under m stop pulling the logits down;
- EEL loss (ComsAmy eq. 7), optional;
- distillation from a teacher DenseHybrid model (optional, `distillation_terms`): its class posterior on inlier
  pixels, and its two score parts, ln p^(x) and the dataset-posterior logit, on every labelled pixel.

Eq. 15 is  L = L_cls + L_d(inliers) + beta * (L_d(negatives) + L_x(negatives)). We keep one weight per term; the
dataset-posterior BCE is one mean over inliers and negatives together, like the official code, or (`balanced`, what
the shipped model uses) the inlier mean plus the negative mean. The weights and why are in docs/TRAINING.md:
- paper (section 7.4): beta = 0.03 for LDN-121, 0.01 for DeepLabV3+;
- official code: the likelihood term weighted beta and the dataset-posterior term 10 * beta (the classification
  term 1). That is the default here: `DenseHybridLossWeights(class_=1, dataset_posterior=0.3, likelihood=0.03)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
PAPER_BETA_LDN = 0.03  # DenseHybrid section 7.4 (LDN-121)
PAPER_BETA_DEEPLAB = 0.01  # DenseHybrid section 7.4 (DeepLabV3+)


def _f(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 logits are computed in float32: exp() of logits above ~11 overflows half precision."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where mask is true; 0 (attached to the graph) when the mask is empty."""
    mask_f = mask.to(values.dtype)
    return (values * mask_f).sum() / mask_f.sum().clamp_min(1.0)


def _class_weighted_mean(values: torch.Tensor, label: torch.Tensor, class_weights: tuple[float, ...],
                         mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over `mask`, each pixel weighted by class_weights[label] and normalised by the summed weight
    (torch's weighted mean), so thin classes get a voice without changing the term's scale. Masked pixels whose
    label is not a class id (void) weigh 1."""
    k = len(class_weights)
    w = torch.as_tensor(class_weights, dtype=values.dtype, device=values.device)
    label = label.long()
    known = (label >= 0) & (label < k)
    pixel_w = torch.where(known, w[label.clamp(0, k - 1)], torch.ones_like(values)) * mask.to(values.dtype)
    return (values * pixel_w).sum() / pixel_w.sum().clamp_min(1e-12)


def class_loss(class_logits: torch.Tensor, label: torch.Tensor,
               class_weights: tuple[float, ...] | None = None) -> torch.Tensor:
    """Eq. 7: E over inlier pixels of -ln P(y|x), P(y|x) = softmax(s). Void and pasted pixels (255) are ignored.

    `class_logits` (N,K,H,W), `label` (N,H,W) with ids 0..K-1 or 255. Labels K (the anomaly label of evaluation
    splits) must not reach training; they raise instead of silently indexing past the logits.
    `class_weights` (K values, optional) weight each pixel by its class and normalise by the summed weight (torch's
    weighted mean), so thin classes get a voice without changing the loss's scale.
    """
    s = _f(class_logits)
    label = label.long()
    k = s.shape[1]
    bad = (label != IGNORE_INDEX) & ((label < 0) | (label >= k))
    if bool(bad.any()):
        raise ValueError(f"class_loss: label holds ids outside 0..{k - 1} and {IGNORE_INDEX} "
                         f"(found {sorted(set(label[bad].unique().tolist()))[:5]})")
    # log_softmax + NLL inside cross_entropy: stable for logits of any magnitude.
    per_pixel = F.cross_entropy(s, label, ignore_index=IGNORE_INDEX, reduction="none")
    valid = label != IGNORE_INDEX
    if class_weights is None:
        return _masked_mean(per_pixel, valid)
    if len(class_weights) != k:
        raise ValueError(f"class_loss: {len(class_weights)} class weights for {k} classes")
    return _class_weighted_mean(per_pixel, label, class_weights, valid)


def dataset_posterior_loss(ood_logit: torch.Tensor, ood_target: torch.Tensor, balanced: bool = False
                           ) -> torch.Tensor:
    """Eq. 14: BCE of P(d_out|x) = sigmoid(g): inliers (0) -> d_in, negatives (1) -> d_out, 255 ignored.

    Pooled (default, the official code): one mean over all non-ignored pixels. Balanced: the mean over inliers
    plus the mean over negatives, the two expectations of eq. 15 kept apart. Pasted negatives cover ~2% of a
    crop, so pooled, the d_out half weighs ~50x less than the likelihood term on the same pixels; our unbounded
    synthetic run drove logsumexp(s) on negatives to -41 and the dataset posterior fell *below* the inliers'
    (docs/TRAINING.md). With-logits BCE is the stable form of -ln sigmoid(g) and -ln(1 - sigmoid(g)).
    """
    g = _f(ood_logit)
    target = (ood_target == 1).to(g.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(g, target, reduction="none")
    if balanced:
        return _masked_mean(per_pixel, ood_target == 0) + _masked_mean(per_pixel, ood_target == 1)
    return _masked_mean(per_pixel, ood_target != IGNORE_INDEX)


def likelihood_loss(class_logits: torch.Tensor, ood_target: torch.Tensor, margin: float | None = None) -> torch.Tensor:
    """The D_out part of eq. 12: mean over negative pixels of ln p^(x) = logsumexp(s).

    With `margin` m: mean of relu(logsumexp(s) - m), bounded below by 0, so the network cannot lower this term
    forever by shrinking every logit on negatives (which also drags inlier logits through shared weights).
    """
    lse = torch.logsumexp(_f(class_logits), dim=1)
    if margin is not None:
        lse = F.relu(lse - margin)
    return _masked_mean(lse, ood_target == 1)


def softmax_entropy(class_logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(s)) per pixel (ComsAmy eq. 5), from log_softmax so that saturated logits give 0, not NaN."""
    log_p = torch.log_softmax(_f(class_logits), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def eel_loss(class_logits: torch.Tensor, ood_target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Energy-entropy loss (ComsAmy eq. 7), with energy E = logsumexp(s) (their eq. 4) and H of eq. 5.

    What is implemented (per pixel, then the mean over anomaly pixels plus the mean over inlier pixels):
    - anomaly (negative) pixels, m=1:  -ln Sgm(-E) - alpha * H  =  softplus(E) - alpha * H
      (the sigmoid of -E is read as the anomaly probability; high entropy is rewarded);
    - inlier pixels, m=0:             -ln(1 - Sgm(-E)) + alpha * H  =  softplus(-E) + alpha * H.
    The printed eq. 7 puts "+ alpha * H" inside the negated inlier expectation, i.e. it would also reward high
    entropy on inliers; that contradicts the paper's own score (eq. 6, alpha * H - E is low on inliers) and its
    text (entropy "shows good performance in recognizing inlier objects"), so the inlier entropy is penalised here.
    softplus keeps both halves finite for |E| up to the float range.
    """
    energy = torch.logsumexp(_f(class_logits), dim=1)
    entropy = softmax_entropy(class_logits)
    anomaly = F.softplus(energy) - alpha * entropy
    inlier = F.softplus(-energy) + alpha * entropy
    return _masked_mean(anomaly, ood_target == 1) + _masked_mean(inlier, ood_target == 0)


def distillation_terms(class_logits: torch.Tensor, ood_logit: torch.Tensor, teacher_class_logits: torch.Tensor,
                       teacher_ood_logit: torch.Tensor, ood_target: torch.Tensor, temperature: float = 1.0,
                       label: torch.Tensor | None = None, class_weights: tuple[float, ...] | None = None
                       ) -> dict[str, torch.Tensor]:
    """Terms that pull a student toward a teacher DenseHybrid model on the same crop (Hinton et al. 2015).

    Why: a narrower decoder fitted to hard labels alone loses the thinnest classes (traffic lights 46 -> 17 IoU on
    the synthetic test split, docs/NETWORK_DESIGN.md); the teacher's class posterior is a dense target on every
    inlier pixel, including the boundaries where hard labels say nothing about the runner-up class.
    - `distill_class_posterior`: T^2 * KL(P_teacher(y|x) || P_student(y|x)) at temperature T, mean over inliers
      (ood_target 0); pasted negatives have no class, so the teacher's posterior there is not a target. With
      `class_weights` and `label`, a weighted mean with each labelled pixel weighted by its class (void inliers 1),
      as `class_loss` weights the hard labels.
    - `distill_scores`: smooth-L1 between student and teacher on ln p^(x) = logsumexp(s) and on the
      dataset-posterior logit g, mean over inliers and negatives (255 ignored): the two parts of the hybrid score.
    """
    t = float(temperature)
    s, ts = _f(class_logits), _f(teacher_class_logits).detach()
    kl = F.kl_div(torch.log_softmax(s / t, dim=1), torch.log_softmax(ts / t, dim=1), reduction="none",
                  log_target=True).sum(dim=1) * (t * t)
    labelled = ood_target != IGNORE_INDEX
    score_gap = (F.smooth_l1_loss(torch.logsumexp(s, dim=1), torch.logsumexp(ts, dim=1), reduction="none")
                 + F.smooth_l1_loss(_f(ood_logit), _f(teacher_ood_logit).detach(), reduction="none"))
    inlier = ood_target == 0
    if class_weights is None:
        kl_term = _masked_mean(kl, inlier)
    else:
        if label is None or len(class_weights) != s.shape[1]:
            raise ValueError(f"distillation_terms: class weights need the labels and one weight per class "
                             f"({s.shape[1]}), got {len(class_weights)}")
        kl_term = _class_weighted_mean(kl, label, class_weights, inlier)
    return {"distill_class_posterior": kl_term,
            "distill_scores": _masked_mean(score_gap, labelled)}


@dataclass(frozen=True)
class DenseHybridLossWeights:
    """Weights of the terms of eq. 15 (see the module docstring for where each default comes from)."""
    class_: float = 1.0
    dataset_posterior: float = 10 * PAPER_BETA_LDN
    likelihood: float = PAPER_BETA_LDN
    eel: float = 0.0
    margin: float | None = None
    eel_alpha: float = 1.0
    balanced_dataset_posterior: bool = False
    class_weights: tuple[float, ...] | None = None
    distill_class_posterior: float = 0.0
    distill_scores: float = 0.0
    distill_temperature: float = 1.0
    distill_class_weighted: bool = False

    @property
    def distills(self) -> bool:
        return bool(self.distill_class_posterior or self.distill_scores)

    @classmethod
    def from_config(cls, config) -> "DenseHybridLossWeights":
        """The weights of a `config.training.TrainingConfig`: the closed-set stage trains the class term only."""
        l = config.loss
        if config.stage == "closed_set":
            return cls(class_=l.class_ or 1.0, dataset_posterior=0.0, likelihood=0.0, eel=0.0,
                       class_weights=l.class_weights)
        return cls(class_=l.class_, dataset_posterior=l.dataset_posterior, likelihood=l.likelihood, eel=l.eel,
                   margin=l.margin, eel_alpha=l.eel_alpha, balanced_dataset_posterior=l.balanced_dataset_posterior,
                   class_weights=l.class_weights, distill_class_posterior=l.distill_class_posterior,
                   distill_scores=l.distill_scores, distill_temperature=l.distill_temperature,
                   distill_class_weighted=l.distill_class_weighted)


class DenseHybridLoss(torch.nn.Module):
    """Eq. 15 as a weighted sum of named terms; returns (total, {term name: detached value}).

    Terms with weight 0 are not computed (stage 1 trains the class loss only). The returned dict always has
    `total` and the computed terms, ready for logging.
    """

    def __init__(self, weights: DenseHybridLossWeights | None = None):
        super().__init__()
        self.weights = weights or DenseHybridLossWeights()
        if self.weights.distill_class_weighted and self.weights.class_weights is None:
            raise ValueError("DenseHybridLoss: distill_class_weighted needs class_weights (one weight per class)")

    def forward(self, class_logits: torch.Tensor, ood_logit: torch.Tensor, label: torch.Tensor,
                ood_target: torch.Tensor | None = None,
                teacher: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """`teacher`: the teacher's (class logits, dataset-posterior logit) at the same resolution; required when a
        distillation weight is non-zero."""
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if w.class_:
            terms["class"] = class_loss(class_logits, label, w.class_weights)
        needs_ood = w.dataset_posterior or w.likelihood or w.eel
        if needs_ood and ood_target is None:
            raise ValueError("DenseHybridLoss: ood_target is required when the dataset-posterior, likelihood or "
                             "EEL weight is non-zero")
        if w.dataset_posterior:
            terms["dataset_posterior"] = dataset_posterior_loss(ood_logit, ood_target,
                                                                w.balanced_dataset_posterior)
        if w.likelihood:
            terms["likelihood"] = likelihood_loss(class_logits, ood_target, w.margin)
        if w.eel:
            terms["eel"] = eel_loss(class_logits, ood_target, w.eel_alpha)
        if w.distills:
            if teacher is None or ood_target is None:
                raise ValueError("DenseHybridLoss: distillation weights need the teacher's outputs and ood_target")
            for name, value in distillation_terms(class_logits, ood_logit, *teacher, ood_target,
                                                  w.distill_temperature, label=label,
                                                  class_weights=w.class_weights if w.distill_class_weighted
                                                  else None).items():
                if getattr(w, name):
                    terms[name] = value
        factor = {"class": w.class_, "dataset_posterior": w.dataset_posterior, "likelihood": w.likelihood,
                  "eel": w.eel, "distill_class_posterior": w.distill_class_posterior,
                  "distill_scores": w.distill_scores}
        total = sum((factor[name] * value for name, value in terms.items()),
                    start=class_logits.sum() * 0.0 + ood_logit.sum() * 0.0)
        logged = {name: float(value.detach()) for name, value in terms.items()}
        logged["total"] = float(total.detach())
        return total, logged
