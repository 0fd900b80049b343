"""Pixel anomaly metrics (exact, against sklearn) and the streaming histogram's error bound."""
import math
import zlib

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from densehybrid_ros.evaluation.metrics import (
    PerImageMean, average_precision, auroc, exact_curve, fpr_at_tpr, operating_point_at_tpr, pixel_metrics,
)
from densehybrid_ros.evaluation.streaming import ScoreBinning, ScoreHistogram, histogram_of


def sklearn_fpr95(y, s):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr[np.searchsorted(tpr, 0.95, side="left")]


# -- known answers ------------------------------------------------------------------------------------------

def test_ap_matches_sklearn_documented_example():
    # sklearn's average_precision_score docstring: y=[0,0,1,1], scores=[0.1,0.4,0.35,0.8] -> 0.8333...
    m = pixel_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert m.ap == pytest.approx(5 / 6, abs=1e-12)
    assert m.auroc == pytest.approx(0.75, abs=1e-12)
    # TPR reaches 1.0 (>= 0.95) first at threshold 0.35, where one of two inliers (0.4) is above it.
    assert m.fpr95 == pytest.approx(0.5)


def test_perfect_separation():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    m = pixel_metrics(scores, labels)
    assert (m.ap, m.auroc, m.fpr95) == (1.0, 1.0, 0.0)
    op = operating_point_at_tpr(exact_curve(scores, labels))
    assert op.threshold == 0.7 and op.tpr == 1.0 and op.fpr == 0.0
    # tau makes the node's strict rule (score > tau) take exactly the pixels >= threshold.
    assert np.array_equal(scores > op.tau, scores >= op.threshold)


def test_reversed_scores_give_worst_values():
    m = pixel_metrics(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1]))
    assert m.auroc == 0.0 and m.fpr95 == 1.0
    assert m.ap == pytest.approx(average_precision_score([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]))


def test_ties_form_one_operating_point():
    # Three pixels share 0.5 (two anomalies, one inlier): they enter together, precision 2/3 at that step.
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 1, 0, 0])
    curve = exact_curve(scores, labels)
    assert curve.thresholds.tolist() == [0.9, 0.5, 0.1]
    assert curve.tp.tolist() == [1, 3, 3] and curve.fp.tolist() == [0, 1, 2]
    expected_ap = (1 / 3) * 1.0 + (2 / 3) * (3 / 4)
    assert average_precision(curve) == pytest.approx(expected_ap)
    assert average_precision(curve) == pytest.approx(average_precision_score(labels, scores))
    assert auroc(curve) == pytest.approx(roc_auc_score(labels, scores))


def test_all_equal_scores_are_chance():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0])
    m = pixel_metrics(np.full(8, 3.0), labels)
    assert m.ap == pytest.approx(2 / 8)  # one operating point: precision = prevalence, recall 1
    assert m.auroc == pytest.approx(0.5)
    assert m.fpr95 == 1.0


def test_void_pixels_are_excluded():
    scores = np.array([[0.9, 0.1], [0.99, 0.5]])
    labels = np.array([[1, 0], [255, 0]], dtype=np.uint8)
    assert pixel_metrics(scores, labels) == pixel_metrics(np.array([0.9, 0.1, 0.5]), np.array([1, 0, 0]))


def test_no_anomalies_gives_nan_not_a_number_pretending_to_be_one():
    m = pixel_metrics(np.array([0.1, 0.5, 0.7]), np.array([0, 0, 0]))
    assert math.isnan(m.ap) and math.isnan(m.auroc) and math.isnan(m.fpr95)
    assert m.n_pos == 0 and m.n_neg == 3
    with pytest.raises(ValueError, match="no anomaly pixels"):
        operating_point_at_tpr(exact_curve(np.array([0.1, 0.5]), np.array([0, 0])))


def test_no_inliers_has_ap_one_and_undefined_auroc():
    m = pixel_metrics(np.array([0.1, 0.5]), np.array([1, 1]))
    assert m.ap == 1.0 and math.isnan(m.auroc) and math.isnan(m.fpr95)


