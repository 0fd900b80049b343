"""Synthetic drives as rosbag2: the synthetic world's `render_sequence` written frame by frame as a camera would
record it (image, camera_info, labels with the same stamp, /clock).

An obstacle drive approaches one road obstacle that ends up inside the drive corridor (the node's corridor
polygon, judged on the labels by `truth.CorridorTruth`). The world places the obstacle ahead of the drive's last
position at a distance drawn from the seed, so not every seed puts it in the corridor: the seeds from `seed` upward
are tried in order and the first whose drive ends with the obstacle in the corridor is written; the bag records
which seed that was, so the same arguments always give the same drive. A clean drive has no obstacle.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from densehybrid_ros.bag.files import (CAMERA_INFO, CLOCK, COMPRESSED_IMAGE, IMAGE, BagError, camera_info_message,
                                       clock_message, compressed_message, create_bag, image_message)
from densehybrid_ros.bag.truth import CorridorTruth, truth_for
from densehybrid_ros.data.taxonomy import CONDITIONS, SYNTHETIC
from densehybrid_ros.data.world import LAYOUTS, render_sequence

# 2023-11-14T22:13:20Z: a fixed first stamp keeps bags byte-for-byte reproducible.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000
MAX_SEED_TRIES = 60


@dataclass(frozen=True)
class DriveSpec:
    """What `densehybrid bag make` writes. Stamps are start_ns + k / fps; the ego car drives `speed` m/s."""

    frames: int = 40
    fps: float = 10.0
    seed: int = 0
    condition: str = "clear"
    layout: str | None = None
    speed: float = 10.0
    clean: bool = False
    height: int = 512
    width: int = 1024
    compressed: bool = False
    storage: str = "sqlite3"
    namespace: str = "/camera"
    frame_id: str = "camera"
    start_ns: int = DEFAULT_START_NS
    max_tries: int = MAX_SEED_TRIES
    corridor_frames: int | None = None  # obstacle drives: frames the obstacle is in the corridor at the end

    @property
    def min_corridor_frames(self) -> int:
        """Default: 8 frames (raise the alert, then hold it), at most half the drive."""
        if self.corridor_frames is not None:
            return self.corridor_frames
        return max(1, min(8, self.frames // 2))

    def check(self) -> "DriveSpec":
        if not isinstance(self.frames, int) or not 1 <= self.frames <= 100_000:
            raise BagError(f"--frames must be an integer in [1, 100000], got {self.frames!r}")
        if not 0.5 <= self.fps <= 120:
            raise BagError(f"--fps must be in [0.5, 120], got {self.fps!r}")
        if self.condition not in CONDITIONS:
            raise BagError(f"--condition {self.condition!r} is not one of {', '.join(CONDITIONS)}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise BagError(f"--layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if not 0 <= self.speed <= 50:
            raise BagError(f"--speed must be in [0, 50] m/s, got {self.speed!r}")
        if self.corridor_frames is not None and not 1 <= self.corridor_frames <= self.frames:
            raise BagError(f"--corridor-frames must be in [1, --frames={self.frames}], got {self.corridor_frames!r}")
        if not self.namespace.startswith("/"):
            raise BagError(f"--namespace must be absolute (start with '/'), got {self.namespace!r}")
        for name, value in (("height", self.height), ("width", self.width)):  # the world renderer's range
            if not isinstance(value, int) or not 16 <= value <= 8192:
                raise BagError(f"--{name} must be an integer in [16, 8192], got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise BagError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.start_ns < 0:
            raise BagError(f"--start-time must be >= 0 (Unix seconds), got {self.start_ns / 1e9!r}")
        return self

    def topic(self, name: str) -> str:
        return f"{self.namespace.rstrip('/')}/{name}"

    @property
    def image_topic(self) -> str:
        return self.topic("image/compressed" if self.compressed else "image")


def stamp_of(spec: DriveSpec, k: int) -> int:
    return spec.start_ns + round(k * 1e9 / spec.fps)


def _scenes(spec: DriveSpec, seed: int, frames: int) -> Iterator[Any]:
    return render_sequence(seed, frames, spec.height, spec.width, condition=spec.condition, layout=spec.layout,
                           fps=spec.fps, speed=spec.speed, anomalies=0 if spec.clean else 1)


class _NotInCorridor(Exception):
    pass


def _candidates(spec: DriveSpec, truth_factory) -> Iterator[tuple[int, Iterator[Any]]]:
    """(seed, scene iterator) for the seeds worth rendering in full, in order.

    The obstacle is placed at a seeded distance ahead of the drive's last position, whatever the drive's length, so
    the first frame of an M-frame drive of the same seed shows what the full drive shows M - 1 frames before its
    end. With C = min_corridor_frames, two such one-frame looks keep the seeds whose obstacle is in the corridor C - 1
    frames before the end but not yet 2C frames before it: the obstacle enters within the drive, and is approached.
    """
    c = spec.min_corridor_frames
    for seed in range(spec.seed, spec.seed + spec.max_tries):
        if not truth_factory()(next(iter(_scenes(spec, seed, c))).label).hit:
            continue
        if spec.frames > 2 * c and truth_factory()(next(iter(_scenes(spec, seed, 2 * c + 1))).label).hit:
            continue
        yield seed, iter(_scenes(spec, seed, spec.frames))


def make_drive(spec: DriveSpec, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Write the drive to a new bag at `out`; returns its description (also stored in the bag's metadata)."""
    spec.check()
    out = Path(out)

    def truth_factory() -> CorridorTruth:
        return truth_for(None, SYNTHETIC.anomaly_label, SYNTHETIC.names)

    if spec.clean:
        tries: Iterator[tuple[int, Iterator[Any]]] = iter([(spec.seed, iter(_scenes(spec, spec.seed, spec.frames)))])
    else:
        tries = _candidates(spec, truth_factory)
    for seed, scenes in tries:
        try:
            return _write(spec, seed, scenes, out, truth_factory(), progress)
        except _NotInCorridor:
            continue
    raise BagError(f"no seed in [{spec.seed}, {spec.seed + spec.max_tries}) gives a {spec.frames}-frame drive whose "
                   f"obstacle is in the drive corridor for its last {spec.min_corridor_frames} frames; try another "
                   f"--seed, "
                   f"--layout or --speed, or fewer --corridor-frames")


