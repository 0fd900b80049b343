"""Obstacle alert for the drive corridor: anomalous components ahead of the vehicle, with temporal hysteresis.

Per frame (docs/ARCHITECTURE.md sections 1 and 3; docs/ALERT.md has the reasoning and the defaults):

0. optionally, the anomaly score inside the corridor is filtered against thin and flickering false positives
   (core/alert_filters.py): the minimum (or mean) over the last ``temporal_frames`` frames, then a grey-level
   opening of ``score_opening_px``; both only lower scores, and the published score map is not changed;
1. the *watched area* is the corridor polygon (normalised image coordinates, rasterised once per image size);
   in ``polygon_and_road`` mode only the part of it that is predicted road, plus anomalous regions standing on it;
2. a pixel is anomalous when its anomaly score exceeds tau (strictly, as in ``open_set.open_set_map``: the open-set
   map of the paper's section 5.6 labels those pixels K);
3. anomalous pixels in the watched area are grouped into 8-connected components; components smaller than
   ``min_area_fraction`` of the image area are dropped, so the decision does not depend on the resolution;
4. the frame is a *hit* when a component survives and the anomalous share of the watched area exceeds
   ``min_corridor_fraction``;
5. the hysteresis raises the alert after ``raise_frames`` hits among the last ``window_frames`` frames and clears it
   after ``clear_frames`` consecutive clean frames.

The settings carry the names of the node's parameters, and ``RANGES`` is the one source of their valid ranges: the
node declares its parameters with them (config/detector.py) and ``AlertConfig.validate`` checks them, so a value the
node refuses is refused here too. numpy + OpenCV only (this runs on the vehicle every frame).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable, NamedTuple, Sequence

import cv2
import numpy as np

from densehybrid_ros.core.alert_filters import TEMPORAL_MODES, TemporalFusion, open_score
from densehybrid_ros.core.validation import ConfigError, check_choice, check_range

# A trapezoid over the lane ahead of a forward-facing camera: wide at the bottom edge, narrowing towards the
# horizon (x right, y down, both in [0, 1]). Same polygon as the node's default `corridor` parameter.
DEFAULT_CORRIDOR: tuple[tuple[float, float], ...] = ((0.25, 1.0), (0.43, 0.55), (0.57, 0.55), (0.75, 1.0))
MAX_CORRIDOR_VERTICES = 32
CORRIDOR_MODES = ("polygon", "polygon_and_road")
ROAD_CLASS_NAMES = ("road",)

STATES = ("clear", "warning", "alert")
# Numeric levels equal diagnostic_msgs/DiagnosticStatus OK / WARN / ERROR, so the node can publish them unchanged.
LEVELS = {"clear": 0, "warning": 1, "alert": 2}

# Rasterise and draw polygons with 4 fractional bits: vertices land within 1/16 px of their normalised position at every
# resolution, which keeps the corridor area proportional to the image area.
POLYGON_SHIFT = 4
# A corridor smaller than this share of the image is degenerate (collinear or repeated vertices).
MIN_POLYGON_AREA = 5e-7
_MAX_CACHED_SIZES = 4

# Valid range of every numeric setting (inclusive). raise_frames is further bounded by window_frames.
# tau: every score type of core/scores.py is a log-probability, a logit or an entropy of a few tens at most.
RANGES: dict[str, tuple[float, float]] = {
    "tau": (-1000.0, 1000.0),
    "min_area_fraction": (0.0, 0.5),
    "min_corridor_fraction": (0.0, 1.0),
    "raise_frames": (1, 100),
    "window_frames": (1, 100),
    "clear_frames": (1, 100),
    "road_contact_fraction": (0.0, 1.0),
    "road_contact_gap_fraction": (0.0, 0.2),
    "max_regions": (0, 1000),
    "score_opening_px": (0, 64),
    "temporal_frames": (1, 10),
}
_INTEGER_SETTINGS = ("raise_frames", "window_frames", "clear_frames", "max_regions", "score_opening_px",
                     "temporal_frames")


class AnomalyBox(NamedTuple):
    """One anomalous connected component inside the watched area, in pixel coordinates of the input.

    x1, y1 are exclusive (the box is ``image[y0:y1, x0:x1]``); area counts the component's pixels inside the
    watched area; peak_score is the largest anomaly score among them.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    peak_score: float


