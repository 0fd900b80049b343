"""Edge cases that the mutation run (`make mutants`, docs/DEVELOPING.md) found unguarded in core/, ros/ conversions
and the alert message, and evaluation/metrics.py: each test pins one behaviour a mutant changed without any other
test noticing."""
import numpy as np
import pytest

from densehybrid_ros.core.open_set import open_set_map


# -- core/open_set.py ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 1, 253, 254])
def test_every_anomaly_label_from_0_to_254_is_accepted(label):
    out = open_set_map(np.full((2, 2), 7, np.uint8), np.array([[0.0, 2.0], [2.0, 0.0]], np.float32), 1.0, label)
    np.testing.assert_array_equal(out, [[7, label], [label, 7]])


@pytest.mark.parametrize("label", [-1, 255, 256])
def test_anomaly_labels_outside_0_to_254_are_refused(label):
    with pytest.raises(ValueError, match=r"\[0, 254\]"):
        open_set_map(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.float32), 0.0, label)


def test_the_open_set_map_is_uint8_whatever_the_class_map_type():
    """It is published as mono8: a class map from another runtime (int64 argmax) must not change its type."""
    out = open_set_map(np.array([[3, 4]], np.int64), np.array([[0.0, 5.0]], np.float32), 1.0, 14)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[3, 14]])


