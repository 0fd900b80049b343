"""Frames per second of N cameras: one multi-camera node (batched) against N detector nodes, on the same cores.

    python -m densehybrid_ros.cli.multi_camera_speed                       # N = 1, 2, 4; shipped model
    python -m densehybrid_ros.cli.multi_camera_speed --cameras 1,2,4 --seconds 20 --rounds 2 --out result.json

Two measurements, each interleaved in one run (docs/ARCHITECTURE.md section 5: only ratios measured side by side
are meaningful on a shared machine):

1. Nodes, as a vehicle runs them: for each N, (a) one `multi_detector` process serving N cameras with the batch
   graph (`densehybrid batch-graph`, written to a temporary folder) and (b) N `detector` processes, one per camera,
   with the original graph. The same camera stand-in in this process publishes 512x1024 rgb8 frames to every
   camera faster than it can be served (best effort, as a driver), so every arrangement runs flat out. After a
   warm-up, each camera's answers (alerts, one per answered frame) are timed until every camera has `--frames`
   more: the total frames/s sums each camera's (answers - 1) / (time from first to last answer), which does not
   depend on where a window would cut a batched node's bursts; the CPU time of the node processes per answered
   frame is steadier than frames/s on a shared machine (it does not grow while other jobs hold the cores). The arrangements alternate within each round, and their
   order flips every round. Every node gets the same `backend_threads`; resident memory is summed over the node
   processes.
2. The backend alone, in this process: one batched run of N frames against N single-frame runs of the original
   graph (interleaved rounds, evaluation/timing.py), the part of the difference that batching itself makes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HELP = "frames/s of N cameras: one multi-camera node (batched) against N detector nodes, interleaved"
ARRANGEMENTS = ("one node, batched", "N nodes")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model (.onnx with card; default: the shipped one)")
    parser.add_argument("--cameras", default="1,2,4", help="camera counts N, comma separated (default 1,2,4)")
    parser.add_argument("--frames", type=int, default=4,
                        help="answers per camera to measure over, after the first (default 4)")
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="longest measurement per run; fewer than 2 answers on a camera is an error (default 300)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds served before counting (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every arrangement (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="backend_threads of every node (default 2)")
    parser.add_argument("--rate", type=float, default=5.0, help="frames/s published per camera (default 5)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--backend-repeats", type=int, default=5,
                        help="rounds of the backend-only comparison (0 skips it; default 5)")
    parser.add_argument("--out", type=Path, default=None, help="write the raw numbers as JSON here")


class CameraRig:
    """The camera stand-in: publishes to every camera at `rate` from one thread and counts each camera's alerts."""

    def __init__(self, node: Any, cameras: list[str], width: int, height: int, rate: float) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from densehybrid_ros.ros import alert_message
        from densehybrid_ros.ros.camera_stream import camera_messages, qos
        from densehybrid_ros.ros.detector_node import NODE_NAME

        self.node, self.cameras, self.rate = node, cameras, rate
        self.messages = camera_messages(width, height, "rgb8", None)
        self.pubs = [node.create_publisher(Image, f"/{c}/image", qos("best_effort", 1)) for c in cameras]
        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {c: [] for c in cameras}
        self.subs = [node.create_subscription(alert_message.ALERT_TYPE, f"/{c}/{NODE_NAME}/obstacle_alert",
                                              self._counter(c), deep) for c in cameras]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _counter(self, camera: str):
        def count(_msg: Any) -> None:
            with self.lock:
                self.arrivals[camera].append(time.monotonic())
        return count

    def _publish(self) -> None:
        period, i = 1.0 / self.rate, 0
        start = time.monotonic()
        while not self._stop.is_set():
            delay = start + i * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            for k, pub in enumerate(self.pubs):
                msg = self.messages[(i + k) % len(self.messages)]
                msg.header.stamp = self.node.get_clock().now().to_msg()
                msg.header.frame_id = self.cameras[k]
                try:
                    pub.publish(msg)
                except Exception:  # noqa: BLE001 - the context went down (Ctrl-C): stop publishing
                    return
            i += 1

    def served(self, camera: str, since: float, until: float = float("inf")) -> int:
        with self.lock:
            return sum(1 for t in self.arrivals[camera] if since <= t < until)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for s in self.subs:
            self.node.destroy_subscription(s)
        for p in self.pubs:
            self.node.destroy_publisher(p)