@dataclass(frozen=True)
class AlertConfig:
    """Settings of the obstacle alert. Build one, call ``validate()`` (the detector does), never mutate it.

    corridor: polygon vertices ``((x, y), ...)`` in normalised image coordinates (x right, y down, [0, 1]);
        a flat sequence ``x0, y0, x1, y1, ...`` (the ROS parameter's form) is accepted and converted.
    corridor_mode: ``"polygon"`` watches the whole polygon; ``"polygon_and_road"`` watches only its pixels
        predicted as one of ``road_ids`` plus anomalous components standing on such pixels (see docs/ALERT.md).
    road_ids: class ids that count as road (``road_ids_from_names`` reads them from the model card's classes).
    tau: anomaly score threshold; the model card's calibrated tau unless the operator overrides it.
    min_area_fraction: smallest component that counts, as a fraction of the image area (scales with resolution).
    min_corridor_fraction: a frame is a hit only if the anomalous share of the watched area exceeds this.
    raise_frames, window_frames: raise the alert once ``raise_frames`` of the last ``window_frames`` frames were hits.
    clear_frames: clear a raised alert after ``clear_frames`` consecutive clean frames.
    road_contact_fraction: ``polygon_and_road`` only: the share of a component's lower edge that must rest on road.
    road_contact_gap_fraction: ``polygon_and_road`` only: how far below the lower edge road is looked for, as a
        fraction of the image height (skips the unlabelled fringe a real object has at its foot).
    max_regions: at most this many regions (boxes) are reported, largest first; all components count towards the
        fraction.
    temporal_fusion, temporal_frames: ``"min"`` judges each pixel by its lowest score over the last
        ``temporal_frames`` frames (``"mean"``: the average; ``"none"``: this frame only), so boundary flicker does
        not count while an obstacle present in consecutive frames does.
    score_opening_px: grey-level opening of the score with a square of this side (0 or 1: off): anomalous
        structures narrower than it (class-boundary lines) are removed, blobs at least as wide are kept.

    Every numeric field's valid range is in ``RANGES``.
    """

    corridor: tuple = DEFAULT_CORRIDOR
    corridor_mode: str = "polygon"
    road_ids: tuple = (0,)
    tau: float = 0.0
    min_area_fraction: float = 0.0005
    min_corridor_fraction: float = 0.0
    raise_frames: int = 3
    window_frames: int = 5
    clear_frames: int = 5
    road_contact_fraction: float = 0.5
    road_contact_gap_fraction: float = 0.01
    max_regions: int = 32
    temporal_fusion: str = "none"
    temporal_frames: int = 3
    score_opening_px: int = 0

    def __post_init__(self) -> None:
        # Normalise containers only; values are checked by validate() so that errors carry field names and ranges.
        object.__setattr__(self, "corridor", _as_vertices(self.corridor))
        if isinstance(self.road_ids, Iterable) and not isinstance(self.road_ids, (str, bytes)):
            object.__setattr__(self, "road_ids", tuple(self.road_ids))

    def validate(self) -> "AlertConfig":
        """Check every field; raise ConfigError naming the field and its valid range. Returns self."""
        check_choice("corridor_mode", self.corridor_mode, CORRIDOR_MODES)
        check_choice("temporal_fusion", self.temporal_fusion, TEMPORAL_MODES)
        _check_polygon("corridor", self.corridor)
        if not isinstance(self.road_ids, tuple):
            raise ConfigError(f"road_ids={self.road_ids!r}: expected a list of class ids in [0, 254]")
        for i, rid in enumerate(self.road_ids):
            check_range(f"road_ids[{i}]", rid, 0, 254, integer=True)
        if self.corridor_mode == "polygon_and_road" and not self.road_ids:
            raise ConfigError("road_ids=(): corridor_mode 'polygon_and_road' needs at least one road class id "
                              "in [0, 254]")
        for name, (lo, hi) in RANGES.items():
            if name == "raise_frames":
                continue
            check_range(name, getattr(self, name), lo, hi, integer=name in _INTEGER_SETTINGS)
        lo, _ = RANGES["raise_frames"]
        check_range("raise_frames", self.raise_frames, lo, self.window_frames, integer=True)
        return self

    def min_area_pixels(self, height: int, width: int) -> int:
        """The minimum component area in pixels at this resolution (at least one pixel)."""
        return max(1, math.ceil(self.min_area_fraction * height * width - 1e-9))


