"""Frame accounting and the node's /diagnostics status (ros/diagnostics.py), without a node: the levels an operator
and a diagnostic aggregator act on."""
from diagnostic_msgs.msg import DiagnosticStatus

from densehybrid_ros.ros.diagnostics import INFERENCE_ERROR, SUPERSEDED, FrameStats, detector_status
from densehybrid_ros.ros.testing import status_values


def stats_with(frames_in=0, frames_out=0, drops=()):
    s = FrameStats()
    for _ in range(frames_in):
        s.frame_in()
    for i in range(frames_out):
        s.frame_out(0.010 * (i + 1), 0.005, 0.004)
    for reason in drops:
        s.drop(reason)
    return s


def status(summary, lifecycle="active", error=""):
    return detector_status("detector", "camera", lifecycle, summary, {"backend": "onnxruntime"}, error)


def test_the_window_summarises_counts_and_latencies_and_starts_afresh():
    s = stats_with(frames_in=4, frames_out=2, drops=(SUPERSEDED, "bad_step", SUPERSEDED))
    w = s.take_window()
    assert (w.frames_in, w.frames_out) == (4, 2)
    assert abs(w.latency_ms_mean - 15.0) < 1e-9 and abs(w.latency_ms_max - 20.0) < 1e-9
    assert abs(w.processing_ms_mean - 5.0) < 1e-9 and abs(w.backend_ms_mean - 4.0) < 1e-9
    assert w.drops_window == w.drops_total == {SUPERSEDED: 2, "bad_step": 1}
    assert s.frames_in_total == 4 and s.frames_out_total == 2
    s.frame_in()
    s.drop(SUPERSEDED)
    w2 = s.take_window()
    assert (w2.frames_in, w2.frames_out, w2.latency_ms_mean) == (1, 0, None)
    assert w2.drops_window == {SUPERSEDED: 1}                     # this window only
    assert w2.drops_total == {SUPERSEDED: 3, "bad_step": 1}       # since configure
    assert s.drops() == w2.drops_total and s.frames_in_total == 5


def test_malformed_frames_in_the_window_are_a_warning_naming_each_reason():
    st = status(stats_with(3, 1, drops=("bad_step", "truncated", "truncated")).take_window())
    assert st.level == DiagnosticStatus.WARN
    assert "bad_step=1" in st.message and "truncated=2" in st.message
    values = status_values(st)
    assert values["drops.truncated"] == "2" and values["drops_total"] == "3"


def test_superseded_frames_are_backpressure_not_a_fault():
    st = status(stats_with(10, 2, drops=[SUPERSEDED] * 8).take_window())
    assert st.level == DiagnosticStatus.OK and st.message == "active"
    assert status_values(st)["drops.superseded"] == "8"


def test_inference_errors_are_a_warning_while_frames_are_served_and_an_error_when_none_is():
    st = status(stats_with(2, 1, drops=(INFERENCE_ERROR,)).take_window())
    assert st.level == DiagnosticStatus.WARN
    assert st.message == f"inference failed on 1 frames ({INFERENCE_ERROR}), 1 served"  # not called malformed
    assert status_values(st)[f"drops.{INFERENCE_ERROR}"] == "1"
    # Every frame of the window failed: no alert went out, which an operator must not read as a warning.
    st = status(stats_with(3, 0, drops=(INFERENCE_ERROR,) * 3).take_window())
    assert st.level == DiagnosticStatus.ERROR and "inference failed on 3 frames" in st.message
    # Malformed frames alone, nothing served, stay a warning: the camera, not the backend, is at fault.
    assert status(stats_with(2, 0, drops=("bad_step", "bad_step")).take_window()).level == DiagnosticStatus.WARN


def test_a_malformed_frame_warns_for_its_window_only():
    s = stats_with(2, 1, drops=("bad_step",))
    assert status(s.take_window()).level == DiagnosticStatus.WARN
    s.frame_in()
    s.frame_out(0.01, 0.005, 0.004)
    st = status(s.take_window())
    assert st.level == DiagnosticStatus.OK and status_values(st)["drops.bad_step"] == "1"


def test_levels_of_the_lifecycle_states():
    assert status(None, lifecycle="unconfigured", error="model not found: /x.onnx").level == DiagnosticStatus.ERROR
    err = status(None, lifecycle="unconfigured", error="model not found: /x.onnx")
    assert err.message == "model not found: /x.onnx"
    assert status(None, lifecycle="inactive").level == DiagnosticStatus.OK
    assert status(stats_with().take_window()).level == DiagnosticStatus.WARN          # active, no camera frames
    assert status(stats_with().take_window()).message == "active, no camera frames"
    assert status(stats_with(1, 1).take_window()).level == DiagnosticStatus.OK


def test_rates_latencies_and_info_are_reported_as_values():
    s = stats_with(3, 3)
    w = s.take_window()
    values = status_values(status(w))
    assert values["lifecycle_state"] == "active" and values["backend"] == "onnxruntime"
    assert float(values["input_rate_hz"]) == round(w.input_hz, 2) > 0
    assert values["latency_stamp_to_publish_ms_mean"] == "20.00"
    assert values["processing_ms_mean"] == "5.00" and values["backend_infer_ms_mean"] == "4.00"
