"""Node latency with the node and its probe in ONE process, against the bare backend, side by side in one run.

    python -m densehybrid_ros.ros.measure_latency [--model models/x.onnx] [--height 256 --width 512] [--frames 40]
        [--threads 2]

This is the in-process design of the older demo drive, kept to show what that design adds: the probe's executor
threads deserialise every output in the node's process and compete with its worker for the GIL. The node's own cost,
as a vehicle runs it (node in its own process), is `densehybrid benchmark --node-cost` (ros/node_cost.py).

A DetectorNode and a probe run in this process over DDS. Frames are published at a rate the node can follow
(no drops), and the latency is the probe's arrival time of ~/obstacle_alert (or ~/overlay) minus the frame's
stamp. Between node frames the bare backend runs on the same frame, so both numbers see the same machine load.
Two cases: only the alert subscribed (the minimum the node computes) and every image output subscribed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from densehybrid_ros.ros.conversions import numpy_to_image
from densehybrid_ros.ros.detector_node import DetectorNode
from densehybrid_ros.ros.testing import IMAGE_OUTPUTS, Probe, Spinner, export_untrained_model, wait_for


def _measure(probe: Probe, backend, image: np.ndarray, frames: int, last_output: str
             ) -> tuple[list[float], list[float]]:
    node_s, bare_s = [], []
    for i in range(frames):
        header = Header(frame_id="camera")
        now = probe.get_clock().now()
        header.stamp = now.to_msg()
        probe.image_pub.publish(numpy_to_image(image, "rgb8", header))
        msg = wait_for(lambda: probe.stamped(now.nanoseconds, last_output), 5.0, period=0.0005)
        if msg is None:
            continue  # lost (best effort); not a latency sample
        with probe.lock:
            arrival = next(t for t, m in probe.received[last_output] if m is msg)
        node_s.append(1e-9 * (arrival - now.nanoseconds))
        t0 = time.perf_counter()
        backend.infer(image)
        bare_s.append(time.perf_counter() - t0)
        probe.clear()
    return node_s, bare_s


def run(model: Path | None, height: int, width: int, frames: int, threads: int = 1) -> list[dict]:
    from densehybrid_ros.config.dds import apply_dds_env
    from densehybrid_ros.ros.node_cost import drive_frames
    from densehybrid_ros.runtime import create_backend, resolve_card

    apply_dds_env()
    image = drive_frames(height, width, 3)[2]
    tmp = None
    if model is None:
        tmp = tempfile.TemporaryDirectory()
        model = export_untrained_model(Path(tmp.name) / "untrained.onnx", height, width)
    backend = create_backend(str(model), threads=threads)
    rclpy.init()
    rows = []
    try:
        for case, outputs, last in (("alert only", (), "obstacle_alert"),
                                    ("all outputs subscribed", IMAGE_OUTPUTS, "overlay")):
            ns = "/latency_" + ("all" if outputs else "alert")
            params = [Parameter("model", value=str(model)), Parameter("backend_threads", value=threads)]
            if resolve_card(model).tau is None:
                params += [Parameter("threshold_source", value="parameter"), Parameter("threshold", value=0.0)]
            node = DetectorNode(namespace=ns, parameter_overrides=params)
            probe = Probe(detector_ns=ns, name="latency_probe" + ns.replace("/", "_"), outputs=outputs)
            spinner = Spinner(node, probe)
            try:
                wait_for(lambda: probe.connected("image"), 15.0)
                _measure(probe, backend, image, 3, last)  # warm-up of the DDS path
                node_s, bare_s = _measure(probe, backend, image, frames, last)
            finally:
                spinner.stop()
                node.close()
                node.destroy_node()
                probe.destroy_node()
            node_ms, bare_ms = 1e3 * np.median(node_s), 1e3 * np.median(bare_s)
            rows.append({"case": case, "samples": len(node_s), "node_ms": node_ms, "bare_ms": bare_ms,
                         "node_p90_ms": 1e3 * np.percentile(node_s, 90), "ratio": node_ms / bare_ms})
    finally:
        rclpy.try_shutdown()
        if tmp is not None:
            tmp.cleanup()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: an untrained export at the frame size")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="backend threads of the node and the bare run")
    args = parser.parse_args(argv)
    rows = run(args.model, args.height, args.width, args.frames, args.threads)
    print(f"| case ({args.width}x{args.height}, onnxruntime {args.threads} threads) | samples | node "
          f"stamp-to-arrival median (p90) ms | bare backend median ms | node / backend |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['samples']} | {r['node_ms']:.1f} ({r['node_p90_ms']:.1f}) | {r['bare_ms']:.1f} "
              f"| {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