def road_ids_from_names(class_names: Sequence[str], road_names: Iterable[str] = ROAD_CLASS_NAMES) -> tuple[int, ...]:
    """Ids of the classes named in ``road_names`` (e.g. from ``[c.name for c in card.classes]``).

    Raises ConfigError when none is found: the road mode silently watching nothing would hide every obstacle.
    """
    wanted = set(road_names)
    ids = tuple(i for i, name in enumerate(class_names) if name in wanted)
    if not ids:
        raise ConfigError(f"road classes {sorted(wanted)} not found among the model's classes {list(class_names)}")
    return ids


@dataclass
class AlertState:
    """The drive corridor's state after one frame.

    state / level: "clear" (0), "warning" (1: anomalous components were seen within the last ``window_frames``
        frames but the alert is not raised), "alert" (2: raised by the hysteresis and held until ``clear_frames``
        clean frames).
    frame_hit: this frame alone passed the per-frame test (a component >= min area, fraction > min fraction).
    corridor_fraction: anomalous pixels of the counted components / pixels of the watched area.
    peak_score: largest anomaly score in the watched area (NaN when the watched area is empty).
    boxes: one AnomalyBox per counted component, largest first (at most ``max_regions``).
    num_components: counted components (may exceed len(boxes)).
    corridor_pixels / anomalous_pixels: the fraction's denominator and numerator.
    hits_in_window: hits among the last ``window_frames`` frames (this one included).
    hit_streak: consecutive hit frames ending with this one (0 when this frame is clean).
    clean_streak: consecutive clean frames ending with this one (0 when this frame is a hit).
    tau, min_area_px: the threshold and minimum area (pixels) this frame was judged with.
    frame_index: frames seen since construction or reset (1 for the first).
    """

    state: str = "clear"
    level: int = 0
    frame_hit: bool = False
    corridor_fraction: float = 0.0
    peak_score: float = float("nan")
    boxes: list[AnomalyBox] = field(default_factory=list)
    num_components: int = 0
    corridor_pixels: int = 0
    anomalous_pixels: int = 0
    hits_in_window: int = 0
    hit_streak: int = 0
    clean_streak: int = 0
    tau: float = 0.0
    min_area_px: int = 1
    frame_index: int = 0

    @property
    def raised(self) -> bool:
        return self.state == "alert"


@dataclass(frozen=True)
class _Corridor:
    """The corridor rasterised for one image size, cropped to its bounding box (everything runs on the crop)."""

    y0: int
    y1: int
    x0: int
    x1: int
    mask: np.ndarray  # uint8 0/1, shape (y1-y0, x1-x0)
    area: int


