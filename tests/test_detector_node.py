"""The detector node in-process over real DDS: a real exported model on ONNX Runtime, a probe node publishing camera
frames and recording every output.

Sizes are small (128x256) so every test runs in seconds on a shared 2-core machine. The model is an untrained
export (seeded), so the tests check the node's behaviour (headers, encodings, sizes, values equal to the bare
backend's, drops, latency, lifecycle, alert logic end to end), not segmentation quality.
"""
import math
import time
from collections import Counter

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from densehybrid_ros.core.alert import ObstacleAlertDetector
from densehybrid_ros.ros.alert_message import parse_alert
from densehybrid_ros.ros.conversions import image_to_rgb, numpy_to_image, rgb_to_compressed, rgb_to_encoding
from densehybrid_ros.ros.detector_node import DetectorNode
from densehybrid_ros.ros.testing import (IMAGE_OUTPUTS, Probe, Spinner, status_values,
                                         wait_for)
from densehybrid_ros.ros.topics import OUTPUTS
from ros_support import pad_rows

H, W = 128, 256
OUTPUT_ENCODINGS = {row.short_name: row.encoding for row in OUTPUTS if row.encoding}
INPUT_ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuv422_yuy2", "bayer_rggb8", "rgb16"]


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


@pytest.fixture(scope="module")
def backend(model):
    """The bare backend on the same model and settings as the node: the reference for the node's outputs."""
    from densehybrid_ros.runtime import create_backend
    return create_backend(str(model), threads=1)


def scene(seed=0):
    from densehybrid_ros.data.world.scene import render_scene
    return render_scene(seed, H, W).image


class Rig:
    """A detector in namespace `ns` and a probe, spinning on a background executor."""

    def __init__(self, model, ns, **params):
        defaults = dict(model=str(model), backend_threads=1, threshold_source="parameter", threshold=-2.95,
                        diagnostics_period=0.3, warmup_runs=1)
        defaults.update(params)
        self.node = DetectorNode(namespace=ns, parameter_overrides=[Parameter(k, value=v)
                                                                    for k, v in defaults.items()])
        self.probe = Probe(detector_ns=ns, name="probe" + ns.replace("/", "_"))
        self.spinner = Spinner(self.node, self.probe)
        self.stamp_ns = 1_000_000_000 * 1000
        transport = "compressed" if defaults.get("input_transport") == "compressed" else "image"
        assert self.node.lifecycle_state == "active", self.node.error
        assert wait_for(lambda: self.probe.connected(transport), 10.0), "discovery did not complete"

    def header(self, frame_id="camera_optical"):
        self.stamp_ns += 1_000_000
        h = Header()
        h.frame_id = frame_id
        h.stamp.sec, h.stamp.nanosec = divmod(self.stamp_ns, 1_000_000_000)
        return h

    def send_until_served(self, make_msg, topic="obstacle_alert", timeout=10.0, outputs=("obstacle_alert",),
                          resend_received=False):
        """Publish a fresh-stamped message (re-sending on loss, best effort) until `outputs` with its stamp arrive.

        A message is sent again only while the node has not received it: a frame served twice would count twice in
        the alert's window, and tests of the hysteresis count frames. `resend_received` also resends a frame the
        node received whose output was lost (just after an activate, before the new publisher is matched)."""
        header = self.header()
        msg = make_msg(header)
        stamp = self.stamp_ns
        pub = self.probe.compressed_pub if msg.__class__.__name__ == "CompressedImage" else self.probe.image_pub
        received_before = self.node.frames_in_total()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if resend_received or self.node.frames_in_total() == received_before:
                pub.publish(msg)
            if wait_for(lambda: all(self.probe.stamped(stamp, t) for t in outputs), 1.0):
                return {t: self.probe.stamped(stamp, t) for t in outputs}, header
        raise AssertionError(f"no outputs {outputs} for stamp {stamp}; node error {self.node.error!r}, "
                             f"drops {self.node.drop_counts()}, frames in {self.node.frames_in_total()} (before "
                             f"{received_before}), out {self.node.frames_out_total()}, published "
                             f"{self.node.published_counts()}, state {self.node.lifecycle_state}")

    def close(self):
        self.spinner.stop()
        self.node.close()
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture(scope="module")
def rig(ros, model):
    r = Rig(model, "/cam_raw")
    yield r
    r.close()