def _node_processes(arrangement: str, cameras: list[str], single: Path, batch: Path, threads: int) -> list:
    from densehybrid_ros.ros.node_process import PARAMS_FILE, NodeProcess

    common = {"backend_threads": threads, "threshold_source": "parameter", "threshold": 0.0,
              "use_camera_info": False}
    if arrangement == "N nodes":
        return [NodeProcess(f"/{c}", {**common, "model": str(single)}) for c in cameras]

    class MultiNodeProcess(NodeProcess):
        @property
        def command(self) -> list[str]:
            cmd = [sys.executable, "-m", "densehybrid_ros.ros.multi_camera_node", "--ros-args",
                   "--params-file", str(PARAMS_FILE), "-p", f"cameras:=[{', '.join(cameras)}]",
                   "-p", "camera_image_topic:=image"]
            for name, value in self.parameters.items():
                cmd += ["-p", f"{name}:={value if not isinstance(value, bool) else str(value).lower()}"]
            return cmd

    return [MultiNodeProcess("/", {**common, "model": str(batch)})]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_arrangement(node: Any, arrangement: str, cameras: list[str], args: argparse.Namespace, single: Path,
                    batch: Path) -> dict[str, Any]:
    """Serve every camera flat out; after the warm-up, record each camera's alert arrivals until every camera has
    `args.frames` + 1 of them (or `args.seconds` pass), sampling the node processes' CPU time all along.

    Rates come from the gaps between a camera's answers, (n - 1) / (last - first), summed over cameras: a batched
    node answers its cameras in bursts, one per batch, and a window count would swing by N frames with where the
    window happens to cut a burst. CPU time per frame is taken between the cameras' mean first and mean last
    answers (the first and last bursts of a batched node) and divided by the frames answered in between."""
    from densehybrid_ros.ros.node_process import wait_until

    procs = _node_processes(arrangement, cameras, single, batch, args.threads)
    rig = CameraRig(node, cameras, args.width, args.height, args.rate)
    cpu: list[tuple[float, float]] = []
    try:
        for p in procs:
            p.start()
        if not wait_until(lambda: all(rig.served(c, 0.0) for c in cameras) or any(p.gave_up() for p in procs),
                          600.0, period=0.2) or any(p.gave_up() for p in procs):
            raise RuntimeError(f"{arrangement} N={len(cameras)} did not serve every camera:\n"
                               + "\n".join(p.output()[-2000:] for p in procs))
        time.sleep(args.warmup)
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            cpu.append((time.monotonic(), sum(cpu_seconds(p.pid) for p in procs)))
            if all(rig.served(c, start) > args.frames for c in cameras):
                break
            time.sleep(0.1)
        rss = sum(p.sample().rss_mb for p in procs)
        with rig.lock:
            arrivals = {c: [t for t in rig.arrivals[c] if t >= start] for c in cameras}
    finally:
        rig.close()
        for p in procs:
            p.stop()
    short = [c for c, ts in arrivals.items() if len(ts) < 2]
    if short:
        raise RuntimeError(f"{arrangement} N={len(cameras)}: cameras {short} answered fewer than 2 frames in "
                           f"{args.seconds:g} s; raise --seconds")
    per_camera = [(len(ts) - 1) / (ts[-1] - ts[0]) for ts in arrivals.values()]
    t_a = float(np.mean([ts[0] for ts in arrivals.values()]))
    t_b = float(np.mean([ts[-1] for ts in arrivals.values()]))
    times, cpus = np.array([t for t, _ in cpu]), np.array([c for _, c in cpu])
    cpu_s = float(np.interp(t_b, times, cpus) - np.interp(t_a, times, cpus))
    frames = sum(len(ts) - 1 for ts in arrivals.values())
    return {"arrangement": arrangement, "cameras": len(cameras), "fps_total": float(sum(per_camera)),
            "fps_per_camera": per_camera, "answers": {c: len(ts) for c, ts in arrivals.items()},
            "span_s": t_b - t_a, "rss_mb": rss, "cpu_s": cpu_s,
            # CPU time does not grow while other jobs hold the cores: the steadier measure on a shared machine.
            "cpu_ms_per_frame": 1e3 * cpu_s / max(frames, 1)}