class ObstacleAlertDetector:
    """Stateful per-camera alert: call ``update`` once per frame, in order.

    Not thread-safe: the node calls it from its one processing thread (and guards ``set_config`` with its lock).
    """

    def __init__(self, config: AlertConfig | None = None) -> None:
        self._config = (config if config is not None else AlertConfig()).validate()
        self._corridors: dict[tuple[int, int], _Corridor] = {}
        self._fusion = TemporalFusion(self._config.temporal_fusion, self._config.temporal_frames)
        self.reset()

    @property
    def config(self) -> AlertConfig:
        return self._config

    @property
    def state(self) -> AlertState:
        """The state after the last ``update`` (a clear state before the first)."""
        return self._last

    def reset(self) -> None:
        """Forget all temporal evidence: the next frame starts from "clear" with an empty window."""
        self._window: deque[bool] = deque(maxlen=self._config.window_frames)
        self._raised = False
        self._hit_streak = 0
        self._clean_streak = 0
        self._frames = 0
        self._fusion.reset()
        self._last = AlertState(tau=float(self._config.tau))

    def set_config(self, config: AlertConfig, reset: bool = False) -> None:
        """Apply new settings at run time (threshold, corridor, mode, areas, hysteresis).

        The temporal state is kept unless ``reset``: past frames stay evidence, and a raised alert is never dropped by
        a parameter change; it clears through ``clear_frames`` clean frames judged with the new settings. A shorter
        ``window_frames`` keeps the most recent frames of the window. Corridor masks are rebuilt on the next frame if
        the polygon changed. An invalid config raises ConfigError and leaves the detector unchanged.
        """
        config = config.validate()
        old = self._config
        self._config = config
        if config.corridor != old.corridor:
            self._corridors.clear()
        if (config.temporal_fusion, config.temporal_frames, config.corridor) != \
                (old.temporal_fusion, old.temporal_frames, old.corridor):
            # The history holds corridor crops judged with the old settings: start it afresh.
            self._fusion = TemporalFusion(config.temporal_fusion, config.temporal_frames)
        if reset:
            self.reset()
        elif config.window_frames != old.window_frames:
            self._window = deque(self._window, maxlen=config.window_frames)

    def update_config(self, reset: bool = False, **changes) -> AlertConfig:
        """``set_config(replace(config, **changes))``; e.g. ``update_config(tau=1.5)``. Returns the new config."""
        new = replace(self._config, **changes)
        self.set_config(new, reset=reset)
        return new

    # -- per frame ---------------------------------------------------------------------------------------------------
    def update(self, anomaly_score: np.ndarray, class_id: np.ndarray | None = None) -> AlertState:
        """Judge one frame and advance the hysteresis.

        anomaly_score: (H, W) float (float32 or float16), higher = more anomalous (e.g. the hybrid score, eq. 6).
        class_id: (H, W) uint8 closed-set classes; required in ``polygon_and_road`` mode, ignored otherwise.
        """
        cfg = self._config
        score = np.asarray(anomaly_score)
        if score.ndim != 2 or score.shape[0] < 1 or score.shape[1] < 1:
            raise ValueError(f"anomaly_score must be a non-empty (H, W) array, got shape {score.shape}")
        if score.dtype.kind != "f":
            raise ValueError(f"anomaly_score must be a float array, got dtype {score.dtype}")
        use_road = cfg.corridor_mode == "polygon_and_road"
        if use_road:
            if class_id is None:
                raise ValueError("class_id is required in corridor_mode 'polygon_and_road'")
            class_id = np.asarray(class_id)
            if class_id.dtype != np.uint8:
                raise ValueError(f"class_id must be a uint8 class map, got dtype {class_id.dtype}")
            if class_id.shape != score.shape:
                raise ValueError(f"class_id {class_id.shape} and anomaly_score {score.shape} differ in shape")

        h, w = score.shape
        corridor = self._corridor(h, w)
        min_area = cfg.min_area_pixels(h, w)
        frame = _FrameResult()
        if corridor.area > 0:
            frame = self._judge(score, class_id if use_road else None, corridor, min_area)
        hit = frame.num_components > 0 and frame.fraction > cfg.min_corridor_fraction
        return self._advance(hit, frame, min_area)

    def _filtered_crop(self, score: np.ndarray, c: _Corridor) -> np.ndarray:
        """The score over the corridor's bounding box after the score filters (core/alert_filters.py).

        Only the box (plus the opening's reach, so the result equals filtering the whole frame) is filtered: the
        alert reads nothing else, and filtering a camera-sized frame would cost tens of ms per frame."""
        cfg = self._config
        temporal = cfg.temporal_fusion != "none" and cfg.temporal_frames > 1
        opening = cfg.score_opening_px > 1
        if not (temporal or opening):
            return score[c.y0:c.y1, c.x0:c.x1]
        h, w = score.shape
        m = cfg.score_opening_px - 1 if opening else 0   # erosion then dilation: each reaches (side - 1) / 2
        y0, y1, x0, x1 = max(0, c.y0 - m), min(h, c.y1 + m), max(0, c.x0 - m), min(w, c.x1 + m)
        region = np.asarray(score[y0:y1, x0:x1], dtype=np.float32)
        if temporal:
            region = self._fusion.update(region)
        if opening:
            region = open_score(region, cfg.score_opening_px)
        return region[c.y0 - y0:c.y1 - y0, c.x0 - x0:c.x1 - x0]

    def _judge(self, score: np.ndarray, class_id: np.ndarray | None, c: _Corridor, min_area: int) -> "_FrameResult":
        cfg = self._config
        crop = self._filtered_crop(score, c)
        if crop.dtype != np.float32:
            crop = crop.astype(np.float32)
        # NaN compares False, so a NaN pixel is never anomalous.
        anomalous = np.greater(crop, cfg.tau).view(np.uint8)
        anomalous &= c.mask
        # Labelling (and above all OpenCV's statistics pass) dominates the cost, so it runs only on the bounding
        # box of the anomalous pixels; on most frames that box is small or empty.
        components: list[tuple[int, int, int, int, int, np.ndarray]] = []  # x, y, w, h, area, own mask (crop coords)
        if cv2.countNonZero(anomalous):
            bx, by, bw, bh = cv2.boundingRect(anomalous)
            sub = anomalous[by:by + bh, bx:bx + bw]
            # 16-bit labels are about twice as fast; an 8-connected binary image of N pixels has at most N/4 components.
            ltype = cv2.CV_16U if bw * bh < 4 * 65535 else cv2.CV_32S
            _, labels, stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8, ltype=ltype)
            for lab in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area) + 1:
                x, y, w, h, area = (int(v) for v in stats[lab])
                own = (labels[y:y + h, x:x + w] == lab).view(np.uint8)
                components.append((x + bx, y + by, w, h, area, own))
        if class_id is not None:
            lut = np.zeros(256, np.uint8)
            lut[list(cfg.road_ids)] = 1
            # Road over the crop and `gap` rows below it: the ground an object stands on may lie below the corridor.
            gap = max(1, round(cfg.road_contact_gap_fraction * score.shape[0]))
            road_ext = _road_below(class_id, lut, c, gap)
            components = [comp for comp in components
                          if _rests_on_road(comp, road_ext, gap, cfg.road_contact_fraction)]
            # Watched area: road inside the corridor plus the counted components (an obstacle's own pixels are
            # mostly not predicted road: the class head gives it some other class).
            watched = road_ext[:c.y1 - c.y0] & c.mask
            for x, y, w, h, _, own in components:
                watched[y:y + h, x:x + w] |= own
            area = int(cv2.countNonZero(watched))
            peak_mask = watched
        else:
            area = c.area
            peak_mask = c.mask
        result = _FrameResult(area=area)
        if area == 0:
            return result
        nan = np.isnan(crop)
        if nan.any():
            peak_mask = peak_mask & (~nan).view(np.uint8)
        if cv2.countNonZero(peak_mask):
            result.peak = float(cv2.minMaxLoc(crop, mask=peak_mask)[1])
        if not components:
            return result
        result.num_components = len(components)
        result.anomalous = sum(comp[4] for comp in components)
        result.fraction = result.anomalous / area
        components.sort(key=lambda comp: -comp[4])
        for x, y, w, h, a, own in components[:cfg.max_regions]:
            peak = float(cv2.minMaxLoc(crop[y:y + h, x:x + w], mask=own)[1])
            result.boxes.append(AnomalyBox(x + c.x0, y + c.y0, x + w + c.x0, y + h + c.y0, a, peak))
        return result

    def _advance(self, hit: bool, frame: "_FrameResult", min_area: int) -> AlertState:
        cfg = self._config
        self._frames += 1
        self._window.append(hit)
        if hit:
            self._hit_streak += 1
            self._clean_streak = 0
        else:
            self._hit_streak = 0
            self._clean_streak += 1
        hits = sum(self._window)
        if self._raised:
            if self._clean_streak >= cfg.clear_frames:
                self._raised = False
                # A fresh alert needs raise_frames fresh hits, not leftovers from before the clear.
                self._window.clear()
                hits = 0
        elif hit and hits >= cfg.raise_frames:
            self._raised = True
        if self._raised:
            name = "alert"
        elif hits > 0:
            name = "warning"
        else:
            name = "clear"
        self._last = AlertState(
            state=name, level=LEVELS[name], frame_hit=hit, corridor_fraction=frame.fraction, peak_score=frame.peak,
            boxes=frame.boxes, num_components=frame.num_components, corridor_pixels=frame.area,
            anomalous_pixels=frame.anomalous, hits_in_window=hits, hit_streak=self._hit_streak,
            clean_streak=self._clean_streak, tau=float(cfg.tau), min_area_px=min_area, frame_index=self._frames)
        return self._last

    # -- corridor cache ----------------------------------------------------------------------------------------------
    def _corridor(self, h: int, w: int) -> _Corridor:
        c = self._corridors.get((h, w))
        if c is None:
            if len(self._corridors) >= _MAX_CACHED_SIZES:
                self._corridors.pop(next(iter(self._corridors)))
            c = self._corridors[(h, w)] = _rasterise(self._config.corridor, h, w)
        return c

    def corridor_mask(self, height: int, width: int) -> np.ndarray:
        """The corridor polygon as a full-size (H, W) bool mask (for display and tests; update uses the crop)."""
        c = self._corridor(height, width)
        full = np.zeros((height, width), bool)
        full[c.y0:c.y1, c.x0:c.x1] = c.mask.astype(bool)
        return full