# -- outputs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", INPUT_ENCODINGS)
def test_every_output_keeps_the_header_and_matches_the_bare_backend(rig, backend, encoding):
    rgb = scene(1)
    packed = rgb_to_encoding(rgb, encoding)
    outs, header = rig.send_until_served(lambda h: pad_rows(numpy_to_image(packed, encoding, h), 8),
                                         outputs=IMAGE_OUTPUTS + ("obstacle_alert",))
    for name, enc in OUTPUT_ENCODINGS.items():
        msg = outs[name]
        assert msg.header.frame_id == header.frame_id and msg.header.stamp == header.stamp, name
        assert (msg.encoding, msg.height, msg.width) == (enc, H, W), name
    alert = parse_alert(outs["obstacle_alert"])
    assert (alert.frame_id, alert.image_width, alert.image_height) == (header.frame_id, W, H)

    # Values: what the bare backend computes for the converted frame, so conversion and wiring are right.
    expected = backend.infer(image_to_rgb(numpy_to_image(packed, encoding)))
    semantic = np.frombuffer(outs["semantic"].data, np.uint8).reshape(H, W)
    assert np.array_equal(semantic, expected.class_id)
    score = np.frombuffer(outs["anomaly_score"].data, np.float32).reshape(H, W)
    np.testing.assert_allclose(score, expected.anomaly_score, atol=1e-5)
    open_set = np.frombuffer(outs["open_set"].data, np.uint8).reshape(H, W)
    tau, k = rig.node.current_tau(), rig.node.card.anomaly_label
    assert np.array_equal(open_set == k, expected.anomaly_score > tau)


def test_semantic_colours_use_the_model_card_palette(rig, backend):
    rgb = scene(2)
    outs, _ = rig.send_until_served(lambda h: numpy_to_image(rgb, "rgb8", h),
                                    outputs=("semantic", "semantic_color"))
    palette = np.array(rig.node.card.palette, np.uint8)
    semantic = np.frombuffer(outs["semantic"].data, np.uint8).reshape(H, W)
    colours = np.frombuffer(outs["semantic_color"].data, np.uint8).reshape(H, W, 3)
    assert np.array_equal(colours, palette[semantic])


def test_camera_info_is_passed_on_with_the_frame_header(rig):
    info = CameraInfo()
    info.width, info.height, info.distortion_model = W, H, "plumb_bob"
    info.k = [200.0, 0.0, W / 2, 0.0, 200.0, H / 2, 0.0, 0.0, 1.0]
    assert wait_for(lambda: rig.probe.info_pub.get_subscription_count() > 0, 5.0)
    rig.probe.info_pub.publish(info)
    assert wait_for(lambda: rig.node.camera_info is not None, 5.0)
    outs, header = rig.send_until_served(lambda h: numpy_to_image(scene(1), "rgb8", h), outputs=("camera_info",))
    out = outs["camera_info"]
    assert out.header.stamp == header.stamp and out.header.frame_id == header.frame_id
    assert list(out.k) == list(info.k) and out.distortion_model == "plumb_bob"


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_input_produces_every_output(ros, model, backend, fmt):
    r = Rig(model, f"/cam_{fmt}", input_transport="compressed")
    try:
        rgb = scene(1)
        outs, header = r.send_until_served(lambda h: rgb_to_compressed(rgb, fmt, h),
                                           outputs=IMAGE_OUTPUTS + ("obstacle_alert",))
        for name, enc in OUTPUT_ENCODINGS.items():
            m = outs[name]
            assert (m.encoding, m.height, m.width, m.header.stamp) == (enc, H, W, header.stamp), name
        if fmt == "png":  # lossless: the node saw exactly this frame
            semantic = np.frombuffer(outs["semantic"].data, np.uint8).reshape(H, W)
            assert np.array_equal(semantic, backend.infer(rgb).class_id)
    finally:
        r.close()


