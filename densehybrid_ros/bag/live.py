"""Replay and recording over DDS (rclpy): what `ros2 bag play` and `ros2 bag record` do, on top of `files`.

The player publishes the stored CDR bytes as they are (no conversion through Python message objects), paced by
the bag's log times divided by the rate factor; only re-stamping deserialises a message to change its header.
Messages that shared a stamp in the bag share the new stamp too, so an image, its camera_info and its labels
still match after re-stamping. The recorder subscribes with raw CDR and writes on its own thread (the storage's
connection belongs to the thread that opened it), keeping each message's publish and receive times.

Call `ros_environment()` before `rclpy.init()`: camera-sized frames between processes need the DDS settings of
params/dds.env.
"""
from __future__ import annotations

import csv
import importlib
import importlib.util
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from densehybrid_ros.bag.files import CLOCK, BagError, DiskFullError, create_bag, open_bag, typestore

QOS_CHOICES = ("reliable", "best_effort")
# How often a recording commits what it has written: at most this much is lost when the disk fills.
CHECKPOINT_SECONDS = 0.5


def ros_environment() -> dict[str, str]:
    """Apply params/dds.env to this process and give it a ROS domain of its own unless ROS_DOMAIN_ID is set (child
    processes inherit both). Returns the environment for a child."""
    from densehybrid_ros.ros.node_process import prepare_ros_environment

    return prepare_ros_environment()


_MESSAGE_TYPE = re.compile(r"([a-z][a-z0-9_]*)/msg/([A-Z][A-Za-z0-9]*)")


def _is_generated_message_package(pkg: str) -> bool:
    """Whether `pkg` is an installed package with rosidl-generated messages, found without importing it: a type name
    comes from the bag, and importing an arbitrary installed package would run its code."""
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    msg_dir = Path(next(iter(spec.submodule_search_locations))) / "msg"
    generated = sorted(p for p in msg_dir.glob("_*.py") if p.name != "__init__.py")[:1]
    return bool(generated) and generated[0].read_text(errors="replace").startswith("# generated from rosidl")


def message_class(msgtype: str) -> Any:
    """The rclpy message class of "pkg/msg/Name"; BagError when this ROS 2 install does not have it."""
    match = _MESSAGE_TYPE.fullmatch(msgtype)
    if match is None or not _is_generated_message_package(match.group(1)):
        raise BagError(f"message type {msgtype} is unknown to this ROS 2 install (not a pkg/msg/Name of an installed "
                       f"ROS 2 message package)")
    pkg, name = match.groups()
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type {msgtype} is unknown to this ROS 2 install (no Python module {pkg}.msg with "
                       f"{name})") from None


