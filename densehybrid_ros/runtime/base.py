"""The one inference contract of the node: `Backend.infer(rgb) -> SegmentationResult` at the input's resolution.

Every backend shares the same input checks and the same resizing policy, so the node behaves the same whichever
runtime sits underneath: a frame that cannot be segmented gets a ValueError that names what is wrong and what is
expected (the node turns it into a dropped frame and a diagnostic, never a crash).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from densehybrid_ros.config.model_card import ModelCard, read_model_bytes
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.onnx_file import external_data_files

# Smallest side a dynamic-size graph accepts: the backbone downsamples by 32, and a side below one
# backbone cell leaves the pyramid pooling nothing to pool.
MIN_SIDE = 32
MAX_SIDE = 8192  # the model card's limit for fixed input sizes


class InputError(ValueError):
    """A frame given to `Backend.infer` is not an HxWx3 uint8 RGB image of a usable size."""


class ModelLoadError(RuntimeError):
    """The model file exists but the runtime cannot use it (unreadable graph, wrong inputs or outputs)."""


def checked_model_bytes(card: ModelCard) -> bytes:
    """The model file read once and checked against the card's sha256 (read_model_bytes), for a runtime to load
    these very bytes; a graph keeping weights in external files, which the sha256 does not cover, is refused."""
    model_bytes = read_model_bytes(card)
    external = external_data_files(model_bytes)
    if external:
        raise ModelLoadError(f"model file {card.model_path()} keeps weights in external data file(s) "
                             f"{', '.join(external)}, which its card's sha256 does not cover; refused. Export "
                             "the model as one file (onnx.save_model(..., save_as_external_data=False))")
    return model_bytes


def check_rgb(rgb: Any) -> None:
    """Raise InputError unless `rgb` is an (H, W, 3) uint8 array with pixels; never copies."""
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"expected a numpy array (H, W, 3) uint8 RGB image, got {type(rgb).__name__}")
    if rgb.ndim != 3:
        hint = " (a grey image: stack it to 3 channels)" if rgb.ndim == 2 else ""
        raise InputError(f"expected an (H, W, 3) RGB image, got an array of shape {rgb.shape}{hint}")
    if rgb.shape[2] != 3:
        hint = " (RGBA/BGRA: drop the alpha channel)" if rgb.shape[2] == 4 else ""
        raise InputError(f"expected 3 channels (RGB), got {rgb.shape[2]} channels in shape {rgb.shape}{hint}")
    if rgb.size == 0:
        raise InputError(f"empty image: shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise InputError(f"expected dtype uint8 (RGB values 0..255), got {rgb.dtype}; "
                         "convert with np.clip(x, 0, 255).astype(np.uint8) if the values are 0..255 floats")


def validate_rgb(rgb: Any) -> np.ndarray:
    """Check one frame and return it as a C-contiguous (H, W, 3) uint8 array (a view when it already is one).

    Non-contiguous input (a crop, a channel-reversed BGR view, a transposed array) is valid: the runtimes read
    raw buffers, so it is copied once here rather than silently read with the wrong strides.
    """
    check_rgb(rgb)
    return np.ascontiguousarray(rgb)


def resize_result(result: SegmentationResult, size: tuple[int, int]) -> SegmentationResult:
    """Resize the per-pixel maps of a result to size=(H, W); raw logits stay at decoder resolution.

    Class ids are labels, so nearest neighbour (interpolating ids would invent classes on every boundary);
    scores and confidence are continuous, so bilinear, as the graph itself upsamples them.
    """
    h, w = size
    if result.class_id.shape == (h, w):
        return result

    def linear(x: np.ndarray) -> np.ndarray:
        return cv2.resize(np.asarray(x, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    return SegmentationResult(
        class_id=cv2.resize(result.class_id, (w, h), interpolation=cv2.INTER_NEAREST),
        anomaly_score=linear(result.anomaly_score),
        confidence=linear(result.confidence),
        logits=result.logits,
        ood_logit=result.ood_logit,
    )


@dataclass
class BackendOptions:
    """Options every backend understands.

    resize_to_model: a frame whose size differs from a fixed-size graph is resized to the graph size and the
        outputs are resized back; False makes such a frame an InputError naming both sizes.
    warmup: runs on a blank frame at construction, so the first real frame does not pay for lazy allocation.
    """

    resize_to_model: bool = True
    warmup: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or not 0 <= self.warmup <= 100:
            raise ValueError(f"warmup must be an integer in [0, 100], got {self.warmup!r}")


class Backend(ABC):
    """One loaded model on one runtime. Subclasses implement `_run` on a frame already at a size the graph takes."""

    name: str = "backend"

    def __init__(self, card: ModelCard, options: BackendOptions | None = None) -> None:
        self._card = card
        self._options = options or BackendOptions()
        self._closed = False

    # -- the contract ---------------------------------------------------------------------------------------
    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) of a fixed-size graph, None for a dynamic one."""
        if self._card.input_height is None:
            return None
        return int(self._card.input_height), int(self._card.input_width)

    @property
    def num_classes(self) -> int:
        return self._card.num_classes

    def infer(self, rgb: np.ndarray) -> SegmentationResult:
        """Segment one (H, W, 3) uint8 RGB frame; every map of the result is (H, W)."""
        if self._closed:
            raise RuntimeError(f"{self.name} backend for {self._card.name} was closed")
        rgb = validate_rgb(rgb)
        return resize_result(self._run(self._to_graph_size(rgb)), rgb.shape[:2])

    def _to_graph_size(self, rgb: np.ndarray) -> np.ndarray:
        """A validated frame resized to the size the graph runs it at (unchanged when it already is)."""
        size = rgb.shape[:2]
        graph_size = self._graph_size_for(size)
        if graph_size == size:
            return rgb
        # INTER_AREA when shrinking keeps thin structures (poles, small obstacles) from aliasing away.
        shrink = graph_size[0] * graph_size[1] < size[0] * size[1]
        return cv2.resize(rgb, (graph_size[1], graph_size[0]),
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def close(self) -> None:
        self._closed = True

    def cancel(self) -> None:
        """Stop the run in flight on another thread, if the runtime can (its `infer` then raises); later runs are
        not affected. For shutdown, which would otherwise wait for a whole inference. Default: nothing to do."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        size = "dynamic" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        return f"<{type(self).__name__} {self._card.name} input={size}>"

    # -- for subclasses ---------------------------------------------------------------------------------------
    @abstractmethod
    def _run(self, rgb: np.ndarray) -> SegmentationResult:
        """Run the model on a contiguous (H, W, 3) uint8 frame of a size the graph accepts; maps at (H, W)."""

    def _graph_size_for(self, size: tuple[int, int]) -> tuple[int, int]:
        fixed = self.input_size
        if fixed is None:
            h, w = size
            if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
                raise InputError(f"image size {h}x{w} is outside the valid range: each side in "
                                 f"[{MIN_SIDE}, {MAX_SIDE}] for the dynamic-size model {self._card.name}")
            return size
        if size != fixed and not self._options.resize_to_model:
            raise InputError(f"image size {size[0]}x{size[1]} differs from the model's fixed input size "
                             f"{fixed[0]}x{fixed[1]} ({self._card.name}); resize the frame or enable "
                             "resize_to_model")
        return fixed

    def _warm_up(self) -> None:
        size = self.input_size or (256, 512)
        blank = np.zeros((*size, 3), np.uint8)
        for _ in range(self._options.warmup):
            self._run(blank)
