"""Reading and writing rosbag2 files with `rosbags` (no ROS install needed): checked opening, atomic writing, and
the few standard messages the bag tools build or decode (Image, CompressedImage, CameraInfo, Clock).

Every failure surfaces as BagError naming the file: a missing bag, a directory without metadata.yaml, a storage file
that is truncated or not a database, a topic the bag does not have, a message type nobody can decode. A bag is
written into a hidden temporary directory beside the target and renamed into place only once it is complete, so an
interrupted or failed write never leaves a half bag under the requested name.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys import Stores, get_typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
CLOCK = "rosgraph_msgs/msg/Clock"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
# rosbag2 metadata version 8 (Jazzy) is read by Jazzy and newer; rosbags writes 8 or 9.
BAG_VERSION = 8
# Key of the bag's custom_data entry that describes how a bag was made (JSON).
DESCRIPTION_KEY = "densehybrid_ros.description"
_MCAP_MAGIC = b"\x89MCAP0\r\n"

_TYPESTORE = None


class BagError(ValueError):
    """A bag cannot be read or written as asked; the message names the file."""


def typestore():
    """Message definitions of ROS 2 Humble: the standard messages used here are the same in every distro since."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _TYPESTORE


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ros_time(ns: int) -> Any:
    Time = typestore().types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str) -> Any:
    return typestore().types["std_msgs/msg/Header"](stamp=ros_time(ns), frame_id=frame_id)


# -- messages ------------------------------------------------------------------------------------------------------
def image_message(array: np.ndarray, encoding: str, ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an (H, W) or (H, W, C) array; row step without padding."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    return typestore().types[IMAGE](header=header(ns, frame_id), height=h, width=w, encoding=encoding,
                                    is_bigendian=0, step=array.strides[0],
                                    data=array.view(np.uint8).reshape(-1))


