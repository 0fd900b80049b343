"""`densehybrid bag <make|convert|info|play|record|evaluate>`: rosbag2 tools on `rosbags` (docs/BAGS.md).

make: synthetic drives (every condition and layout, an obstacle entering the drive corridor, or clean);
convert: a folder of image (+ label) frames; info: what a bag holds; play / record: as ros2 bag does, over DDS
with the project's settings; evaluate: the node in its own process on a bag, with metrics, latency, time to
alert, a Markdown report with plots and an overlay video.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "rosbag2 tools: make synthetic drives, convert frame folders, play, record, evaluate the node on a bag"


def configure(parser: argparse.ArgumentParser) -> None:
    from densehybrid_ros.bag.drives import DEFAULT_START_NS, DriveSpec
    from densehybrid_ros.data.taxonomy import CONDITIONS
    from densehybrid_ros.data.world import LAYOUTS

    sub = parser.add_subparsers(dest="bag_command", metavar="<make|convert|info|play|record|evaluate>", required=True)
    d = DriveSpec()

    make = sub.add_parser("make", help="a synthetic drive as a rosbag2")
    make.add_argument("--out", type=Path, required=True, help="new bag directory (never overwritten)")
    make.add_argument("--frames", type=int, default=d.frames)
    make.add_argument("--fps", type=float, default=d.fps, help="frame rate (the stamps' spacing)")
    make.add_argument("--seed", type=int, default=d.seed, help="first seed tried (the bag records the one used)")
    make.add_argument("--condition", choices=CONDITIONS, default=d.condition)
    make.add_argument("--layout", choices=LAYOUTS, default=None, help="default: chosen by the seed")
    make.add_argument("--speed", type=float, default=d.speed, help="ego speed, m/s")
    make.add_argument("--clean", action="store_true", help="no obstacle (for false-alert rates)")
    make.add_argument("--corridor-frames", type=int, default=None,
                      help="obstacle drives: frames the obstacle is in the corridor at the end (default min(8, N/2))")
    make.add_argument("--height", type=int, default=d.height)
    make.add_argument("--width", type=int, default=d.width)
    _storage_options(make)
    make.add_argument("--namespace", default=d.namespace, help="topic prefix: NS/image, NS/camera_info, NS/labels")
    make.add_argument("--frame-id", default=d.frame_id)
    make.add_argument("--start-time", type=float, default=DEFAULT_START_NS / 1e9, help="first stamp, Unix seconds")

    conv = sub.add_parser("convert", help="a folder of image (+ label) frames as a rosbag2")
    conv.add_argument("--images", type=Path, required=True, help="folder of frames, played in name order")
    conv.add_argument("--labels", type=Path, default=None, help="folder of single-channel id labels, same names")
    conv.add_argument("--label-suffix", default="", help="label name = image stem + suffix (e.g. _L)")
    conv.add_argument("--anomaly-label", type=int, default=None, help="the labels' anomaly id K (default: the model's)")
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--fps", type=float, default=10.0)
    conv.add_argument("--focal", type=float, default=None, help="focal length in pixels for camera_info")
    _storage_options(conv)
    conv.add_argument("--namespace", default="/camera")
    conv.add_argument("--frame-id", default="camera")

    info = sub.add_parser("info", help="topics, types, counts and the stored description of a bag")
    info.add_argument("bag", type=Path)
    info.add_argument("--verify", action="store_true", help="read every message (finds truncated storage)")

    play = sub.add_parser("play", help="replay a bag over DDS (as ros2 bag play)")
    play.add_argument("bag", type=Path)
    play.add_argument("--rate", type=float, default=1.0, help="rate factor (0.5: half speed)")
    play.add_argument("--loop", action="store_true")
    play.add_argument("--start-offset", type=float, default=0.0, help="seconds into the bag to start")
    play.add_argument("--duration", type=float, default=None, help="seconds of bag time to play")
    play.add_argument("--topics", nargs="+", default=[], help="only these topics")
    play.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO")
    play.add_argument("--clock", action="store_true", help="publish /clock from the bag time (use_sim_time)")
    play.add_argument("--clock-rate", type=float, default=40.0, help="Hz")
    play.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable")
    play.add_argument("--depth", type=int, default=10)
    play.add_argument("--restamp", action="store_true", help="header stamps = time of publishing")
    play.add_argument("--stamp-log", type=Path, default=None, help="with --restamp: CSV of original/new stamps")
    play.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                      help="wait until every topic has a subscriber (at most this long)")

    rec = sub.add_parser("record", help="record topics into a new bag")
    rec.add_argument("topics", nargs="+")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    rec.add_argument("--qos", choices=("reliable", "best_effort"), default=None,
                     help="default: reliable only if every publisher is")
    rec.add_argument("--discover", type=float, default=10.0, help="seconds to wait for the topics to appear")
    rec.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")

    ev = sub.add_parser("evaluate", help="the node in its own process on a bag: metrics, latency, time to alert")
    from densehybrid_ros.bag.evaluate import add_arguments

    add_arguments(ev)


def _storage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) instead of rgb8")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")


def run(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.files import BagError
    from densehybrid_ros.config.validation import ConfigError

    try:
        return {"make": _make, "convert": _convert, "info": _info, "play": _play, "record": _record,
                "evaluate": _evaluate}[args.bag_command](args)
    except (BagError, ConfigError) as e:
        print(f"densehybrid bag {args.bag_command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"densehybrid bag {args.bag_command}: interrupted", file=sys.stderr)
        return 130


def _make(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.drives import DriveSpec, make_drive

    spec = DriveSpec(frames=args.frames, fps=args.fps, seed=args.seed, condition=args.condition, layout=args.layout,
                     speed=args.speed, clean=args.clean, height=args.height, width=args.width,
                     compressed=args.compressed, storage=args.storage, namespace=args.namespace,
                     frame_id=args.frame_id, start_ns=int(round(args.start_time * 1e9)),
                     corridor_frames=args.corridor_frames)
    t0 = time.perf_counter()
    d = make_drive(spec, args.out, progress=sys.stderr.isatty())
    what = "clean drive" if spec.clean else (f"{d['obstacle']['kind']} enters the corridor at frame "
                                             f"{d['obstacle_entry_frame']} ({d['obstacle_entry_s']:.1f} s), in it for "
                                             f"{d['frames_in_corridor']} frames")
    print(f"wrote {args.out}: {spec.frames} frames at {spec.fps:g} fps, {d['condition']}, {d['layout']}, seed "
          f"{d['seed_used']}; {what}; {time.perf_counter() - t0:.1f} s")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.convert import FrameFolder, convert_frames

    folder = FrameFolder(images=args.images, labels=args.labels, label_suffix=args.label_suffix, fps=args.fps,
                         compressed=args.compressed, storage=args.storage, namespace=args.namespace,
                         frame_id=args.frame_id, focal=args.focal, anomaly_label=args.anomaly_label)
    d = convert_frames(folder, args.out, progress=sys.stderr.isatty())
    print(f"wrote {args.out}: {d['frames']} frames at {args.fps:g} fps"
          + (" with labels" if d["labels"] else " (no labels)"))
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from densehybrid_ros.bag.files import open_bag

    with open_bag(args.bag) as bag:
        r = bag.reader
        print(f"bag {args.bag}: {r.message_count} messages, {r.duration / 1e9:.3f} s from {r.start_time / 1e9:.3f}")
        for t in sorted(bag.topics.values(), key=lambda t: t.name):
            print(f"  {t.name}  {t.msgtype}  {t.count}")
        if bag.description:
            print("description: " + json.dumps(bag.description, sort_keys=True))
        if args.verify:
            print(f"verified: {bag.verify()} messages read")
    return 0


def _play(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.files import open_bag
    from densehybrid_ros.bag.live import PlayOptions, log_stderr, parse_remaps, play, ros_environment

    options = PlayOptions(rate=args.rate, loop=args.loop, start_offset=args.start_offset, duration=args.duration,
                          topics=tuple(args.topics), remap=parse_remaps(args.remap), clock=args.clock,
                          clock_rate=args.clock_rate, qos=args.qos, depth=args.depth, restamp=args.restamp,
                          wait_for_subscribers=args.wait_for_subscribers, stamp_log=args.stamp_log).check()
    if args.stamp_log and not args.restamp:
        log_stderr("--stamp-log has no effect without --restamp")
    with open_bag(args.bag) as bag:  # bad bags fail before ROS starts
        for t in options.topics:
            bag.require(t)
    ros_environment()
    import rclpy

    rclpy.init()
    node = rclpy.create_node("densehybrid_bag_player")
    try:
        result = play(node, args.bag, options, log=log_stderr)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    total = sum(result.published.values())
    print(f"played {total} messages from {args.bag} in {result.seconds:.1f} s ({result.loops} pass"
          f"{'es' if result.loops > 1 else ''}): " + ", ".join(f"{t} {n}" for t, n in result.published.items()))
    return 0


def _record(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.files import BagError
    from densehybrid_ros.bag.live import Recorder, ros_environment

    ros_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from densehybrid_ros.ros.signals import run_until_signal

    rclpy.init()
    node = rclpy.create_node("densehybrid_bag_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    recorder = None
    try:
        recorder = Recorder(node, args.out, list(args.topics), storage=args.storage, qos=args.qos,
                            discover=args.discover)
        print(f"recording {', '.join(args.topics)} into {args.out} "
              f"({'for %g s' % args.duration if args.duration else 'Ctrl-C stops'})", file=sys.stderr, flush=True)
        end = None if args.duration is None else time.monotonic() + args.duration

        def spin() -> None:
            while (end is None or time.monotonic() < end) and not recorder.failed.is_set():
                executor.spin_once(timeout_sec=0.1)

        # Ctrl-C's pending KeyboardInterrupt must not land in the bag's finalisation below: signals are muted
        # once the spin has ended.
        run_until_signal(spin, node.context)
        counts = dict(recorder.counts)
        out = recorder.stop()
        recorder = None
        print(f"wrote {out}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    finally:
        if recorder is not None:
            try:
                recorder.stop()
            except BagError:
                pass  # already reported by the first stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from densehybrid_ros.bag.evaluate import run_from_args

    return run_from_args(args)
