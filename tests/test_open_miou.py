"""Closed-set mIoU, open-mIoU (paper eq. 16) and the two-fold protocol, against hand-worked and exact values."""
import math

import numpy as np
import pytest

from densehybrid_ros.evaluation.metrics import exact_curve, operating_point_at_tpr
from densehybrid_ros.evaluation.open_miou import (
    OpenSetAccumulator, TwoFoldOpenSet, closed_set_confusion, closed_set_miou, confusion_matrix, iou_per_class,
    open_iou_per_class, open_miou, open_set_confusion,
)
from densehybrid_ros.evaluation.streaming import ScoreBinning

K = 2  # road, car; anomaly label 2
GT = np.array([[0, 0, 0, 1],
               [0, 1, 1, 2],
               [255, 1, 2, 2]], np.uint8)
CLOSED = np.array([[0, 0, 1, 1],
                   [0, 1, 0, 1],
                   [0, 1, 1, 0]], np.uint8)
SCORE = np.array([[0.1, 0.2, 0.9, 0.3],
                  [0.1, 0.2, 0.8, 0.95],
                  [0.99, 0.1, 0.7, 0.6]], np.float32)


def test_hand_worked_open_miou():
    # tau = 0.65 turns (0,2), (1,2), (1,3), (2,2) into label 2 ((2,0) is void). Non-void (label, prediction):
    #   road: TP (0,0) (0,1) (1,0); FN (0,2)->anomaly; FP (2,3) anomaly->road      => 3 / 5 = 0.6
    #   car:  TP (0,3) (1,1) (2,1); FN (1,2)->anomaly; FP none                     => 3 / 4 = 0.75
    # open-mIoU averages the K = 2 inlier classes: 0.675 (the anomaly's own IoU, 2/5, is not in the mean).
    conf = open_set_confusion(GT, CLOSED, SCORE, 0.65, K)
    assert conf.tolist() == [[3, 0, 1],
                             [0, 3, 1],
                             [1, 0, 2]]
    np.testing.assert_allclose(open_iou_per_class(conf), [0.6, 0.75])
    assert open_miou(conf) == pytest.approx(0.675)
    assert iou_per_class(conf)[K] == pytest.approx(0.4)


def test_hand_worked_closed_miou_ignores_anomaly_pixels():
    # Inlier pixels only: road TP 3, FN 1 ((0,2)->car), FP 1 ((1,2) car->road) => 0.6; car likewise 3 / 5.
    conf = closed_set_confusion(GT, CLOSED, K)
    assert conf.tolist() == [[3, 1], [1, 3]]
    assert closed_set_miou(conf) == pytest.approx(0.6)


def test_perfect_anomaly_detector_gives_back_the_closed_set_miou():
    rng = np.random.default_rng(0)
    k = 5
    gt = rng.integers(0, k + 1, (60, 80)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.05] = 255
    closed = np.where(rng.random(gt.shape) < 0.7, np.minimum(gt, k - 1), rng.integers(0, k, gt.shape)).astype(np.uint8)
    score = (gt == k).astype(np.float32)
    open_value = open_miou(open_set_confusion(gt, closed, score, 0.5, k))
    assert open_value == pytest.approx(closed_set_miou(closed_set_confusion(gt, closed, k)), abs=1e-12)
    # A detector that misses everything is worse: anomalies now count as false positives of inlier classes.
    assert open_miou(open_set_confusion(gt, closed, score, 2.0, k)) < open_value


def test_classes_absent_everywhere_are_left_out_of_the_mean():
    conf = confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 1]), 4)
    iou = iou_per_class(conf)
    assert iou[0] == 1.0 and iou[1] == 1.0 and math.isnan(iou[2]) and math.isnan(iou[3])
    assert closed_set_miou(conf) == 1.0


def test_confusion_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="ground-truth labels must be in"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="predicted labels must be in"):
        confusion_matrix(np.array([0, 1]), np.array([0, 9]), 3)


def random_frames(n_frames, k, rng, size=(48, 64)):
    frames = []
    for _ in range(n_frames):
        gt = rng.integers(0, k, size).astype(np.uint8)
        blob = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 12)
        gt[blob[0]:blob[0] + 10, blob[1]:blob[1] + 10] = k
        gt[rng.random(size) < 0.03] = 255
        closed = np.where(rng.random(size) < 0.8, np.minimum(gt, k - 1), rng.integers(0, k, size)).astype(np.uint8)
        score = (rng.normal(-20, 2, size) + 4 * (gt == k)).astype(np.float32)
        anomaly = np.where(gt == 255, 255, (gt == k)).astype(np.uint8)
        frames.append((gt, closed, score, anomaly))
    return frames


def test_open_set_accumulator_matches_exact_confusion_at_bin_edges():
    rng = np.random.default_rng(1)
    k = 4
    frames = random_frames(6, k, rng)
    binning = ScoreBinning.fit(frames[0][2], bits=16)
    acc = OpenSetAccumulator(k, binning)
    for gt, closed, score, _ in frames:
        acc.add(gt, closed, score)
    edges = binning.lower_edges()
    for b in (20000, 32768, 40000, 45000):
        threshold = edges[b]
        exact = sum(open_set_confusion(gt, closed, score, np.nextafter(threshold, -np.inf), k)
                    for gt, closed, score, _ in frames)
        np.testing.assert_allclose(acc.open_iou_at(threshold), open_iou_per_class(exact), atol=1e-12)


def test_two_fold_protocol_matches_exact_computation():
    rng = np.random.default_rng(2)
    k = 4
    frames = random_frames(9, k, rng)
    folds = [frames[0::2], frames[1::2]]  # 5 and 4 images: the weighting matters
    binning = ScoreBinning.fit(frames[0][2], bits=20)
    two = TwoFoldOpenSet(k, binning, open_bits=16)
    for f, fold in enumerate(folds):
        for gt, closed, score, anomaly in fold:
            two.add(f, gt, closed, anomaly, binning.bins(score))
    result = two.result()

    def exact_tau(fold):
        scores = np.concatenate([s.ravel() for _, _, s, _ in fold])
        labels = np.concatenate([a.ravel() for _, _, _, a in fold])
        return operating_point_at_tpr(exact_curve(scores, labels)).tau

    expected = []
    for this, other in ((0, 1), (1, 0)):
        tau = exact_tau(folds[other])
        conf = sum(open_set_confusion(gt, closed, score, tau, k) for gt, closed, score, _ in folds[this])
        expected.append(open_miou(conf))
    weighted = (expected[0] * 5 + expected[1] * 4) / 9
    assert [f.images for f in result.folds] == [5, 4]
    assert result.folds[0].open_miou == pytest.approx(expected[0], abs=1e-3)
    assert result.folds[1].open_miou == pytest.approx(expected[1], abs=1e-3)
    assert result.open_miou == pytest.approx(weighted, abs=1e-3)
    assert all(f.tpr_on_other_fold >= 0.95 for f in result.folds)


def test_two_fold_without_anomalies_is_nan_with_a_note():
    rng = np.random.default_rng(3)
    k = 3
    binning = ScoreBinning(0.0, 1.0, 16)
    two = TwoFoldOpenSet(k, binning)
    for f in (0, 1):
        gt = rng.integers(0, k, (8, 8)).astype(np.uint8)
        score = rng.normal(size=(8, 8)).astype(np.float32)
        two.add(f, gt, gt, np.zeros_like(gt), binning.bins(score))
    result = two.result()
    assert math.isnan(result.open_miou) and "no fold" in result.note
