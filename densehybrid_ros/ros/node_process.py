"""The detector node in its own process, as a vehicle runs it, and a driver node in this process that feeds it and
counts what comes back. Shared by the fuzzing, soak, lifecycle and fault tools (`densehybrid fuzz`,
`densehybrid soak`) and their tests.

- `NodeProcess` starts `python -m densehybrid_ros.ros.detector_node` with the DDS settings of params/dds.env (camera
  sized frames between processes need them), drains its output line by line (a full pipe would block the node's
  logger) and samples its resident memory, thread count and open file descriptors from /proc.
- `Driver` publishes camera frames and keeps only counts and small records of the outputs (never the images), so a
  10,000-frame run does not grow this process.
"""
from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = ROOT / "params" / "detector.yaml"


def prepare_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """Apply params/dds.env to this process (before rclpy.init) and give it a ROS domain of its own unless one is set;
    returns the environment a child node process should get."""
    from densehybrid_ros.config.dds import apply_dds_env

    apply_dds_env(override=False)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
    return dict(os.environ)


def ros_arg(value: Any) -> str:
    """A parameter value as `-p name:=value` wants it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(repr(float(v)) for v in value) + "]"
    return str(value)


@dataclass
class ProcessSample:
    t: float           # seconds since the process started
    rss_mb: float
    threads: int
    fds: int
    label: Any = None  # e.g. frames sent so far


def sample_process(pid: int) -> tuple[float, int, int]:
    """(VmRSS in MB, threads, open fds) of a live process, read from /proc."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb / 1024.0, threads, fds


class NodeProcess:
    """One detector node process. Use as a context manager or call start()/stop()."""

    def __init__(self, namespace: str, parameters: dict[str, Any], params_file: Path | None = PARAMS_FILE,
                 nice: int = 0, env: dict[str, str] | None = None, omp_threads: int = 1,
                 module: str = "densehybrid_ros.ros.detector_node") -> None:
        self.module = module  # or densehybrid_ros.ros.multi_camera_node, which shares the detector's stop
        self.namespace = namespace
        self.parameters = dict(parameters)
        self.params_file = params_file
        self.nice = nice
        self.env = dict(os.environ if env is None else env)
        self.env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(omp_threads))
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self._lines: list[tuple[float, str]] = []
        self._lines_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.samples: list[ProcessSample] = []

    @property
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", self.module, "--ros-args"]
        if self.params_file is not None:
            cmd += ["--params-file", str(self.params_file)]
        cmd += ["-r", f"__ns:={self.namespace}"]
        for name, value in self.parameters.items():
            cmd += ["-p", f"{name}:={ros_arg(value)}"]
        return cmd

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "NodeProcess":
        nice = self.nice
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=self.env, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._drain, name="node-output", daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._lines_lock:
                self._lines.append((time.monotonic() - self.started, raw.decode("utf-8", "replace").rstrip("\n")))

    def lines(self) -> list[str]:
        with self._lines_lock:
            return [line for _, line in self._lines]

    def timed_lines(self) -> list[tuple[float, str]]:
        with self._lines_lock:
            return list(self._lines)

    def count_lines(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for line in self.lines() if rx.search(line))

    def output(self) -> str:
        return "\n".join(self.lines())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def gave_up(self) -> bool:
        """The process exited or its configure failed (it then waits unconfigured: nothing more will come)."""
        return not self.alive() or any("configure failed" in line for line in self.lines())

    def wait_ready(self, ready: Callable[[], Any], timeout: float = 120.0) -> None:
        """Wait until `ready()` (e.g. the driver is matched with the node's endpoints); RuntimeError with the node's
        output if it gave up or the time ran out."""
        if not wait_until(lambda: ready() or self.gave_up(), timeout) or self.gave_up():
            raise RuntimeError(f"the node process did not come up:\n{self.output()[-4000:]}")

    def sample(self, label: Any = None) -> ProcessSample:
        rss, threads, fds = sample_process(self.pid)
        s = ProcessSample(time.monotonic() - self.started, rss, threads, fds, label)
        self.samples.append(s)
        return s

    def wait_for_output(self, pattern: str, timeout: float) -> bool:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(rx.search(line) for line in self.lines()):
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        return False

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> tuple[int | None, float]:
        """Send `sig` (SIGINT: what Ctrl-C and `ros2 launch` send first) and wait; returns (exit code, seconds to
        exit). A process still alive after `timeout` is killed and reported with exit code None."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
            code = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        elapsed = time.monotonic() - t0
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        return code, elapsed

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()


@dataclass
class ShutdownReport:
    """The line a detector process prints as it ends after a signal (detector_node.BoundedStop)."""

    outcome: str               # "done", or "cut short in step '<step>' at" when the watchdog ended it
    seconds: float             # from the executor's wake-up to the line
    started: float             # time.monotonic() of the wake-up (CLOCK_MONOTONIC: comparable across processes)
    steps: dict[str, float]    # seconds per step


_SHUTDOWN_LINE = re.compile(r"\[detector\] shutdown (.*?) ([0-9.]+) s after the executor stopped "
                            r"\(monotonic ([0-9.]+); (.*)\)")


def shutdown_report(lines: Iterable[str]) -> ShutdownReport | None:
    """The last shutdown line in a node's output, parsed; None if it printed none."""
    found = None
    for line in lines:
        m = _SHUTDOWN_LINE.search(line)
        if m:
            steps = dict(part.rsplit(" ", 1) for part in m.group(4).split(", ") if " " in part)
            found = ShutdownReport(m.group(1), float(m.group(2)), float(m.group(3)),
                                   {k: float(v) for k, v in steps.items()})
    return found


