"""The disk fills while `densehybrid bag record` runs (its own process, as on a vehicle): the recorder stops with one
clear error line, never leaves a half bag under the requested name, and keeps what it had committed as a readable
bag at <out>.recovered whose metadata.yaml counts exactly the messages it holds.

A full disk without root or a tmpfs: the recorder's process gets a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored),
so a write past it fails with EFBIG exactly where ENOSPC would. Both storages: sqlite3 keeps its last commit, mcap its
last flushed chunks (the file cut back there and finished with a summary, tests/test_bag_mcap_salvage.py)."""
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from densehybrid_ros.bag.files import open_bag, stamp_ns

CLI = [sys.executable, "-m", "densehybrid_ros.cli", "bag"]
LIMIT = 3_000_000          # bytes any one file of the recorder may reach
H, W = 128, 256            # 98 KB rgb8 frames: the limit is reached after ~30 of them


def _file_size_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_recording_stops_on_a_full_disk_and_keeps_a_readable_bag(tmp_path, storage):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    out = tmp_path / "drive"
    recorder = subprocess.Popen(CLI + ["record", "/full/image", "--out", str(out), "--storage", storage,
                                       "--discover", "60", "--duration", "120", "--qos", "reliable"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_file_size_limit)
    rclpy.init()
    node = rclpy.create_node("disk_full_publisher")
    pub = node.create_publisher(Image, "/full/image", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    sent = []
    try:
        end = time.monotonic() + 90
        while recorder.poll() is None and time.monotonic() < end:
            if pub.get_subscription_count() == 0:
                time.sleep(0.05)
                continue
            msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, len(sent)
            msg.data = np.full(H * W * 3, len(sent) % 251, np.uint8).tobytes()
            pub.publish(msg)
            sent.append(len(sent))
            time.sleep(0.05)
        stopped_after = len(sent)
    finally:
        if recorder.poll() is None:
            recorder.send_signal(signal.SIGINT)
        stdout, stderr = recorder.communicate(timeout=60)
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"{storage}: recorder stopped after {stopped_after} frames were sent; stderr:\n{stderr}")

    assert recorder.returncode == 2, (stdout, stderr)
    # Fast DDS cannot map its 64 MB shared-memory segment under the file size limit (it says so and uses UDP).
    errors = [line for line in stderr.splitlines()
              if line and not line.startswith("recording ") and "RTPS_" not in line]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert f"writing bag {out} stopped" in errors[0] and "disk full" in errors[0], errors[0]
    assert stopped_after * H * W * 3 > LIMIT, "the limit was what stopped it"
    assert not out.exists(), "nothing under the requested name"
    recovered = tmp_path / "drive.recovered"
    assert str(recovered) in errors[0], errors[0]
    assert [p.name for p in tmp_path.iterdir()] == ["drive.recovered"], "no hidden partial folder left behind"
    with open_bag(recovered) as bag:
        count = bag.topics["/full/image"].count
        assert bag.verify() == count, "metadata.yaml counts what the storage holds"
        frames = [(stamp_ns(m.header.stamp) - 1_700_000_000 * 10**9, bytes(m.data))
                  for _, _, _, m in bag.decoded(["/full/image"])]
    assert f"the {count} messages" in errors[0]
    assert 10 <= count < stopped_after, (count, stopped_after)
    assert [i for i, _ in frames] == list(range(count)), "the first frames, in order, none missing"
    assert all(data == bytes([i % 251]) * (H * W * 3) for i, data in frames), "bytes intact"