# -- core/overlay.py: the score heat map --------------------------------------------------------------------------
def heat_reference(grey_levels: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(cv2.applyColorMap(grey_levels.astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def test_the_heat_map_maps_lo_to_dark_and_hi_to_bright_linearly_and_clips():
    from densehybrid_ros.core.overlay import score_to_colour
    # lo=-10, hi=117.5: grey = 2 * (score + 10), clipped to [0, 255] (a hand-computed reference).
    score = np.array([[-50.0, -10.0, -9.7, 0.0], [50.0, 107.5, 117.5, 1000.0]], np.float32)
    expected_grey = np.array([[0, 0, 1, 20], [120, 235, 255, 255]])
    np.testing.assert_array_equal(score_to_colour(score, -10.0, 117.5), heat_reference(expected_grey))
    # A float64 map gives the same picture.
    np.testing.assert_array_equal(score_to_colour(score.astype(np.float64), -10.0, 117.5),
                                  heat_reference(expected_grey))


def test_the_heat_map_paints_nan_black_and_refuses_what_is_not_a_float_map():
    from densehybrid_ros.core.overlay import score_to_colour
    out = score_to_colour(np.array([[np.nan, 5.0]], np.float32), 0.0, 10.0)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() != [0, 0, 0]
    with pytest.raises(ValueError, match=r"\(H, W\) float array, got shape \(2, 2, 3\)"):
        score_to_colour(np.zeros((2, 2, 3), np.float32), 0.0, 1.0)
    with pytest.raises(ValueError, match="dtype int32"):
        score_to_colour(np.zeros((2, 2), np.int32), 0.0, 1.0)
    with pytest.raises(ValueError, match="finite lo < hi"):
        score_to_colour(np.zeros((2, 2), np.float32), 1.0, 1.0)


# -- core/scores.py: the class axis may be anywhere --------------------------------------------------------------
def _logits(k=5, h=3, w=4, seed=0):
    return np.random.default_rng(seed).normal(0, 4, (k, h, w)).astype(np.float32)


def test_the_class_posterior_is_a_softmax_over_the_class_axis():
    from densehybrid_ros.core.scores import class_posterior
    s = _logits()
    e = np.exp(s.astype(np.float64))
    np.testing.assert_allclose(class_posterior(s), e / e.sum(axis=0), rtol=1e-5, atol=1e-7)
    # Stable for huge logits (a naive exp overflows), pixel by pixel: one pixel's logits do not shift another's.
    big = np.array([[[1000.0, -1000.0]], [[999.0, -1001.0]]], np.float32)
    expected = [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))]
    np.testing.assert_allclose(class_posterior(big)[:, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(class_posterior(big)[:, 0, 1], expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["log_likelihood", "class_posterior", "generative_score", "max_softmax_score",
                                  "max_logit_score", "entropy_score", "eel_score"])
def test_every_score_gives_the_same_map_with_the_class_axis_last(name):
    import densehybrid_ros.core.scores as scores
    fn = getattr(scores, name)
    s = _logits()
    first = fn(s)
    last = fn(np.moveaxis(s, 0, -1), axis=-1)
    if name == "class_posterior":
        last = np.moveaxis(last, -1, 0)
    np.testing.assert_allclose(last, first, rtol=1e-5, atol=1e-6)


def test_the_hybrid_score_takes_the_class_axis_too():
    from densehybrid_ros.core.scores import hybrid_score
    s, g = _logits(), np.random.default_rng(1).normal(0, 3, (3, 4)).astype(np.float32)
    np.testing.assert_allclose(hybrid_score(np.moveaxis(s, 0, -1), g, axis=-1), hybrid_score(s, g), rtol=1e-5,
                               atol=1e-6)


def test_the_log_dataset_posterior_is_the_log_of_the_sigmoid():
    from densehybrid_ros.core.scores import log_dataset_posterior
    g = np.array([-30.0, -2.0, 0.0, 3.0, 40.0])
    np.testing.assert_allclose(log_dataset_posterior(g), -np.log1p(np.exp(-g)), rtol=1e-6, atol=1e-12)


# -- core/validation.py ----------------------------------------------------------------------------------------------
def test_require_returns_the_value_or_names_the_missing_key_and_where():
    from densehybrid_ros.core.validation import ConfigError, require
    assert require({"tau": 1.5}, "tau", "card.yaml") == 1.5
    with pytest.raises(ConfigError, match="card.yaml: missing required key 'classes'"):
        require({"tau": 1.5}, "classes", "card.yaml")


# -- evaluation/metrics.py: per-image means ------------------------------------------------------------------------
def test_per_image_means_count_every_image_without_anomalies_and_leave_empty_means_nan():
    import math
    from densehybrid_ros.evaluation.metrics import AnomalyMetrics, PerImageMean
    acc = PerImageMean()
    for _ in range(3):
        acc.add(AnomalyMetrics(ap=math.nan, auroc=math.nan, fpr95=math.nan, n_pos=0, n_neg=10))
    out = acc.result()
    assert out["images_without_anomalies"] == 3 and out["images"] == 0
    assert all(math.isnan(out[k]) for k in ("ap", "auroc", "fpr95"))
    acc.add(AnomalyMetrics(ap=1.0, auroc=math.nan, fpr95=math.nan, n_pos=5, n_neg=0))  # all labelled pixels anomalous
    out = acc.result()
    assert out["ap"] == 1.0 and math.isnan(out["auroc"]) and out["images"] == 1
    assert AnomalyMetrics(0.5, 0.9, 0.1, 3, 4).to_dict() == {"ap": 0.5, "auroc": 0.9, "fpr95": 0.1, "n_pos": 3,
                                                               "n_neg": 4}


# -- core/alert.py: drawing coordinates -----------------------------------------------------------------------------
def test_polygon_vertices_map_to_pixel_edges_in_fixed_point():
    from densehybrid_ros.core.alert import POLYGON_SHIFT, polygon_to_pixels
    one = 1 << POLYGON_SHIFT
    # x = 0 is the left edge of the first pixel (-0.5 in OpenCV's centre-based coordinates), x = 1 the right edge
    # of the last (width - 0.5); the same for y.
    pts = polygon_to_pixels([(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)], height=100, width=200)
    assert pts.dtype == np.int32 and pts.shape == (3, 2)
    np.testing.assert_array_equal(pts, [[-one // 2, -one // 2], [199.5 * one, -one // 2], [99.5 * one, 99.5 * one]])
    np.testing.assert_array_equal(polygon_to_pixels([0, 0, 1, 0, 1, 1], 10, 10),
                                  [[-8, -8], [9.5 * one, -8], [9.5 * one, 9.5 * one]])


# -- core/alert.py: run-time changes keep the evidence --------------------------------------------------------------
def test_a_new_window_length_keeps_the_recent_hits_as_evidence():
    from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
    det = ObstacleAlertDetector(AlertConfig(tau=1.0, raise_frames=3, window_frames=5, min_area_fraction=0.0))
    hit = np.zeros((20, 20), np.float32)
    hit[15:18, 8:12] = 5.0
    assert [det.update(hit).state for _ in range(2)] == ["warning", "warning"]
    det.update_config(window_frames=4)          # the two hits stay in the (shorter) window
    state = det.update(hit)
    assert state.hits_in_window == 3 and state.state == "alert"


# -- core/overlay.py: what the overlay accepts ----------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 254])
def test_the_overlay_accepts_every_anomaly_label_from_0_to_254(label):
    from densehybrid_ros.core.overlay import overlay
    palette = [(i, i, i) for i in range(256)]
    out = overlay(np.full((8, 8, 3), 100, np.uint8), np.full((8, 8), label, np.uint8), palette, label, 0.5)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("label, alpha, message", [(255, 0.5, r"anomaly_label=255 .*\[0, 254\]"),
                                                   (-1, 0.5, r"anomaly_label=-1"),
                                                   (14, True, r"alpha=True is outside"),
                                                   (14, 1.5, r"alpha=1.5 is outside its valid range \[0, 1\]")])
def test_the_overlay_refuses_a_void_label_and_an_alpha_outside_0_to_1(label, alpha, message):
    from densehybrid_ros.core.overlay import overlay
    with pytest.raises(ValueError, match=message):
        overlay(np.zeros((8, 8, 3), np.uint8), None, [(0, 0, 0)] * 15, label, alpha)


# -- core/alert.py: the per-frame test at its edges ------------------------------------------------------------------
def _road_case(road_cells):
    """A 10x10 block (rows 40-49, columns 40-49) scoring 5 on a pavement (class 1); road (class 0) only at
    `road_cells` (row, first column, last column) below it. Whole-image corridor, road mode, gap 3 rows."""
    from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
    score = np.zeros((100, 100), np.float32)
    score[40:50, 40:50] = 5.0
    classes = np.ones((100, 100), np.uint8)
    classes[40:50, 40:50] = 7
    for row, c0, c1 in road_cells:
        classes[row, c0:c1 + 1] = 0
    det = ObstacleAlertDetector(AlertConfig(corridor=((0, 0), (1, 0), (1, 1), (0, 1)), corridor_mode="polygon_and_road",
                                            road_ids=(0,), tau=1.0, min_area_fraction=0.0, raise_frames=1,
                                            window_frames=1, road_contact_fraction=0.5,
                                            road_contact_gap_fraction=0.03))
    return det.update(score, classes)


def test_half_of_the_lower_edge_on_road_is_enough_and_road_is_looked_for_in_every_row_of_the_gap():
    # 3 columns have road right below (row 50), 2 more only three rows below (row 52): 5 of 10 lower-edge pixels.
    assert _road_case([(50, 40, 42), (52, 43, 44)]).frame_hit
    # 4 of 10 is not enough.
    assert not _road_case([(50, 40, 42), (52, 43, 43)]).frame_hit


def test_with_no_minimum_area_a_single_anomalous_pixel_counts():
    from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
    cfg = AlertConfig(corridor=((0, 0), (1, 0), (1, 1), (0, 1)), tau=1.0, min_area_fraction=0.0, raise_frames=1,
                      window_frames=1)
    assert cfg.min_area_pixels(480, 640) == 1
    score = np.zeros((40, 40), np.float32)
    score[20, 20] = 3.0
    state = ObstacleAlertDetector(cfg).update(score)
    assert state.frame_hit and state.boxes[0].area == 1