def stamp_ns_of(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class Driver:
    """A node in this process that publishes camera messages to one detector and keeps counts of its outputs.

    Alerts are kept as (stamp ns, threshold, arrival monotonic) — small — and image outputs only counted, so memory
    stays flat over long runs. The detector's latest /diagnostics status is kept too.
    """

    def __init__(self, namespace: str, name: str, image_outputs: Iterable[str] = (), reliable_input: bool = True,
                 input_depth: int = 100, keep_alerts: int = 100_000, context: Any = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from densehybrid_ros.ros import alert_message

        self.node = Node(name, context=context)
        ns = namespace.rstrip("/")
        self.namespace = ns
        self.private = f"{ns}/detector"
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=input_depth,
                            reliability=ReliabilityPolicy.RELIABLE if reliable_input
                            else ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        self.pubs = {"image": self.node.create_publisher(Image, f"{ns}/image", qos_in),
                     "image/compressed": self.node.create_publisher(CompressedImage, f"{ns}/image/compressed", qos_in),
                     "camera_info": self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_in)}
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.alerts: collections.deque[tuple[int, float | None, float]] = collections.deque(maxlen=keep_alerts)
        self.last_output: dict[str, float] = {}
        self.status = None
        self.status_count = 0
        self._parse_alert = alert_message.parse_alert
        self.subs = [self.node.create_subscription(alert_message.ALERT_TYPE, f"{self.private}/obstacle_alert",
                                                   self._on_alert, out_qos),
                     self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, out_qos)]
        for topic in image_outputs:
            self.subs.append(self.node.create_subscription(Image, f"{self.private}/{topic}",
                                                           self._counter(topic), out_qos))

    # -- outputs ------------------------------------------------------------------------------------------------------
    def _on_alert(self, msg: Any) -> None:
        threshold = None
        for st in msg.status[:1]:
            for kv in st.values:
                if kv.key == "threshold":
                    threshold = float(kv.value)
        with self.lock:
            self.counts["obstacle_alert"] += 1
            self.alerts.append((stamp_ns_of(msg.header), threshold, time.monotonic()))
            self.last_output["obstacle_alert"] = time.monotonic()

    def _counter(self, topic: str) -> Callable[[Any], None]:
        def count(msg: Any) -> None:
            with self.lock:
                self.counts[topic] += 1
                self.last_output[topic] = time.monotonic()
        return count

    def _on_diagnostics(self, msg: Any) -> None:
        for st in msg.status:
            if st.name.startswith(f"{self.private}:"):
                with self.lock:
                    self.status = st
                    self.status_count += 1

    # -- queries ------------------------------------------------------------------------------------------------------
    def count(self, topic: str) -> int:
        with self.lock:
            return self.counts[topic]

    def served(self, stamp_ns: int) -> bool:
        with self.lock:
            return any(s == stamp_ns for s, _, _ in reversed(self.alerts))

    def status_values(self) -> dict[str, str]:
        with self.lock:
            st = self.status
        return {} if st is None else {kv.key: kv.value for kv in st.values}

    def drops(self) -> dict[str, int]:
        """Cumulative drops by reason from the latest /diagnostics status of the detector."""
        return {k[len("drops."):]: int(v) for k, v in self.status_values().items() if k.startswith("drops.")}

    def connected(self, topic: str) -> bool:
        return self.pubs[topic].get_subscription_count() > 0 and all(s.get_publisher_count() > 0
                                                                       for s in self.subs)

    def publish(self, topic: str, msg: Any) -> None:
        self.pubs[topic].publish(msg)

    def destroy(self) -> None:
        self.node.destroy_node()


class Spin:
    """Spin nodes on a background executor (2 threads: the driver must not fall behind the detector's outputs)."""

    def __init__(self, *nodes: Any, threads: int = 2, context: Any = None) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=threads, context=context)
        for n in nodes:
            self.executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context went down at the end of a run
            pass

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)


def wait_until(condition: Callable[[], Any], timeout: float, period: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= end:
            return value
        time.sleep(period)


def theil_sen_slope(x: Iterable[float], y: Iterable[float]) -> tuple[float, float, float]:
    """Median of pairwise slopes with its 95% confidence interval (scipy's Theil-Sen): a trend estimate that a few
    outliers (a GC pause, an allocator returning memory late) do not move, unlike a least-squares fit or a max-min
    bound. Returns (slope, low, high)."""
    from scipy.stats import theilslopes

    res = theilslopes(list(y), list(x), alpha=0.95)
    return float(res[0]), float(res[2]), float(res[3])
