"""Frames the fuzzing found counted twice, and camera_info the node used to store unchecked: the detector in-process
over real DDS with an untrained exported model on ONNX Runtime (docs/RELIABILITY.md, "Known issues").

The invariant checked: every frame that came in is either served (its alert published) or dropped with one reason,
never both, so frames in = served + drops. An image output that fails after the alert is counted apart
(`output_errors`), since the frame was served.
"""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

from densehybrid_ros.core.overlay import overlay
from densehybrid_ros.ros.conversions import numpy_to_image
from densehybrid_ros.ros.detector_node import DetectorNode
from densehybrid_ros.ros.diagnostics import FrameStats, detector_status
from densehybrid_ros.ros.testing import IMAGE_OUTPUTS, Probe, Spinner, status_values, wait_for

H, W = 64, 128


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


@pytest.fixture(scope="module")
def rig(ros, model):
    params = dict(model=str(model), backend_threads=1, threshold_source="parameter", threshold=0.0,
                  diagnostics_period=0.3, warmup_runs=0)
    node = DetectorNode(namespace="/cam_fixes", parameter_overrides=[Parameter(k, value=v)
                                                                     for k, v in params.items()])
    probe = Probe(detector_ns="/cam_fixes", name="probe_fixes")
    spinner = Spinner(node, probe)
    assert node.lifecycle_state == "active", node.error
    assert wait_for(lambda: probe.connected("image"), 10.0), "discovery did not complete"
    # Every image output subscribed, so the whole post-alert path runs.
    assert wait_for(lambda: all(node.subscriber_count(f"~/{t}") > 0 for t in IMAGE_OUTPUTS), 10.0)
    yield node, probe
    spinner.stop()
    node.close()
    node.destroy_node()
    probe.destroy_node()


def _balanced(node):
    drops = sum(node.drop_counts().values())
    return node.frames_in_total() == node.frames_out_total() + drops


def _serve(node, probe, sec, nanosec, rgb, outputs=("obstacle_alert",)):
    """Publish one frame with this stamp (re-sent if best-effort DDS lost it) until its outputs arrive; wait until
    the node's accounting is settled (every frame in is served or dropped)."""
    header = Header()
    header.frame_id = "camera_optical"
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    stamp_ns = sec * 1_000_000_000 + nanosec
    msg = numpy_to_image(rgb, "rgb8", header)
    for _ in range(10):
        probe.image_pub.publish(msg)
        if wait_for(lambda: all(probe.stamped(stamp_ns, t) for t in outputs), 1.0):
            break
    else:
        raise AssertionError(f"no {outputs} for stamp {sec}.{nanosec}; drops {node.drop_counts()}")
    assert wait_for(lambda: _balanced(node), 5.0), (node.frames_in_total(), node.frames_out_total(),
                                                     node.drop_counts())


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_negative_stamp_is_served_once_with_every_output(rig):
    """rclpy's Time refuses negative seconds; the latency must not raise after the alert is out."""
    node, probe = rig
    out_before = node.frames_out_total()
    _serve(node, probe, -5, 250_000_000, _frame(H, W), outputs=("obstacle_alert",) + IMAGE_OUTPUTS)
    assert node.drop_counts().get("inference_error", 0) == 0, node.drop_counts()
    assert node.frames_out_total() > out_before


def test_a_one_pixel_frame_is_served_once_with_every_output(rig):
    """Its alert went out, then the overlay raised: the frame was counted as inference_error although served."""
    node, probe = rig
    out_before, errors_before = node.frames_out_total(), node.output_errors_total()
    _serve(node, probe, 2000, 1, _frame(1, 1, 1))
    assert node.frames_out_total() > out_before, "a frame whose alert was published is not counted as served"
    assert node.drop_counts().get("inference_error", 0) == 0, node.drop_counts()
    assert wait_for(lambda: all(probe.stamped(2000 * 1_000_000_000 + 1, t) for t in IMAGE_OUTPUTS), 5.0), \
        f"image outputs missing; output_errors {node.output_errors_total()}"
    assert node.output_errors_total() == errors_before


