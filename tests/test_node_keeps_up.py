"""The node keeps up with a camera it can serve: a latency check without a wall-clock bound.

A wall-clock latency bound flakes on a shared machine (the flood test in test_detector_node.py only catches stalls,
at 1.5 s) and misses a worker that is, say, 300 ms slow per frame. Instead: measure the bare backend on the same
model in this run, offer frames at a pace the node can serve with room to spare (4x the backend time, between 100
and 200 ms), and count what the node itself reports. The floor is the node's own cost per frame beside the backend's
(conversion, alert, diagnostics, the executor's thread): at a 40 ms floor a fresh CI run once saw 16 of 40 frames
superseded with a 9 ms backend. A node that keeps up serves nearly every frame it receives;
one that spends 300 ms more per frame cannot serve more than a third of them and counts the rest as superseded
(latest frame wins). Machine load slows the backend measurement and the node alike, so the pace follows it.
"""
import time

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from densehybrid_ros.ros.conversions import numpy_to_image
from densehybrid_ros.ros.detector_node import DetectorNode
from densehybrid_ros.ros.testing import Probe, Spinner, wait_for

H, W = 128, 256
FRAMES = 40


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


def test_the_node_serves_every_frame_offered_at_a_pace_it_can_keep(model):
    from densehybrid_ros.data.world.scene import render_scene
    from densehybrid_ros.runtime import create_backend

    frame = render_scene(1, H, W).image
    backend = create_backend(str(model), threads=1)
    backend.infer(frame)
    t0 = time.perf_counter()
    for _ in range(5):
        backend.infer(frame)
    infer_s = (time.perf_counter() - t0) / 5
    period = min(max(4 * infer_s, 0.1), 0.2)

    rclpy.init()
    node = DetectorNode(namespace="/pace", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("backend_threads", value=1),
        Parameter("threshold_source", value="parameter"), Parameter("threshold", value=0.0),
        Parameter("warmup_runs", value=2)])
    # Only the alert is subscribed (images are computed only for subscribers): the pace is the node's own.
    probe = Probe(detector_ns="/pace", name="pace_probe", outputs=())
    spinner = Spinner(node, probe)
    try:
        assert node.lifecycle_state == "active", node.error
        assert wait_for(lambda: probe.image_pub.get_subscription_count() > 0, 10.0), "discovery did not complete"
        in0, out0 = node.frames_in_total(), node.frames_out_total()
        drop0 = node.drop_counts().get("superseded", 0)
        start = time.perf_counter()
        for i in range(FRAMES):
            h = Header(frame_id="pace")
            h.stamp.sec, h.stamp.nanosec = 2000 + i, 0
            probe.image_pub.publish(numpy_to_image(frame, "rgb8", h))
            time.sleep(max(0.0, start + (i + 1) * period - time.perf_counter()))

        def settled():
            received = node.frames_in_total() - in0
            served = node.frames_out_total() - out0
            dropped = node.drop_counts().get("superseded", 0) - drop0
            return received > 0 and served + dropped == received

        assert wait_for(settled, 10.0), "frames were neither served nor counted as superseded"
        received = node.frames_in_total() - in0
        served = node.frames_out_total() - out0
        superseded = node.drop_counts().get("superseded", 0) - drop0
        print(f"pace {1e3 * period:.0f} ms (bare backend {1e3 * infer_s:.1f} ms): {FRAMES} offered, {received} "
              f"received, {served} served, {superseded} superseded")
        assert received >= FRAMES // 2, (received, FRAMES)   # best effort may lose a few, not half
        # Keeps up: at most a fifth superseded. A worker 300 ms slower per frame serves at most period/(period + 0.3),
        # under half at the 200 ms cap.
        assert superseded <= 0.2 * received, (served, superseded, received, period, infer_s)
    finally:
        spinner.stop()
        node.close()
        node.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()
