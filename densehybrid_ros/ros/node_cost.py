"""What the detector node costs on top of its model, measured across processes as a vehicle runs it.

Three processes, all with the project's DDS settings (params/dds.env):
- the node: `python -m densehybrid_ros.ros.detector_node` with the given model, in its own namespace;
- a camera: `python -m densehybrid_ros.ros.node_cost camera ...`, publishing rendered drive frames as rgb8 `Image`,
  either one frame per command line on stdin (the paired rounds) or at a fixed rate (the long replay);
- this process: a recorder subscribed to the node's outputs and /diagnostics, and the bare `Backend.infer` on the
  same frame.

Paired rounds (`measure_rounds`): the camera publishes one frame; once the node's last output and its diagnostics
for that frame are in, this process runs the bare backend (same model, same threads) on the same frame; then the
next round. Nothing overlaps, so each round's two numbers see the same machine load and their ratio is the node's
cost. The node's own end-to-end time comes from its /diagnostics (`latency_arrival_to_publish_ms_*`: from the
middleware receiving the frame to the last output published): a round waits for the diagnostics window that served
its frame (identified by the window's hardware_id, the frame_id), so no window holds two frames. The recorder also
sees stamp -> last output (camera publish to the recorder's DDS reception, both transports included).
Rounds alternate in blocks between "alert only" (the recorder subscribes to ~/obstacle_alert alone, so the node
skips every image output) and "all outputs" (every image topic subscribed as well).

Long replay (`rss_replay`): the camera publishes N frames at a rate above what the node serves (latest frame wins;
the node drops superseded frames and says so in its diagnostics) with every output subscribed, and the node
process's resident memory is sampled from /proc.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from densehybrid_ros.ros.node_process import NodeProcess, prepare_ros_environment

IMAGE_OUTPUTS = ("semantic", "semantic_color", "anomaly_score", "open_set", "overlay")
CASES = ("alert only", "all outputs")
DRIVE_SEED = 9_000_177  # a held-out drive with an obstacle that enters the corridor
DRIVE_FRAMES = 6
ROOT = Path(__file__).resolve().parents[2]


# -- shared ----------------------------------------------------------------------------------------------------
def drive_frames(height: int, width: int, n: int = DRIVE_FRAMES) -> list[np.ndarray]:
    """The frames the camera sends (cycled): a short drive towards a road obstacle, so the overlay and the alert
    do their full work (anomalous regions, boxes) as on a real approach."""
    from densehybrid_ros.data.world import render_sequence

    return [s.image for s in render_sequence(DRIVE_SEED, n, height, width, anomalies=1, speed=8.0)]


def frame_id(run: str, seq: int) -> str:
    return f"{run}_{seq}"


# -- the camera process ----------------------------------------------------------------------------------------
def camera_main(argv: list[str]) -> int:
    """`python -m densehybrid_ros.ros.node_cost camera --ns NS --run ID --height H --width W [--rate HZ --frames N]`

    Without --rate: prints "ready" once the node subscribes, then publishes frame `seq` for every line `seq` read
    on stdin and answers "sent <seq> <stamp_ns>". With --rate: publishes --frames frames at that rate, printing
    "sent <count>" every 100 frames, then "done <count>".
    """
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from densehybrid_ros.ros.conversions import numpy_to_image

    p = argparse.ArgumentParser(prog="node_cost camera")
    p.add_argument("--ns", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--frames", type=int, default=0)
    args = p.parse_args(argv)
    # Messages are built once; only the header changes per frame, so the camera's own cost stays out of the way.
    msgs = [numpy_to_image(f, "rgb8") for f in drive_frames(args.height, args.width)]
    rclpy.init()
    node = rclpy.create_node(f"node_cost_camera_{args.run}")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, f"{args.ns}/image", qos)

    def send(seq: int) -> int:
        msg = msgs[seq % len(msgs)]
        msg.header.frame_id = frame_id(args.run, seq)
        now = node.get_clock().now()
        msg.header.stamp = now.to_msg()
        pub.publish(msg)
        return now.nanoseconds

    try:
        end = time.monotonic() + 60.0
        while pub.get_subscription_count() == 0:
            if time.monotonic() > end:
                print("error no subscriber on the camera topic after 60 s", flush=True)
                return 1
            time.sleep(0.05)
        # The match is seen from the publisher's side first; the node's side needs a moment too, or it drops the
        # first frames as coming from a writer it does not know yet.
        time.sleep(0.5)
        print("ready", flush=True)
        if args.rate is None:
            for line in sys.stdin:
                seq = int(line)
                print(f"sent {seq} {send(seq)}", flush=True)
            return 0
        period = 1.0 / args.rate
        start = time.monotonic()
        for seq in range(args.frames):
            delay = start + seq * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            send(seq)
            if (seq + 1) % 100 == 0:
                print(f"sent {seq + 1}", flush=True)
        print(f"done {args.frames}", flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


# -- the recorder (this process) -------------------------------------------------------------------------------
class Recorder:
    """Subscribes to the node's outputs and /diagnostics; keeps DDS reception times per frame and topic."""

    def __init__(self, ns: str, run: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        from diagnostic_msgs.msg import DiagnosticArray

        self.ns, self.run = ns.rstrip("/"), run
        self.node = rclpy.create_node(f"node_cost_recorder_{run}")
        self._qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.arrivals: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)  # frame_id -> topic -> (src, rx)
        self.diagnostics: dict[str, dict[str, str]] = {}  # frame_id -> values of the window that served it
        self.latest_diagnostics: dict[str, str] = {}
        self.latest_message = ""
        self.alert = self._subscribe("obstacle_alert")
        self.images: dict[str, Any] = {}
        self._diag = self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, self._qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shut down under us
            pass

    def _subscribe(self, topic: str) -> Any:
        from sensor_msgs.msg import Image

        from densehybrid_ros.ros import alert_message

        msg_type = alert_message.ALERT_TYPE if topic == "obstacle_alert" else Image

        def record(msg: Any, info: Any) -> None:
            with self.lock:
                self.arrivals[msg.header.frame_id][topic] = (info["source_timestamp"], info["received_timestamp"])

        return self.node.create_subscription(msg_type, f"{self.ns}/detector/{topic}", record, self._qos)

    def _on_diagnostics(self, msg: Any) -> None:
        name = f"{self.ns}/detector: detector"
        for st in msg.status:
            if st.name != name:
                continue
            values = {kv.key: kv.value for kv in st.values}
            with self.lock:
                self.latest_diagnostics = values
                self.latest_message = st.message
                window = float(values.get("window_s", "0") or 0)
                served = round(float(values.get("output_rate_hz", "0") or 0) * window)
                if served == 1 and st.hardware_id.startswith(self.run + "_"):
                    self.diagnostics[st.hardware_id] = values

    def wait_active(self, node: NodeProcess, timeout: float = 120.0) -> None:
        """Until the node says it is active on /diagnostics; a failed configure raises with the node's reason."""
        def state() -> bool:
            with self.lock:
                lifecycle = self.latest_diagnostics.get("lifecycle_state", "")
                if lifecycle and lifecycle != "active" and "failed" in self.latest_message:
                    raise RuntimeError(f"the node did not start: {self.latest_message}")
                return lifecycle == "active"
        _wait(state, timeout, "the node becoming active", node)

    def set_image_outputs(self, on: bool) -> None:
        if on:
            for topic in IMAGE_OUTPUTS:
                if topic not in self.images:
                    self.images[topic] = self._subscribe(topic)
        else:
            for sub in self.images.values():
                self.node.destroy_subscription(sub)
            self.images = {}

    def outputs_matched(self) -> bool:
        subs = [self.alert, *self.images.values()]
        return all(s.get_publisher_count() > 0 for s in subs)

    def frame(self, fid: str, topics: tuple[str, ...]) -> tuple[dict[str, tuple[int, int]], dict[str, str]] | None:
        """(arrivals per topic, diagnostics values) once every topic and the diagnostics of `fid` are in."""
        with self.lock:
            got = self.arrivals.get(fid, {})
            if all(t in got for t in topics) and fid in self.diagnostics:
                return dict(got), self.diagnostics[fid]
        return None

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()