@dataclass
class _FrameResult:
    area: int = 0
    peak: float = float("nan")
    num_components: int = 0
    anomalous: int = 0
    fraction: float = 0.0
    boxes: list[AnomalyBox] = field(default_factory=list)


# -- polygon helpers ---------------------------------------------------------------------------------------------------
def _as_vertices(polygon) -> tuple:
    """((x, y), ...) from pairs or a flat x0, y0, x1, y1, ... sequence; anything else is returned for validate()."""
    if isinstance(polygon, np.ndarray):
        polygon = polygon.tolist()
    if isinstance(polygon, (str, bytes)) or not isinstance(polygon, Iterable):
        return polygon
    items = list(polygon)
    if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        if len(items) % 2:
            return tuple(items)  # odd flat list: validate() names it
        return tuple((items[i], items[i + 1]) for i in range(0, len(items), 2))
    out = []
    for v in items:
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            return tuple(items)
        out.append(tuple(v))
    return tuple(out)


def polygon_area(polygon) -> float:
    """Area of a simple polygon (shoelace formula), in the units of its vertices squared: for normalised
    vertices, the share of the image it covers. Accepts pairs or a flat x0, y0, x1, y1, ... sequence."""
    pts = np.asarray(_as_vertices(polygon), dtype=np.float64).reshape(-1, 2)
    xs, ys = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(np.roll(xs, -1), ys)))


