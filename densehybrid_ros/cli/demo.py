"""`densehybrid demo`: the main job as far as it runs on a development machine.

Renders held-out synthetic drives (every weather condition, road obstacles of families never seen in training),
runs the shipped model through the vehicle-side path (ONNX Runtime backend -> open-set fusion -> obstacle alert ->
overlay: the same core/ code the node calls), writes one overlay PNG per frame plus a contact sheet, and prints the
benchmark table (ratios measured side by side in this run).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "segment example drives with the shipped model; write overlays and the benchmark table"
DEFAULT_MODEL = Path("models/densehybrid_lite0_synthetic.onnx")
# Seeds far from the training pool and the val/test splits (see docs/DATA.md), so the demo shows unseen scenes.
DEMO_SEED = 9_000_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model with its .card.yaml beside it")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the overlay PNGs")
    parser.add_argument("--frames-per-condition", type=int, default=2, help="frames per weather condition (1..50)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-ros", action="store_true", help="skip the drive through the ROS 2 node")
    parser.add_argument("--drive-frames", type=int, default=30, help="frames of the ROS 2 drive (5..300)")
    parser.add_argument("--no-benchmark", action="store_true", help="skip the benchmark table")
    parser.add_argument("--benchmark-repeats", type=int, default=10)


def _sheet(tiles: list[np.ndarray], columns: int, width: int = 512) -> np.ndarray:
    import cv2

    small = [cv2.resize(t, (width, int(round(t.shape[0] * width / t.shape[1]))), interpolation=cv2.INTER_AREA)
             for t in tiles]
    h = max(t.shape[0] for t in small)
    small += [np.zeros_like(small[0])] * (-len(small) % columns)
    rows = [np.concatenate([np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in small[i:i + columns]], 1)
            for i in range(0, len(small), columns)]
    return np.concatenate(rows, 0)


def run(args: argparse.Namespace) -> int:
    import cv2

    from densehybrid_ros.config.validation import check_range
    from densehybrid_ros.core.alert import AlertConfig, ObstacleAlertDetector
    from densehybrid_ros.core.open_set import open_set_map
    from densehybrid_ros.core.overlay import overlay, status_text
    from densehybrid_ros.data.taxonomy import CONDITIONS
    from densehybrid_ros.data.world import render_scene
    from densehybrid_ros.runtime import create_backend

    check_range("--frames-per-condition", args.frames_per_condition, 1, 50, integer=True)
    if not args.model.is_file():
        print(f"densehybrid demo: model not found: {args.model} (the shipped model lives in models/)")
        return 2
    backend = create_backend(args.model, "onnxruntime", threads=args.threads)
    card = backend.card
    tau = card.tau if card.tau is not None else 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model {args.model} ({card.name}, K={card.num_classes}, score {card.score_type}, tau {tau:.3f}, "
          f"sha256 {card.sha256[:12]})")

    tiles, rows = [], []
    for ci, condition in enumerate(CONDITIONS):
        # Each condition is one short "drive": the alert's hysteresis needs consecutive frames of one scene,
        # so the detector is reset per drive and the frames repeat the scene's obstacle.
        detector = ObstacleAlertDetector(AlertConfig.from_card(card, tau=tau).validate())
        for fi in range(args.frames_per_condition):
            seed = DEMO_SEED + 1000 * ci + fi
            scene = render_scene(seed, args.height, args.width, condition=condition, anomalies=1 if fi % 2 == 0 else 0)
            start = time.perf_counter()
            result = backend.infer(scene.image)
            open_set = open_set_map(result.class_id, result.anomaly_score, tau, card.anomaly_label)
            state = detector.update(result.anomaly_score, result.class_id)
            latency = time.perf_counter() - start
            view = overlay(scene.image, open_set, card.palette, card.anomaly_label, alpha=0.45,
                           score=result.anomaly_score, tau=tau, alert_state=state,
                           corridor_polygon=detector.config.corridor, text=status_text(state, latency, tau))
            path = args.out / f"{condition}_{fi:02d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
            tiles.append(view)
            truth = scene.label == card.anomaly_label
            flagged = open_set == card.anomaly_label
            recall = float(flagged[truth].mean()) if truth.any() else float("nan")
            false_rate = float(flagged[~truth & (scene.label != 255)].mean())
            rows.append((path.name, condition, int(truth.sum()), recall, false_rate, state.state, latency * 1000))
    sheet = _sheet(tiles, columns=args.frames_per_condition if args.frames_per_condition <= 4 else 4)
    cv2.imwrite(str(args.out / "overview.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))

    print("\n| frame | condition | anomaly px | flagged share of anomaly | flagged share of inliers | alert | ms |")
    print("|---|---|---:|---:|---:|---|---:|")
    for name, cond, n, rec, fr, st, ms in rows:
        rec_s = "-" if n == 0 else f"{100 * rec:.1f}%"
        print(f"| {name} | {cond} | {n} | {rec_s} | {100 * fr:.2f}% | {st} | {ms:.0f} |")
    print(f"\nwrote {len(rows)} overlays and {args.out / 'overview.png'}")

    if not args.no_ros:
        ros_drive(args.model, args.out, args.drive_frames, args.height, args.width, args.threads)

    if not args.no_benchmark:
        from densehybrid_ros.cli import benchmark

        parser = argparse.ArgumentParser()
        benchmark.configure(parser)
        bench_args = parser.parse_args(["--model", str(args.model), "--sizes", f"{args.height}x{args.width}",
                                        "--repeats", str(args.benchmark_repeats), "--threads", str(args.threads),
                                        "--budget", "30"])
        print("\nbenchmark (ratios measured side by side in this run):")
        return benchmark.run(bench_args)
    return 0


def ros_drive(model: Path, out: Path, frames: int, height: int, width: int, threads: int) -> None:
    """Publish a synthetic drive towards a road obstacle to the real detector node over DDS (this process,
    loopback) and print what a vehicle would see: alert state per frame and stamp-to-output latency."""
    import os

    import cv2
    from std_msgs.msg import Header

    from densehybrid_ros.config.model_card import load_model_card
    from densehybrid_ros.config.validation import check_range
    from densehybrid_ros.data.world import render_sequence
    from densehybrid_ros.ros.alert_message import parse_alert
    from densehybrid_ros.ros.conversions import image_to_rgb, numpy_to_image
    from densehybrid_ros.ros.testing import detector_with_probe, wait_for

    check_range("--drive-frames", frames, 5, 300, integer=True)
    from densehybrid_ros.config.dds import apply_dds_env
    apply_dds_env()  # params/dds.env, before rclpy starts: camera-sized frames between processes
    os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
    print(f"\nROS 2: detector node on /demo, {frames}-frame drive with an obstacle ahead, published over DDS")
    params = {"model": str(model), "backend_threads": threads}
    if load_model_card(model).tau is None:
        print("  (uncalibrated model: the node runs with threshold 0.0 instead of the card's tau)")
        params.update(threshold_source="parameter", threshold=0.0)
    with detector_with_probe("/demo", params, "demo_probe") as (node, probe):
        states, latencies, last_overlay = [], [], None
        # The drive is rendered first so the frames go out at camera rate, not at the renderer's pace.
        scenes = list(render_sequence(DEMO_SEED + 77, frames, height, width, anomalies=1, speed=8.0))
        for scene in scenes:
            header = Header(frame_id="camera")
            header.stamp = probe.get_clock().now().to_msg()
            stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            probe.image_pub.publish(numpy_to_image(scene.image, "rgb8", header))
            alert = wait_for(lambda: probe.stamped(stamp_ns, "obstacle_alert"), 5.0)
            if alert is None:
                states.append("-")
                continue
            states.append(parse_alert(alert).state)
            latencies.append((probe.get_clock().now().nanoseconds - stamp_ns) / 1e6)
            overlay_msg = wait_for(lambda: probe.stamped(stamp_ns, "overlay"), 2.0)
            if overlay_msg is not None:
                last_overlay = overlay_msg
    print("alert per frame: " + " ".join(s[0].upper() if s != "-" else "-" for s in states)
          + "   (C clear, W warning, A alert, - no output)")
    if latencies:
        print(f"stamp-to-alert latency: median {np.median(latencies):.0f} ms, max {np.max(latencies):.0f} ms "
              f"over {len(latencies)} frames")
    if last_overlay is not None:
        cv2.imwrite(str(out / "node_overlay.png"), cv2.cvtColor(image_to_rgb(last_overlay), cv2.COLOR_RGB2BGR))
        print(f"wrote {out / 'node_overlay.png'} (the node's ~/overlay topic, last frame)")