def _write(spec: DriveSpec, seed: int, scenes: Iterator[Any], out: Path, truth: CorridorTruth,
           progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    hits: list[bool] = []
    meta: dict[str, Any] = {}
    with create_bag(out, spec.storage) as bag:
        image_type = COMPRESSED_IMAGE if spec.compressed else IMAGE
        for topic, msgtype in ((spec.image_topic, image_type), (spec.topic("camera_info"), CAMERA_INFO),
                               (spec.topic("labels"), IMAGE), ("/clock", CLOCK)):
            bag.add_topic(topic, msgtype)
        bar = tqdm(scenes, total=spec.frames, desc=f"drive seed {seed}", unit="frame", disable=not progress,
                   leave=False)
        for k, scene in enumerate(bar):
            ns = stamp_of(spec, k)
            if spec.compressed:
                bag.write(spec.image_topic, ns, compressed_message(scene.image, ns, spec.frame_id))
            else:
                bag.write(spec.image_topic, ns, image_message(scene.image, "rgb8", ns, spec.frame_id))
            cam = scene.meta["camera"]
            bag.write(spec.topic("camera_info"), ns,
                      camera_info_message(spec.height, spec.width, cam["focal_px"], spec.width / 2.0,
                                          cam["horizon_row"], ns, spec.frame_id))
            bag.write(spec.topic("labels"), ns, image_message(scene.label, "mono8", ns, spec.frame_id))
            bag.write("/clock", ns, clock_message(ns))
            hits.append(truth(scene.label).hit)
            meta = scene.meta
        entry = _entry_frame(hits)
        if not spec.clean and (entry is None or not hits[-1] or len(hits) - entry < spec.min_corridor_frames):
            raise _NotInCorridor()
        description = {
            "tool": "densehybrid bag make", "spec": asdict(spec), "seed_used": seed,
            "condition": meta.get("condition"), "layout": meta.get("layout"),
            "obstacle": None if spec.clean else {k: meta["anomalies"][0][k] for k in ("family", "kind", "size_m")},
            "obstacle_entry_frame": entry,
            "obstacle_entry_s": None if entry is None else round(entry / spec.fps, 6),
            "frames_in_corridor": int(sum(hits)),
            "image_topic": spec.image_topic, "labels_topic": spec.topic("labels"),
            "camera_info_topic": spec.topic("camera_info"),
            "anomaly_label": SYNTHETIC.anomaly_label, "classes": list(SYNTHETIC.names),
        }
        bag.describe(description)
    return description


def _entry_frame(hits: list[bool]) -> int | None:
    """First frame of the last run of corridor hits (the obstacle being approached)."""
    if not hits or not hits[-1]:
        return next((i for i, h in enumerate(hits) if h), None)
    k = len(hits) - 1
    while k > 0 and hits[k - 1]:
        k -= 1
    return k