def test_output_errors_are_counted_apart_from_drops_and_warned():
    stats = FrameStats()
    stats.frame_in()
    stats.frame_out(0.01, 0.01, 0.005)
    stats.output_error()
    summary = stats.take_window()
    assert (summary.frames_in_total, summary.frames_out_total, summary.drops_total) == (1, 1, {})
    status = detector_status("d", "cam", "active", summary, {})
    values = {kv.key: kv.value for kv in status.values}
    assert values["output_errors"] == "1" and values["drops_total"] == "0"
    assert status.level == DiagnosticStatus.WARN and "image outputs failed for 1 served frames" in status.message
    stats.frame_in()
    stats.frame_out(0.01, 0.01, 0.005)
    quiet = detector_status("d", "cam", "active", stats.take_window(), {})
    assert quiet.level == DiagnosticStatus.OK  # the window's count warns; the total stays in the values
    assert {kv.key: kv.value for kv in quiet.values}["output_errors"] == "1"


def test_overlay_of_a_one_pixel_frame_matches_a_larger_frame_of_the_same_pixel():
    """OpenCV 5's cv2.compare raised for a 1x1 array against a scalar."""
    palette = [(10 * i, 255 - 10 * i, 0) for i in range(20)]
    for label in (14, 3):
        one = overlay(np.full((1, 1, 3), 100, np.uint8), np.full((1, 1), label, np.uint8), palette, 14, 0.5)
        four = overlay(np.full((2, 2, 3), 100, np.uint8), np.full((2, 2), label, np.uint8), palette, 14, 0.5)
        assert one.shape == (1, 1, 3) and one.dtype == np.uint8
        assert np.array_equal(one[0, 0], four[0, 0]), label