# -- the node process ------------------------------------------------------------------------------------------
def start_node(model: Path, ns: str, threads: int, diagnostics_period: float, nice: int = 0) -> NodeProcess:
    """The detector as its own process with the shipped parameter file, this model and these threads."""
    from densehybrid_ros.runtime import resolve_card

    params: dict[str, Any] = {"model": str(model), "backend_threads": threads,
                              "diagnostics_period": diagnostics_period}
    if resolve_card(model).tau is None:  # an uncalibrated (e.g. untrained) model: any threshold does for timing
        params.update(threshold_source="parameter", threshold=0.0)
    return NodeProcess(ns, params, nice=nice).start()


def start_camera(ns: str, run: str, height: int, width: int, env: dict[str, str], rate: float | None = None,
                 frames: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "densehybrid_ros.ros.node_cost", "camera", "--ns", ns, "--run", run,
           "--height", str(height), "--width", str(width)]
    if rate is not None:
        cmd += ["--rate", str(rate), "--frames", str(frames)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def stop_process(proc: subprocess.Popen) -> str:
    """SIGINT, then kill after 20 s; returns what it printed."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process so far, every thread (ended ones too), to the nanosecond: Linux's CPU clock of that
    process (clock id (~pid << 3) | 2, what clock_getcpuclockid(pid) returns). /proc/PID/stat counts in 10 ms ticks,
    too coarse for one frame."""
    return time.clock_gettime((~pid << 3) | 2)


def _wait(condition: Callable[[], Any], timeout: float, what: str, node: NodeProcess | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if node is not None and not node.alive():
            raise RuntimeError(f"{what}: the node process exited:\n{node.output()[-4000:]}")
        time.sleep(0.005)
    raise TimeoutError(f"{what}: nothing after {timeout:.0f} s")


# -- paired rounds -----------------------------------------------------------------------------------------------
STAGES = ("queue", "convert", "alert", "image_outputs")  # the node's diagnostics, besides backend_infer
PAUSE_S = 0.05
DIAGNOSTICS_PERIOD_S = 0.25


def _bare_run(backend: Any, image: np.ndarray) -> tuple[float, float]:
    """Wall and CPU seconds of one bare Backend.infer; the CPU window includes the pause after it, as the node's
    includes its own (the runtime's threads spin for a moment after a run)."""
    c0, t0 = time.process_time(), time.perf_counter()
    backend.infer(image)
    wall = time.perf_counter() - t0
    time.sleep(PAUSE_S)
    return wall, time.process_time() - c0


@dataclass
class Round:
    case: str
    node_e2e_s: float      # node: middleware reception of the frame -> last output published (its diagnostics)
    node_backend_s: float  # node: its own Backend.infer
    processing_s: float    # node: worker took the frame -> last output published
    stamp_to_last_s: float  # camera stamp -> recorder's reception of the last output (both transports)
    stamp_to_alert_s: float
    bare_s: float          # this process: Backend.infer on the same frame, right after
    node_cpu_s: float      # CPU time of the whole node process over the round (every thread)
    bare_cpu_s: float      # CPU time of this process over the bare run
    stages_s: dict[str, float] = field(default_factory=dict)  # the node's stage times (its diagnostics)


@dataclass
class RoundsResult:
    rounds: list[Round]
    height: int
    width: int
    threads: int
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    def of(self, case: str) -> list[Round]:
        return [r for r in self.rounds if r.case == case]


def measure_rounds(model: Path, height: int, width: int, threads: int = 2, rounds_per_case: int = 20,
                   blocks: int = 2, progress: bool = True) -> RoundsResult:
    """Paired rounds (module docstring), alternating `blocks` times between alert only and all outputs."""
    from densehybrid_ros.runtime import create_backend

    run = f"nc{os.getpid()}"
    ns = f"/node_cost_{os.getpid()}"
    env = prepare_ros_environment()
    frames = drive_frames(height, width)
    # The node's backend is built with these same options (threads, onnxruntime defaults, warm-up).
    bare = create_backend(str(model), threads=threads, warmup=2)
    # A round waits for the diagnostics window that served its frame before the next frame goes out, so no window
    # holds two frames. A short period adds its own cost to the node's CPU time (idle: 16 ms/s at 0.1 s, 3.8 ms/s
    # at 1 s).
    node = start_node(model, ns, threads, diagnostics_period=DIAGNOSTICS_PERIOD_S)
    camera = None
    recorder = _recorder(ns, run, node)
    result = RoundsResult([], height, width, threads)
    seq = 0
    try:
        recorder.wait_active(node)
        camera = start_camera(ns, run, height, width, env)
        line = camera.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"camera process: {line or camera.stderr.read()}")
        per_block = max(1, rounds_per_case // blocks)
        total = 2 * blocks * per_block
        bar = _progress(total, progress)
        for block in range(blocks):
            for case in CASES:
                recorder.set_image_outputs(case == "all outputs")
                _wait(recorder.outputs_matched, 30.0, "output subscriptions", node)
                # The node notices a subscription (or its end) through discovery; two untimed frames let it settle.
                time.sleep(0.5)
                topics = ("obstacle_alert",) + (IMAGE_OUTPUTS if case == "all outputs" else ())
                done = 0
                warm = 2
                while done < per_block:
                    seq += 1
                    image = frames[seq % len(frames)]
                    # The order alternates so that neither side always runs on the heels of the other.
                    bare_first = seq % 2 == 1
                    if bare_first:
                        bare_s, bare_cpu = _bare_run(bare, image)
                    cpu0 = process_cpu_s(node.pid)
                    camera.stdin.write(f"{seq}\n")
                    camera.stdin.flush()
                    sent = camera.stdout.readline().split()
                    if len(sent) != 3 or sent[:2] != ["sent", str(seq)]:
                        raise RuntimeError(f"camera process: unexpected answer {sent!r}")
                    stamp_ns = int(sent[2])
                    fid = frame_id(run, seq)
                    try:
                        arrivals, diag = _wait(lambda: recorder.frame(fid, topics), 15.0, f"outputs of {fid}", node)
                    except TimeoutError:
                        result.lost += 1
                        continue
                    # The node's runtime threads stop spinning within this pause; its CPU window includes it,
                    # as the bare run's does.
                    time.sleep(PAUSE_S)
                    node_cpu = process_cpu_s(node.pid) - cpu0
                    if not bare_first:
                        bare_s, bare_cpu = _bare_run(bare, image)
                    if warm:
                        warm -= 1
                        continue
                    last_rx = max(rx for _, rx in arrivals.values())
                    stages = {k[:-len("_ms_mean")]: 1e-3 * float(v) for k, v in diag.items()
                              if k[:-len("_ms_mean")] in STAGES and v != "n/a"}
                    result.rounds.append(Round(
                        case=case, node_e2e_s=1e-3 * float(diag["latency_arrival_to_publish_ms_mean"]),
                        node_backend_s=1e-3 * float(diag["backend_infer_ms_mean"]),
                        processing_s=1e-3 * float(diag["processing_ms_mean"]),
                        stamp_to_last_s=1e-9 * (last_rx - stamp_ns),
                        stamp_to_alert_s=1e-9 * (arrivals["obstacle_alert"][1] - stamp_ns), bare_s=bare_s,
                        node_cpu_s=node_cpu, bare_cpu_s=bare_cpu, stages_s=stages))
                    done += 1
                    bar.update(1)
        bar.close()
    finally:
        _shut_down(camera, recorder, node)
        bare.close()
    return result


# -- the long replay ---------------------------------------------------------------------------------------------
@dataclass
class RssResult:
    frames_sent: int
    rate_hz: float
    seconds: float
    frames_in: int        # the node's diagnostics: frames received
    frames_out: int       # frames served (every output published)
    superseded: int       # frames replaced by a newer one before the worker took them
    other_drops: dict[str, int]
    rss_start_mb: float   # after the first `settle` served frames
    rss_end_mb: float
    rss_max_mb: float
    samples: list[tuple[float, int, float]]  # (seconds, frames served, RSS MiB)

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb


def rss_replay(model: Path, height: int, width: int, frames: int = 10_000, rate_hz: float = 25.0,
               threads: int = 2, settle: int = 20, nice: int = 0, progress: bool = True) -> RssResult:
    """Replay `frames` frames at `rate_hz` through the node with every output subscribed; sample its RSS."""
    run = f"rss{os.getpid()}"
    ns = f"/node_cost_rss_{os.getpid()}"
    env = prepare_ros_environment()
    node = start_node(model, ns, threads, diagnostics_period=1.0, nice=nice)
    recorder = _recorder(ns, run, node)
    recorder.set_image_outputs(True)
    camera = None
    samples: list[tuple[float, int, float]] = []
    try:
        recorder.wait_active(node)
        _wait(recorder.outputs_matched, 60.0, "output subscriptions", node)
        camera = start_camera(ns, run, height, width, env, rate=rate_hz, frames=frames)
        line = camera.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"camera process: {line or camera.stderr.read()}")
        start = time.monotonic()
        bar = _progress(frames, progress)
        reader = _LineReader(camera.stdout)
        sent = 0
        while True:
            for text in reader.lines():
                word, count = text.split()[:2]
                bar.update(int(count) - sent)
                sent = int(count)
            with recorder.lock:
                served = len(recorder.arrivals)
            samples.append((time.monotonic() - start, served, node.sample(served).rss_mb))
            if reader.finished or camera.poll() is not None:
                break
            if not node.alive():
                raise RuntimeError(f"the node process exited during the replay:\n{node.output()[-4000:]}")
            time.sleep(1.0)
        bar.close()
        seconds = time.monotonic() - start
        time.sleep(2.5)  # the last frame is served and a diagnostics window closes
        samples.append((time.monotonic() - start, len(recorder.arrivals), node.sample(len(recorder.arrivals)).rss_mb))
        with recorder.lock:
            diag = dict(recorder.latest_diagnostics)
    finally:
        _shut_down(camera, recorder, node)
    settled = [s for s in samples if s[1] >= settle] or samples
    drops = {k[len("drops."):]: int(v) for k, v in diag.items() if k.startswith("drops.")}
    return RssResult(
        frames_sent=frames, rate_hz=rate_hz, seconds=seconds, frames_in=int(diag.get("frames_in_total", 0)),
        frames_out=int(diag.get("frames_out_total", 0)), superseded=drops.pop("superseded", 0), other_drops=drops,
        rss_start_mb=settled[0][2], rss_end_mb=samples[-1][2], rss_max_mb=max(s[2] for s in samples),
        samples=samples)


def _recorder(ns: str, run: str, node: NodeProcess) -> Recorder:
    """rclpy up and the recorder subscribed; on failure the node process is stopped, not left behind."""
    import rclpy

    try:
        rclpy.init()
        return Recorder(ns, run)
    except BaseException:
        rclpy.try_shutdown()
        node.stop()
        raise


def _shut_down(camera: subprocess.Popen | None, recorder: Recorder, node: NodeProcess) -> None:
    """Stop the camera, the recorder and the node, each even if stopping the one before failed (no orphan node)."""
    import rclpy

    try:
        if camera is not None:
            if camera.stdin is not None:
                camera.stdin.close()  # in command mode the camera exits at the end of its input
                camera.stdin = None
            stop_process(camera)
    finally:
        try:
            recorder.close()
            rclpy.try_shutdown()
        finally:
            node.stop()


class _LineReader:
    """Non-blocking lines from a child's stdout (a thread feeds a list)."""

    def __init__(self, stream) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.finished = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            line = line.strip()
            if line.startswith(("sent", "done")):
                with self._lock:
                    self._lines.append(line)
                if line.startswith("done"):
                    self.finished = True
        self.finished = True

    def lines(self) -> list[str]:
        with self._lock:
            out, self._lines = self._lines, []
        return out


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="frame", leave=False, file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "camera":
        sys.exit(camera_main(sys.argv[2:]))
    print("usage: python -m densehybrid_ros.ros.node_cost camera --ns NS --run ID --height H --width W "
          "[--rate HZ --frames N]", file=sys.stderr)
    sys.exit(2)
