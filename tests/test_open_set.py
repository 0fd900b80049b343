import numpy as np
import pytest

from densehybrid_ros.core.open_set import open_set_map


def test_pixels_above_tau_become_the_anomaly_label_and_the_rest_keep_their_class():
    cls = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    score = np.array([[0.1, 0.9], [0.5, 0.50001]], dtype=np.float32)
    out = open_set_map(cls, score, tau=0.5, anomaly_label=14)
    np.testing.assert_array_equal(out, [[0, 14], [2, 14]])  # strictly greater than tau
    assert cls[0, 1] == 1  # input untouched


def test_shape_mismatch_and_void_label_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        open_set_map(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.float32), 0.0, 14)
    with pytest.raises(ValueError, match="255 is void"):
        open_set_map(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.float32), 0.0, 255)