def test_bad_labels_and_nan_scores_are_named():
    with pytest.raises(ValueError, match="anomaly labels must be 0"):
        pixel_metrics(np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="NaN"):
        pixel_metrics(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_metrics(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="target TPR"):
        operating_point_at_tpr(exact_curve(np.array([0.1, 0.5]), np.array([0, 1])), 1.5)


def test_per_image_mean_skips_images_without_anomalies():
    acc = PerImageMean()
    acc.add(pixel_metrics(np.array([0.9, 0.1]), np.array([1, 0])))  # AP 1
    acc.add(pixel_metrics(np.array([0.1, 0.9]), np.array([1, 0])))  # AP 0.5
    acc.add(pixel_metrics(np.array([0.1, 0.9]), np.array([0, 0])))  # no anomalies: skipped
    r = acc.result()
    assert r["ap"] == pytest.approx(0.75) and r["images"] == 2 and r["images_without_anomalies"] == 1


# -- random cross-checks against sklearn -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_random_data_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 20000))
    y = rng.random(n) < rng.uniform(0.01, 0.6)
    y[0], y[1] = True, False
    s = rng.normal(size=n) + y * rng.uniform(0, 3)
    if seed % 3 == 0:
        s = np.round(s, 1)  # many ties
    if seed % 4 == 1:
        s = s.astype(np.float32)
    m = pixel_metrics(s, y.astype(np.uint8))
    assert m.ap == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert m.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert m.fpr95 == pytest.approx(sklearn_fpr95(y, s), abs=1e-9)
    curve = exact_curve(s, y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr[1:], atol=1e-12)  # sklearn prepends the (0, 0) point at +inf
    np.testing.assert_allclose(curve.tpr, tpr[1:], atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds, thr[1:])


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 0.99])
def test_fpr_at_other_targets_matches_roc_curve(target):
    rng = np.random.default_rng(7)
    y = rng.random(5000) < 0.2
    s = rng.normal(size=5000) + y
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert fpr_at_tpr(exact_curve(s, y), target) == pytest.approx(fpr[np.searchsorted(tpr, target)], abs=1e-12)


# -- streaming histogram ------------------------------------------------------------------------------------

def realistic_scores(kind, n, rng):
    """Score distributions of the kinds the seven score types produce, with 3% anomaly pixels."""
    y = rng.random(n) < 0.03
    k = int(y.sum())
    s = np.empty(n)
    transform = "identity"
    if kind == "mixed_gaussians":  # hybrid / generative / max-logit: around -20, two inlier modes
        mode = rng.random(n - k) < 0.7
        s[~y] = np.where(mode, rng.normal(-20, 2, n - k), rng.normal(-15, 1, n - k))
        s[y] = rng.normal(-13, 2.5, k)
    elif kind == "heavy_ties":  # quantised scores and a 30% mass at a single value
        s[~y] = np.round(rng.normal(0, 1, n - k), 2)
        s[y] = np.round(rng.normal(1.5, 1, k), 2)
        s[rng.random(n) < 0.3] = 0.5
    elif kind == "saturated_posterior":  # P(d_out|x): float32 sigmoid, many values at or next to 1.0
        g = np.where(rng.random(n - k) < 0.98, rng.normal(-6, 3, n - k), rng.normal(8, 3, n - k))
        s[~y] = 1 / (1 + np.exp(-g))
        s[y] = 1 / (1 + np.exp(-rng.normal(9, 4, k)))
        transform = "logit"
    elif kind == "near_zero":  # entropy / max-softmax of confident pixels
        s[~y] = np.exp(rng.normal(-8, 2, n - k))
        s[y] = np.exp(rng.normal(-3, 2, k))
    elif kind == "narrow_far_from_zero":  # a spread of 0.05 around -20
        s[~y] = rng.normal(-20, 0.05, n - k)
        s[y] = rng.normal(-19.95, 0.05, k)
    return s.astype(np.float32), y.astype(np.uint8), transform