def backend_only(single: Path, batch: Path, counts: list[int], threads: int, repeats: int,
                 size: tuple[int, int]) -> dict[str, Any]:
    from densehybrid_ros.evaluation.timing import measure_interleaved
    from densehybrid_ros.ros.camera_stream import synthetic_rgb
    from densehybrid_ros.runtime import create_backend, resolve_card
    from densehybrid_ros.runtime.batch import OnnxRuntimeBatchBackend
    from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeOptions

    alone = create_backend(single, threads=threads)
    together = OnnxRuntimeBatchBackend(resolve_card(batch), OnnxRuntimeOptions(threads=threads))
    frames = [synthetic_rgb(*size, i) for i in range(max(counts))]
    pipelines = {}
    for n in counts:
        pipelines[f"{n} single runs"] = (lambda n=n: [alone.infer(f) for f in frames[:n]])
        pipelines[f"batch of {n}"] = (lambda n=n: together.infer_batch(frames[:n]))
    wall, cpu, done, note = measure_interleaved(pipelines, repeats, warmup=1, budget=600.0)
    out = {}
    for n in counts:
        s, b = float(np.median(wall[f"{n} single runs"])), float(np.median(wall[f"batch of {n}"]))
        out[str(n)] = {"single_runs_ms": 1e3 * s, "batch_ms": 1e3 * b, "fps_single": n / s, "fps_batch": n / b,
                       "batch_over_single_fps": s / b}
    alone.close()
    together.close()
    return {"rounds": done, "note": note, "by_cameras": out}


