"""A camera stand-in and a frame counter, each its own process, to check that camera-sized images cross processes.

A camera driver and `ros2 bag play` always run in another process than the detector, and DDS settings that work
inside one process can lose every large frame between two (see params/dds.env). These two programs are that path
without the detector:

    python -m densehybrid_ros.ros.camera_stream publish --topic /cam/image --width 1920 --height 1080 --rate 10 --frames 50
    python -m densehybrid_ros.ros.camera_stream publish --topic /cam/image/compressed --encoding bgr8 --compressed jpeg
    python -m densehybrid_ros.ros.camera_stream listen --topic /cam/image      # Ctrl-C prints what arrived

`publish` waits until a subscriber has matched, publishes `--frames` frames at `--rate` Hz with unique frame_ids
and wall-clock stamps, and prints one JSON line listing them; `listen` counts frames until interrupted and prints
one JSON line listing what arrived. Both use the environment they are started in (load params/dds.env first).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

import numpy as np

QOS_CHOICES = ("best_effort", "reliable")
# Distinct frames cycled through: a different picture every frame without building hundreds of 6 MB messages.
VARIANTS = 4


def synthetic_rgb(height: int, width: int, index: int) -> np.ndarray:
    """A road-like picture (sky, horizon, road) with a bright block whose position depends on `index`: smooth,
    so JPEG compresses it the way it compresses a camera image, and different from frame to frame."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    sky = np.array([120, 170, 230], np.float32)
    road = np.array([90, 90, 95], np.float32)
    mix = np.clip((rows - 0.45) * 6.0, 0.0, 1.0)[..., None]
    rgb = np.broadcast_to((1.0 - mix) * sky + mix * road, (height, width, 3)).astype(np.uint8).copy()
    size = max(2, min(height, width) // 8)
    x = (index * width // VARIANTS) % max(1, width - size)
    y = height // 2
    rgb[y:y + size, x:x + size] = (230, 60, 40)
    return rgb


def qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def camera_messages(width: int, height: int, encoding: str, compressed: str | None) -> list[Any]:
    """VARIANTS messages whose headers the publisher fills in: raw `encoding`, or that encoding compressed as
    image_transport's compressed plugin does (format "<encoding>; jpeg compressed bgr8")."""
    from densehybrid_ros.ros.conversions import numpy_to_image, rgb_to_compressed, rgb_to_encoding

    messages = []
    for i in range(VARIANTS):
        rgb = synthetic_rgb(height, width, i)
        if compressed:
            msg = rgb_to_compressed(rgb, compressed)
            msg.format = f"{encoding}; {compressed} compressed bgr8"
        else:
            msg = numpy_to_image(rgb_to_encoding(rgb, encoding), encoding)
        messages.append(msg)
    return messages


def publish(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    messages = camera_messages(args.width, args.height, args.encoding, args.compressed)
    msg_type = CompressedImage if args.compressed else Image
    rclpy.init()
    node = rclpy.create_node(args.name)
    try:
        pub = node.create_publisher(msg_type, args.topic, qos(args.qos, args.depth))
        deadline = time.monotonic() + args.wait
        while pub.get_subscription_count() < args.subscribers:
            if time.monotonic() > deadline:
                raise SystemExit(f"camera_stream: no subscriber on {args.topic} after {args.wait:.0f} s "
                                 f"(is the receiver running with the same ROS_DOMAIN_ID and DDS settings?)")
            time.sleep(0.05)
        # Matching is seen from the publisher's side first; give the subscriber's side time to match too, or its
        # first frames are dropped as coming from an unknown writer.
        time.sleep(args.settle)
        sent = []
        period = 1.0 / args.rate
        start = time.monotonic()
        for i in range(args.frames):
            # Sleep to the schedule (not a fixed period after each publish) so the rate holds under load.
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = messages[i % VARIANTS]
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = f"{args.frame_id}_{i}"
            pub.publish(msg)
            sent.append([msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, msg.header.frame_id])
        elapsed = time.monotonic() - start
        # Asynchronous writers may still be sending the last frames; leaving now would cut them off.
        time.sleep(args.linger)
        return {"topic": args.topic, "type": msg_type.__name__, "width": args.width, "height": args.height,
                "encoding": args.encoding, "compressed": args.compressed or "", "rate_hz": args.rate,
                "seconds": round(elapsed, 3), "sent": len(sent), "frames": sent}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def listen(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    from densehybrid_ros.ros.signals import run_until_signal

    compressed = args.topic.rstrip("/").endswith("/compressed")
    msg_type = CompressedImage if compressed else Image
    received: list[list[Any]] = []

    def record(msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        size = [len(msg.data)] if compressed else [msg.height, msg.width, msg.encoding]
        received.append([stamp, msg.header.frame_id, *size])

    rclpy.init()
    node = rclpy.create_node(args.name)
    node.create_subscription(msg_type, args.topic, record, qos(args.qos, args.depth))
    # The caller stops us with SIGINT or SIGTERM; both end the spin and the summary is printed. Signals are muted
    # once the spin has ended: SIGINT's pending KeyboardInterrupt, landing in the teardown, could lose the summary
    # (`doctor --dds-live` then found "no summary from the listener").
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    print(json.dumps({"listening": args.topic}), flush=True)
    try:
        run_until_signal(lambda: rclpy.spin(node), node.context)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return {"topic": args.topic, "type": msg_type.__name__, "received": len(received), "frames": received}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m densehybrid_ros.ros.camera_stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish synthetic camera frames at a fixed rate")
    pub.add_argument("--topic", required=True, help="Image topic, or CompressedImage with --compressed")
    pub.add_argument("--width", type=int, default=1024)
    pub.add_argument("--height", type=int, default=512)
    pub.add_argument("--encoding", default="rgb8", help="raw encoding (rgb8, bgr8, ...) or, with --compressed, "
                                                        "the encoding named in the format string")
    pub.add_argument("--compressed", choices=("jpeg", "png"), default=None,
                     help="publish sensor_msgs/CompressedImage in this format")
    pub.add_argument("--rate", type=float, default=10.0, help="frames per second")
    pub.add_argument("--frames", type=int, default=30, help="how many frames to publish")
    pub.add_argument("--frame-id", default="camera", help="frame_id prefix; frame i gets '<prefix>_<i>'")
    pub.add_argument("--subscribers", type=int, default=1, help="wait for this many matched subscribers")
    pub.add_argument("--wait", type=float, default=30.0, help="seconds to wait for them")
    pub.add_argument("--settle", type=float, default=1.0, help="seconds between matching and the first frame")
    pub.add_argument("--linger", type=float, default=1.0, help="seconds to stay up after the last frame")
    pub.add_argument("--qos", choices=QOS_CHOICES, default="best_effort",
                     help="best_effort is the sensor-data profile camera drivers use")
    pub.add_argument("--depth", type=int, default=1)
    pub.add_argument("--name", default="camera_stream_publisher", help="node name")
    pub.set_defaults(run=publish)
    lis = sub.add_parser("listen", help="count the frames arriving on a topic until interrupted")
    lis.add_argument("--topic", required=True, help="Image topic (CompressedImage if it ends in /compressed)")
    lis.add_argument("--qos", choices=QOS_CHOICES, default="best_effort")
    lis.add_argument("--depth", type=int, default=10)
    lis.add_argument("--name", default="camera_stream_listener", help="node name")
    lis.set_defaults(run=listen)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "publish":
        for name in ("width", "height", "frames"):
            if getattr(args, name) < 1:
                raise SystemExit(f"camera_stream: --{name} must be at least 1, got {getattr(args, name)}")
        if not args.rate > 0:
            raise SystemExit(f"camera_stream: --rate must be positive, got {args.rate}")
    print(json.dumps(args.run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
