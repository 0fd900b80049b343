"""The anomaly scores: closed forms on hand-worked cases, their invariances, numerical safety, numpy == torch."""
import math

import numpy as np
import pytest

from densehybrid_ros.core import scores as S

RNG = np.random.default_rng(0)


def logits(k=5, h=3, w=4, scale=3.0):
    return (RNG.standard_normal((k, h, w)) * scale).astype(np.float32)


def test_log_likelihood_hand_worked():
    s = np.array([0.0, math.log(3.0)], dtype=np.float32).reshape(2, 1, 1)  # exp: 1 + 3
    assert S.log_likelihood(s)[0, 0] == pytest.approx(math.log(4.0), abs=1e-6)


def test_hybrid_score_hand_worked_eq6():
    # s = (0, ln 3): logsumexp = ln 4; g = 0: ln sigmoid(0) = -ln 2; score = -ln 2 - ln 4 = -ln 8
    s = np.array([0.0, math.log(3.0)], dtype=np.float32).reshape(2, 1, 1)
    g = np.zeros((1, 1), dtype=np.float32)
    assert S.hybrid_score(s, g)[0, 0] == pytest.approx(-math.log(8.0), abs=1e-6)


def test_max_softmax_entropy_max_logit_hand_worked():
    s = np.array([0.0, math.log(3.0)], dtype=np.float32).reshape(2, 1, 1)  # posterior (1/4, 3/4)
    assert S.max_softmax_score(s)[0, 0] == pytest.approx(0.25, abs=1e-6)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert S.entropy_score(s)[0, 0] == pytest.approx(h, abs=1e-6)
    assert S.max_logit_score(s)[0, 0] == pytest.approx(-math.log(3.0), abs=1e-6)
    assert S.eel_score(s)[0, 0] == pytest.approx(h - math.log(4.0), abs=1e-6)


def test_entropy_of_uniform_posterior_is_log_k():
    s = np.full((7, 2, 2), 5.0, dtype=np.float32)
    np.testing.assert_allclose(S.entropy_score(s), math.log(7), atol=1e-6)


def test_dataset_posterior_is_sigmoid():
    g = np.array([[-2.0, 0.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(S.dataset_posterior(g), 1 / (1 + np.exp(-g)), rtol=1e-6)


@pytest.mark.parametrize("name", ["max_softmax", "entropy"])
def test_posterior_scores_ignore_a_constant_added_to_the_logits(name):
    s, g = logits(), logits(k=1)[0]
    shift = RNG.standard_normal((1, 3, 4)).astype(np.float32) * 10  # a different constant per pixel
    np.testing.assert_allclose(S.compute_score(name, s + shift, g), S.compute_score(name, s, g), atol=2e-5)


@pytest.mark.parametrize("name", ["generative", "hybrid", "max_logit", "eel"])
def test_likelihood_scores_shift_by_exactly_the_constant(name):
    s, g = logits(), logits(k=1)[0]
    shift = np.float32(2.5)
    np.testing.assert_allclose(S.compute_score(name, s + shift, g), S.compute_score(name, s, g) - shift, atol=1e-5)


def test_hybrid_is_dataset_posterior_log_minus_log_likelihood():
    s, g = logits(), logits(k=1)[0]
    expected = np.log(S.dataset_posterior(g).astype(np.float64)) - S.log_likelihood(s.astype(np.float64))
    np.testing.assert_allclose(S.hybrid_score(s, g), expected, atol=1e-5)


@pytest.mark.parametrize("name", S.SCORE_TYPES)
def test_scores_are_finite_for_logits_of_magnitude_1e4(name):
    s = np.zeros((4, 2, 3), dtype=np.float32)
    s[0] = 1e4
    s[1] = -1e4
    s[2, 0] = 1e4  # ties at the extreme
    g = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype=np.float32)
    out = S.compute_score(name, s, g)
    assert np.all(np.isfinite(out)), out


def test_log_sigmoid_is_exact_where_log_of_sigmoid_underflows():
    g = np.array([-200.0, -1e4], dtype=np.float32)
    np.testing.assert_allclose(S.log_sigmoid(g), g, rtol=1e-6)  # ln sigmoid(x) -> x for x << 0


@pytest.mark.parametrize("name", S.SCORE_TYPES)
def test_float16_outputs_are_computed_in_float32(name):
    s = (logits(scale=8.0) + 20).astype(np.float16)  # exp(28) overflows float16
    g = logits(k=1)[0].astype(np.float16)
    out = S.compute_score(name, s, g)
    ref = S.compute_score(name, s.astype(np.float32), g.astype(np.float32))
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_batched_and_single_image_layouts_agree():
    s, g = logits(), logits(k=1)[0]
    batched = S.hybrid_score(np.stack([s, s]), np.stack([g, g]))
    np.testing.assert_allclose(batched[1], S.hybrid_score(s, g))


def test_unknown_score_type_names_the_valid_ones():
    with pytest.raises(ValueError, match="hybrid"):
        S.compute_score("energy_typo", logits(), logits(k=1)[0])


@pytest.mark.parametrize("name", S.SCORE_TYPES)
def test_numpy_and_torch_scores_agree(name):
    torch = pytest.importorskip("torch")
    from densehybrid_ros.model import scores as T

    s, g = logits(k=6, h=5, w=7, scale=6.0), logits(k=1, h=5, w=7)[0]
    ref = S.compute_score(name, s, g)
    out = T.compute_score(name, torch.from_numpy(s), torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # and at extreme magnitudes
    s2 = s * 2000
    out2 = T.compute_score(name, torch.from_numpy(s2), torch.from_numpy(g * 2000)).numpy()
    assert np.all(np.isfinite(out2))
    np.testing.assert_allclose(out2, S.compute_score(name, s2, g * 2000), rtol=1e-5, atol=1e-3)
