"""Bags on disk (no ROS graph): `bag make` drives and `bag convert` frame folders written as real rosbag2 through
rosbags and read back, and every bad input refused with an error naming the file and nothing left half-written."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from densehybrid_ros.bag.convert import FrameFolder, convert_frames
from densehybrid_ros.bag.drives import DriveSpec, make_drive
from densehybrid_ros.bag.files import BagError, image_array, open_bag, stamp_ns, typestore
from densehybrid_ros.data.taxonomy import SYNTHETIC

H, W = 96, 192


def _messages(path):
    with open_bag(path) as bag:
        return [(t, ns, bytes(raw)) for t, _, ns, raw in bag.messages()]


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    out = tmp_path_factory.mktemp("drive") / "bag"
    description = make_drive(DriveSpec(frames=6, height=H, width=W, seed=5, fps=5.0), out, progress=False)
    return out, description


def test_make_writes_image_camera_info_labels_and_clock_with_one_stamp_per_frame(drive):
    path, description = drive
    with open_bag(path) as bag:
        assert {t: s.msgtype for t, s in bag.topics.items()} == {
            "/camera/image": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
            "/camera/labels": "sensor_msgs/msg/Image", "/clock": "rosgraph_msgs/msg/Clock"}
        stamps = {}
        for topic, _, log_ns, msg in bag.decoded():
            ns = stamp_ns(msg.clock) if topic == "/clock" else stamp_ns(msg.header.stamp)
            assert ns == log_ns
            stamps.setdefault(topic, []).append(ns)
            if topic == "/camera/labels":
                labels = image_array(msg)
                assert labels.shape == (H, W) and msg.encoding == "mono8"
                assert set(np.unique(labels)) <= set(range(SYNTHETIC.num_classes + 1)) | {255}
            if topic == "/camera/image":
                assert (msg.height, msg.width, msg.encoding) == (H, W, "rgb8")
        assert bag.description["seed_used"] == description["seed_used"]
    assert len(set(map(tuple, stamps.values()))) == 1, "every topic carries the same stamps"
    first = stamps["/clock"]
    assert np.allclose(np.diff(first), 0.2e9), "5 fps"


def test_obstacle_drive_ends_with_the_obstacle_in_the_corridor(drive):
    _, d = drive
    assert d["obstacle"] is not None and d["obstacle_entry_frame"] is not None
    assert d["frames_in_corridor"] >= 3 and d["obstacle_entry_frame"] + d["frames_in_corridor"] == 6


def test_make_is_reproducible(drive, tmp_path):
    path, d = drive
    again = make_drive(DriveSpec(frames=6, height=H, width=W, seed=5, fps=5.0), tmp_path / "again", progress=False)
    assert again == d
    assert _messages(tmp_path / "again") == _messages(path)


def test_clean_compressed_mcap_drive(tmp_path):
    out = tmp_path / "clean"
    d = make_drive(DriveSpec(frames=3, height=H, width=W, seed=2, clean=True, compressed=True, storage="mcap",
                             condition="night", layout="rural"), out, progress=False)
    assert d["obstacle"] is None and d["obstacle_entry_frame"] is None
    assert list(out.glob("*.mcap")), "mcap storage"
    with open_bag(out) as bag:
        assert bag.topics["/camera/image/compressed"].msgtype == "sensor_msgs/msg/CompressedImage"
        for topic, _, _, msg in bag.decoded(["/camera/image/compressed", "/camera/labels"]):
            if topic.endswith("compressed"):
                assert "jpeg" in msg.format
                assert cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR).shape == (H, W, 3)
            else:
                assert not (image_array(msg) == SYNTHETIC.anomaly_label).any(), "a clean drive has no obstacle"


def _frame_folder(root, n=4, labels=True):
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    if labels:
        (root / "labels").mkdir()
    frames = []
    for i in range(n):
        rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        label = rng.integers(0, 15, (32, 48), dtype=np.uint8)
        # names out of order on purpose: the bag follows name order
        cv2.imwrite(str(root / "images" / f"f{n - i:03d}.png"), rgb[..., ::-1])
        if labels:
            cv2.imwrite(str(root / "labels" / f"f{n - i:03d}_L.png"), label)
        frames.append((f"f{n - i:03d}", rgb, label))
    return sorted(frames, key=lambda f: f[0])


def test_convert_round_trip_in_name_order(tmp_path):
    frames = _frame_folder(tmp_path)
    out = tmp_path / "bag"
    convert_frames(FrameFolder(tmp_path / "images", tmp_path / "labels", "_L", fps=4.0, anomaly_label=14), out,
                   progress=False)
    with open_bag(out) as bag:
        images = [image_array(m) for _, _, _, m in bag.decoded(["/camera/image"])]
        labels = [image_array(m) for _, _, _, m in bag.decoded(["/camera/labels"])]
        assert bag.description["anomaly_label"] == 14
    assert len(images) == len(labels) == 4
    for (_, rgb, label), got_rgb, got_label in zip(frames, images, labels):
        assert np.array_equal(got_rgb, rgb) and np.array_equal(got_label, label)


def test_convert_image_without_label_names_it_and_writes_nothing(tmp_path):
    _frame_folder(tmp_path)
    (tmp_path / "labels" / "f002_L.png").unlink()
    with pytest.raises(BagError, match="f002.png"):
        convert_frames(FrameFolder(tmp_path / "images", tmp_path / "labels", "_L"), tmp_path / "bag", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "labels"], "no bag, no staging folder"


def test_bags_are_never_overwritten(drive):
    path, _ = drive
    with pytest.raises(BagError, match="exists already"):
        make_drive(DriveSpec(frames=2, height=H, width=W), path, progress=False)


# -- bad bags ------------------------------------------------------------------------------------------------------
def test_missing_bag(tmp_path):
    with pytest.raises(BagError, match=str(tmp_path / "nope")):
        with open_bag(tmp_path / "nope"):
            pass


def test_missing_metadata_yaml(tmp_path, drive):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(drive[0], copy)
    (copy / "metadata.yaml").unlink()
    with pytest.raises(BagError, match="metadata.yaml is missing"):
        with open_bag(copy):
            pass


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_storage_is_reported_with_the_file(tmp_path, storage):
    out = tmp_path / "bag"
    make_drive(DriveSpec(frames=4, height=H, width=W, clean=True, storage=storage), out, progress=False)
    data = next(p for p in out.iterdir() if p.suffix in (".db3", ".mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(BagError, match=str(out)):
        with open_bag(out) as bag:
            bag.verify()


def _custom_type_bag(path):
    store = get_typestore(Stores.ROS2_HUMBLE)  # a store of its own: the tools' shared one stays standard
    store.register(get_types_from_msg("int32 value", "acme_msgs/msg/Thing"))
    with Writer(path, version=8) as w:
        conn = w.add_connection("/thing", "acme_msgs/msg/Thing", typestore=store)
        w.write(conn, 1, store.serialize_cdr(store.types["acme_msgs/msg/Thing"](value=3), "acme_msgs/msg/Thing"))


def test_unknown_message_type_is_named(tmp_path):
    path = tmp_path / "custom"
    _custom_type_bag(path)
    with open_bag(path) as bag:
        assert bag.topics["/thing"].msgtype == "acme_msgs/msg/Thing"
        with pytest.raises(BagError, match="acme_msgs/msg/Thing"):
            bag.require("/thing", ("sensor_msgs/msg/Image",))
    assert "acme_msgs/msg/Thing" not in typestore().types
    done = subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "bag", "play", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "acme_msgs/msg/Thing" in done.stderr and "unknown to this ROS 2 install" in done.stderr


def test_cli_names_a_topic_the_bag_does_not_have(drive):
    done = subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "bag", "play", str(drive[0]), "--topics",
                           "/camera/nope"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'/camera/nope' is not in bag" in done.stderr and str(drive[0]) in done.stderr


def test_info_prints_the_description(drive):
    done = subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "bag", "info", str(drive[0]), "--verify"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("description: "))
    assert json.loads(line[len("description: "):])["seed_used"] == drive[1]["seed_used"]
    assert "verified: 24 messages read" in done.stdout


def test_time_to_alert_counts_from_the_entry_to_an_alert_with_a_region_on_the_obstacle():
    from densehybrid_ros.bag.analysis import Analysis, FrameRecord, _alert_against_truth

    obstacle, elsewhere = (10, 10, 20, 20), (50, 50, 60, 60)
    states = ["clear", "alert", "clear", "clear", "warning", "alert", "alert", "alert", "alert", None, "alert"]
    frames = []
    for k, state in enumerate(states):
        f = FrameRecord(k, k * 100_000_000, k / 10, state=state, truth_hit=k >= 5)
        f.truth_boxes = (obstacle,) if k >= 5 else ()
        f.regions = (elsewhere,) if state == "alert" and k < 7 else ((obstacle,) if state == "alert" else ())
        frames.append(f)
    a = Analysis(frames, fps=10.0, metrics={"duration_s": 1.0})
    _alert_against_truth(a, raise_window=2)
    al = a.metrics["alert"]
    assert al["obstacle_events"] == 1 and al["missed"] == 0
    event = al["time_to_alert"][0]
    # frames 5 and 6 are in ALERT, but on a false positive elsewhere: the obstacle is alerted on at frame 7
    assert (event["entry_frame"], event["alert_frame"], event["frames"]) == (5, 7, 2)
    assert event["seconds"] == pytest.approx(0.2) and not event["raised_before_entry"]
    # the alert of frame 1 rose far from any obstacle; the warning of frame 4 is within raise_window of the entry
    assert (al["false_alerts"], al["false_warnings"]) == (1, 0)
    assert al["clean_seconds"] == pytest.approx(0.3)


def test_message_types_from_a_bag_import_only_installed_ros_message_packages():
    """A type name comes from the bag file: only rosidl-generated message packages are imported, never an arbitrary
    installed module named like one."""
    from densehybrid_ros.bag.files import BagError
    from densehybrid_ros.bag.live import message_class
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image
    for bad in ("json/msg/Decoder", "os/msg/Path", "sensor_msgs/msg/NoSuchType", "sensor_msgs/srv/Image",
                "../x/msg/Y", "sensor_msgs.msg.Image"):
        with pytest.raises(BagError, match="unknown to this ROS 2 install"):
            message_class(bad)


@pytest.mark.parametrize("field, value, message", [
    ("height", 10, r"--height must be an integer in \[16, 8192\], got 10"),
    ("width", 100000, r"--width must be an integer in \[16, 8192\]"),
    ("seed", -1, r"--seed must be an integer >= 0"),
    ("start_ns", -5_000_000_000, r"--start-time must be >= 0"),
])
def test_drive_settings_out_of_range_are_refused_before_rendering(tmp_path, field, value, message):
    with pytest.raises(BagError, match=message):
        make_drive(DriveSpec(**{"frames": 2, "height": H, "width": W, field: value}), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()