def _check_polygon(name: str, vertices) -> None:
    valid = (f"{name}: expected 3..{MAX_CORRIDOR_VERTICES} vertices (x, y) in normalised image coordinates, "
             f"each coordinate in [0, 1]")
    if not isinstance(vertices, tuple) or not all(isinstance(v, tuple) and len(v) == 2 for v in vertices):
        raise ConfigError(f"{valid}; got {vertices!r}")
    if not 3 <= len(vertices) <= MAX_CORRIDOR_VERTICES:
        raise ConfigError(f"{valid}; got {len(vertices)} vertices")
    for i, (x, y) in enumerate(vertices):
        check_range(f"{name}[{i}].x", x, 0.0, 1.0)
        check_range(f"{name}[{i}].y", y, 0.0, 1.0)
    if polygon_area(vertices) < MIN_POLYGON_AREA:
        raise ConfigError(f"{name}={[list(v) for v in vertices]}: the polygon has no area (valid: a polygon of "
                          f"3..{MAX_CORRIDOR_VERTICES} vertices enclosing a non-zero area)")


def _road_below(class_id: np.ndarray, lut: np.ndarray, c: _Corridor, gap: int) -> np.ndarray:
    """uint8 road map over the corridor crop's columns, from its top row to ``gap`` rows past its bottom row.
    Rows beyond the image's bottom edge count as road: something reaching the bottom of the image is as close to
    the vehicle as an obstacle can be, and must not be dismissed for lack of visible road under it."""
    h = class_id.shape[0]
    rows = c.y1 - c.y0 + gap
    out = np.ones((rows, c.x1 - c.x0), np.uint8)
    end = min(h, c.y1 + gap)
    out[:end - c.y0] = lut[class_id[c.y0:end, c.x0:c.x1]]
    return out


