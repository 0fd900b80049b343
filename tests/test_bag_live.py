"""Bags over DDS, every party in its own process as on a vehicle: `densehybrid bag play` into `densehybrid bag
record`, and `densehybrid bag evaluate` (detector node process + play process + recorder) on sqlite3 and mcap bags,
with every output matched to its input frame by stamp. Small frames and an untrained model: this is about plumbing;
the demo runs the shipped model at 512x1024."""
import csv
import os
import subprocess
import sys
import time

import pytest

from densehybrid_ros.bag.convert import FrameFolder, convert_frames
from densehybrid_ros.bag.drives import DriveSpec, make_drive
from densehybrid_ros.bag.evaluate import EvaluateOptions, evaluate_bag
from densehybrid_ros.bag.files import BagError, open_bag, stamp_ns

H, W = 128, 256
CLI = [sys.executable, "-m", "densehybrid_ros.cli", "bag"]


@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(H, W)


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    out = tmp_path_factory.mktemp("drive") / "bag"
    make_drive(DriveSpec(frames=10, height=H, width=W, seed=11), out, progress=False)
    return out


def _stamped(path, topic):
    with open_bag(path) as bag:
        return [(stamp_ns(m.header.stamp), m.header.frame_id, bytes(m.data)) for _, _, _, m in bag.decoded([topic])]