def test_outputs_without_subscribers_are_not_computed(ros, model):
    r = Rig(model, "/cam_quiet")
    try:
        for s in list(r.probe._subs):
            if "overlay" in s.topic_name or "semantic_color" in s.topic_name:
                r.probe.destroy_subscription(s)
                r.probe._subs.remove(s)
        assert wait_for(lambda: r.node.subscriber_count("~/overlay") == 0, 5.0)
        r.probe.clear()
        r.send_until_served(lambda h: numpy_to_image(scene(1), "rgb8", h), outputs=("obstacle_alert", "semantic"))
        assert r.node.published_counts()["~/overlay"] == 0
        assert r.node.published_counts()["~/semantic_color"] == 0
        assert r.node.published_counts()["~/semantic"] >= 1
    finally:
        r.close()


# -- malformed input ----------------------------------------------------------------------------------------------
def _malformed(reason):
    def make(h):
        if reason == "oversize":
            return numpy_to_image(np.zeros((H * 2, W * 2, 3), np.uint8), "rgb8", h)
        msg = numpy_to_image(scene(1), "rgb8", h)
        if reason == "bad_step":
            msg.step = W * 3 - 3
        elif reason == "truncated":
            msg.data = bytes(msg.data)[: len(msg.data) // 2]
        elif reason == "zero_size":
            msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
        elif reason == "unknown_encoding":
            msg.encoding = "rgb9"
        return msg
    return make


@pytest.fixture(scope="module")
def guarded(ros, model):
    """A detector whose oversize limit is the test frame size."""
    r = Rig(model, "/cam_guarded", max_image_pixels=H * W)
    yield r
    r.close()


def _send_and_count(r, make_msg, reason, pub) -> int:
    """Publish until the drop is counted; returns how many copies were published (a slow callback may count a
    re-sent copy too)."""
    before = r.node.drop_counts().get(reason, 0)
    for n in range(1, 11):  # best effort: re-send if DDS lost it
        pub.publish(make_msg(r.header()))
        if wait_for(lambda: r.node.drop_counts().get(reason, 0) > before, 1.0):
            return n
    raise AssertionError(f"{reason} was not counted: {r.node.drop_counts()}")


@pytest.mark.parametrize("reason", ["bad_step", "truncated", "zero_size", "unknown_encoding", "oversize"])
def test_malformed_frames_are_dropped_counted_and_the_next_good_frame_is_served(guarded, reason):
    _send_and_count(guarded, _malformed(reason), reason, guarded.probe.image_pub)
    guarded.send_until_served(lambda h: numpy_to_image(scene(1), "rgb8", h))
    assert guarded.node.lifecycle_state == "active"


def test_drop_counters_reach_diagnostics(guarded):
    _send_and_count(guarded, _malformed("truncated"), "truncated", guarded.probe.image_pub)

    def counted():
        st = guarded.probe.detector_status("cam_guarded")
        return st is not None and int(status_values(st).get("drops.truncated", 0)) >= 1 and st

    status = wait_for(counted, 5.0)
    assert status, "no diagnostics with drops.truncated"
    values = status_values(status)
    for key in ("input_rate_hz", "output_rate_hz", "latency_stamp_to_publish_ms_mean", "backend", "model_sha256",
                "threshold"):
        assert key in values, key
    assert values["model_sha256"] == guarded.node.card.sha256
    assert float(values["threshold"]) == pytest.approx(guarded.node.current_tau())


def test_diagnostics_report_the_node_cost_and_its_stages(rig):
    """End-to-end time from the middleware's reception, split into stages that add up to at most that time; totals."""
    rig.probe.clear()
    for _ in range(2):
        rig.send_until_served(lambda h: numpy_to_image(scene(1), "rgb8", h), outputs=IMAGE_OUTPUTS)
    keys = ("latency_arrival_to_publish_ms_mean", "latency_arrival_to_publish_ms_max", "backend_infer_ms_mean",
            "queue_ms_mean", "convert_ms_mean", "alert_ms_mean", "image_outputs_ms_mean")

    def window_with_frames():
        st = rig.probe.detector_status("cam_raw")
        if st is None:
            return None
        # A window may close between the two frames: wait for one whose total includes both (this test alone).
        values = status_values(st)
        return float(values.get("output_rate_hz", 0)) > 0 and int(values.get("frames_out_total", 0)) >= 2 and st

    values = status_values(wait_for(window_with_frames, 5.0))
    ms = {k: float(values[k]) for k in keys}
    assert all(v >= 0 for v in ms.values()), ms
    parts = sum(ms[k] for k in keys[2:])
    # Stage means come from the same frames as the end-to-end mean (1 ms of slack: two clocks are read).
    assert 0 < parts <= ms["latency_arrival_to_publish_ms_mean"] + 1.0, ms
    assert ms["latency_arrival_to_publish_ms_max"] >= ms["latency_arrival_to_publish_ms_mean"]
    assert ms["image_outputs_ms_mean"] > 0  # every image output is subscribed by the probe
    assert 2 <= int(values["frames_out_total"]) <= rig.node.frames_out_total()
    assert int(values["frames_in_total"]) >= int(values["frames_out_total"])


def test_corrupt_jpeg_is_dropped_and_the_next_good_frame_is_served(ros, model):
    r = Rig(model, "/cam_corrupt", input_transport="compressed")
    try:
        def corrupt(h):
            msg = rgb_to_compressed(scene(1), "jpeg", h)
            data = bytes(msg.data)
            msg.data = data[:400] + bytes(len(data) - 400)
            return msg
        _send_and_count(r, corrupt, "decode_error", r.probe.compressed_pub)
        r.send_until_served(lambda h: rgb_to_compressed(scene(1), "jpeg", h))
    finally:
        r.close()


# -- load ---------------------------------------------------------------------------------------------------------
def test_a_flood_of_frames_is_served_latest_first_and_every_frame_is_accounted_for(rig, backend):
    frame = scene(1)
    t0 = time.perf_counter()
    for _ in range(5):
        backend.infer(frame)
    infer_s = (time.perf_counter() - t0) / 5
    period = infer_s / 5  # five times faster than the bare backend can go
    rig.probe.clear()
    drops_before = rig.node.drop_counts().get("superseded", 0)
    served_before = rig.node.frames_out_total()
    received_before = rig.node.frames_in_total()
    clock = rig.probe.get_clock()
    stamps = []
    start = time.perf_counter()
    for i in range(200):
        h = Header(frame_id="flood")
        now = clock.now()
        h.stamp = now.to_msg()
        stamps.append(now.nanoseconds)
        rig.probe.image_pub.publish(numpy_to_image(frame, "rgb8", h))
        time.sleep(max(0.0, start + (i + 1) * period - time.perf_counter()))
    assert wait_for(lambda: rig.probe.stamped(stamps[-1], "obstacle_alert"), 5.0), "the last frame was not served"

    def accounted():  # the worker counts a frame after its last output; let it finish the last one
        return (rig.node.frames_out_total() - served_before + rig.node.drop_counts().get("superseded", 0)
                - drops_before == rig.node.frames_in_total() - received_before)

    wait_for(accounted, 5.0)
    served = rig.node.frames_out_total() - served_before
    drops = rig.node.drop_counts().get("superseded", 0) - drops_before
    # End-to-end latency per served frame: arrival at the probe minus the frame's stamp (one clock, one machine).
    with rig.probe.lock:
        records = [(t, m) for t, m in rig.probe.received["obstacle_alert"] if m.header.frame_id == "flood"]
    lat = [1e-9 * (t - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec)) for t, m in records]
    received = rig.node.frames_in_total() - received_before
    assert served < 200 and drops > 0, (served, drops)
    # Every frame the node received was either served or counted as superseded (best effort with depth 1 also
    # lets DDS replace frames before the node sees them: that is the sensor-data QoS doing the same job).
    assert served + drops == received, (served, drops, received)
    # A FIFO serves every received frame, so it has no drops: ruled out above. The latest frame wins: the served
    # frames come out in stamp order and the last one sent is among them. Latency is printed, not asserted: the
    # probe shares this process (and the GIL) with the node and the publishing loop, so its bounds are the
    # machine's, and timed assertions belong in the benchmarks (docs/BENCHMARKS.md, node cost).
    served_stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for _, m in records]
    assert served_stamps == sorted(set(served_stamps)) and served_stamps[-1] == stamps[-1]
    print(f"flood: {received} received, {served} served, {drops} superseded, bare infer {1e3 * infer_s:.1f} ms, end-to-end latency "
          f"median {1e3 * float(np.median(lat)):.1f} ms, max {1e3 * max(lat):.1f} ms")


