"""Frame accounting for /diagnostics: input and output rates, stamp-to-publish latency, drops by reason.

Updated from two threads (the executor's subscription callbacks count arrivals and header drops; the worker counts
outputs, decode drops and latencies), hence the lock. Counters of drops are cumulative since configure (a vehicle
log wants totals); rates and latencies are over the last diagnostics window.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

# Why a frame did not produce outputs. "superseded": a newer frame replaced it in the one-slot mailbox before the
# worker took it (latest frame wins), or was still waiting when the node deactivated; "inference_error": the
# backend (or the outputs after it) raised. Malformed frames are counted under conversions.DROP_REASONS.
SUPERSEDED = "superseded"
INFERENCE_ERROR = "inference_error"
# Not a drop: a served frame (its alert is out) whose image outputs failed. Counted apart so that frames in =
# frames out + drops always holds.
OUTPUT_ERRORS = "output_errors"


@dataclass
class WindowSummary:
    seconds: float
    frames_in: int
    frames_out: int
    latency_ms_mean: float | None   # header stamp -> outputs published (node clock)
    latency_ms_max: float | None
    processing_ms_mean: float | None  # frame taken by the worker -> outputs published
    backend_ms_mean: float | None     # Backend.infer alone
    arrival_ms_mean: float | None = None  # frame received by the middleware -> last output published (node cost)
    arrival_ms_max: float | None = None
    frames_in_total: int = 0          # since configure
    frames_out_total: int = 0
    # Means of the parts of the node's cost: queue (reception -> worker start), convert (message -> RGB), alert
    # (judge + publish ~/obstacle_alert), image_outputs (every subscribed image output computed and published).
    stage_ms_mean: dict[str, float] = field(default_factory=dict)
    drops_total: dict[str, int] = field(default_factory=dict)
    drops_window: dict[str, int] = field(default_factory=dict)
    output_errors_total: int = 0
    output_errors_window: int = 0

    @property
    def input_hz(self) -> float:
        return self.frames_in / self.seconds if self.seconds > 0 else 0.0

    @property
    def output_hz(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0


class FrameStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._window_start = time.monotonic()
            self._in = 0
            self._out = 0
            self._latency: list[float] = []
            self._processing: list[float] = []
            self._backend: list[float] = []
            self._arrival: list[float] = []
            self._stages: dict[str, list[float]] = {}
            self._drops_total: Counter[str] = Counter()
            self._drops_window: Counter[str] = Counter()
            self.frames_out_total = 0
            self.frames_in_total = 0
            self.output_errors_total = 0
            self._output_errors_window = 0

    def frame_in(self) -> None:
        with self._lock:
            self._in += 1
            self.frames_in_total += 1

    def drop(self, reason: str) -> None:
        with self._lock:
            self._drops_total[reason] += 1
            self._drops_window[reason] += 1

    def output_error(self) -> None:
        """A served frame's image outputs failed (the frame is also counted by frame_out)."""
        with self._lock:
            self.output_errors_total += 1
            self._output_errors_window += 1

    def frame_out(self, latency_s: float, processing_s: float, backend_s: float,
                  arrival_s: float | None = None, stages: dict[str, float] | None = None) -> None:
        """One frame's outputs are out. arrival_s: from the middleware receiving the frame to the last publish,
        the node's whole cost (queueing behind the frame in progress included)."""
        with self._lock:
            self._out += 1
            self.frames_out_total += 1
            self._latency.append(latency_s)
            self._processing.append(processing_s)
            self._backend.append(backend_s)
            if arrival_s is not None:
                self._arrival.append(arrival_s)
            for name, seconds in (stages or {}).items():
                self._stages.setdefault(name, []).append(seconds)

    def drops(self) -> dict[str, int]:
        with self._lock:
            return dict(self._drops_total)

    def take_window(self) -> WindowSummary:
        """Summarise the window since the last call and start a new one."""
        with self._lock:
            now = time.monotonic()
            mean = (lambda xs: 1e3 * sum(xs) / len(xs) if xs else None)
            summary = WindowSummary(
                seconds=now - self._window_start, frames_in=self._in, frames_out=self._out,
                latency_ms_mean=mean(self._latency),
                latency_ms_max=1e3 * max(self._latency) if self._latency else None,
                processing_ms_mean=mean(self._processing), backend_ms_mean=mean(self._backend),
                arrival_ms_mean=mean(self._arrival),
                arrival_ms_max=1e3 * max(self._arrival) if self._arrival else None,
                frames_in_total=self.frames_in_total, frames_out_total=self.frames_out_total,
                stage_ms_mean={name: mean(xs) for name, xs in self._stages.items() if xs},
                drops_total=dict(self._drops_total), drops_window=dict(self._drops_window),
                output_errors_total=self.output_errors_total, output_errors_window=self._output_errors_window)
            self._window_start = now
            self._in = self._out = 0
            self._latency, self._processing, self._backend, self._arrival = [], [], [], []
            self._stages = {}
            self._drops_window = Counter()
            self._output_errors_window = 0
            return summary


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def detector_status(name: str, hardware_id: str, lifecycle_state: str, summary: WindowSummary | None,
                    info: dict[str, str], error: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus for the node. Level: ERROR when not configured because of an error, or when the backend
    failed on frames in the window and none was served (frames arrive, no alert goes out); WARN when active but no
    frame arrived in the window, or frames were dropped as malformed, or some inferences failed; OK otherwise."""
    st = DiagnosticStatus()
    st.name = name
    st.hardware_id = hardware_id
    values = {"lifecycle_state": lifecycle_state}
    if error:
        st.level, st.message = DiagnosticStatus.ERROR, error
    elif lifecycle_state != "active":
        st.level, st.message = DiagnosticStatus.OK, lifecycle_state
    elif summary is None or summary.frames_in == 0:
        st.level, st.message = DiagnosticStatus.WARN, "active, no camera frames"
    else:
        malformed = {k: v for k, v in summary.drops_window.items() if k not in (SUPERSEDED, INFERENCE_ERROR)}
        failed = summary.drops_window.get(INFERENCE_ERROR, 0)
        problems = []
        if failed:
            problems.append(f"inference failed on {failed} frames ({INFERENCE_ERROR}), {summary.frames_out} served")
        if malformed:
            problems.append("dropped malformed frames: " + ", ".join(f"{k}={v}" for k, v in sorted(malformed.items())))
        if summary.output_errors_window:
            problems.append(f"image outputs failed for {summary.output_errors_window} served frames")
        if failed and summary.frames_out == 0:  # the backend is down: no obstacle alert is being published
            st.level, st.message = DiagnosticStatus.ERROR, "; ".join(problems)
        elif problems:
            st.level, st.message = DiagnosticStatus.WARN, "; ".join(problems)
        else:
            st.level, st.message = DiagnosticStatus.OK, "active"
    if summary is not None:
        values.update({
            "input_rate_hz": f"{summary.input_hz:.2f}",
            "output_rate_hz": f"{summary.output_hz:.2f}",
            "latency_stamp_to_publish_ms_mean": _fmt(summary.latency_ms_mean),
            "latency_stamp_to_publish_ms_max": _fmt(summary.latency_ms_max),
            "latency_arrival_to_publish_ms_mean": _fmt(summary.arrival_ms_mean),
            "latency_arrival_to_publish_ms_max": _fmt(summary.arrival_ms_max),
            "processing_ms_mean": _fmt(summary.processing_ms_mean),
            "backend_infer_ms_mean": _fmt(summary.backend_ms_mean),
            **{f"{name}_ms_mean": _fmt(ms) for name, ms in summary.stage_ms_mean.items()},
            "window_s": f"{summary.seconds:.2f}",
            "frames_in_total": str(summary.frames_in_total),
            "frames_out_total": str(summary.frames_out_total),
        })
        for reason, count in sorted(summary.drops_total.items()):
            values[f"drops.{reason}"] = str(count)
        values["drops_total"] = str(sum(summary.drops_total.values()))
        values[OUTPUT_ERRORS] = str(summary.output_errors_total)
    values.update(info)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return st


def diagnostic_array(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = statuses
    return msg
