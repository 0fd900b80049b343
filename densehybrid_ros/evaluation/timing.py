"""Timing for benchmarks: pipelines measured side by side in interleaved rounds, and the machine they ran on.

Used by `densehybrid benchmark`, `densehybrid gpu-check` and the network and runtime studies, so every speed ratio
the project reports comes from the same procedure (docs/ARCHITECTURE.md section 5: ratios measured side by side in
one run, absolute times only with the machine named).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def measure_interleaved(pipelines: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                        budget: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, str]:
    """Time every pipeline once per round, rotating the order each round; wall and CPU seconds per round.

    Rotation keeps a pipeline from always following the same one (caches, threads still waking). CPU time
    (time.process_time: all threads of this process, user + system) does not grow while another job holds the
    core, so on a shared machine it is the steadier measure of the work each pipeline does.
    Rounds are cut to fit `budget` wall seconds (never below 5), estimated from one untimed round.
    """
    names = list(pipelines)
    for name in names:
        for _ in range(warmup):
            pipelines[name]()
    t0 = time.perf_counter()
    for name in names:
        pipelines[name]()
    per_round = time.perf_counter() - t0
    note = ""
    if per_round * repeats > budget:
        cut = max(5, int(budget / per_round))
        if cut < repeats:
            note = f"rounds cut from {repeats} to {cut} to fit the {budget:.0f} s budget"
            repeats = cut
    wall = {n: np.empty(repeats) for n in names}
    cpu = {n: np.empty(repeats) for n in names}
    for r in range(repeats):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            c0, t0 = time.process_time(), time.perf_counter()
            pipelines[name]()
            wall[name][r] = time.perf_counter() - t0
            cpu[name][r] = time.process_time() - c0
    return wall, cpu, repeats, note


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as the reports print them."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_description(threads: int) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, AttributeError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("onnxruntime", "openvino", "torch", "cv2"):
        try:
            versions[module] = str(__import__(module).__version__).split("-")[0]  # openvino appends its build
        except ImportError:
            versions[module] = "not installed"
    import onnxruntime as ort

    return {
        "CPU": cpu, "cores": f"{os.cpu_count()} logical, {usable} usable by this process; {threads} threads used",
        "RAM": ram, "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "onnxruntime providers": ", ".join(ort.get_available_providers()),
        "load average at start": load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
