"""Long and disruptive runs of the detector node in its own process: soak, lifecycle under traffic, signals.

- `run_soak`: N camera frames published at a fixed rate (faster than the node infers: superseded frames are dropped
  and counted) with every image output subscribed; the node's RSS, threads and open fds are sampled from /proc as
  the frames go. `leak_trend` estimates the growth per 1000 frames after warm-up with Theil-Sen (median of pairwise
  slopes and its 95% interval), so one late allocator release or GC pause does not decide the verdict.
- `run_lifecycle_traffic`: deactivate / cleanup / configure / activate cycles over the node's lifecycle services
  while frames stream in, with run-time parameter changes (threshold, corridor, overlay_alpha) in between; checks
  that every alert stamped after a threshold change was acknowledged carries the new threshold.
- `run_signals`: start the node, keep it busy, send SIGINT or SIGTERM during an inference and time the exit.

Reusable by the benchmark (RSS over a long replay): `run_soak(...)` returns every sample; `soak_table` and
`plot_soak` format them. No torch here.
"""
from __future__ import annotations

import signal as signal_module
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from densehybrid_ros.ros.node_process import (Driver, NodeProcess, ProcessSample, Spin, theil_sen_slope,
                                              wait_until)
from densehybrid_ros.ros.testing import IMAGE_OUTPUTS


