"""The terms of the DenseHybrid loss (eq. 7, 12, 14, 15) and the EEL loss, on tensors small enough to work by hand."""
import math

import pytest
import torch

from densehybrid_ros.training.losses import (DenseHybridLoss, DenseHybridLossWeights, class_loss,
                                             dataset_posterior_loss, distillation_terms, eel_loss, likelihood_loss,
                                             softmax_entropy)

torch.set_num_threads(1)


def _logits(*pixels):
    """(1,K,1,P) logits from P per-pixel logit vectors."""
    return torch.tensor(pixels, dtype=torch.float64).T[None, :, None, :].clone()


def _map(*values):
    return torch.tensor(values, dtype=torch.long)[None, None, :]


def test_class_loss_is_mean_negative_log_softmax_over_inlier_pixels():
    s = _logits([2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0])
    label = _map(0, 2, 255)  # third pixel void / pasted
    expected = (-(2 - math.log(math.exp(2) + 2)) - (0 - math.log(2 + math.e))) / 2
    assert class_loss(s, label).item() == pytest.approx(expected, rel=1e-12)


def test_class_loss_ignores_pasted_pixels_whatever_their_logits():
    s = _logits([2.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    a = class_loss(s, _map(0, 255))
    s2 = s.clone()
    s2[..., 1] = torch.tensor([-50.0, 80.0, 3.0])[:, None]
    assert class_loss(s2, _map(0, 255)).item() == pytest.approx(a.item(), rel=1e-12)


def test_class_loss_rejects_the_anomaly_label():
    with pytest.raises(ValueError, match="outside 0..2"):
        class_loss(_logits([0.0, 0.0, 0.0]), _map(3))


def test_dataset_posterior_loss_is_bce_inliers_to_d_in_negatives_to_d_out():
    g = torch.tensor([[[1.5, -0.5, 2.0, 7.0]]], dtype=torch.float64)
    target = _map(0, 1, 1, 255)
    sig = lambda x: 1 / (1 + math.exp(-x))
    expected = (-math.log(1 - sig(1.5)) - math.log(sig(-0.5)) - math.log(sig(2.0))) / 3
    assert dataset_posterior_loss(g[:, 0][:, None], target).item() == pytest.approx(expected, rel=1e-12)


def test_likelihood_loss_is_mean_logsumexp_over_negatives_only():
    s = _logits([1.0, 2.0], [0.0, 0.0], [9.0, 9.0])
    target = _map(1, 1, 0)
    expected = (math.log(math.e + math.e ** 2) + math.log(2)) / 2
    assert likelihood_loss(s, target).item() == pytest.approx(expected, rel=1e-12)


def test_likelihood_margin_is_a_hinge_bounded_below_by_zero():
    s = _logits([1.0, 2.0], [-30.0, -30.0])
    target = _map(1, 1)
    lse0 = math.log(math.e + math.e ** 2)
    assert likelihood_loss(s, target, margin=1.0).item() == pytest.approx((lse0 - 1.0) / 2, rel=1e-12)
    very_negative = _logits([-100.0, -100.0])
    assert likelihood_loss(very_negative, _map(1), margin=0.0).item() == 0.0
    assert likelihood_loss(very_negative, _map(1)).item() < -99


def test_terms_without_pixels_are_zero_and_keep_the_graph():
    s = _logits([1.0, 2.0]).requires_grad_()
    g = torch.zeros(1, 1, 1, dtype=torch.float64, requires_grad=True)
    none = _map(255)
    for value in (class_loss(s, none), dataset_posterior_loss(g, none), likelihood_loss(s, none),
                  eel_loss(s, none)):
        assert value.item() == 0.0
        assert value.requires_grad


def test_entropy_matches_closed_form():
    s = _logits([0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0])
    h = softmax_entropy(s)[0, 0]
    assert h[0].item() == pytest.approx(math.log(4), rel=1e-12)
    assert h[1].item() == pytest.approx(0.0, abs=1e-30)


def test_eel_loss_matches_hand_computation():
    s = _logits([0.0, 0.0], [math.log(3.0), -10.0], [1.0, 1.0])
    target = _map(1, 0, 255)
    alpha = 0.5
    softplus = lambda x: math.log1p(math.exp(x))
    e_anom = math.log(2.0)  # logsumexp(0, 0)
    h_anom = math.log(2.0)
    e_in = math.log(3.0 + math.exp(-10.0))
    p = [3.0 / (3.0 + math.exp(-10)), math.exp(-10) / (3.0 + math.exp(-10))]
    h_in = -sum(q * math.log(q) for q in p)
    expected = (softplus(e_anom) - alpha * h_anom) + (softplus(-e_in) + alpha * h_in)
    assert eel_loss(s, target, alpha=alpha).item() == pytest.approx(expected, rel=1e-10)


def test_combined_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    s = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    g = torch.randn(2, 4, 6, dtype=torch.float64)
    label = torch.randint(0, 5, (2, 4, 6))
    target = torch.zeros(2, 4, 6, dtype=torch.long)
    target[:, :2, :2] = 1
    label[target == 1] = 255
    target[0, 3, 5] = 255
    label[0, 3, 5] = 255
    w = DenseHybridLossWeights(class_=1.0, dataset_posterior=0.3, likelihood=0.03, eel=0.2, margin=-1.0)
    total, terms = DenseHybridLoss(w)(s, g, label, target)
    expected = (class_loss(s, label) + 0.3 * dataset_posterior_loss(g, target)
                + 0.03 * likelihood_loss(s, target, -1.0) + 0.2 * eel_loss(s, target))
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert set(terms) == {"class", "dataset_posterior", "likelihood", "eel", "total"}


def test_closed_set_weights_compute_only_the_class_term_and_need_no_ood_target():
    s = torch.randn(1, 3, 2, 2)
    g = torch.randn(1, 2, 2, requires_grad=True)
    total, terms = DenseHybridLoss(DenseHybridLossWeights(dataset_posterior=0, likelihood=0))(
        s, g, torch.zeros(1, 2, 2, dtype=torch.long))
    assert set(terms) == {"class", "total"}
    total.backward()
    assert torch.equal(g.grad, torch.zeros_like(g))  # the head is in the graph (DDP needs that), gradient zero


def test_missing_ood_target_for_stage_two_is_an_error():
    with pytest.raises(ValueError, match="ood_target is required"):
        DenseHybridLoss()(torch.randn(1, 3, 2, 2), torch.randn(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_gradients_push_negatives_down_and_inliers_towards_their_class():
    s = _logits([0.5, 0.5], [0.5, 0.5]).requires_grad_()
    g = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    label, target = _map(0, 255), _map(0, 1)
    total, _ = DenseHybridLoss(DenseHybridLossWeights(dataset_posterior=1.0, likelihood=1.0))(s, g, label, target)
    total.backward()
    grad = s.grad[0, :, 0]
    assert grad[0, 0] < 0 < grad[1, 0]  # inlier: raise the labelled logit, lower the other
    assert (grad[:, 1] > 0).all()  # negative: lower every logit (likelihood term)
    assert g.grad[0, 0, 0] > 0 > g.grad[0, 0, 1]  # P(d_out|x): down on the inlier, up on the negative


def test_gradients_match_finite_differences():
    torch.manual_seed(1)
    s = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    label = torch.tensor([[[0, 1, 255], [2, 255, 0]]])
    target = torch.tensor([[[0, 0, 1], [0, 1, 255]]])
    loss = DenseHybridLoss(DenseHybridLossWeights(eel=0.5, margin=-2.0))
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, label, target)[0], (s, g))


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_no_nan_or_inf_for_huge_logits(magnitude):
    s = torch.full((1, 4, 2, 2), 0.0)
    s[:, 0] = magnitude
    s[:, 1] = -magnitude
    s.requires_grad_()
    g = torch.full((1, 2, 2), magnitude, requires_grad=True)
    label = torch.tensor([[[1, 0], [255, 2]]])
    target = torch.tensor([[[0, 0], [1, 255]]])
    total, terms = DenseHybridLoss(DenseHybridLossWeights(eel=1.0, margin=0.0))(s, g, label, target)
    total.backward()
    assert math.isfinite(total.item()) and all(math.isfinite(v) for v in terms.values())
    assert torch.isfinite(s.grad).all() and torch.isfinite(g.grad).all()


def test_float16_logits_are_computed_in_float32():
    s = torch.full((1, 3, 1, 1), 60.0, dtype=torch.float16)  # exp(60) overflows float16
    assert math.isfinite(likelihood_loss(s, _map(1)).item())


def test_balanced_dataset_posterior_loss_averages_inliers_and_negatives_separately():
    # 3 inlier pixels with g = 0 (BCE ln 2 each) and 1 negative pixel with g = 2 (BCE softplus(-2)); one ignored.
    g = torch.tensor([[[0.0, 0.0, 0.0, 2.0, 9.0]]], dtype=torch.float64)
    target = torch.tensor([[[0, 0, 0, 1, 255]]])
    pooled = (3 * math.log(2) + math.log1p(math.exp(-2))) / 4
    balanced = math.log(2) + math.log1p(math.exp(-2))
    assert dataset_posterior_loss(g, target).item() == pytest.approx(pooled, rel=1e-12)
    assert dataset_posterior_loss(g, target, balanced=True).item() == pytest.approx(balanced, rel=1e-12)
    # A batch without negatives: the negative half is 0, not NaN.
    assert dataset_posterior_loss(g[..., :3], target[..., :3], balanced=True).item() == pytest.approx(math.log(2))


def test_class_weights_give_a_weighted_mean_over_inlier_pixels():
    s = _logits([2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0])
    label = _map(0, 2, 255)
    nll0 = -(2 - math.log(math.exp(2) + 2))
    nll2 = -(0 - math.log(2 + math.e))
    weighted = class_loss(s, label, (1.0, 7.0, 3.0)).item()
    assert weighted == pytest.approx((1 * nll0 + 3 * nll2) / 4, rel=1e-12)
    assert class_loss(s, label, (2.0, 2.0, 2.0)).item() == pytest.approx(class_loss(s, label).item(), rel=1e-12)


def test_class_weights_must_match_the_number_of_classes():
    s = _logits([2.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="3 classes"):
        class_loss(s, _map(0), (1.0, 2.0))


def test_loss_module_passes_class_weights_to_the_class_term():
    s = _logits([2.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    label = _map(0, 2)
    ood = torch.zeros(1, 1, 2)
    weights = DenseHybridLossWeights(class_=1.0, dataset_posterior=0.0, likelihood=0.0, class_weights=(1, 1, 9))
    _, logged = DenseHybridLoss(weights)(s, ood, label, _map(0, 0))
    assert logged["class"] == pytest.approx(class_loss(s, label, (1, 1, 9)).item())
    assert logged["class"] != pytest.approx(class_loss(s, label).item())


# -- distillation from a teacher ---------------------------------------------------------------------------------

def test_distillation_is_zero_when_the_student_matches_the_teacher_and_grows_with_the_gap():
    s = _logits([2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [3.0, 3.0, 3.0])
    g = torch.tensor([[[-2.0, 0.5, 4.0]]], dtype=torch.float64)
    target = _map(0, 0, 1)
    same = distillation_terms(s, g, s.clone(), g.clone(), target, temperature=2.0)
    assert same["distill_class_posterior"].item() == pytest.approx(0.0, abs=1e-12)
    assert same["distill_scores"].item() == pytest.approx(0.0, abs=1e-12)
    teacher = s.clone()
    teacher[:, 1, :, 0] += 3.0  # the teacher puts a runner-up class on pixel 0
    apart = distillation_terms(s, g, teacher, g, target, temperature=2.0)
    # T^2 KL(P_t || P_s) at T=2 on pixel 0, halved by the mean over the two inlier pixels.
    pt = torch.softmax(teacher[0, :, 0, 0] / 2, 0)
    ps = torch.softmax(s[0, :, 0, 0] / 2, 0)
    expected = 4 * float((pt * (pt.log() - ps.log())).sum()) / 2
    assert apart["distill_class_posterior"].item() == pytest.approx(expected, rel=1e-9)
    assert apart["distill_scores"].item() > 0  # logsumexp moved too


def test_distillation_ignores_the_class_posterior_on_pasted_negatives_and_ignored_pixels():
    s = _logits([2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [3.0, 3.0, 3.0])
    g = torch.zeros(1, 1, 3, dtype=torch.float64)
    teacher = s.clone()
    teacher[:, 0, :, 2] += 5.0  # differs only on pixel 2
    negative = distillation_terms(s, g, teacher, g, _map(0, 0, 1))
    assert negative["distill_class_posterior"].item() == pytest.approx(0.0, abs=1e-12)
    assert negative["distill_scores"].item() > 0  # ln p^(x) of a negative is a score target
    ignored = distillation_terms(s, g, teacher, g, _map(0, 0, 255))
    assert ignored["distill_class_posterior"].item() == pytest.approx(0.0, abs=1e-12)
    assert ignored["distill_scores"].item() == pytest.approx(0.0, abs=1e-12)


def test_class_weighted_distillation_weights_each_inlier_pixel_by_its_label():
    s = _logits([2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [3.0, 3.0, 3.0])
    g = torch.zeros(1, 1, 3, dtype=torch.float64)
    teacher = s.clone()
    teacher[:, 2, :, :] += torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)  # disagreements of two sizes
    target, label = _map(0, 0, 0), _map(2, 0, 255)
    kl = [distillation_terms(s[..., i:i + 1], g[..., i:i + 1], teacher[..., i:i + 1], g[..., i:i + 1],
                             target[..., i:i + 1])["distill_class_posterior"].item() for i in range(3)]
    weighted = distillation_terms(s, g, teacher, g, target, label=label, class_weights=(1.0, 1.0, 4.0))
    # class 2 weighs 4, class 0 weighs 1 and the void inlier pixel keeps weight 1: (4 kl0 + kl1 + kl2) / 6
    expected = (4 * kl[0] + kl[1] + kl[2]) / 6
    assert weighted["distill_class_posterior"].item() == pytest.approx(expected, rel=1e-9)
    assert expected != pytest.approx(sum(kl) / 3)
    module = DenseHybridLossWeights(class_=0.0, dataset_posterior=0.0, likelihood=0.0, distill_class_posterior=1.0,
                                    class_weights=(1.0, 1.0, 4.0), distill_class_weighted=True)
    _, logged = DenseHybridLoss(module)(s, g, label, target, (teacher, g))
    assert logged["distill_class_posterior"] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="one weight per class"):
        distillation_terms(s, g, teacher, g, target, label=label, class_weights=(1.0, 4.0))
    # A pasted negative has no class: the weighted KL leaves it out as the unweighted one does.
    no_first = distillation_terms(s, g, teacher, g, _map(1, 0, 0), label=label, class_weights=(1.0, 1.0, 4.0))
    assert no_first["distill_class_posterior"].item() == pytest.approx((kl[1] + kl[2]) / 2, rel=1e-9)
    with pytest.raises(ValueError, match="class_weights"):
        DenseHybridLoss(DenseHybridLossWeights(distill_class_posterior=1.0, distill_class_weighted=True))


def test_loss_module_adds_weighted_distillation_and_needs_the_teacher():
    s = _logits([2.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    g = torch.zeros(1, 1, 2, dtype=torch.float64)
    label, target = _map(0, 2), _map(0, 0)
    teacher = (s + torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)[None, :, None, None], g + 1.0)
    plain = DenseHybridLossWeights(class_=1.0, dataset_posterior=0.3, likelihood=0.03)
    weights = DenseHybridLossWeights(class_=1.0, dataset_posterior=0.3, likelihood=0.03,
                                     distill_class_posterior=0.5, distill_scores=0.2, distill_temperature=2.0)
    base, _ = DenseHybridLoss(plain)(s, g, label, target)
    total, logged = DenseHybridLoss(weights)(s, g, label, target, teacher)
    terms = distillation_terms(s, g, *teacher, target, temperature=2.0)
    assert logged["distill_class_posterior"] == pytest.approx(terms["distill_class_posterior"].item())
    assert total.item() == pytest.approx(base.item() + 0.5 * terms["distill_class_posterior"].item()
                                         + 0.2 * terms["distill_scores"].item(), rel=1e-9)
    with pytest.raises(ValueError, match="teacher"):
        DenseHybridLoss(weights)(s, g, label, target)