def table(results: list[dict[str, Any]], counts: list[int]) -> tuple[str, dict[str, Any]]:
    lines = ["| cameras N | one node, batched: frames/s | N nodes: frames/s | ratio | node CPU ms per frame (one "
             "node / N nodes) | slowest camera frames/s (one node / N nodes) | memory MB (one node / N nodes) |",
             "|---:|---:|---:|---:|---|---|---|"]
    summary = {}
    for n in counts:
        one = [r for r in results if r["cameras"] == n and r["arrangement"] == ARRANGEMENTS[0]]
        many = [r for r in results if r["cameras"] == n and r["arrangement"] == ARRANGEMENTS[1]]
        f1, fn = float(np.median([r["fps_total"] for r in one])), float(np.median([r["fps_total"] for r in many]))
        s1 = float(np.median([min(r["fps_per_camera"]) for r in one]))
        sn = float(np.median([min(r["fps_per_camera"]) for r in many]))
        m1, mn = float(np.median([r["rss_mb"] for r in one])), float(np.median([r["rss_mb"] for r in many]))
        c1 = float(np.median([r["cpu_ms_per_frame"] for r in one]))
        cn = float(np.median([r["cpu_ms_per_frame"] for r in many]))
        summary[str(n)] = {"one_node_fps": f1, "n_nodes_fps": fn, "ratio": f1 / fn if fn else None,
                           "one_node_slowest_camera_fps": s1, "n_nodes_slowest_camera_fps": sn,
                           "one_node_rss_mb": m1, "n_nodes_rss_mb": mn, "one_node_cpu_ms_per_frame": c1,
                           "n_nodes_cpu_ms_per_frame": cn}
        lines.append(f"| {n} | {f1:.2f} | {fn:.2f} | {f1 / fn:.2f}x | {c1:.0f} / {cn:.0f} | {s1:.2f} / {sn:.2f} | "
                     f"{m1:.0f} / {mn:.0f} |")
    return "\n".join(lines), summary


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.evaluation.timing import load_average, machine_description
    from densehybrid_ros.ros.detector_node import default_model_dirs, find_default_model
    from densehybrid_ros.ros.node_process import prepare_ros_environment
    from densehybrid_ros.runtime.batch_graph import write_batch_graph

    counts = [int(c) for c in args.cameras.split(",")]
    if not counts or min(counts) < 1 or max(counts) > 16:
        print(f"--cameras {args.cameras!r}: expected counts in [1, 16], e.g. 1,2,4", file=sys.stderr)
        return 2
    single = args.model or find_default_model(default_model_dirs())
    prepare_ros_environment()
    import rclpy

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        batch = write_batch_graph(single, Path(tmp) / (Path(single).stem + "_batch.onnx")).model
        backend = None
        if args.backend_repeats:
            backend = backend_only(single, batch, counts, args.threads, args.backend_repeats,
                                   (args.height, args.width))
            print("backend alone (median ms, this process):")
            for n, v in backend["by_cameras"].items():
                print(f"  N={n}: {n} single runs {v['single_runs_ms']:.0f} ms, one batch {v['batch_ms']:.0f} ms "
                      f"({v['batch_over_single_fps']:.2f}x frames/s)")
        import signal

        from rclpy.signals import SignalHandlerOptions

        def interrupt(*_: Any) -> None:
            raise KeyboardInterrupt

        # SIGTERM too, and SIGINT even when a shell started this in the background with SIGINT ignored.
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, interrupt)

        # Ctrl-C must reach this thread as KeyboardInterrupt, so that the node processes are stopped on the way out
        # (rclpy's own handler would only shut the context down under a thread still waiting for them).
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node(f"multi_camera_speed_{os.getpid()}")
        from rclpy.executors import MultiThreadedExecutor

        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        results = []
        try:
            for r in range(args.rounds):
                for n in counts:
                    order = ARRANGEMENTS if (r + counts.index(n)) % 2 == 0 else ARRANGEMENTS[::-1]
                    for arrangement in order:
                        cameras = [f"mcs{os.getpid()}_r{r}_n{n}_{'one' if arrangement == ARRANGEMENTS[0] else 'sep'}"
                                   f"_c{i}" for i in range(n)]
                        result = run_arrangement(node, arrangement, cameras, args, Path(single), batch)
                        result["round"] = r
                        results.append(result)
                        print(f"round {r + 1}/{args.rounds} N={n} {arrangement}: {result['fps_total']:.2f} frames/s "
                              f"(per camera {', '.join(f'{f:.2f}' for f in result['fps_per_camera'])}), "
                              f"{result['cpu_ms_per_frame']:.0f} CPU ms per frame, {result['rss_mb']:.0f} MB",
                              flush=True)
        finally:
            executor.shutdown(timeout_sec=5.0)
            node.destroy_node()
            rclpy.try_shutdown()
    text, summary = table(results, counts) if results else ("(nodes not measured: --rounds 0)", {})
    machine = machine_description(args.threads)
    header = (f"{started}, {args.width}x{args.height} rgb8 at {args.rate:g} Hz per camera, backend_threads "
              f"{args.threads} per node, {args.frames} answers per camera per run, {args.rounds} rounds (median); load "
              f"average "
              f"before {load_before}, after {load_average()}")
    print(header)
    print(text)
    if args.out is not None:
        payload = {"started": started, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                    for k, v in vars(args).items()},
                   "model": str(single), "machine": machine, "load_average_before": load_before,
                   "load_average_after": load_average(), "runs": results, "summary": summary,
                   "backend_only": backend, "table": text}
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(json.dumps(payload, indent=1) + "\n")
        tmp_out.replace(args.out)
        print(f"raw numbers: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densehybrid_ros.cli.multi_camera_speed", description=HELP)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