def compressed_message(rgb: np.ndarray, ns: int, frame_id: str, fmt: str = "jpeg", quality: int = 90) -> Any:
    """sensor_msgs/CompressedImage as image_transport writes it (OpenCV encodes BGR: "rgb8; jpeg compressed bgr8")."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BagError(f"OpenCV could not encode a {rgb.shape} frame as {fmt}")
    return typestore().types[COMPRESSED_IMAGE](header=header(ns, frame_id), format=f"rgb8; {fmt} compressed bgr8",
                                               data=buf.reshape(-1))


def camera_info_message(height: int, width: int, focal: float, cx: float, cy: float, ns: int, frame_id: str) -> Any:
    """A pinhole camera without distortion (plumb_bob, zero coefficients)."""
    types = typestore().types
    k = np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1], np.float64)
    p = np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0], np.float64)
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO](header=header(ns, frame_id), height=height, width=width, distortion_model="plumb_bob",
                              d=np.zeros(5, np.float64), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
                              roi=roi)


def clock_message(ns: int) -> Any:
    return typestore().types[CLOCK](clock=ros_time(ns))


def image_array(msg: Any) -> np.ndarray:
    """Pixels of a decoded sensor_msgs/Image: mono8/8UC1 -> (H, W) uint8, 32FC1 -> (H, W) float32, rgb8/bgr8/rgba8/
    bgra8 -> (H, W, 3) RGB uint8. Other encodings raise BagError (the node itself reads many more)."""
    enc = msg.encoding.lower()
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    kinds = {"mono8": (np.uint8, 1), "8uc1": (np.uint8, 1), "32fc1": (np.float32, 1), "rgb8": (np.uint8, 3),
             "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4)}
    if enc not in kinds:
        raise BagError(f"image encoding {msg.encoding!r} is not decoded by the bag tools (use {', '.join(kinds)})")
    dtype, channels = kinds[enc]
    row = w * channels * np.dtype(dtype).itemsize
    if data.size < step * h or step < row:
        raise BagError(f"image {w}x{h} {msg.encoding}: {data.size} bytes for step {step}")
    pixels = data[:step * h].reshape(h, step)[:, :row].copy().view(dtype)
    if msg.is_bigendian and np.dtype(dtype).itemsize > 1:
        pixels = pixels.byteswap()
    pixels = pixels.reshape(h, w, channels) if channels > 1 else pixels.reshape(h, w)
    if enc.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    elif channels == 4:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def compressed_rgb(msg: Any) -> np.ndarray:
    bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BagError(f"compressed frame ({msg.format!r}, {len(msg.data)} bytes) does not decode")
    return bgr[..., ::-1].copy() if "compressed rgb" not in msg.format.lower() else bgr


def frame_rgb(msgtype: str, msg: Any) -> np.ndarray:
    return compressed_rgb(msg) if msgtype == COMPRESSED_IMAGE else image_array(msg)


# -- reading -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int


class BagReader:
    """An open rosbag2 (directory with metadata.yaml) whose failures name the file."""

    def __init__(self, reader: Reader, path: Path) -> None:
        self.reader = reader
        self.path = path

    @property
    def topics(self) -> dict[str, TopicSummary]:
        out = {}
        for c in self.reader.connections:
            prev = out.get(c.topic)
            out[c.topic] = TopicSummary(c.topic, c.msgtype, c.msgcount + (prev.count if prev else 0))
        return out

    @property
    def description(self) -> dict[str, Any]:
        """What `densehybrid bag make`/`convert` stored about the bag (empty for bags from other tools)."""
        try:
            custom = self.reader.storage.metadata.custom or {}
            text = custom.get(DESCRIPTION_KEY)
            return json.loads(text) if text else {}
        except (AttributeError, ValueError):
            return {}

    def require(self, topic: str, msgtypes: Iterable[str] | None = None) -> TopicSummary:
        """The topic's summary; BagError if the bag lacks it or it has another type."""
        topics = self.topics
        if topic not in topics:
            raise BagError(f"topic {topic!r} is not in bag {self.path} (it has: {', '.join(sorted(topics)) or 'none'})")
        summary = topics[topic]
        msgtypes = tuple(msgtypes or ())
        if msgtypes and summary.msgtype not in msgtypes:
            raise BagError(f"topic {topic!r} in bag {self.path} has type {summary.msgtype}, expected "
                           f"{' or '.join(msgtypes)}")
        return summary

    def messages(self, topics: Iterable[str] = (), start: int | None = None, stop: int | None = None
                 ) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time ns, raw CDR) in log-time order; truncated storage raises BagError."""
        wanted = set(topics)
        conns = [c for c in self.reader.connections if not wanted or c.topic in wanted]
        if not conns:
            return
        try:
            for conn, ns, raw in self.reader.messages(conns, start=start, stop=stop):
                yield conn.topic, conn.msgtype, ns, raw
        except (ReaderError, sqlite3.DatabaseError, OSError, EOFError, ValueError, KeyError, IndexError) as e:
            raise BagError(f"bag {self.path} is damaged or truncated: {type(e).__name__}: {e}") from None

    def decoded(self, topics: Iterable[str] = (), start: int | None = None, stop: int | None = None
                ) -> Iterator[tuple[str, str, int, Any]]:
        """As `messages`, deserialised with the standard message definitions."""
        store = typestore()
        for topic, msgtype, ns, raw in self.messages(topics, start, stop):
            yield topic, msgtype, ns, deserialize(store, raw, msgtype, topic, self.path)

    def verify(self) -> int:
        """Read every message once; BagError if the storage holds fewer than metadata.yaml promises."""
        counts: dict[str, int] = {}
        for topic, _, _, _ in self.messages():
            counts[topic] = counts.get(topic, 0) + 1
        for name, summary in self.topics.items():
            if counts.get(name, 0) != summary.count:
                raise BagError(f"bag {self.path} is truncated: topic {name!r} has {counts.get(name, 0)} of the "
                               f"{summary.count} messages its metadata.yaml lists")
        return sum(counts.values())


def deserialize(store: Any, raw: bytes, msgtype: str, topic: str, path: Path) -> Any:
    if msgtype not in store.types:
        raise BagError(f"topic {topic!r} in bag {path} has message type {msgtype}, which the bag tools cannot "
                       f"decode (not a standard ROS 2 message)")
    try:
        return store.deserialize_cdr(raw, msgtype)
    except Exception as e:  # noqa: BLE001 - rosbags raises assorted errors on bad CDR
        raise BagError(f"bag {path}: a {msgtype} message on {topic!r} does not deserialise ({e})") from None


@contextmanager
def open_bag(path: str | Path) -> Iterator[BagReader]:
    """Open a rosbag2 directory for reading (sqlite3 or mcap storage, as written by ros2 bag or rosbags)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path / 'metadata.yaml'} is missing: {path} is not a complete rosbag2 directory")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError, sqlite3.DatabaseError, OSError, KeyError, ValueError, TypeError) as e:
        raise BagError(f"cannot open bag {path}: {type(e).__name__}: {e}") from None
    try:
        yield BagReader(reader, path)
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a damaged storage must not hide the first error
            pass