def test_decoder_and_runtime_failures_print_nothing_past_the_node_log(ros, model, tmp_path, capfd):
    """OpenCV printed a warning per damaged image and ONNX Runtime an error line per failed run, straight to stderr
    and unthrottled; the node logs each kind itself, throttled. A dynamic-size model whose graph fails for frames
    with an odd number of pixels gives a real runtime error (ros/testing.py)."""
    import cv2

    from densehybrid_ros.ros.testing import write_shape_sensitive_model

    faulty = write_shape_sensitive_model(tmp_path / "shape_sensitive.onnx", model)
    params = dict(model=str(faulty), backend_threads=1, threshold_source="parameter", threshold=0.0,
                  warmup_runs=0, input_transport="compressed", qos_reliability="reliable", qos_depth=10)
    node = DetectorNode(namespace="/cam_quiet_logs", parameter_overrides=[Parameter(k, value=v)
                                                                          for k, v in params.items()])
    probe = Probe(detector_ns="/cam_quiet_logs", name="probe_quiet_logs", reliable_input=True)
    spinner = Spinner(node, probe)
    try:
        assert node.lifecycle_state == "active", node.error
        assert wait_for(lambda: probe.connected("image/compressed"), 10.0)
        capfd.readouterr()
        png = cv2.imencode(".png", _frame(33, 35))[1].tobytes()  # 1155 pixels: the graph's Reshape fails
        # A truncated PNG (its header is whole), then a valid one (one at a time: the mailbox keeps the newest).
        for data, reason in ((png[: len(png) // 2], "decode_error"), (png, "inference_error")):
            msg = CompressedImage(format="png", data=data)
            msg.header.frame_id = "camera_optical"
            probe.compressed_pub.publish(msg)
            assert wait_for(lambda: node.drop_counts().get(reason, 0) == 1, 10.0), node.drop_counts()
        err = capfd.readouterr().err
        assert "[ WARN" not in err and "[E:onnxruntime" not in err, err
        assert "frame failed" in err  # the node's own (throttled) line
    finally:
        spinner.stop()
        node.close()
        node.destroy_node()
        probe.destroy_node()


def _camera_info(**changes):
    info = CameraInfo()
    info.width, info.height, info.distortion_model = W, H, "plumb_bob"
    info.k = [200.0, 0.0, W / 2, 0.0, 200.0, H / 2, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    info.p = [200.0, 0.0, W / 2, 0.0, 0.0, 200.0, H / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    for name, value in changes.items():
        setattr(info, name, value)
    return info


@pytest.mark.parametrize("changes, named", [
    (dict(width=0), "size"), (dict(height=0), "size"),
    (dict(k=[float("nan")] + [0.0] * 8), "K"), (dict(d=[0.0, float("inf")]), "D"),
    (dict(p=[0.0] * 11 + [float("-inf")]), "P"), (dict(r=[float("nan")] * 9), "R")])
def test_camera_info_with_a_zero_size_or_non_finite_intrinsics_is_named(changes, named):
    from densehybrid_ros.ros.conversions import camera_info_problem

    assert camera_info_problem(_camera_info()) == ""
    assert named in camera_info_problem(_camera_info(**changes))


def test_a_bad_camera_info_is_rejected_counted_and_the_last_good_one_kept(rig):
    node, probe = rig
    good = _camera_info()
    for _ in range(10):
        probe.info_pub.publish(good)
        if wait_for(lambda: node.camera_info is not None, 1.0):
            break
    assert node.camera_info is not None and list(node.camera_info.k) == list(good.k)
    for n, bad in enumerate((_camera_info(k=[float("nan")] * 9), _camera_info(width=0)), start=1):
        for _ in range(10):
            probe.info_pub.publish(bad)
            if wait_for(lambda: node.camera_info_rejected() >= n, 1.0):
                break
        assert node.camera_info_rejected() >= n
        assert list(node.camera_info.k) == list(good.k) and node.camera_info.width == W

    def reported():
        st = probe.detector_status("cam_fixes")
        return st is not None and int(status_values(st).get("camera_info_rejected", 0)) >= 2
    assert wait_for(reported, 5.0), "camera_info_rejected not in /diagnostics"


def test_engine_parameters_reach_the_tensorrt_and_onnxruntime_backends_only(model):
    """engine_policy: refuse was ignored (never passed to the backend). The onnxruntime backend takes them and
    ignores them without the TensorRT provider (no GPU here); OpenVINO's `precision` is another setting."""
    from densehybrid_ros.config.detector import DetectorConfig
    from densehybrid_ros.runtime import create_backend

    engine = dict(engine_policy="refuse", engine_precision="int8", engine_cache_dir="/var/cache/engines")
    for backend in ("onnxruntime", "tensorrt", "auto"):
        options = DetectorNode._backend_options(DetectorConfig(backend=backend, **engine))
        assert (options["engine_policy"], options["precision"], options["engine_cache_dir"]) == \
            ("refuse", "int8", "/var/cache/engines"), backend
    for backend in ("openvino", "torch"):
        options = DetectorNode._backend_options(DetectorConfig(backend=backend, **engine))
        assert not {"engine_policy", "precision", "engine_cache_dir"} & set(options), backend
    # auto keeps them for the engine backends and drops them when it picks another (OpenVINO's precision is not
    # the engines'): whichever it picks on this machine loads.
    options = DetectorNode._backend_options(DetectorConfig(backend="auto", **engine))
    picked = create_backend(str(model), backend="auto", **options)
    if picked.name == "onnxruntime":
        assert picked.engine_cache_dir is None  # CPU only here: no TensorRT provider to give them to
    picked.close()
    options = DetectorNode._backend_options(DetectorConfig(backend="onnxruntime", **engine))
    loaded = create_backend(str(model), backend="onnxruntime", **options)
    assert loaded.providers == ["CPUExecutionProvider"] and loaded.engine_cache_dir is None
    loaded.close()
