"""`densehybrid demo`: the main job as far as it runs on a development machine.

Renders held-out synthetic drives (every weather condition, road obstacles of families never seen in training),
runs the synthetic-world model (models/densehybrid_lite0_synthetic.onnx, not the node's default real-data model:
these are synthetic-world scenes with synthetic-world truth) through the vehicle-side path (ONNX Runtime backend ->
open-set fusion -> obstacle alert -> overlay: the same core/ code the node calls), writes one overlay PNG per frame plus a contact sheet, then replays a
drive bag whose obstacle enters the drive corridor through the detector node in its own process and evaluates it
(time to alert, latency, report and video; docs/BAGS.md), and prints the benchmark table (ratios measured side by
side in this run).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "segment synthetic example drives with the synthetic-world model; write overlays and the benchmark table"
# The demo replays the synthetic world (its 14 classes, its obstacles, its 2:1 camera), so it needs the model trained
# on that world, whatever model the node runs by default (params/detector.yaml, DEFAULT_MODEL_NAME).
SYNTHETIC_MODEL = Path(__file__).resolve().parents[2] / "models" / "densehybrid_lite0_synthetic.onnx"
# Seeds far from the training pool and the val/test splits (see docs/DATA.md), so the demo shows unseen scenes.
DEMO_SEED = 9_000_000
# The drive bag is 10 fps; 0.25x gives the node 400 ms per frame (it needs 200-240 ms at 512x1024 on 2 free cores).
MAX_DRIVE_RATE = 0.25


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=SYNTHETIC_MODEL,
                        help="ONNX model with its .card.yaml beside it, trained on the synthetic world's classes "
                             "(default: models/densehybrid_lite0_synthetic.onnx)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the overlay PNGs")
    parser.add_argument("--frames-per-condition", type=int, default=2, help="frames per weather condition (1..50)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-ros", action="store_true", help="skip the drive through the ROS 2 node")
    parser.add_argument("--drive-frames", type=int, default=40,
                        help="frames of the ROS 2 drive bag at 10 fps (10..300)")
    parser.add_argument("--drive-rate", type=float, default=None,
                        help="replay rate factor of the drive (default: the fastest up to 0.25 whose frame interval "
                             "is 1.5x the per-frame time measured above, so the node keeps up on this machine)")
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
    from densehybrid_ros.bag.truth import load_detector_params
    from densehybrid_ros.core.alert import ObstacleAlertDetector
    from densehybrid_ros.core.open_set import open_set_map
    from densehybrid_ros.core.overlay import overlay, status_text
    from densehybrid_ros.data.taxonomy import CONDITIONS, SYNTHETIC
    from densehybrid_ros.data.world import render_scene
    from densehybrid_ros.runtime import create_backend

    check_range("--frames-per-condition", args.frames_per_condition, 1, 50, integer=True)
    if not args.model.is_file():
        print(f"densehybrid demo: model not found: {args.model} (the synthetic-world model lives in models/)")
        return 2
    backend = create_backend(args.model, "onnxruntime", threads=args.threads)
    card = backend.card
    names = [c.name for c in card.classes]
    if names != list(SYNTHETIC.names):  # the truth below compares the model's labels with the world's
        print(f"densehybrid demo: {args.model} ({card.name}) has the classes {names}, not the synthetic world's "
              f"{list(SYNTHETIC.names)}: the demo's frames and truth are synthetic-world scenes; "
              f"use --model {SYNTHETIC_MODEL}")
        return 2
    tau = card.tau if card.tau is not None else 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model {args.model} ({card.name}, K={card.num_classes}, score {card.score_type}, tau {tau:.3f}, "
          f"sha256 {card.sha256[:12]})")

    node_params = load_detector_params()  # the alert settings the node runs with (params/detector.yaml)
    tiles, rows = [], []
    for ci, condition in enumerate(CONDITIONS):
        # Each condition is one short "drive": the alert's hysteresis needs consecutive frames of one scene,
        # so the detector is reset per drive and the frames repeat the scene's obstacle.
        detector = ObstacleAlertDetector(node_params.alert_config_for(card, tau=tau))
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
        rate = args.drive_rate
        if rate is None:
            # Frames arriving faster than the node serves them are superseded (latest frame wins): pace the replay
            # by what a frame took in this process just now (machines shared with other jobs are slower).
            per_frame_s = float(np.median([r[-1] for r in rows])) / 1000.0
            rate = float(min(MAX_DRIVE_RATE, max(0.02, round(0.1 / (1.5 * per_frame_s), 3))))
        ros_drive(args.model, args.out, args.drive_frames, args.height, args.width, args.threads, rate)

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


def ros_drive(model: Path, out: Path, frames: int, height: int, width: int, threads: int, rate: float) -> None:
    """A drive as a vehicle sees it: a synthetic drive bag whose obstacle enters the drive corridor, replayed over DDS
    through the detector node running as its own process (`densehybrid bag evaluate`: node process, replay process,
    recorder, with params/dds.env), the outputs recorded and matched to the frames by stamp. Prints the alert per
    frame, the time from the obstacle entering the corridor to ALERT, latency, and where the report and video are."""
    import shutil

    import cv2

    from densehybrid_ros.bag.drives import DriveSpec, make_drive
    from densehybrid_ros.bag.evaluate import NAMESPACE, EvaluateOptions, evaluate_bag, summary_text
    from densehybrid_ros.bag.files import image_array, open_bag, stamp_ns
    from densehybrid_ros.config.validation import check_range

    check_range("--drive-frames", frames, 10, 300, integer=True)
    check_range("--drive-rate", rate, 0.01, 10.0)
    bag, report = out / "drive", out / "drive_eval"
    if bag.exists():  # this demo's own bag from an earlier run (the bag tools never overwrite)
        shutil.rmtree(bag)
    t0 = time.perf_counter()
    # The obstacle is in the corridor for the last ~third of the drive: the alert is seen rising, then held.
    spec = DriveSpec(frames=frames, fps=10.0, seed=DEMO_SEED + 77, layout="suburban", height=height, width=width,
                     speed=10.0, corridor_frames=max(4, frames // 3))
    print(f"\nROS 2 drive: writing a {frames}-frame synthetic drive bag (10 fps, {height}x{width}) ...")
    d = make_drive(spec, bag, progress=False)
    ob = d["obstacle"]
    print(f"  {bag}: {d['condition']}, {d['layout']}; a {ob['kind'].replace('_', ' ')} ({ob['family']}) enters the "
          f"drive corridor at frame {d['obstacle_entry_frame']} ({d['obstacle_entry_s']:.1f} s) "
          f"[{time.perf_counter() - t0:.0f} s]")
    print(f"  replaying it at {rate:g}x ({10 * rate:g} frames/s) through the detector node in its own process "
          f"(reliable QoS over DDS), recording the outputs, matching them to the frames by stamp ...")
    t1 = time.perf_counter()
    result = evaluate_bag(EvaluateOptions(bag=bag, out=report, model=model, rate=rate, threads=threads, force=True,
                                          progress=False))
    print(f"  [{time.perf_counter() - t1:.0f} s]")
    print(summary_text(result))
    # The node's own ~/overlay when it alerts on the obstacle (or its last output): what RViz shows then.
    frames_ = result.analysis.frames
    on_obstacle = [e.alert_frame for e in result.analysis.events if e.alert_frame is not None]
    pick = frames_[on_obstacle[0]] if on_obstacle else next(
        (f for f in reversed(frames_) if f.state is not None), None)
    if pick is not None:
        with open_bag(report / "outputs") as outputs:
            for _, _, _, msg in outputs.decoded([f"{NAMESPACE}/detector/overlay"]):
                if stamp_ns(msg.header.stamp) == pick.published_stamp_ns:
                    cv2.imwrite(str(out / "node_overlay.png"), cv2.cvtColor(image_array(msg), cv2.COLOR_RGB2BGR))
                    print(f"wrote {out / 'node_overlay.png'} (the node's ~/overlay at frame {pick.index}, "
                          f"state {pick.state})")
                    break