STREAMING_TOLERANCE = {20: 1e-4, 16: 1e-3}


@pytest.mark.parametrize("kind", ["mixed_gaussians", "heavy_ties", "saturated_posterior", "near_zero",
                                  "narrow_far_from_zero"])
def test_streaming_error_is_bounded_on_millions_of_pixels(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    n = 2_000_000
    s, y, transform = realistic_scores(kind, n, rng)
    exact = pixel_metrics(s, y)
    frames = np.array_split(np.arange(n), 8)  # eight "frames"; the bins are fitted on the first only
    for bits, tol in STREAMING_TOLERANCE.items():
        hist = ScoreHistogram(ScoreBinning.fit(s[frames[0]], bits, transform))
        for f in frames:
            hist.add(s[f], y[f])
        streamed = pixel_metrics_from(hist)
        assert streamed.n_pos == exact.n_pos and streamed.n_neg == exact.n_neg
        assert abs(streamed.ap - exact.ap) < tol, (bits, streamed.ap, exact.ap)
        assert abs(streamed.auroc - exact.auroc) < tol, (bits, streamed.auroc, exact.auroc)
        assert abs(streamed.fpr95 - exact.fpr95) < tol, (bits, streamed.fpr95, exact.fpr95)


@pytest.mark.parametrize("first_frame", ["constant", "shifted", "wide"])
def test_streaming_survives_an_unrepresentative_first_frame(first_frame):
    """The bins are fitted on the first frame only: a grey frame (near-constant scores), a frame of another
    condition (shifted by 15 spreads) or a 100x wider one must still leave the split's metrics accurate."""
    rng = np.random.default_rng(11)
    s, y, _ = realistic_scores("mixed_gaussians", 1_000_000, rng)
    first = {"constant": np.full(1000, -18.0) + rng.normal(0, 1e-7, 1000),
             "shifted": rng.normal(-17 + 15 * 2.5, 2.5, 1000),
             "wide": rng.normal(-17, 250, 1000)}[first_frame].astype(np.float32)
    exact = pixel_metrics(s, y)
    hist = ScoreHistogram(ScoreBinning.fit(first, 20))
    hist.add(s, y)
    streamed = pixel_metrics_from(hist)
    assert abs(streamed.ap - exact.ap) < 1e-3
    assert abs(streamed.auroc - exact.auroc) < 1e-3
    assert abs(streamed.fpr95 - exact.fpr95) < 1e-3


def pixel_metrics_from(hist):
    from densehybrid_ros.evaluation.metrics import anomaly_metrics
    return anomaly_metrics(hist.curve())


def test_histogram_is_exact_when_every_value_has_its_own_bin():
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=100000), 1).astype(np.float32)  # ~80 distinct values, far apart
    y = (rng.random(100000) < 0.1 + 0.05 * (s > 0)).astype(np.uint8)
    exact = pixel_metrics(s, y)
    streamed = pixel_metrics_from(histogram_of(s, y, bits=16))
    assert streamed.ap == pytest.approx(exact.ap, abs=1e-12)
    assert streamed.auroc == pytest.approx(exact.auroc, abs=1e-12)
    assert streamed.fpr95 == pytest.approx(exact.fpr95, abs=1e-12)


def test_coarsened_histogram_equals_histogram_built_at_fewer_bits():
    rng = np.random.default_rng(4)
    s = rng.normal(size=50000).astype(np.float32)
    y = (rng.random(50000) < 0.1).astype(np.uint8)
    fine = ScoreBinning.fit(s, 20)
    h20 = ScoreHistogram(fine)
    h20.add(s, y)
    h16 = ScoreHistogram(fine.coarsened(16))
    h16.add(s, y)
    c = h20.coarsened(16)
    np.testing.assert_array_equal(c.pos, h16.pos)
    np.testing.assert_array_equal(c.neg, h16.neg)


