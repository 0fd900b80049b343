"""INT8 calibration frames from the project's own data pipeline, for TensorRT and for ONNX Runtime quantization.

A calibrator must see what the vehicle sees, prepared exactly as the node prepares it. So the frames come from the
same readers as evaluation (`data/adapters`: synthetic splits, Cityscapes, StreetHazards, ...), from a plain image
folder, or rendered from the synthetic world (`synthetic`), and are fitted to the graph's input size with the
backend's own resize rule. The exported graph takes uint8 RGB and normalises inside, so batches are raw uint8
NHWC: no float conversion on the host, and no second copy of the normalisation that could drift from the graph's.

numpy and OpenCV only (no torch): the same `CalibrationBatches` feed the TensorRT entropy calibrator
(`tensorrt_engine.py`) and, through `onnxruntime_reader()`, `onnxruntime.quantization.quantize_static`.

Selection is deterministic: frames are taken evenly spaced over the sorted source (a split sorted by condition
gives every condition its share), so two builds from the same data calibrate on the same pixels, and the
`fingerprint` of the selection decides whether a calibration cache on disk may be reused.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from densehybrid_ros.runtime.engine_cache import sha256_bytes, write_atomic

SYNTHETIC = "synthetic"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Seeds of rendered calibration frames: training draws seeds below 2**32 and the val/test splits use
# [2**32, 2**33) (data/splits.py), so calibration never renders a frame that is later used to evaluate.
CALIBRATION_SEED_BASE = 3 << 32
MAX_FRAMES = 10_000
MAX_BATCH = 64


class CalibrationDataError(ValueError):
    """The calibration source cannot give the frames asked for; the message names the source."""


@dataclass(frozen=True)
class _Item:
    name: str
    load: Callable[[], np.ndarray]


def fit_to_graph(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB frame to the graph's (H, W) as `Backend.infer` does: INTER_AREA when shrinking (keeps thin
    structures), bilinear when enlarging."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return np.ascontiguousarray(rgb)
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def evenly_spaced(n_available: int, n_wanted: int) -> list[int]:
    """`n_wanted` indices spread evenly over range(n_available) (all of them when fewer are available)."""
    if n_wanted >= n_available:
        return list(range(n_available))
    return sorted({int(round(x)) for x in np.linspace(0, n_available - 1, n_wanted)})


class CalibrationBatches:
    """A deterministic sequence of uint8 (B, H, W, 3) RGB batches for one graph input size.

    source: "synthetic", a split folder any `data.adapters.open_split` format reads, or a folder of images
        (searched recursively, sorted by path).
    frames: how many frames in total (the last batch is dropped if incomplete: TensorRT's calibrator needs full
        batches); size: the graph's (H, W).
    """

    def __init__(self, source: str | Path, frames: int, size: tuple[int, int], batch_size: int = 1,
                 conditions: tuple[str, ...] | None = None) -> None:
        if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
            raise CalibrationDataError(f"calibration frames must be an integer in [1, {MAX_FRAMES}], got {frames!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise CalibrationDataError(f"calibration batch size must be an integer in [1, {MAX_BATCH}], "
                                       f"got {batch_size!r}")
        if frames < batch_size:
            raise CalibrationDataError(f"calibration frames ({frames}) must be at least the batch size ({batch_size})")
        h, w = (int(v) for v in size)
        if not (32 <= h <= 8192 and 32 <= w <= 8192):
            raise CalibrationDataError(f"calibration input size {h}x{w} is outside [32, 8192] per side")
        self.size = (h, w)
        self.batch_size = batch_size
        self.source = str(source)
        items = self._synthetic_items(frames, conditions) if self.source == SYNTHETIC else \
            self._folder_items(Path(source), conditions)
        if not items:
            raise CalibrationDataError(f"calibration source {self.source} holds no images")
        picked = [items[i] for i in evenly_spaced(len(items), frames)]
        usable = len(picked) - len(picked) % batch_size
        if usable == 0:
            raise CalibrationDataError(f"calibration source {self.source} has {len(picked)} image(s), fewer than "
                                       f"one batch of {batch_size}")
        self._items = picked[:usable]
        self.available = len(items)

    # -- sources -----------------------------------------------------------------------------------------------
    def _synthetic_items(self, frames: int, conditions: tuple[str, ...] | None) -> list[_Item]:
        from densehybrid_ros.data.taxonomy import CONDITIONS
        from densehybrid_ros.data.world import render_scene

        conds = tuple(conditions or CONDITIONS)
        unknown = [c for c in conds if c not in CONDITIONS]
        if unknown:
            raise CalibrationDataError(f"unknown condition(s) {unknown}; valid: {', '.join(CONDITIONS)}")
        h, w = self.size

        def render(i: int, cond: str) -> Callable[[], np.ndarray]:
            # Rendered at the graph size directly: the world is resolution-independent.
            return lambda: render_scene(CALIBRATION_SEED_BASE + i, h, w, condition=cond).image

        items = []
        for i in range(frames):
            cond = conds[i % len(conds)]
            items.append(_Item(f"synthetic/{cond}/{CALIBRATION_SEED_BASE + i}", render(i, cond)))
        return items

    def _folder_items(self, root: Path, conditions: tuple[str, ...] | None) -> list[_Item]:
        from densehybrid_ros.data.adapters import DatasetFormatError, detect_format, open_split, read_rgb

        if not root.exists():
            raise CalibrationDataError(f"calibration data {root} does not exist (an image folder, a split folder "
                                       f"or '{SYNTHETIC}')")
        if not root.is_dir():
            raise CalibrationDataError(f"calibration data {root} is a file; expected an image folder, a split "
                                       f"folder or '{SYNTHETIC}'")
        try:
            fmt = detect_format(root)
        except DatasetFormatError:
            fmt = None
        if fmt is not None:
            options = {"condition": list(conditions)} if conditions and fmt == "synthetic" else {}
            split = open_split(root, format=fmt, **options)
            return [_Item(f"{fmt}:{i}", (lambda j=i: split[j].image)) for i in range(len(split))]
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return [_Item(str(p.relative_to(root)), (lambda q=p: read_rgb(q))) for p in files]

    # -- the sequence ------------------------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        return len(self._items)

    @property
    def frame_names(self) -> list[str]:
        return [it.name for it in self._items]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def batch_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, *self.size, 3)

    def __len__(self) -> int:
        """Number of batches."""
        return len(self._items) // self.batch_size

    def frame(self, index: int) -> np.ndarray:
        item = self._items[index]
        try:
            rgb = item.load()
        except Exception as e:
            raise CalibrationDataError(f"calibration frame {item.name} from {self.source} cannot be read: {e}") from e
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise CalibrationDataError(f"calibration frame {item.name} from {self.source} is not an RGB uint8 image "
                                       f"(shape {rgb.shape}, dtype {rgb.dtype})")
        return fit_to_graph(rgb, self.size)

    def batch(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"calibration batch {index} out of range 0..{len(self) - 1}")
        start = index * self.batch_size
        out = np.empty(self.batch_shape, np.uint8)
        for j in range(self.batch_size):
            out[j] = self.frame(start + j)
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.batch(i)

    def fingerprint(self) -> str:
        """sha256 of what is calibrated on: source, chosen frames, size and batch size (not the pixels: hashing
        every frame would cost as much as calibrating; the names pin the frames of a deterministic source)."""
        d = {"source": self.source if self.source == SYNTHETIC else str(Path(self.source).resolve()),
             "frames": self.frame_names, "size": list(self.size), "batch_size": self.batch_size,
             "seed_base": CALIBRATION_SEED_BASE if self.source == SYNTHETIC else None}
        return sha256_bytes(json.dumps(d, sort_keys=True).encode())

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "frames": self.frames, "available": self.available,
                "batch_size": self.batch_size, "size": list(self.size), "fingerprint": self.fingerprint()}

    def onnxruntime_reader(self, input_name: str = "image"):
        """An `onnxruntime.quantization.CalibrationDataReader` over these batches (imported lazily)."""
        from onnxruntime.quantization import CalibrationDataReader

        batches = self

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._next = 0

            def get_next(self):
                if self._next >= len(batches):
                    return None
                self._next += 1
                return {input_name: batches.batch(self._next - 1)}

            def rewind(self) -> None:
                self._next = 0

            def __len__(self) -> int:
                return len(batches)

        return _Reader()


class CalibrationCache:
    """A calibration cache file (TensorRT's calibration table, opaque bytes here) plus `<file>.json` saying what it
    was made from. `read` returns the bytes only when model, data and TensorRT version all match, so a rebuild
    after a change recalibrates and a rebuild without one skips the minutes of calibration."""

    def __init__(self, path: str | Path, onnx_sha256: str, data_fingerprint: str, tensorrt_version: str | None) -> None:
        self.path = Path(path)
        self.meta = {"onnx_sha256": onnx_sha256, "data_fingerprint": data_fingerprint,
                     "tensorrt_version": tensorrt_version}

    @property
    def meta_path(self) -> Path:
        return Path(str(self.path) + ".json")

    def mismatch(self) -> list[str]:
        """Why the cache on disk cannot be reused (empty: it can)."""
        if not self.path.is_file():
            return [f"no calibration cache {self.path}"]
        if not self.meta_path.is_file():
            return [f"no {self.meta_path} saying what {self.path.name} was calibrated on"]
        try:
            recorded = json.loads(self.meta_path.read_text())
        except (json.JSONDecodeError, OSError) as e:
            return [f"{self.meta_path} unreadable: {e}"]
        out = [f"{k}: cache made for {recorded.get(k)!r}, now {v!r}" for k, v in self.meta.items()
               if recorded.get(k) != v]
        if recorded.get("cache_sha256") != self.sha256():
            out.append(f"{self.path.name} changed since it was written")
        return out

    def read(self) -> bytes | None:
        return self.path.read_bytes() if not self.mismatch() else None

    def write(self, data: bytes) -> None:
        write_atomic(self.path, bytes(data))
        meta = dict(self.meta, cache_sha256=sha256_bytes(bytes(data)))
        write_atomic(self.meta_path, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())

    def sha256(self) -> str | None:
        return hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path.is_file() else None