def _rests_on_road(component, road_ext: np.ndarray, gap: int, contact_fraction: float) -> bool:
    """Whether at least ``contact_fraction`` of the component's lower-edge pixels have road within ``gap`` rows
    below them. With a forward-facing camera the ground an object stands on is directly below it in the image; an
    object on the pavement inside the polygon has pavement there. ``gap`` skips the fringe at an object's foot that
    scores below tau and is classified as something other than road."""
    x, y, w, h, _, own = component
    # Lower-edge pixels: the component's pixels whose lower neighbour is not part of it.
    lower = own.astype(bool)
    lower[:-1] &= ~own[1:].astype(bool)
    supported = np.zeros((h, w), bool)
    for d in range(1, gap + 1):
        supported |= road_ext[y + d:y + d + h, x:x + w].astype(bool)
    edge = int(np.count_nonzero(lower))
    return np.count_nonzero(lower & supported) >= contact_fraction * max(edge, 1)


def polygon_to_pixels(polygon, height: int, width: int) -> np.ndarray:
    """Normalised vertices -> (N, 2) int32 pixel coordinates with ``POLYGON_SHIFT`` fractional bits, for cv2
    drawing with ``shift=POLYGON_SHIFT``. A normalised x of 0 is the left edge of the first pixel, 1 the right edge
    of the last; OpenCV puts integer coordinates at pixel centres, hence the half-pixel offset."""
    pts = np.asarray(_as_vertices(polygon), dtype=np.float64).reshape(-1, 2)
    px = pts * (width, height) - 0.5
    return np.round(px * (1 << POLYGON_SHIFT)).astype(np.int32)


def _rasterise(polygon, h: int, w: int) -> _Corridor:
    """Pixels whose centre lies inside the polygon (even-odd rule, half-open on the right and bottom edges), so the
    mask's area is the polygon's share of the image at every resolution and adjacent polygons do not overlap.
    Runs once per image size; the scanline form keeps it exact where cv2.fillPoly would add its boundary pixels."""
    pts = np.asarray(_as_vertices(polygon), dtype=np.float64).reshape(-1, 2) * (w, h)
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    yc = np.arange(h, dtype=np.float64)[:, None] + 0.5                      # row centres, (h, 1)
    crosses = ((ya <= yc) & (yc < yb)) | ((yb <= yc) & (yc < ya))           # (h, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = xa + (yc - ya) * (xb - xa) / (yb - ya)
    x = np.sort(np.where(crosses, x, np.inf), axis=1)                       # crossings first, in order
    # Columns whose centre j + 0.5 lies in [x_in, x_out) for each pair of crossings.
    cols = np.clip(np.ceil(x - 0.5), 0, w)
    starts, ends = cols[:, 0::2], cols[:, 1::2]
    n = min(starts.shape[1], ends.shape[1])
    starts, ends = starts[:, :n], ends[:, :n]
    valid = np.isfinite(x[:, 1::2][:, :n])
    edges = np.zeros((h, w + 1), np.int32)
    rows = np.broadcast_to(np.arange(h)[:, None], starts.shape)
    np.add.at(edges, (rows[valid], starts[valid].astype(np.intp)), 1)
    np.add.at(edges, (rows[valid], ends[valid].astype(np.intp)), -1)
    full = (np.cumsum(edges, axis=1)[:, :w] > 0).astype(np.uint8)
    area = int(cv2.countNonZero(full))
    if area == 0:
        return _Corridor(0, 0, 0, 0, np.zeros((0, 0), np.uint8), 0)
    x0, y0, bw, bh = cv2.boundingRect(full)
    return _Corridor(y0, y0 + bh, x0, x0 + bw, np.ascontiguousarray(full[y0:y0 + bh, x0:x0 + bw]), area)
