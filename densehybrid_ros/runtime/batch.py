"""Several frames in one inference: the backend of the multi-camera node (ros/multi_camera_node.py).

`OnnxRuntimeBatchBackend.infer_batch(frames) -> [SegmentationResult]` keeps the single-frame contract per frame:
each frame is checked, brought to the graph's size and its maps come back at its own (H, W), exactly as
`Backend.infer` does it, so a camera's outputs do not depend on which other cameras shared its batch (to float
tolerance). Frames of different sizes share one batch when the graph has a fixed size (each is resized to it);
a dynamic-size graph runs one batch per distinct size.

The graph needs a batch axis (runtime/batch_graph.py writes one from any exported model); a fixed-batch graph is
refused with the command that makes its batch copy. `infer` (one frame) still works, so the same object also
serves the single-camera path.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnxruntime as ort

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import ModelLoadError, check_rgb, resize_result, validate_rgb
from densehybrid_ros.runtime.batch_graph import BATCH_SUFFIX, batch_dim
from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeOptions

MAX_BATCH = 16


class OnnxRuntimeBatchBackend(OnnxRuntimeBackend):
    name = "onnxruntime"

    def __init__(self, card: ModelCard, options: OnnxRuntimeOptions | None = None) -> None:
        super().__init__(card, options)  # the graph contract of the single-frame backend, warm-up at batch 1
        dim = batch_dim(self.session.get_inputs()[0].shape)
        if isinstance(dim, int):
            model = card.model_path()
            raise ModelLoadError(
                f"model file {model} has a fixed batch of {dim}; one node serving several cameras needs a graph with "
                f"a batch axis. Make it once with `densehybrid batch-graph --model {model}` and set model:="
                f"{model.with_name(model.stem + BATCH_SUFFIX + '.onnx')}")

    def warm_up_batch(self, batch: int) -> None:
        """Run a blank batch of `batch` frames `warmup` times: the first run at a new batch size allocates."""
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
        size = self.input_size or (256, 512)
        blank = np.zeros((batch, *size, 3), np.uint8)
        for _ in range(self._options.warmup):
            self._run_batch(blank)

    def check_frame(self, rgb: np.ndarray) -> None:
        """Raise InputError if `infer_batch` would refuse this frame (not an RGB uint8 array, or a size this graph
        cannot take): a caller batching several sources checks each alone, so one bad frame fails only its own."""
        check_rgb(rgb)  # without the contiguous copy infer_batch makes: this runs on every frame of the node
        self._graph_size_for(rgb.shape[:2])

    def infer_batch(self, frames: Sequence[np.ndarray]) -> list[SegmentationResult]:
        """Segment each (H, W, 3) uint8 RGB frame; result i has frame i's size. One runtime call per graph size."""
        if self._closed:
            raise RuntimeError(f"{self.name} backend for {self._card.name} was closed")
        if not 1 <= len(frames) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} frames, got {len(frames)}")
        sizes, ready = [], []
        for rgb in frames:
            rgb = validate_rgb(rgb)
            sizes.append(rgb.shape[:2])
            ready.append(self._to_graph_size(rgb))  # as Backend.infer resizes
        groups: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(ready):
            groups.setdefault(rgb.shape[:2], []).append(i)
        results: list[SegmentationResult | None] = [None] * len(frames)
        for members in groups.values():
            batch = ready[members[0]][None] if len(members) == 1 else np.stack([ready[i] for i in members])
            for i, result in zip(members, self._run_batch(batch)):
                results[i] = resize_result(result, sizes[i])
        return results  # type: ignore[return-value]

    def _run_batch(self, batch: np.ndarray) -> list[SegmentationResult]:
        run_options = ort.RunOptions()
        run_options.log_severity_level = 4  # as _run: failures raise, the caller logs them throttled
        with self._run_lock:
            self._runs_in_flight.add(run_options)  # cancel() stops this run too
        try:
            raw = self._session.run(self._output_names, {"image": batch}, run_options)
        finally:
            with self._run_lock:
                self._runs_in_flight.discard(run_options)
        out = dict(zip(self._output_names, raw))
        return [SegmentationResult(
            class_id=out["class_id"][i],
            anomaly_score=out["anomaly_score"][i].astype(np.float32, copy=False),
            confidence=out["confidence"][i],
            logits=out["logits"][i] if "logits" in out else None,
            ood_logit=out["ood_logit"][i] if "ood_logit" in out else None,
        ) for i in range(len(batch))]


def load_batch_backend(card: ModelCard, **options) -> OnnxRuntimeBatchBackend:
    """The batch backend with the onnxruntime backend's options (threads, warmup, providers, ...)."""
    return OnnxRuntimeBatchBackend(card, OnnxRuntimeOptions(**options))