def test_play_into_record_across_processes_keeps_bytes_and_stamps(drive, tmp_path):
    out = tmp_path / "recorded"
    recorder = subprocess.Popen(CLI + ["record", "/replayed/image", "/camera/camera_info", "--out", str(out),
                                       "--discover", "60", "--duration", "60", "--qos", "reliable"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        played = subprocess.run(CLI + ["play", str(drive), "--topics", "/camera/image", "/camera/camera_info",
                                       "--remap", "/camera/image:=/replayed/image", "--rate", "2",
                                       "--wait-for-subscribers", "60"],
                                capture_output=True, text=True, timeout=120)
        assert played.returncode == 0, played.stderr
        assert "played 20 messages" in played.stdout
        time.sleep(1.0)
    finally:
        recorder.send_signal(2)
        log, _ = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, log
    assert _stamped(out, "/replayed/image") == _stamped(drive, "/camera/image"), "every frame, bytes and stamps"
    with open_bag(out) as bag:
        assert bag.topics["/camera/camera_info"].count == 10


def test_restamped_replay_keeps_frames_together_and_logs_the_stamps(drive, tmp_path):
    """In-process subscriber, player in another process: image and camera_info of one frame share the new stamp,
    new stamps are wall-clock times of publishing, and --clock publishes the bag time."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image

    from densehybrid_ros.ros.testing import Spinner, wait_for

    rclpy.init()
    node = rclpy.create_node("restamp_probe")
    got = {"image": [], "info": [], "clock": []}
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/rs/image", lambda m: got["image"].append(stamp_ns(m.header.stamp)), qos)
    node.create_subscription(CameraInfo, "/rs/camera_info", lambda m: got["info"].append(stamp_ns(m.header.stamp)),
                             qos)
    node.create_subscription(Clock, "/clock", lambda m: got["clock"].append(stamp_ns(m.clock)), qos)
    spinner = Spinner(node)
    log = tmp_path / "stamps.csv"
    try:
        before = time.time_ns()
        played = subprocess.run(CLI + ["play", str(drive), "--restamp", "--stamp-log", str(log), "--clock",
                                       "--topics", "/camera/image", "/camera/camera_info",
                                       "--remap", "/camera/image:=/rs/image", "/camera/camera_info:=/rs/camera_info",
                                       "--start-offset", "0.25", "--wait-for-subscribers", "60"],
                                capture_output=True, text=True, timeout=120)
        assert played.returncode == 0, played.stderr
        assert wait_for(lambda: len(got["image"]) == 7 and len(got["info"]) == 7, 10.0), got
    finally:
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    assert got["image"] == got["info"], "a frame's image and camera_info keep one stamp"
    assert all(before < s < time.time_ns() for s in got["image"])
    rows = list(csv.DictReader(open(log)))
    originals = [int(r["bag_stamp_ns"]) for r in rows if r["topic"] == "/camera/image"]
    assert originals == [s for s, _, _ in _stamped(drive, "/camera/image")][3:], "--start-offset 0.25 s at 10 fps"
    assert got["clock"] and min(got["clock"]) >= originals[0] - 10**8 and max(got["clock"]) <= originals[-1] + 10**8


def test_loop_replays_the_selected_duration_again_and_again(drive):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from densehybrid_ros.ros.testing import Spinner, wait_for

    rclpy.init()
    node = rclpy.create_node("loop_probe")
    got = []
    node.create_subscription(Image, "/loop/image", lambda m: got.append(stamp_ns(m.header.stamp)),
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    spinner = Spinner(node)
    player = subprocess.Popen(CLI + ["play", str(drive), "--topics", "/camera/image", "--remap",
                                     "/camera/image:=/loop/image", "--duration", "0.25", "--loop", "--rate", "2",
                                     "--wait-for-subscribers", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: len(got) >= 9, 60.0), got
    finally:
        player.terminate()
        player.communicate(timeout=30)
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    first3 = [s for s, _, _ in _stamped(drive, "/camera/image")][:3]
    assert got[:9] == first3 * 3, "frames 0.0, 0.1 and 0.2 s (--duration 0.25), looped"


def _check_every_output_matches_an_input(result, drive, topic="/camera/image"):
    stamps_log = {int(r["published_stamp_ns"]): int(r["bag_stamp_ns"])
                  for r in csv.DictReader(open(result.out / "stamps.csv")) if r["topic"] == topic}
    inputs = {s: frame_id for s, frame_id, _ in _stamped(drive, topic)}
    matched = 0
    with open_bag(result.out / "outputs") as bag:
        for t, _, _, msg in bag.decoded():
            if t == "/diagnostics":
                continue
            original = stamps_log.get(stamp_ns(msg.header.stamp))
            assert original in inputs, f"{t}: output stamped {stamp_ns(msg.header.stamp)} matches no input frame"
            assert msg.header.frame_id == inputs[original]
            matched += 1
    return matched


@pytest.mark.slow
@pytest.mark.parametrize("storage,compressed", [("sqlite3", False), ("mcap", True)])
def test_evaluate_plays_through_the_node_process_and_matches_every_output(model, tmp_path, storage, compressed):
    bag = tmp_path / "drive"
    make_drive(DriveSpec(frames=12, height=H, width=W, seed=11, storage=storage, compressed=compressed), bag,
               progress=False)
    result = evaluate_bag(EvaluateOptions(bag=bag, out=tmp_path / "eval", model=model, rate=0.5, threads=1,
                                          progress=False))
    m = result.analysis.metrics
    topic = "/camera/image/compressed" if compressed else "/camera/image"
    matched = _check_every_output_matches_an_input(result, bag, topic)
    assert m["frames"] == 12 and m["outputs_without_input"] == 0
    # Reliable replay: a frame is either answered or superseded in the node's one-slot mailbox, never lost.
    assert m["frames_with_outputs"] + m.get("node_drops", {}).get("superseded", 0) == 12, m
    assert m["frames_with_outputs"] >= 6
    assert matched >= 5 * m["frames_with_outputs"], "alert, score, semantic, open-set and overlay per answered frame"
    assert {"pixel", "open_set", "alert", "alert_timeline"} <= set(m)
    assert m["alert"]["obstacle_events"] == 1
    assert m["latency_ms"]["stamp_to_publish"]["n"] == m["frames_with_outputs"]
    for name in ("report.md", "timeline.png", "latency.png", "metrics.json", "frames.csv", "node.log"):
        assert (result.out / name).is_file(), name
    assert "video" in result.files and result.files["video"].stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name], "no staging folder left behind"


def test_evaluate_without_labels_reports_latency_and_alert_timing_and_says_what_it_skipped(model, tmp_path):
    import cv2

    from densehybrid_ros.data.world import render_sequence

    (tmp_path / "images").mkdir()
    for k, scene in enumerate(render_sequence(4, 6, H, W, anomalies=1)):
        cv2.imwrite(str(tmp_path / "images" / f"{k:04d}.png"), scene.image[..., ::-1])
    bag = tmp_path / "nolabels"
    convert_frames(FrameFolder(tmp_path / "images"), bag, progress=False)
    result = evaluate_bag(EvaluateOptions(bag=bag, out=tmp_path / "eval", model=model, rate=0.5, threads=1,
                                          progress=False, video=False))
    m = result.analysis.metrics
    assert "pixel" not in m and "alert" not in m
    assert m["latency_ms"]["stamp_to_publish"]["n"] == m["frames_with_outputs"] >= 3
    assert len(m["alert_timeline"]["states"]) == 6
    report = (result.out / "report.md").read_text()
    assert "## Skipped" in report and "no labels" in report


def test_evaluate_refuses_a_truncated_bag_and_writes_nothing(drive, tmp_path, model):
    import shutil

    bag = tmp_path / "damaged"
    shutil.copytree(drive, bag)
    data = next(bag.glob("*.db3"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(BagError, match=str(bag)):
        evaluate_bag(EvaluateOptions(bag=bag, out=tmp_path / "eval", model=model, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]


def test_record_names_a_topic_that_never_appears(tmp_path):
    done = subprocess.run(CLI + ["record", "/no/such/topic", "--out", str(tmp_path / "rec"), "--discover", "1"],
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert done.returncode == 2
    assert "/no/such/topic" in done.stderr and not (tmp_path / "rec").exists()
    assert not list(tmp_path.iterdir())