def test_histogram_threshold_matches_the_decision_on_the_maps():
    rng = np.random.default_rng(5)
    s = rng.normal(size=200000).astype(np.float32)
    y = (rng.random(200000) < 0.05 + 0.2 * (s > 1)).astype(np.uint8)
    hist = histogram_of(s, y)
    op = operating_point_at_tpr(hist.curve())
    tp = np.count_nonzero((s > op.tau) & (y == 1))
    fp = np.count_nonzero((s > op.tau) & (y == 0))
    # Bin edges are recomputed from the bin map, so a pixel at an edge may fall either side: allow a few pixels.
    assert abs(tp / np.count_nonzero(y == 1) - op.tpr) < 1e-4
    assert abs(fp / np.count_nonzero(y == 0) - op.fpr) < 1e-4
    assert op.tpr >= 0.95


@pytest.mark.parametrize("seed", range(3))
def test_strict_threshold_makes_the_decision_of_the_threshold_on_float32_maps(seed):
    from densehybrid_ros.evaluation.metrics import strict_threshold_below

    # Thresholds are float64 bin edges; scores are float32 and sit on the float32 values around each threshold,
    # where a tau that is not itself a float32 value would be rounded by NumPy 2's float32 comparison.
    rng = np.random.default_rng(seed)
    for threshold in rng.uniform(-30, 10, 500):
        tau = strict_threshold_below(float(threshold))
        assert float(np.float32(tau)) == tau  # a float32 value: the comparison cannot round it
        centre = np.float32(threshold)
        near = [centre]
        for _ in range(3):
            near = [np.nextafter(near[0], np.float32(-np.inf)), *near, np.nextafter(near[-1], np.float32(np.inf))]
        scores = np.array(near, np.float32)
        assert np.array_equal(scores > tau, scores.astype(np.float64) >= threshold), threshold
    assert strict_threshold_below(-math.inf) == -math.inf


def test_histogram_rejects_nan_and_logit_out_of_range():
    with pytest.raises(ValueError, match="NaN"):
        histogram_of(np.array([0.1, np.nan], np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="logit"):
        histogram_of(np.array([0.1, 1.5], np.float32), np.array([0, 1]), transform="logit")
    with pytest.raises(ValueError, match="bits"):
        ScoreBinning(bits=40)
    with pytest.raises(ValueError, match="cannot merge"):
        ScoreHistogram(ScoreBinning(0, 1, 16)).merge(ScoreHistogram(ScoreBinning(0, 2, 16)))


def test_infinite_scores_land_in_the_end_bins():
    s = np.array([-np.inf, -5, 0, 5, np.inf], np.float32)
    y = np.array([0, 0, 1, 0, 1], np.uint8)
    assert pixel_metrics_from(histogram_of(s, y, 16)) == pixel_metrics(s, y)


def measure_streaming_error(n: int = 4_000_000, bits_list=(20, 16, 12)) -> None:
    """The table of docs/EVALUATION.md: `python tests/test_metrics.py`."""
    print(f"| distribution ({n / 1e6:g} M px, 8 frames) | bits | |AP err| | |AUROC err| | |FPR95 err| |")
    print("|---|---|---|---|---|")
    for kind in ("mixed_gaussians", "heavy_ties", "saturated_posterior", "near_zero", "narrow_far_from_zero"):
        rng = np.random.default_rng(zlib.crc32(kind.encode()))
        s, y, transform = realistic_scores(kind, n, rng)
        exact = pixel_metrics(s, y)
        frames = np.array_split(np.arange(n), 8)
        for bits in bits_list:
            hist = ScoreHistogram(ScoreBinning.fit(s[frames[0]], bits, transform))
            for f in frames:
                hist.add(s[f], y[f])
            m = pixel_metrics_from(hist)
            print(f"| {kind} | {bits} | {abs(m.ap - exact.ap):.1e} | {abs(m.auroc - exact.auroc):.1e} | "
                  f"{abs(m.fpr95 - exact.fpr95):.1e} |")


if __name__ == "__main__":
    measure_streaming_error()
