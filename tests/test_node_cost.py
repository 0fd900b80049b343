"""`densehybrid benchmark --node-cost`: the node in its own process, a camera in another, the ratios to the bare
backend measured in the same rounds; the report section is merged into an existing file without touching the rest.
The run uses a tiny untrained export (the speed is not what is checked here, the machinery is)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from densehybrid_ros.cli import main
from densehybrid_ros.cli.benchmark import (NODE_COST_BEGIN, NODE_COST_END, carried_over, merge_node_cost,
                                          node_cost_section)
from densehybrid_ros.ros.node_cost import process_cpu_s

RATIO = r"\d+\.\d{3} \(\d+\.\d{3}-\d+\.\d{3}\)"
MS = r"\d+\.\d \(\d+\.\d\)"


@pytest.mark.slow
def test_quick_node_cost_run_prints_both_cases_and_merges_into_the_report(tmp_path, capsys):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nbackend tables\n\n## Machine\n\n- CPU: x\n")
    assert main(["benchmark", "--node-cost", "--quick", "--untrained", "--threads", "1", "--node-rounds", "4",
                 "--rss-frames", "40", "--rss-rate", "20", "--write", str(report)]) == 0
    out = capsys.readouterr().out
    for case in ("alert only", "all outputs"):
        # rounds, node end-to-end, bare, three ratios, stamp to alert, stamp to last output
        assert re.search(rf"^\| {case} \| 4 \| {MS} \| \d+\.\d \| {RATIO} \| {RATIO} \| {RATIO} \| {MS} \| {MS} \|$",
                         out, re.M), case
        stages = re.search(rf"^\| {case} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                           rf"{RATIO} \|$", out, re.M)
        assert stages, case
        *parts, e2e = (float(v) for v in stages.groups())
        assert sum(parts) <= e2e + 1.0  # stages are parts of the end-to-end time
    alert_images, all_images = (float(re.search(rf"^\| {c} \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|",
                                                out, re.M).group(1)) for c in ("alert only", "all outputs"))
    assert alert_images < all_images  # with the alert alone the node skips every image output
    rss = re.search(r"^\| 40 \| 20 Hz \| \d+ \| (\d+) \| (\d+) \| (\d+) \| none \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                    r"([+-][\d.]+) \|$", out, re.M)
    assert rss, "memory table"
    received, served, superseded = (int(v) for v in rss.groups()[:3])
    assert served >= 1 and served + superseded <= received <= 40
    trajectory = re.search(r"^RSS along the run \(seconds, frames served, MiB\): (.*)\.$", out, re.M)
    points = re.findall(r"(\d+) s (\d+) ([\d.]+)", trajectory.group(1))
    assert len(points) >= 2 and [int(n) for _, n, _ in points] == sorted(int(n) for _, n, _ in points)
    written = report.read_text()
    assert written.startswith("# Benchmarks\n\nbackend tables\n")  # the rest of the file is kept
    section = node_cost_section(written)
    assert section is not None and section.strip() in out


def test_merge_replaces_the_node_cost_section_and_keeps_everything_else():
    base = "# Benchmarks\n\ntables\n"
    once = merge_node_cost(base, "## Node cost\n\nfirst\n")
    assert once.startswith(base) and once.count(NODE_COST_BEGIN) == 1 and "first" in once
    twice = merge_node_cost(once + "\n## After\n\nkept\n", "## Node cost\n\nsecond\n")
    assert "first" not in twice and "second" in twice and twice.count(NODE_COST_END) == 1
    assert twice.startswith(base) and twice.rstrip().endswith("kept")
    assert node_cost_section(twice) == "## Node cost\n\nsecond"
    # A backend run rewrites the tables and keeps the section and the notes after it.
    rewritten = "# Benchmarks\n\nnew tables\n" + carried_over(twice)
    assert rewritten.startswith("# Benchmarks\n\nnew tables\n\n" + NODE_COST_BEGIN)
    assert node_cost_section(rewritten) == "## Node cost\n\nsecond" and rewritten.rstrip().endswith("kept")
    assert carried_over(base) == ""
    assert merge_node_cost(base, None) == base


def test_process_cpu_of_a_child_counts_every_thread_in_nanoseconds():
    """Two threads spinning for 0.3 s each: the child's CPU time is their sum (the tick counters of /proc/PID/stat
    would round to 10 ms; the scheduler's are exact enough to see one thread's share)."""
    code = ("import threading, time\n"
            "def spin():\n    t = time.thread_time()\n    while time.thread_time() - t < 0.3: pass\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n"
            "print(time.process_time(), flush=True)\ninput()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        reported = float(child.stdout.readline())
        measured = process_cpu_s(child.pid)
        assert measured >= 0.6
        assert measured == pytest.approx(reported, abs=0.05)
    finally:
        child.communicate("\n", timeout=20)
