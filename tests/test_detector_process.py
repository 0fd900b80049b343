"""The node as a separate process, as a vehicle runs it: `python -m densehybrid_ros.ros.detector_node --ros-args
--params-file params/detector.yaml -p model:=...` (and the `detector` console script), frames published from this
process, outputs received across processes over DDS, clean exit on SIGINT, no crash loop on a missing model."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from std_msgs.msg import Header

from densehybrid_ros.ros.alert_message import parse_alert
from densehybrid_ros.ros.conversions import numpy_to_image
from densehybrid_ros.ros.testing import IMAGE_OUTPUTS, Probe, Spinner, status_values, wait_for

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params" / "detector.yaml"
H, W = 128, 256


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


@pytest.fixture(scope="module")
def probe_for():
    rclpy.init()
    made = []

    def make(ns):
        probe = Probe(detector_ns=ns, name="process_probe" + ns.replace("/", "_"))
        made.append((probe, Spinner(probe)))
        return probe

    yield make
    for probe, spinner in made:
        spinner.stop()
        probe.destroy_node()
    rclpy.try_shutdown()


def start(cmd_head, ns, *params):
    cmd = [*cmd_head, "--ros-args", "--params-file", str(PARAMS), "-r", f"__ns:={ns}"]
    for p in params:
        cmd += ["-p", p]
    # The child inherits this run's ROS_DOMAIN_ID and LOCALHOST discovery (tests/conftest.py).
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(proc):
    """SIGINT, as Ctrl-C or `ros2 launch` does; returns (exit code, output)."""
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the node did not exit within 20 s of SIGINT:\n{out}")
    return proc.returncode, out


def test_node_process_serves_frames_across_processes_and_exits_cleanly_on_sigint(model, probe_for):
    ns = "/proc_cam"
    proc = start([sys.executable, "-m", "densehybrid_ros.ros.detector_node"], ns, f"model:={model}",
                 "threshold_source:=parameter", "threshold:=-2.95", "backend_threads:=1")
    try:
        probe = probe_for(ns)
        assert wait_for(lambda: probe.connected("image"), 30.0), "the node process did not come up"
        frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
        for i in range(3):
            header = Header(frame_id=f"cam_{i}")
            header.stamp.sec, header.stamp.nanosec = 1700 + i, 42
            stamp_ns = (1700 + i) * 1_000_000_000 + 42
            outputs = IMAGE_OUTPUTS + ("obstacle_alert",)

            def served():
                return all(probe.stamped(stamp_ns, t) for t in outputs)

            for _ in range(20):  # best effort: re-send if DDS lost it
                probe.image_pub.publish(numpy_to_image(frame, "rgb8", header))
                if wait_for(served, 1.0):
                    break
            assert served(), f"no outputs for frame {i}"
            for t in IMAGE_OUTPUTS:
                msg = probe.stamped(stamp_ns, t)
                assert (msg.header.frame_id, msg.height, msg.width) == (f"cam_{i}", H, W), t
            assert parse_alert(probe.stamped(stamp_ns, "obstacle_alert")).frame_id == f"cam_{i}"
        status = wait_for(lambda: probe.detector_status("proc_cam"), 10.0)
        assert status is not None and status_values(status)["lifecycle_state"] == "active"
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "Traceback" not in out, out


def test_missing_model_leaves_the_process_alive_and_reporting_not_crash_looping(tmp_path, probe_for):
    exe = shutil.which("detector", path=str(Path(sys.executable).parent)) or shutil.which("detector")
    if exe is None:
        pytest.skip("the `detector` console script is not installed (pip install -e . creates it)")
    missing = tmp_path / "no_such_model.onnx"
    ns = "/proc_missing"
    proc = start([exe], ns, f"model:={missing}")
    try:
        probe = probe_for(ns)

        def error_reported():
            st = probe.detector_status("proc_missing")
            return st is not None and st.level == st.ERROR and st

        status = wait_for(error_reported, 30.0)
        assert status, "no ERROR status on /diagnostics"
        assert str(missing) in status.message
        time.sleep(1.0)
        assert proc.poll() is None, "the node exited instead of waiting unconfigured"
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert str(missing) in out and "configure failed" in out


def test_a_params_file_ros_cannot_parse_is_one_line_naming_it_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  ros__parameters:\n    threshold: [unclosed\n")
    done = subprocess.run([sys.executable, "-m", "densehybrid_ros.ros.detector_node", "--ros-args", "--params-file",
                           str(bad)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and "cannot start ROS" in done.stderr and str(bad) in done.stderr
