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
