"""SegmentMeIfYouCan component metrics on hand-made masks."""
import math

import numpy as np
import pytest

from densehybrid_ros.evaluation.components import (
    SIOU_THRESHOLDS, ComponentAccumulator, frame_components, scaled_min_areas,
)


def two_obstacles():
    """Two 3x3 obstacles two columns apart, on a 10x14 inlier frame."""
    gt = np.zeros((10, 14), np.uint8)
    gt[2:5, 2:5] = 1  # A
    gt[2:5, 7:10] = 1  # B (columns 5 and 6 between them)
    return gt


def test_perfect_prediction():
    gt = two_obstacles()
    frame = frame_components(gt, gt == 1)
    assert frame.siou.tolist() == [1.0, 1.0] and frame.ppv.tolist() == [1.0, 1.0]
    acc = ComponentAccumulator()
    acc.add(frame)
    r = acc.result()
    assert r.f1["mean"] == 1.0 and r.mean_siou == 1.0 and r.mean_ppv == 1.0
    assert r.gt_components == 2 and r.pred_components == 2


def test_blob_over_two_obstacles_is_not_charged_for_the_other_one():
    gt = two_obstacles()
    pred = np.zeros_like(gt, bool)
    pred[2:5, 2:10] = True  # one blob covering A, the 2-column gap (6 px) and B: 24 px
    frame = frame_components(gt, pred)
    # sIoU(A) = |A| / (|A| + gap) = 9 / 15: B's pixels are the adjustment and leave the union (plain IoU: 9 / 24).
    np.testing.assert_allclose(frame.siou, [9 / 15, 9 / 15])
    np.testing.assert_allclose(frame.ppv, [18 / 24])
    assert frame.gt_area.tolist() == [9, 9] and frame.pred_area.tolist() == [24]


def test_f1_over_thresholds_with_a_false_positive():
    gt = two_obstacles()
    pred = np.zeros_like(gt, bool)
    pred[2:5, 2:10] = True
    pred[7:9, 11:13] = True  # a false positive blob, PPV 0
    acc = ComponentAccumulator()
    acc.add(frame_components(gt, pred))
    r = acc.result()
    # t <= 0.6 (8 of the 11 thresholds): TP 2, FN 0, FP 1 -> F1 = 4/5; t in {0.65, 0.7, 0.75}: TP 0, FN 2 -> 0.
    # The merged blob's PPV 0.75 is not < 0.75, so it is never a false positive.
    assert r.f1["0.25"] == pytest.approx(0.8) and r.f1["0.5"] == pytest.approx(0.8) and r.f1["0.75"] == 0.0
    assert r.fp["0.75"] == 1 and r.fn["0.75"] == 2 and r.tp["0.25"] == 2
    assert r.f1["mean"] == pytest.approx(8 * 0.8 / 11)
    assert r.mean_siou == pytest.approx(0.6) and r.mean_ppv == pytest.approx((0.75 + 0.0) / 2)
    assert len(SIOU_THRESHOLDS) == 11 and SIOU_THRESHOLDS[0] == 0.25 and SIOU_THRESHOLDS[-1] == 0.75


def test_missed_obstacle_has_zero_siou():
    gt = two_obstacles()
    pred = np.zeros_like(gt, bool)
    pred[2:5, 2:5] = True
    frame = frame_components(gt, pred)
    assert frame.siou.tolist() == [1.0, 0.0]


def test_diagonal_pixels_are_one_component():
    gt = np.zeros((6, 6), np.uint8)
    gt[1, 1] = gt[2, 2] = gt[3, 3] = 1  # 8-connected diagonal: one component
    frame = frame_components(gt, gt == 1)
    assert frame.siou.tolist() == [1.0] and frame.gt_area.tolist() == [3]


def test_void_clears_predictions_and_leaves_the_region_of_interest():
    gt = two_obstacles()
    gt[7:10, :] = 255
    pred = gt == 1
    pred[8, 3:6] = True  # a prediction on void only: cleared, so no false positive
    frame = frame_components(gt, pred)
    assert frame.ppv.tolist() == [1.0, 1.0]


def test_size_filters():
    gt = two_obstacles()
    gt[8, 12] = 1  # a 1-pixel obstacle: below min_gt_area, becomes void
    pred = gt == 1
    pred[0, 0] = True  # a 1-pixel prediction: below min_pred_area, dropped
    frame = frame_components(gt, pred, min_pred_area=4, min_gt_area=4)
    assert frame.siou.tolist() == [1.0, 1.0] and frame.ppv.tolist() == [1.0, 1.0]
    unfiltered = frame_components(gt, pred)
    assert len(unfiltered.siou) == 3 and len(unfiltered.ppv) == 4


def test_no_components_anywhere_gives_nan_not_zero():
    acc = ComponentAccumulator()
    acc.add(frame_components(np.zeros((5, 5), np.uint8), np.zeros((5, 5), bool)))
    r = acc.result()
    assert math.isnan(r.f1["mean"]) and math.isnan(r.mean_siou) and r.images == 1


def test_scaled_min_areas():
    assert scaled_min_areas(2048 * 1024) == (50, 10)
    assert scaled_min_areas(512 * 1024) == (12, 2)  # a quarter of the pixels, rounded
    assert scaled_min_areas(64 * 64) == (1, 1)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="differ in shape"):
        frame_components(np.zeros((4, 4), np.uint8), np.zeros((4, 5), bool))