# -- writing -------------------------------------------------------------------------------------------------------
class BagWriter:
    """Connections by topic name, messages serialised with the standard definitions."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._connections: dict[str, Any] = {}
        self._types: dict[str, str] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self._connections:
            return
        store = typestore()
        if msgtype not in store.types:
            raise BagError(f"message type {msgtype} of topic {topic!r} is not a standard ROS 2 message")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
        self._types[topic] = msgtype

    def write(self, topic: str, ns: int, msg: Any) -> None:
        """Serialise `msg` with the type given to `add_topic`."""
        self.write_raw(topic, ns, typestore().serialize_cdr(msg, self._types[topic]))

    def write_raw(self, topic: str, ns: int, raw: bytes | memoryview) -> None:
        self._writer.write(self._connections[topic], int(ns), raw)

    def describe(self, description: dict[str, Any]) -> None:
        self._writer.set_custom_data(DESCRIPTION_KEY, json.dumps(description, sort_keys=True))

    def checkpoint(self) -> None:
        """Make everything written so far survive a later failure (a full disk), and take the message counts and
        times the metadata.yaml of a salvaged bag will list. sqlite3 storage commits its open transaction (rosbags
        otherwise commits only when the bag is closed); mcap storage closes its open chunk and flushes the file, so
        the file up to here is whole chunks that a salvage keeps (see `_McapCheckpoint`)."""
        storage = self._writer.storage
        conn = getattr(storage, "conn", None)
        if conn is not None:
            conn.commit()
        elif isinstance(storage, McapWriter):
            self._mcap = _McapCheckpoint.take(storage)
        w = self._writer
        self._committed = (dict(w.counts), w.min_timestamp, w.max_timestamp)

    def _rewind(self) -> None:
        """Back to the last checkpoint: the open sqlite3 transaction is rolled back, an mcap file is cut back to the
        end of its last flushed chunk, and the counts follow."""
        storage = self._writer.storage
        conn = getattr(storage, "conn", None)
        if conn is not None:
            try:
                conn.rollback()
            except sqlite3.Error:
                pass
        mcap = getattr(self, "_mcap", None)
        if mcap is not None and isinstance(storage, McapWriter):
            mcap.restore(storage)
        committed = getattr(self, "_committed", None)
        if committed is not None:
            w = self._writer
            w.counts.clear()
            w.counts.update(committed[0])
            w.min_timestamp, w.max_timestamp = committed[1], committed[2]


@dataclass(frozen=True)
class _McapCheckpoint:
    """Where an mcap recording was whole: the file's length after a flushed chunk and the writer's index of it.

    rosbags' McapWriter keeps a chunk in memory until it holds 1 MiB and writes the summary (schemas, channels, chunk
    index, statistics) and footer only at close, so a write failing on a full disk leaves a file without a footer,
    which no reader opens. Restoring cuts the file back to the checkpoint (freeing what the failed chunk had written)
    and the writer's chunk list and counts with it; rosbags' own close then writes the summary and footer of exactly
    the chunks that are whole. Relies on McapWriter's attributes (bio, chunk, chunks, channel_stats, message times;
    rosbags pinned in requirements); `fits` says whether this rosbags still has them."""

    offset: int
    chunks: int
    channel_stats: dict
    start: int
    end: int

    @staticmethod
    def fits(storage: Any) -> bool:
        return all(hasattr(storage, a) for a in ("bio", "chunk", "chunks", "channel_stats", "close_chunk", "path",
                                                 "message_start_time", "message_end_time"))

    @classmethod
    def take(cls, storage: Any) -> "_McapCheckpoint | None":
        if not cls.fits(storage):
            return None
        if storage.chunk.msgs:
            storage.close_chunk()
        storage.bio.flush()
        return cls(storage.bio.tell(), len(storage.chunks), dict(storage.channel_stats), storage.message_start_time,
                   storage.message_end_time)

    def restore(self, storage: Any) -> None:
        try:
            storage.bio.close()  # its buffer may still hold bytes that did not fit: they are cut off below
        except OSError:
            pass
        os.truncate(storage.path, self.offset)
        storage.bio = open(storage.path, "r+b")
        storage.bio.seek(self.offset)
        del storage.chunks[self.chunks:]
        storage.channel_stats = dict(self.channel_stats)
        storage.message_start_time, storage.message_end_time = self.start, self.end
        storage.chunk = type(storage.chunk)(2**63 - 1, 0, BytesIO(), defaultdict(list))

    def end_without_summary(self, storage: Any) -> None:
        """When even the summary does not fit: cut back again and end the data with the smallest valid ending (MCAP
        spec: a Data End record, a Footer whose summary start is 0, the magic), 50 bytes. Readers then find the
        schemas, channels and messages by scanning the chunks (rosbags does; so does the mcap library)."""
        try:
            storage.bio.close()
        except OSError:
            pass
        os.truncate(storage.path, self.offset)
        with open(storage.path, "r+b") as f:
            f.seek(self.offset)
            f.write(b"\x0f" + (4).to_bytes(8, "little") + (0).to_bytes(4, "little"))  # Data End, no CRC
            f.write(b"\x02" + (20).to_bytes(8, "little") + bytes(20))  # Footer: no summary, no CRC
            f.write(_MCAP_MAGIC)


class DiskFullError(BagError):
    """Writing a bag failed because its storage could not grow; `recovered` is the readable bag kept instead (None
    when nothing could be kept) with `messages` messages in it."""

    def __init__(self, text: str, recovered: Path | None, messages: int) -> None:
        super().__init__(text)
        self.recovered = recovered
        self.messages = messages


# Errors of a storage that cannot grow: ENOSPC, EFBIG (a file size limit), EDQUOT, or sqlite3's report of them.
_STORAGE_ERRORS = (OSError, sqlite3.OperationalError, sqlite3.DatabaseError)


def _recovered_path(out: Path) -> Path:
    candidate, n = out.with_name(f"{out.name}.recovered"), 1
    while candidate.exists():
        n += 1
        candidate = out.with_name(f"{out.name}.recovered-{n}")
    return candidate


def _salvage(bag: BagWriter, writer: Writer, tmp: Path, staging: Path, out: Path, error: BaseException
             ) -> DiskFullError:
    """Finish what the last checkpoint holds as a bag of its own at `<out>.recovered` (never under `out`: the
    recording did not finish) and describe the failure in one line that says where the readable data is."""
    free = shutil.disk_usage(out.parent).free if out.parent.exists() else 0
    cause = (f"no room to write (disk full or file size limit): {type(error).__name__}: {error}; "
             f"{free / 1e6:.0f} MB free on {out.parent}")
    bag._rewind()
    storage = writer.storage
    mcap = getattr(bag, "_mcap", None)
    if isinstance(storage, McapWriter):
        if mcap is None:
            raise BagError("no checkpoint of the mcap file")  # reported below with where the partial data is

        # The summary may not fit where the failed chunk was; then the data ends without one (still readable).
        def close_as_checkpointed(version: int, metadata: str) -> None:
            try:
                storage.close(version, metadata)
            except OSError:
                mcap.end_without_summary(storage)
        writer.storage = type("CheckpointedStorage", (), {"close": staticmethod(close_as_checkpointed),
                                                          "path": storage.path})()
    elif storage is not None and hasattr(storage, "conn"):
        # The storage's own copy of metadata.yaml (a row in its database) needs room the disk may not have; readers
        # use the metadata.yaml file, so the database is closed as the last commit left it.
        def close_as_committed(version: int, metadata: str) -> None:
            try:
                storage.close(version, metadata)
            except sqlite3.Error:
                storage.conn.rollback()
                storage.conn.close()
        writer.storage = type("CommittedStorage", (), {"close": staticmethod(close_as_committed),
                                                       "path": storage.path})()
    messages = sum(writer.counts.values())
    try:
        writer.close()
        recovered = _recovered_path(out)
        tmp.rename(recovered)
        staging.rmdir()
        with open_bag(recovered) as readable:
            messages = readable.verify()
    except Exception as e:  # noqa: BLE001 - the disk-full error is the one to report; this says what was kept
        keep = staging if staging.exists() else None
        return DiskFullError(f"writing bag {out} stopped: {cause}; the partial data could not be finished as a "
                             f"readable bag ({type(e).__name__}: {e})"
                             + (f"; what was written is in {keep}" if keep else ""), None, 0)
    return DiskFullError(f"writing bag {out} stopped: {cause}; the {messages} messages written before it are in "
                         f"the readable bag {recovered} ({out} was not created)", recovered, messages)


@contextmanager
def create_bag(out: str | Path, storage: str = "sqlite3", salvage: bool = False) -> Iterator[BagWriter]:
    """Write a new bag at `out` atomically: into a hidden sibling directory, renamed once complete.

    salvage: when the storage cannot grow (disk full), keep what the last `BagWriter.checkpoint()` holds as a
    readable bag at `<out>.recovered` and raise DiskFullError saying so (for recordings, which cannot be redone)."""
    out = Path(out)
    if storage not in STORAGES:
        raise BagError(f"storage {storage!r} is not one of {', '.join(STORAGES)}")
    if out.exists():
        raise BagError(f"{out} exists already; bags are never overwritten (choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    # Same final name inside the staging folder: rosbag2 names its storage file after the bag directory.
    tmp = staging / out.name
    try:
        writer = Writer(tmp, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        writer.open()
    except (WriterError, OSError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise BagError(f"cannot create bag {out}: {e}") from None
    done = False
    bag = BagWriter(writer)
    try:
        try:
            yield bag
            writer.close()
        except _STORAGE_ERRORS as e:
            if not salvage or isinstance(e, BagError):
                raise
            error = _salvage(bag, writer, tmp, staging, out, e)
            done = True
            raise error from None
        done = True
    finally:
        if not done:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            shutil.rmtree(staging, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise BagError(f"cannot move the finished bag to {out}: {e}") from None
    staging.rmdir()