def qos_profile(reliability: str, depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in QOS_CHOICES:
        raise BagError(f"QoS {reliability!r} is not one of {', '.join(QOS_CHOICES)}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


def parse_remaps(items: list[str]) -> dict[str, str]:
    """"FROM:=TO" pairs (as ros2 bag play --remap takes them)."""
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise BagError(f"remap {item!r}: expected FROM:=TO")
        out[src] = dst
    return out


# -- replay --------------------------------------------------------------------------------------------------------
@dataclass
class PlayOptions:
    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0           # seconds after the bag's first message
    duration: float | None = None       # seconds of bag time to play
    topics: tuple[str, ...] = ()        # empty: every topic
    remap: dict[str, str] = field(default_factory=dict)
    clock: bool = False                 # publish /clock from the bag time (for use_sim_time)
    clock_rate: float = 40.0
    qos: str = "reliable"
    depth: int = 10
    restamp: bool = False               # header stamps set to the time of publishing
    wait_for_subscribers: float = 0.0   # seconds to wait for a subscriber on every topic before starting
    stamp_log: Path | None = None       # restamp: CSV of topic, original stamp, new stamp

    def check(self) -> "PlayOptions":
        if not 0.01 <= self.rate <= 100:
            raise BagError(f"--rate must be in [0.01, 100], got {self.rate}")
        if self.start_offset < 0:
            raise BagError(f"--start-offset must be >= 0, got {self.start_offset}")
        if self.duration is not None and self.duration <= 0:
            raise BagError(f"--duration must be > 0, got {self.duration}")
        if not 1 <= self.clock_rate <= 1000:
            raise BagError(f"--clock-rate must be in [1, 1000] Hz, got {self.clock_rate}")
        qos_profile(self.qos, self.depth)
        return self


@dataclass
class PlayResult:
    published: dict[str, int]
    loops: int
    seconds: float
    waited_for_subscribers: bool


# How long a reliable replay waits at the end for its subscribers to acknowledge the last messages.
ACK_TIMEOUT_S = 5.0


def play(node: Any, bag_path: str | Path, options: PlayOptions, log: Callable[[str], None] = print) -> PlayResult:
    """Replay `bag_path` through `node`'s publishers (rclpy initialised by the caller; nothing needs to spin)."""
    options.check()
    store = typestore()
    stamp_file = open(options.stamp_log, "w", newline="") if options.stamp_log else None
    stamp_writer = csv.writer(stamp_file) if stamp_file else None
    if stamp_writer:
        stamp_writer.writerow(["topic", "bag_stamp_ns", "published_stamp_ns"])
    try:
        with open_bag(bag_path) as bag:
            topics = bag.topics
            for t in options.topics:
                bag.require(t)
            selected = [t for t in (options.topics or tuple(topics))
                        if not (options.clock and topics[t].msgtype == CLOCK)]
            pubs = {}
            profile = qos_profile(options.qos, options.depth)
            for t in selected:
                cls = message_class(topics[t].msgtype)
                pubs[t] = node.create_publisher(cls, options.remap.get(t, t), profile)
            clock_pub = None
            if options.clock:
                clock_pub = node.create_publisher(message_class(CLOCK), "/clock", qos_profile("reliable", 10))
            waited = True
            if options.wait_for_subscribers > 0:
                end = time.monotonic() + options.wait_for_subscribers
                while not all(p.get_subscription_count() > 0 for p in pubs.values()):
                    if time.monotonic() > end:
                        missing = [options.remap.get(t, t) for t, p in pubs.items() if p.get_subscription_count() == 0]
                        log(f"no subscriber on {', '.join(missing)} after {options.wait_for_subscribers:g} s; "
                            f"playing anyway")
                        waited = False
                        break
                    time.sleep(0.05)
            first = bag.reader.start_time
            start = first + int(options.start_offset * 1e9)
            stop = None if options.duration is None else start + int(options.duration * 1e9)
            published = {t: 0 for t in selected}
            has_header = {t: _has_header(store, topics[t].msgtype) for t in selected}
            loops = 0
            t_begin = time.monotonic()
            while True:
                loops += 1
                t0 = time.monotonic()
                new_stamps: dict[int, int] = {}
                for topic, msgtype, ns, raw in bag.messages(selected, start=start, stop=stop):
                    due = t0 + (ns - start) / 1e9 / options.rate
                    _sleep_until(due, clock_pub, options, start, t0)
                    if clock_pub is not None:
                        _publish_clock(clock_pub, start + int((time.monotonic() - t0) * options.rate * 1e9))
                    if options.restamp and has_header[topic]:
                        msg = store.deserialize_cdr(raw, msgtype)
                        old = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                        if old not in new_stamps and len(new_stamps) >= 10_000:
                            new_stamps.clear()  # before adding: this frame's other topics must find its stamp
                        new = new_stamps.setdefault(old, time.time_ns())
                        Time = store.types["builtin_interfaces/msg/Time"]
                        msg.header.stamp = Time(sec=new // 1_000_000_000, nanosec=new % 1_000_000_000)
                        raw = store.serialize_cdr(msg, msgtype)
                        if stamp_writer:
                            stamp_writer.writerow([topic, old, new])
                    pubs[topic].publish(bytes(raw))
                    published[topic] += 1
                if not options.loop:
                    break
            if options.qos == "reliable":
                # A reliable writer that is destroyed right after its last publish can take unacknowledged
                # messages with it (seen: a recorder missed the last frame of a replay); wait, bounded, for the acks.
                from rclpy.duration import Duration

                for pub in [*pubs.values(), *([clock_pub] if clock_pub is not None else [])]:
                    if not pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S)):
                        log(f"{pub.topic_name}: not every subscriber acknowledged the last messages within "
                            f"{ACK_TIMEOUT_S:g} s")
            return PlayResult(published, loops, time.monotonic() - t_begin, waited)
    finally:
        if stamp_file:
            stamp_file.close()


def _has_header(store: Any, msgtype: str) -> bool:
    fields = store.fielddefs.get(msgtype)
    return bool(fields) and fields[1] and fields[1][0][0] == "header"


def _publish_clock(pub: Any, ns: int) -> None:
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    pub.publish(msg)


def _sleep_until(due: float, clock_pub: Any, options: PlayOptions, start: int, t0: float) -> None:
    period = 1.0 / options.clock_rate
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return
        if clock_pub is None:
            time.sleep(left)
            return
        time.sleep(min(left, period))
        _publish_clock(clock_pub, start + int((time.monotonic() - t0) * options.rate * 1e9))


# -- recording -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    topic: str
    received_ns: int   # this process's receive time (the bag's log time)
    published_ns: int  # the publisher's send time (DDS source timestamp)


class Recorder:
    """Record `topics` of the ROS graph into a new bag at `out` until `stop()`.

    types: topic -> "pkg/msg/Name"; topics not listed are looked up on the graph (waiting up to `discover` s).
    qos: "reliable", "best_effort", or None to follow the publishers (reliable only if every publisher is).
    """

    def __init__(self, node: Any, out: str | Path, topics: list[str], types: dict[str, str] | None = None,
                 storage: str = "sqlite3", qos: str | None = None, depth: int = 100, discover: float = 10.0) -> None:
        if not topics:
            raise BagError("nothing to record: name at least one topic")
        self.node = node
        self.out = Path(out)
        types = dict(types or {})
        missing = [t for t in topics if t not in types]
        end = time.monotonic() + discover
        while missing:
            graph = dict(node.get_topic_names_and_types())
            for t in list(missing):
                if graph.get(t):
                    types[t] = graph[t][0]
                    missing.remove(t)
            if not missing:
                break
            if time.monotonic() > end:
                raise BagError(f"topic(s) {', '.join(missing)} not found on the ROS graph within {discover:g} s "
                               f"(ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}); give their types or start "
                               f"the publishers first")
            time.sleep(0.1)
        self.types = {t: types[t] for t in topics}
        for t, msgtype in self.types.items():
            if msgtype not in typestore().types:
                raise BagError(f"topic {t!r} has message type {msgtype}, which cannot be written (not a standard "
                               f"ROS 2 message)")
        self.received: list[Received] = []
        self.counts = {t: 0 for t in topics}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self.failed = threading.Event()  # the writer stopped (disk full): nothing more is recorded
        self._stopped = False
        self._thread = threading.Thread(target=self._write, args=(storage,), name="bag-writer", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._error is not None:
            raise self._error
        self._subs = []
        for t, msgtype in self.types.items():
            reliability = qos or self._publishers_qos(t)
            self._subs.append(node.create_subscription(message_class(msgtype), t, self._callback(t),
                                                       qos_profile(reliability, depth), raw=True))

    def _publishers_qos(self, topic: str) -> str:
        from rclpy.qos import ReliabilityPolicy

        infos = self.node.get_publishers_info_by_topic(topic)
        if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            return "reliable"
        return "best_effort" if infos else "reliable"

    def _callback(self, topic: str) -> Callable[[bytes, Any], None]:
        def record(data: bytes, info: Any) -> None:
            if self.failed.is_set():
                return
            received = int(info["received_timestamp"]) or time.time_ns()
            published = int(info["source_timestamp"])
            self._queue.put((topic, received, data))
            with self._lock:
                self.received.append(Received(topic, received, published))
                self.counts[topic] += 1
        return record

    def _write(self, storage: str) -> None:
        try:
            # salvage: a full disk keeps what was committed as a readable bag at <out>.recovered (DiskFullError).
            with create_bag(self.out, storage, salvage=True) as bag:
                for t, msgtype in self.types.items():
                    bag.add_topic(t, msgtype)
                bag.checkpoint()
                self._ready.set()
                last = time.monotonic()
                while True:
                    try:
                        item = self._queue.get(timeout=CHECKPOINT_SECONDS)
                    except queue.Empty:
                        item = ()
                    if item is None:
                        break
                    if item:
                        bag.write_raw(*item)
                    if time.monotonic() - last >= CHECKPOINT_SECONDS:
                        bag.checkpoint()
                        last = time.monotonic()
        except BaseException as e:  # noqa: BLE001 - reported to the caller by stop()
            self._error = e
            self.failed.set()
            self._ready.set()

    def count(self, topic: str) -> int:
        with self._lock:
            return self.counts[topic]

    def stop(self) -> Path:
        """Stop recording and finish the bag (renamed into place); returns its path."""
        if not self._stopped:
            self._stopped = True
            for s in self._subs:
                self.node.destroy_subscription(s)
            self._subs = []
            self._queue.put(None)
            self._thread.join()
        if isinstance(self._error, DiskFullError):
            raise self._error
        if self._error is not None:
            raise BagError(f"recording into {self.out} failed: {self._error}") from self._error
        return self.out


def log_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