# -- lifecycle ----------------------------------------------------------------------------------------------------
def test_missing_model_fails_configure_naming_the_file_and_the_node_stays_alive(ros, tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"
    node = DetectorNode(namespace="/cam_missing", parameter_overrides=[Parameter("model", value=str(missing))])
    try:
        assert node.lifecycle_state == "unconfigured"
        assert str(missing) in node.error
        # Still a working node: fix the parameter? Here: configure again fails the same way, no exception.
        node.trigger_configure()
        assert node.lifecycle_state == "unconfigured" and str(missing) in node.error
    finally:
        node.close()
        node.destroy_node()


def test_corrupt_model_fails_configure_naming_the_file(ros, model, tmp_path):
    bad = tmp_path / "corrupt.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    bad.write_bytes(bytes(data))
    (tmp_path / "corrupt.card.yaml").write_text(model.with_name("untrained.card.yaml").read_text()
                                                .replace("model_file: untrained.onnx", "model_file: corrupt.onnx"))
    node = DetectorNode(namespace="/cam_corrupt_model", parameter_overrides=[
        Parameter("model", value=str(bad)), Parameter("threshold_source", value="parameter")])
    try:
        assert node.lifecycle_state == "unconfigured"
        assert str(bad) in node.error and "sha256" in node.error
        # The operator fixes the parameter and configures again, without restarting the process.
        assert node.set_parameters([Parameter("model", value=str(model))])[0].successful
        node.trigger_configure()
        assert node.lifecycle_state == "inactive", node.error
        node.trigger_activate()
        assert node.lifecycle_state == "active"
    finally:
        node.close()
        node.destroy_node()


def test_deactivate_and_cleanup_release_endpoints_and_model(ros, model):
    node = DetectorNode(namespace="/cam_cycle", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("threshold_source", value="parameter"),
        Parameter("backend_threads", value=1)])
    try:
        assert node.lifecycle_state == "active"
        names = {n for n, _ in node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())}
        assert "/cam_cycle/detector/overlay" in names
        node.trigger_deactivate()
        names = {n for n, _ in node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())}
        assert "/cam_cycle/detector/overlay" not in names and not node.worker_alive()
        node.trigger_cleanup()
        assert node.lifecycle_state == "unconfigured" and node.card is None
        node.trigger_configure()
        node.trigger_activate()
        assert node.lifecycle_state == "active" and node.worker_alive()
    finally:
        node.close()
        node.destroy_node()


