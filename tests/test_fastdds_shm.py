"""Fast DDS shared memory in /dev/shm (ros/fastdds_shm.py, docs/RELIABILITY.md known issue 12).

Every participant with params/fastdds.xml owns a 64 MB segment in /dev/shm, which is RAM. The detector and
multi-camera processes used to leave theirs behind at every stop (rclpy's LifecycleNode kept the participant alive
past destroy_node, and the bounded stop ends with os._exit); a day of test runs left 20 GB and CI was killed for
memory. These tests use real participants in real processes and the real /dev/shm.
"""
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from ros_support import stop_process

from densehybrid_ros.ros.fastdds_shm import SHM_DIR, owner_is_alive, remove_stale_segments, stale_segments
from densehybrid_ros.ros.node_process import NodeProcess

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this machine (Fast DDS SHM is Linux's)")

ROOT = Path(__file__).resolve().parents[1]

# It waits in a spin, not in time.sleep: Linux may hand the SIGINT to one of the DDS threads, and then a sleeping main
# thread is not interrupted until its sleep ends (2.5% of 400 stops hung here that way); rclpy's signal thread wakes
# the spin whichever thread got the signal. "ready" comes from inside the spin, where SIGINT ends it cleanly.
PARTICIPANT = """
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String
from densehybrid_ros.ros.signals import spin_until_signal
rclpy.init()
node = rclpy.create_node("shm_probe")
node.create_publisher(String, "shm_probe", 1)
def ready():
    timer.cancel()
    print("ready", flush=True)
timer = node.create_timer(0.01, ready)
executor = SingleThreadedExecutor()
executor.add_node(node)
spin_until_signal(executor, node.context)
executor.shutdown()
node.destroy_node()
rclpy.try_shutdown()
"""


def own_segments(pid: int) -> set[str]:
    """The Fast DDS segments a process maps: in a domain of its own, only those it created."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            m = re.search(r"/dev/shm/(fastdds_[0-9a-f]{16})\s*$", line)
            if m:
                found.add(m.group(1))
    return found


def start(cmd: list[str], domain: int) -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)


def wait_for_segments(proc: subprocess.Popen) -> set[str]:
    """The participant's segments once it says "ready" (from inside its spin, where SIGINT ends it cleanly)."""
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stdout.read()
    segments = own_segments(proc.pid)
    assert segments, "no Fast DDS segment mapped"
    return segments


def domain() -> int:
    # Distinct from conftest's 10..99 spread and from each other, so that the processes do not map each other's
    # segments.
    return 100 + int(uuid.uuid4().int % 100)


def test_only_the_segments_of_a_killed_process_are_removed():
    killed = start([sys.executable, "-c", PARTICIPANT], domain())
    alive = start([sys.executable, "-c", PARTICIPANT], domain())
    try:
        dead_segments, live_segments = wait_for_segments(killed), wait_for_segments(alive)
        killed.kill()  # what the OOM killer or a crash does: nothing of Fast DDS runs
        killed.wait(10)
        assert all((SHM_DIR / name).exists() for name in dead_segments)
        assert all(not owner_is_alive(SHM_DIR / (name + "_el")) for name in dead_segments)
        assert all(owner_is_alive(SHM_DIR / (name + "_el")) for name in live_segments)
        assert dead_segments <= {name for name, _ in stale_segments()}

        report = remove_stale_segments()

        assert dead_segments <= set(report.removed) and report.freed_bytes >= 64 * 2**20
        assert not any((SHM_DIR / name).exists() or (SHM_DIR / (name + "_el")).exists() for name in dead_segments)
        assert all((SHM_DIR / name).exists() for name in live_segments) and alive.poll() is None
    finally:
        stop_process(killed)
        stop_process(alive)
    assert alive.returncode == 0
    # A clean rclpy exit deletes its participant and so its segments.
    assert not any((SHM_DIR / name).exists() for name in live_segments)


def plant_stale_segment() -> Path:
    """A segment as a dead process leaves it: the file and an unlocked lock file."""
    segment = SHM_DIR / f"fastdds_{uuid.uuid4().hex[:16]}"
    segment.write_bytes(bytes(4096))
    Path(str(segment) + "_el").touch()
    return segment


@pytest.mark.parametrize("node", ["detector", "multi_camera"])
def test_the_node_process_cleans_up_at_start_and_leaves_no_shared_memory_after_sigint(node, untrained_model, tmp_path):
    from densehybrid_ros.runtime.batch_graph import write_batch_graph

    model = untrained_model(64, 128)
    if node == "multi_camera":
        model = write_batch_graph(model, tmp_path / "untrained_batch.onnx").model
    planted = plant_stale_segment()
    parameters = {"model": model, "threshold_source": "parameter", "threshold": 0.0}
    if node == "multi_camera":
        parameters["cameras"] = "[front, rear]"
    proc = NodeProcess(f"/shm_{node}", parameters, env={**os.environ, "ROS_DOMAIN_ID": str(domain())},
                       module=f"densehybrid_ros.ros.{node}_node")
    with proc:
        try:
            # SIGINT is the node's to handle once it spins, which follows "active" (docs/RELIABILITY.md section 5).
            assert proc.wait_for_output("active:", 120), proc.output()
            time.sleep(1.0)
            segments = own_segments(proc.pid)
            assert segments and not planted.exists() and not Path(str(planted) + "_el").exists()
        finally:
            code, _ = proc.stop()
            planted.unlink(missing_ok=True)
            Path(str(planted) + "_el").unlink(missing_ok=True)
    out = proc.output()
    assert code == 0 and "shutdown done" in out, out
    assert re.search(r"removed \d+ Fast DDS shared-memory segments of dead processes", out), out
    left = [name for name in segments if (SHM_DIR / name).exists()]
    assert not left, f"{len(left)} of {len(segments)} segments left in /dev/shm after SIGINT"


def test_doctor_reports_dead_segments_and_cleans_only_those(tmp_path, capsys):
    import fcntl

    from densehybrid_ros.cli.doctor import Report, check_shared_memory

    dead = [tmp_path / f"fastdds_{i:016x}" for i in range(3)]
    live = tmp_path / "fastdds_00000000000000ff"
    for segment in dead + [live]:
        segment.write_bytes(bytes(1000))
        Path(str(segment) + "_el").touch()
    (tmp_path / "fastdds_port7000").write_bytes(bytes(10))  # ports are Fast DDS's own business
    held = os.open(str(live) + "_el", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a running participant holds it
    try:
        report = Report()
        check_shared_memory(report, clean=False, shm_dir=tmp_path)
        assert report.warnings == 1 and "3 segments of dead processes" in capsys.readouterr().out

        check_shared_memory(report, clean=True, shm_dir=tmp_path)
        assert "removed 3 Fast DDS shared-memory segments" in capsys.readouterr().out
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, live.name + "_el", "fastdds_port7000"]

        check_shared_memory(Report(), clean=False, shm_dir=tmp_path)
        assert "no segment of a dead process" in capsys.readouterr().out
    finally:
        os.close(held)