def scene_frames(height: int, width: int, count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """A few synthetic driving scenes (RGB) to cycle through."""
    from densehybrid_ros.data.world.scene import render_scene

    return [render_scene(seed + i, height, width, anomalies=i % 2).image for i in range(count)]


def _image_messages(frames: Sequence[np.ndarray]) -> list[Any]:
    from densehybrid_ros.ros.conversions import numpy_to_image

    return [numpy_to_image(f, "rgb8") for f in frames]


def _stamp(msg: Any, ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
    msg.header.frame_id = "camera_optical"


def _context():
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    return context


# -- soak -------------------------------------------------------------------------------------------------------------
@dataclass
class LeakTrend:
    per_1000_frames_mb: float   # Theil-Sen slope of RSS against frames sent
    low_mb: float               # its 95% interval
    high_mb: float
    growth_mb: float            # median of the last tenth of samples minus median of the first tenth (after warm-up)
    threads: tuple[int, int]    # min, max after warm-up
    fds: tuple[int, int]


@dataclass
class SoakReport:
    frames: int
    height: int
    width: int
    rate_hz: float
    seconds: float
    served: int
    image_outputs: int
    drops: dict[str, int]
    samples: list[ProcessSample]
    warmup_frames: int
    exit_code: int | None
    exit_seconds: float
    alive: bool
    model: str
    node_output_tail: str = ""

    def after_warmup(self) -> list[ProcessSample]:
        return [s for s in self.samples if s.label is not None and s.label >= self.warmup_frames]


def leak_trend(report: SoakReport) -> LeakTrend:
    samples = report.after_warmup()
    if len(samples) < 4:
        raise ValueError(f"only {len(samples)} samples after warm-up; run more frames or sample more often")
    x = [s.label / 1000.0 for s in samples]
    y = [s.rss_mb for s in samples]
    slope, low, high = theil_sen_slope(x, y)
    k = max(1, len(y) // 10)
    growth = float(np.median(y[-k:]) - np.median(y[:k]))
    threads = [s.threads for s in samples]
    fds = [s.fds for s in samples]
    return LeakTrend(slope, low, high, growth, (min(threads), max(threads)), (min(fds), max(fds)))


def run_soak(model: str, frames: int = 10_000, height: int = 512, width: int = 1024, rate_hz: float = 30.0,
             warmup_frames: int | None = None, sample_period_s: float = 1.0, namespace: str = "/soak",
             nice: int = 0, backend_threads: int = 1, parameters: dict[str, Any] | None = None,
             image_outputs: Sequence[str] = IMAGE_OUTPUTS, progress: bool = False) -> SoakReport:
    """Publish `frames` rgb8 frames at `rate_hz` (best effort, as a camera) to a node process with `image_outputs`
    subscribed; sample the node every `sample_period_s`. The caller has applied the DDS environment."""
    import rclpy

    warmup = warmup_frames if warmup_frames is not None else max(1, frames // 10)
    params = dict(model=str(model), backend_threads=backend_threads, warmup_runs=1, diagnostics_period=1.0,
                  prefer_cv_bridge=False)
    params.update(parameters or {})
    messages = _image_messages(scene_frames(height, width))
    context = _context()
    node = NodeProcess(namespace, params, nice=nice).start()
    driver = Driver(namespace, "soak_driver", image_outputs=image_outputs, reliable_input=False, input_depth=1,
                    keep_alerts=1000, context=context)
    spin = Spin(driver.node, context=context)
    bar = None
    t0 = time.monotonic()
    sent = 0
    try:
        node.wait_ready(lambda: driver.connected("image"))
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=frames, unit="frame", desc=f"soak {height}x{width}")
        period = 1.0 / rate_hz
        next_pub = time.monotonic()
        next_sample = next_pub
        node.sample(0)
        while sent < frames and node.alive():
            msg = messages[sent % len(messages)]
            _stamp(msg, time.time_ns())
            driver.publish("image", msg)
            sent += 1
            if bar is not None:
                bar.update(1)
            now = time.monotonic()
            if now >= next_sample:
                node.sample(sent)
                next_sample = now + sample_period_s
            next_pub += period
            delay = next_pub - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_pub = time.monotonic()
        time.sleep(2.0)  # the frame in progress and a diagnostics window
        # The alerts are small and arrive first; the camera-sized image outputs of the last frames may still be on
        # their way to this driver on a loaded machine.
        wait_until(lambda: sum(driver.count(t) for t in image_outputs)
                   >= len(image_outputs) * driver.count("obstacle_alert"), 10.0)
        if node.alive():
            node.sample(sent)
    finally:
        if bar is not None:
            bar.close()
        seconds = time.monotonic() - t0
        alive = node.alive()
        drops = driver.drops()
        served = driver.count("obstacle_alert")
        outputs = sum(driver.count(t) for t in image_outputs)
        code, exit_s = node.stop()
        spin.stop()
        driver.destroy()
        rclpy.try_shutdown(context=context)
    return SoakReport(sent, height, width, rate_hz, seconds, served, outputs, drops, node.samples, warmup, code,
                      exit_s, alive, str(model), "\n".join(node.lines()[-20:]))


def soak_table(report: SoakReport) -> str:
    trend = leak_trend(report)
    s = report.after_warmup()
    other = ", ".join(f"{k}={v}" for k, v in sorted(report.drops.items()) if k != "superseded")
    rows = ["| measure | value |", "|---|---|",
            f"| frames published / served / superseded | {report.frames} / {report.served} / "
            f"{report.drops.get('superseded', 0)} |",
            f"| other drops | {other or 'none'} |",
            f"| image outputs received | {report.image_outputs} |",
            f"| frame size / publish rate / run time | {report.height}x{report.width} rgb8 / {report.rate_hz:g} Hz / "
            f"{report.seconds:.0f} s |",
            f"| RSS after warm-up ({report.warmup_frames} frames) / max / end, MB | {s[0].rss_mb:.1f} / "
            f"{max(x.rss_mb for x in s):.1f} / {s[-1].rss_mb:.1f} |",
            f"| RSS growth after warm-up (median of last tenth - first tenth), MB | {trend.growth_mb:.1f} |",
            f"| RSS trend, MB per 1000 frames (Theil-Sen, 95% interval) | {trend.per_1000_frames_mb:.2f} "
            f"({trend.low_mb:.2f} .. {trend.high_mb:.2f}) |",
            f"| threads min-max after warm-up | {trend.threads[0]}-{trend.threads[1]} |",
            f"| open fds min-max after warm-up | {trend.fds[0]}-{trend.fds[1]} |",
            f"| SIGINT at the end: exit code / seconds | {report.exit_code} / {report.exit_seconds:.2f} |"]
    return "\n".join(rows) + "\n"


def plot_soak(report: SoakReport, out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.label for s in report.samples if s.label is not None]
    samples = [s for s in report.samples if s.label is not None]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(x, [s.rss_mb for s in samples], lw=1)
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(x, [s.threads for s in samples], lw=1, color="tab:orange")
    axes[1].set_ylabel("threads")
    axes[2].plot(x, [s.fds for s in samples], lw=1, color="tab:green")
    axes[2].set_ylabel("open fds")
    axes[2].set_xlabel("frames published")
    for ax in axes:
        ax.axvline(report.warmup_frames, color="grey", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_title(title or f"detector node process, {report.height}x{report.width} rgb8 at {report.rate_hz:g} Hz")
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out


# -- lifecycle under traffic ------------------------------------------------------------------------------------------
@dataclass
class LifecycleReport:
    cycles: int
    transitions_ok: int
    transitions_failed: list[str]
    parameter_changes: int
    parameter_refusals: list[str]
    alerts_checked: int            # alerts stamped after a threshold acknowledgement
    stale_alerts: list[str]
    served: int
    frames_sent: int
    samples: list[ProcessSample]   # taken when the node is active again after each cycle
    alive: bool
    exit_code: int | None
    exit_seconds: float
    traceback: bool
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


class _Streamer(threading.Thread):
    """Publishes camera frames at a fixed rate until stopped, each stamped with the wall clock."""

    def __init__(self, driver: Driver, messages: list[Any], rate_hz: float) -> None:
        super().__init__(name="camera", daemon=True)
        self.driver, self.messages, self.period = driver, messages, 1.0 / rate_hz
        self.stop_event = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            msg = self.messages[self.sent % len(self.messages)]
            _stamp(msg, time.time_ns())
            try:
                self.driver.publish("image", msg)
            except Exception:  # noqa: BLE001 - the context is going down at the end
                return
            self.sent += 1
            self.stop_event.wait(self.period)


def _call(client: Any, request: Any, timeout: float) -> Any:
    future = client.call_async(request)
    if not wait_until(future.done, timeout, period=0.005):
        return None
    return future.result()


def run_lifecycle_traffic(model: str, cycles: int = 100, height: int = 128, width: int = 256,
                          rate_hz: float = 30.0, namespace: str = "/lifecycle", nice: int = 0,
                          settle_s: float = 0.3, progress: bool = False) -> LifecycleReport:
    """Cycle the node deactivate -> cleanup -> configure -> activate `cycles` times under traffic, changing run-time
    parameters while it is active; the caller has applied the DDS environment."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    def double(name: str, value: float) -> Any:
        return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))

    def doubles(name: str, values: Sequence[float]) -> Any:
        return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                                                            double_array_value=[float(v) for v in values]))

    # A different threshold in every cycle, so the value an alert carries tells which change it came from.
    thresholds = [round(-3.0 + 0.01 * c, 4) for c in range(cycles + 1)]
    corridors = ([0.3, 1.0, 0.45, 0.6, 0.55, 0.6, 0.7, 1.0], [0.2, 1.0, 0.4, 0.5, 0.6, 0.5, 0.8, 1.0])
    params = dict(model=str(model), backend_threads=1, warmup_runs=0, diagnostics_period=1.0,
                  threshold_source="parameter", threshold=float(thresholds[0]), prefer_cv_bridge=False)
    messages = _image_messages(scene_frames(height, width, count=2))
    context = _context()
    node = NodeProcess(namespace, params, nice=nice).start()
    driver = Driver(namespace, "lifecycle_driver", image_outputs=("overlay",), reliable_input=False, input_depth=1,
                    context=context)
    change = driver.node.create_client(ChangeState, f"{driver.private}/change_state")
    setp = driver.node.create_client(SetParameters, f"{driver.private}/set_parameters")
    spin = Spin(driver.node, context=context)
    streamer = _Streamer(driver, messages, rate_hz)
    transitions_ok, failed, refusals, stale = 0, [], [], []
    changes, checked = 0, 0
    # (acknowledged at wall-clock ns, threshold): alerts stamped later must carry it (until the next change).
    acks: list[tuple[int, float]] = []
    t0 = time.monotonic()
    bar = None
    try:
        node.wait_ready(lambda: driver.connected("image"))
        if not (change.wait_for_service(timeout_sec=30.0) and setp.wait_for_service(timeout_sec=30.0)):
            raise RuntimeError("lifecycle / parameter services not found")
        streamer.start()
        if not wait_until(lambda: driver.count("obstacle_alert") > 0, 60.0):
            raise RuntimeError("no alert before the first cycle")
        node.sample(0)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=cycles, unit="cycle", desc="lifecycle")
        sequence = (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                    Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE)
        for cycle in range(cycles):
            for transition in sequence:
                res = _call(change, ChangeState.Request(transition=Transition(id=transition)), 60.0)
                if res is not None and res.success:
                    transitions_ok += 1
                else:
                    failed.append(f"cycle {cycle}: transition {transition} "
                                  f"{'timed out' if res is None else 'refused'}")
                    break
            if not node.alive():
                break
            # While active and streaming: a new threshold, a corridor, the overlay opacity.
            tau = float(thresholds[cycle + 1])
            requests = [[double("threshold", tau)], [doubles("corridor", corridors[cycle % 2])],
                        [double("overlay_alpha", 0.3 + 0.4 * (cycle % 2))]]
            for req in requests:
                res = _call(setp, SetParameters.Request(parameters=req), 30.0)
                if res is None or not all(r.successful for r in res.results):
                    refusals.append(f"cycle {cycle}: {req[0].name}: "
                                    f"{'timed out' if res is None else [r.reason for r in res.results]}")
                    continue
                changes += 1
                if req[0].name == "threshold":
                    acks.append((time.time_ns(), tau))
            time.sleep(settle_s)
            if node.alive():
                node.sample(cycle + 1)
            if bar is not None:
                bar.update(1)
        time.sleep(0.5)
    finally:
        streamer.stop_event.set()
        streamer.join(timeout=5.0)
        if bar is not None:
            bar.close()
        alive = node.alive()
        served = driver.count("obstacle_alert")
        with driver.lock:
            alerts = list(driver.alerts)
        code, exit_s = node.stop()
        spin.stop()
        driver.destroy()
        rclpy.try_shutdown(context=context)
    # An alert stamped after the acknowledgement of change i carries the threshold of change i or of a later change
    # (set while the frame waited), never an earlier one.
    ack_times = [a for a, _ in acks]
    order = {round(v, 4): j for j, (_, v) in enumerate(acks)}
    for stamp, threshold, _ in alerts:
        i = int(np.searchsorted(ack_times, stamp, side="right")) - 1
        if i < 0:
            continue
        checked += 1
        j = order.get(round(threshold, 4)) if threshold is not None else None
        if j is None or j < i:
            stale.append(f"alert stamped {stamp} carries threshold {threshold}; {acks[i][1]} was acknowledged "
                         f"before that stamp")
    report = LifecycleReport(cycles, transitions_ok, failed, changes, refusals, checked, stale, served,
                             streamer.sent, node.samples, alive, code, exit_s,
                             any("Traceback" in line for line in node.lines()), time.monotonic() - t0)
    if not alive:
        report.problems.append("the node process died")
    if code != 0:
        report.problems.append(f"exit code {code} after SIGINT")
    if report.traceback:
        lines = node.lines()
        start = next(i for i, line in enumerate(lines) if "Traceback" in line)
        report.problems.append("a Python traceback in the node's output:\n" + "\n".join(lines[start:start + 40]))
    report.problems += failed[:5] + refusals[:5] + stale[:5]
    if checked == 0:
        report.problems.append("no alert stamped after a threshold change arrived")
    return report


def lifecycle_trend(report: LifecycleReport, warmup_cycles: int = 2) -> tuple[tuple[float, float, float],
                                                                             tuple[int, int], tuple[int, int]]:
    """(RSS slope MB per cycle with its 95% interval, thread min-max, fd min-max) after `warmup_cycles`."""
    s = [x for x in report.samples if x.label is not None and x.label >= warmup_cycles]
    slope = theil_sen_slope([x.label for x in s], [x.rss_mb for x in s])
    return slope, (min(x.threads for x in s), max(x.threads for x in s)), (min(x.fds for x in s),
                                                                            max(x.fds for x in s))


# -- signals ----------------------------------------------------------------------------------------------------------
@dataclass
class SignalRun:
    signal: str
    exit_code: int | None
    seconds: float
    busy: bool          # an inference was in progress (the node had served frames and frames kept coming)
    tail: str
    node: int = 0       # which of the nodes started together
    signalled_at: float = 0.0  # time.monotonic() at the signal (CLOCK_MONOTONIC: comparable across processes)


def run_signals(model: str, runs: int = 20, signals: Sequence[str] = ("SIGINT", "SIGTERM"), height: int = 512,
                width: int = 1024, rate_hz: float = 15.0, namespace: str = "/signals", nice: int = 0,
                backend_threads: int = 1, timeout: float = 20.0, progress: bool = False, rng_seed: int = 0,
                nodes: int = 1, parameters: dict[str, Any] | None = None) -> list[SignalRun]:
    """For each signal, `runs` times: start `nodes` node processes together (two cameras: nodes=2), stream frames to
    each until it has served some, wait a random part of an inference, send the signal to all of them at once (as
    `ros2 launch` does on Ctrl-C) and time each exit."""
    import rclpy

    rng = np.random.default_rng(rng_seed)
    messages = _image_messages(scene_frames(height, width, count=2))
    out: list[SignalRun] = []
    context = _context()
    plan = [s for s in signals for _ in range(runs)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), unit="run", desc="signals")
    try:
        for k, name in enumerate(plan):
            params = dict(model=str(model), backend_threads=backend_threads, warmup_runs=1, prefer_cv_bridge=False)
            params.update(parameters or {})
            procs, drivers, streamers = [], [], []
            for j in range(nodes):
                ns = f"{namespace}_{k}_{j}"
                procs.append(NodeProcess(ns, params, nice=nice).start())
                drivers.append(Driver(ns, f"signal_driver_{k}_{j}", reliable_input=False, input_depth=1,
                                      context=context))
                streamers.append(_Streamer(drivers[-1], messages, rate_hz))
            spin = Spin(*(d.node for d in drivers), context=context)
            busy = [False] * nodes
            results: list[tuple[int | None, float]] = [(None, 0.0)] * nodes
            try:
                for j in range(nodes):
                    if wait_until(lambda: drivers[j].connected("image") or procs[j].gave_up(), 120.0) and \
                            not procs[j].gave_up():
                        streamers[j].start()
                for j in range(nodes):
                    busy[j] = bool(wait_until(lambda: drivers[j].count("obstacle_alert") >= 2, 120.0))
                time.sleep(float(rng.uniform(0.05, 0.6)))  # land the signal at a random point of an inference
                t_sig = time.monotonic()
                for p in procs:
                    if p.alive():
                        p.proc.send_signal(getattr(signal_module, name))
                # Poll all of them, so each exit time is its own (not the time we got round to waiting for it).
                pending = set(range(nodes))
                while pending and time.monotonic() - t_sig < timeout:
                    for j in list(pending):
                        if procs[j].proc.poll() is not None:
                            results[j] = (procs[j].proc.returncode, time.monotonic() - t_sig)
                            pending.discard(j)
                    time.sleep(0.005)
                for j in pending:
                    procs[j].proc.kill()
                    procs[j].proc.wait()
                    results[j] = (None, timeout)
                for p in procs:
                    p.stop()  # joins the output reader
            finally:
                for st in streamers:
                    st.stop_event.set()
                    if st.is_alive():
                        st.join(timeout=5.0)
                spin.stop()
                for d in drivers:
                    d.destroy()
            for j, p in enumerate(procs):
                out.append(SignalRun(name, results[j][0], results[j][1], busy[j], "\n".join(p.lines()[-30:]), j,
                                     t_sig))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        rclpy.try_shutdown(context=context)
    return out


def signals_table(runs: list[SignalRun], bound_s: float = 2.0) -> str:
    rows = ["| signal | runs | exit 0 | within bound | median s | max s |", "|---|---:|---:|---:|---:|---:|"]
    for name in sorted({r.signal for r in runs}):
        rs = [r for r in runs if r.signal == name]
        secs = [r.seconds for r in rs]
        rows.append(f"| {name} | {len(rs)} | {sum(r.exit_code == 0 for r in rs)} | "
                    f"{sum(r.seconds <= bound_s for r in rs)} (<= {bound_s:g} s) | {np.median(secs):.2f} | "
                    f"{max(secs):.2f} |")
    return "\n".join(rows) + "\n"
