"""~/obstacle_alert on the wire (ros/alert_message.py): every state gets its own severity level, the message reads
back to what was written, and a message whose level contradicts its state is refused."""
import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Header

from densehybrid_ros.core.alert import LEVELS as CORE_LEVELS
from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
from densehybrid_ros.ros.alert_message import (STATUS_NAME, AlertReport, Region, level_number, parse_alert,
                                               report_from_state, to_message)

# diagnostic_msgs/DiagnosticStatus: OK=0, WARN=1, ERROR=2 (the message definition, as bytes in rclpy).
WIRE = {"clear": b"\x00", "warning": b"\x01", "alert": b"\x02"}


def header(frame_id="camera_optical", sec=12, nanosec=345):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def report(state, regions=2):
    return AlertReport(state=state, corridor_fraction=0.125, peak_score=3.5, threshold=-5.8,
                       regions=[Region(10 * i, 20, 30, 40, 500 - i, 4.0 - i) for i in range(regions)],
                       image_width=1024, image_height=512)


@pytest.mark.parametrize("state", ["clear", "warning", "alert"])
def test_every_state_has_its_own_level_on_the_wire_and_reads_back(state):
    msg = to_message(report(state), header())
    assert msg.status[0].name == STATUS_NAME
    assert msg.status[0].level == WIRE[state] and msg.status[0].message == state
    assert [st.level for st in msg.status[1:]] == [WIRE[state]] * 2     # each region carries the severity too
    assert level_number(msg.status[0].level) == CORE_LEVELS[state]      # the core's numbers are the wire's
    back = parse_alert(msg)
    assert back.state == state and (back.frame_id, back.stamp_ns) == ("camera_optical", 12 * 10**9 + 345)
    assert (back.corridor_fraction, back.peak_score, back.threshold) == (0.125, 3.5, -5.8)
    assert back.regions == report(state).regions and (back.image_width, back.image_height) == (1024, 512)


def test_the_three_levels_are_distinct():
    levels = {to_message(report(s, 0), header()).status[0].level for s in WIRE}
    assert levels == {DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR}


@pytest.mark.parametrize("state, wrong", [("alert", DiagnosticStatus.OK), ("warning", DiagnosticStatus.ERROR),
                                          ("clear", DiagnosticStatus.WARN)])
def test_a_level_that_contradicts_the_state_is_refused(state, wrong):
    msg = to_message(report(state), header())
    msg.status[0].level = wrong
    with pytest.raises(ValueError, match=f"state is '{state}'"):
        parse_alert(msg)
    msg = to_message(report(state), header())
    msg.status[-1].level = wrong                 # a region disagreeing is refused as well
    with pytest.raises(ValueError, match="obstacle_alert/region_1"):
        parse_alert(msg)


def test_unknown_states_and_foreign_messages_are_refused():
    with pytest.raises(ValueError, match="not one of"):
        to_message(report("panic"), header())
    msg = to_message(report("clear"), header())
    msg.status[0].name = "something_else"
    with pytest.raises(ValueError, match="not an obstacle alert"):
        parse_alert(msg)


def test_a_core_alert_state_goes_through_the_wire_unchanged():
    """An AlertState from the real detector (an obstacle in the corridor, raised on the first hit) -> report ->
    message -> report: boxes become RegionOfInterest-style offsets and sizes."""
    det = ObstacleAlertDetector(AlertConfig(tau=1.0, raise_frames=1, window_frames=1, min_area_fraction=0.0))
    score = np.zeros((100, 200), np.float32)
    score[70:80, 90:110] = 5.0
    state = det.update(score)
    assert state.state == "alert"
    msg = to_message(report_from_state(state, 200, 100), header())
    assert msg.status[0].level == WIRE["alert"]
    back = parse_alert(msg)
    assert back.regions == [Region(90, 70, 20, 10, 200, 5.0)]
    assert back.threshold == 1.0 and math.isclose(back.corridor_fraction, state.corridor_fraction, rel_tol=1e-5)