# -- alert end to end -----------------------------------------------------------------------------------------------
PATCHES = ("stripes", "noise", "black", "white", "checker")


def _with_patch(image, kind, rng_seed=0):
    out = image.copy()
    h, w = 32, 48
    y0, x0 = 100 - h // 2, W // 2 - w // 2  # inside the default corridor, ahead of the vehicle
    yy, xx = np.mgrid[0:h, 0:w]
    patch = {"stripes": ((xx // 3) % 2 * 255)[..., None],
             "noise": np.random.default_rng(rng_seed).integers(0, 256, (h, w, 3)),
             "black": 0, "white": 255,
             "checker": ((yy // 4 + xx // 4) % 2 * 255)[..., None]}[kind]
    out[y0:y0 + h, x0:x0 + w] = patch
    return out


@pytest.fixture(scope="module")
def obstacle_case(backend):
    """A clean frame, the same frame with an obstacle in the corridor, and a threshold between them.

    The model is untrained, so which pattern it scores as most anomalous is not known in advance: among a few
    scenes and patterns, take the first where the patch gives a component of at least 3x the minimum area above
    a tau placed just over the clean frame's highest corridor score. The node then judges the same frames with
    the same model and tau, so the outcome is deterministic: the clean frame has no corridor pixel above tau by
    construction, the obstacle frame has a component well above the minimum area."""
    corridor = ObstacleAlertDetector().corridor_mask(H, W)
    min_area = ObstacleAlertDetector().config.min_area_pixels(H, W)
    for seed in (2, 3, 1):
        clean = scene(seed)
        clean_max = float(backend.infer(clean).anomaly_score[corridor].max())
        for kind in PATCHES:
            obstacle = _with_patch(clean, kind)
            score = backend.infer(obstacle).anomaly_score
            margin = float(score[corridor].max()) - clean_max
            if margin <= 0:
                continue
            tau = clean_max + 0.1 * margin
            if int((score[corridor] > tau).sum()) >= 3 * min_area:
                return clean, obstacle, tau
    pytest.fail("no scene/pattern gives the untrained model a clear corridor anomaly; the export changed?")


def _states(r, frames):
    states = []
    for f in frames:
        outs, _ = r.send_until_served(lambda h, f=f: numpy_to_image(f, "rgb8", h))
        states.append(parse_alert(outs["obstacle_alert"]))
    return states


def test_alert_is_raised_for_an_obstacle_in_the_corridor_and_not_without(ros, model, obstacle_case):
    clean, obstacle, tau = obstacle_case
    r = Rig(model, "/cam_alert", threshold=tau, raise_frames=3, window_frames=5, clear_frames=3)
    try:
        without = _states(r, [clean] * 6)
        assert [s.state for s in without] == ["clear"] * 6
        assert all(s.corridor_fraction == 0 and not s.regions for s in without)

        with_obstacle = _states(r, [obstacle] * 5)
        assert [s.state for s in with_obstacle] == ["warning", "warning", "alert", "alert", "alert"]
        last = with_obstacle[-1]
        assert last.corridor_fraction > 0 and last.peak_score > tau and last.regions
        box = last.regions[0]
        # The region lies on the patch (rows 84..116, columns 104..152) and not elsewhere.
        assert 84 - 8 <= box.y_offset and box.y_offset + box.height <= 116 + 8
        assert 104 - 8 <= box.x_offset and box.x_offset + box.width <= 152 + 8

        after = _states(r, [clean] * 4)
        assert [s.state for s in after] == ["alert", "alert", "clear", "clear"]
    finally:
        r.close()


def test_reactivation_starts_the_alert_afresh(ros, model, obstacle_case):
    """Hits from before a deactivate belong to a scene that may be long gone: they neither complete a raise nor keep
    an alert standing after activate."""
    clean, obstacle, tau = obstacle_case
    r = Rig(model, "/cam_pause", threshold=tau, raise_frames=3, window_frames=5, clear_frames=3)

    def pause():
        # Transitions come from the executor's own thread in the node process (lifecycle services); here the test
        # thread drives them, so the node leaves the executor first: endpoints destroyed under its wait set raise.
        r.spinner.remove(r.node)
        time.sleep(0.3)  # the executor's next wait set no longer holds the node's endpoints
        r.node.trigger_deactivate()
        assert wait_for(r.probe.disconnected, 10.0), "the old endpoints stayed in the graph"
        r.node.trigger_activate()
        assert r.node.lifecycle_state == "active"
        r.spinner.add(r.node)
        assert wait_for(lambda: r.probe.connected(), 10.0), "the probe did not reconnect"
        # One clean frame, sent until its alert arrives: the graph can list the new publisher before the probe's
        # subscription is matched to it, and a lost output would otherwise leave a frame unanswered.
        outs, _ = r.send_until_served(lambda h: numpy_to_image(clean, "rgb8", h), resend_received=True)
        return parse_alert(outs["obstacle_alert"]).state
    try:
        assert [s.state for s in _states(r, [obstacle] * 2)] == ["warning", "warning"]
        assert pause() == "clear"
        # Without the reset, the two earlier hits and these would make 3 of the last 5 at the first: "alert".
        assert [s.state for s in _states(r, [obstacle] * 3)] == ["warning", "warning", "alert"]
        # A raised alert is not carried over either: it would need 3 clean frames to clear, not 1 or 2.
        assert pause() == "clear"
        assert _states(r, [clean])[0].state == "clear"
    finally:
        r.close()


def test_threshold_changed_at_run_time_takes_effect_on_the_next_frame(ros, model, obstacle_case):
    clean, obstacle, tau = obstacle_case
    r = Rig(model, "/cam_tau", threshold=tau, raise_frames=1, window_frames=1, clear_frames=1)
    try:
        assert _states(r, [obstacle])[0].state == "alert"
        assert r.node.set_parameters([Parameter("threshold", value=999.0)])[0].successful
        assert _states(r, [obstacle])[0].state == "clear"
    finally:
        r.close()


def test_malformed_frame_warnings_are_throttled(ros, model):
    from rcl_interfaces.msg import Log
    r = Rig(model, "/cam_throttle")  # a fresh node: its logger has no throttle history
    logs = []
    sub = r.probe.create_subscription(Log, "/rosout", logs.append, 100)
    try:
        assert wait_for(lambda: sub.get_publisher_count() > 0, 5.0)
        published = Counter()
        start = time.monotonic()
        for reason in ("bad_step", "truncated", "bad_step", "unknown_encoding", "bad_step", "truncated"):
            published[reason] += _send_and_count(r, _malformed(reason), reason, r.probe.image_pub)
        span = time.monotonic() - start

        def warnings():
            return [m for m in logs if "dropped a frame" in m.msg and "cam_throttle" in m.name]
        assert wait_for(lambda: warnings(), 5.0)
        time.sleep(0.5)  # a second warning, if the throttle failed, would have arrived by now
        drops = warnings()
        # Six drops within one 5 s throttle window: one warning (a slower machine may span a second window).
        assert len(drops) == 1 or (span >= 5.0 and len(drops) <= math.ceil(span / 5.0) + 1), \
            ([m.msg for m in drops], span)
        assert "bad_step" in drops[0].msg and "step" in drops[0].msg
        counts = r.node.drop_counts()
        assert 3 <= counts["bad_step"] <= published["bad_step"], (counts, published)
        assert 2 <= counts["truncated"] <= published["truncated"], (counts, published)
    finally:
        r.probe.destroy_subscription(sub)
        r.close()


def test_lifecycle_is_driven_over_its_services_when_autostart_is_off(ros, model):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    r_node = DetectorNode(namespace="/cam_managed", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("threshold_source", value="parameter"),
        Parameter("backend_threads", value=1), Parameter("autostart", value=False)])
    client_node = rclpy.create_node("lifecycle_manager")
    spinner = Spinner(r_node, client_node)
    try:
        assert r_node.lifecycle_state == "unconfigured"
        change = client_node.create_client(ChangeState, "/cam_managed/detector/change_state")
        get = client_node.create_client(GetState, "/cam_managed/detector/get_state")
        assert change.wait_for_service(timeout_sec=10.0) and get.wait_for_service(timeout_sec=10.0)
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            future = change.call_async(ChangeState.Request(transition=Transition(id=transition)))
            assert wait_for(future.done, 30.0) and future.result().success
        future = get.call_async(GetState.Request())
        assert wait_for(future.done, 10.0)
        assert future.result().current_state.id == State.PRIMARY_STATE_ACTIVE
        assert r_node.lifecycle_state == "active" and r_node.worker_alive()
    finally:
        spinner.stop()
        client_node.destroy_node()
        r_node.close()
        r_node.destroy_node()
