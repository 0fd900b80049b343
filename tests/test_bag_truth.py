"""The ground truth `bag evaluate` scores the alert against (bag/truth.py): the node's corridor and per-frame test
on the label maps, without the score filters, and with the `--set` values the node ran with."""
import dataclasses

import numpy as np
import pytest

from densehybrid_ros.bag.evaluate import with_node_parameters
from densehybrid_ros.bag.files import BagError
from densehybrid_ros.bag.truth import truth_for
from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.data.taxonomy import SYNTHETIC

H, W = 512, 1024
K = SYNTHETIC.num_classes
ROAD = SYNTHETIC.names.index("road")


def labels_with(box=None):
    labels = np.full((H, W), ROAD, np.uint8)
    if box is not None:
        r0, r1, c0, c1 = box
        labels[r0:r1, c0:c1] = K
    return labels


def first_hit(params, frames, enter, box):
    truth = truth_for(params, K, SYNTHETIC.names)
    hits = [truth(labels_with(box if i >= enter else None)).hit for i in range(frames)]
    return hits.index(True) if True in hits else None


def test_the_score_filters_do_not_delay_or_erase_the_labelled_obstacle():
    base = DetectorConfig.from_values({})
    block, thin = (400, 470, 480, 560), (380, 470, 509, 515)  # a box, and a post 6 px wide, in the corridor
    assert first_hit(base, 10, 5, block) == 5 and first_hit(base, 10, 5, thin) == 5
    # The node's temporal minimum over 3 frames would first see the box 2 frames late; the truth must not.
    fused = dataclasses.replace(base, temporal_fusion="min", temporal_frames=3)
    assert first_hit(fused, 10, 5, block) == 5
    # A 9 px opening removes a 6 px post from a score map; on the labels it would remove the obstacle itself.
    opened = dataclasses.replace(base, score_opening_px=9)
    assert first_hit(opened, 10, 5, thin) == 5


def test_set_values_reach_the_truth_as_they_reach_the_node():
    base = DetectorConfig.from_values({})
    changed = with_node_parameters(base, {"window_frames": "8", "raise_frames": "2", "model": "/x.onnx"})
    assert (changed.window_frames, changed.raise_frames) == (8, 2)  # parsed as the node parses -p values
    assert with_node_parameters(base, {}) is base
    with pytest.raises(BagError, match=r"--set: .*window_frames"):
        with_node_parameters(base, {"window_frames": "0"})
    with pytest.raises(BagError, match=r"backend_threads"):  # what bag evaluate checks --threads with
        with_node_parameters(base, {"backend_threads": -1})


def test_an_alert_region_counts_as_on_the_obstacle_only_if_it_holds_flagged_obstacle_pixels():
    from densehybrid_ros.bag.analysis import FrameRecord, obstacle_flagged_in_regions, on_obstacle

    labels = labels_with((400, 440, 560, 600))  # the obstacle: rows 400-440, columns 560-600
    truth_boxes = ((560, 400, 600, 440),)
    big_region = ((300, 297, 700, 630),)       # a false-positive streak whose box spans the obstacle
    nothing_flagged = np.full((H, W), ROAD, np.uint8)
    counts = obstacle_flagged_in_regions(labels, nothing_flagged, big_region, truth_boxes, K)
    assert counts == (1600, 0)
    frame = FrameRecord(0, 0, 0.0, state="alert", regions=big_region, truth_boxes=truth_boxes,
                        obstacle_pixels=counts[0], obstacle_flagged_in_regions=counts[1])
    assert not on_obstacle(frame)  # boxes overlap, but not one obstacle pixel was flagged
    flagged = nothing_flagged.copy()
    flagged[410:430, 570:590] = K  # the node flags a quarter of the obstacle
    counts = obstacle_flagged_in_regions(labels, flagged, big_region, truth_boxes, K)
    assert counts == (1600, 400)
    assert on_obstacle(dataclasses.replace(frame, obstacle_flagged_in_regions=counts[1]))
    # Flagged, but outside every region the alert reported: the alert is not about it.
    elsewhere = ((0, 0, 100, 100),)
    assert obstacle_flagged_in_regions(labels, flagged, elsewhere, truth_boxes, K) == (1600, 0)
    # Without an ~/open_set output only the boxes can be compared.
    assert on_obstacle(FrameRecord(0, 0, 0.0, state="alert", regions=big_region, truth_boxes=truth_boxes))
