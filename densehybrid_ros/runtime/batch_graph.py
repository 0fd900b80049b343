"""A copy of an exported graph with a batch axis: what one node serving several cameras runs (runtime/batch.py).

The exporter writes graphs with a fixed batch of 1 (input `image` (1,H,W,3)). The network itself never uses the
batch size: the exporter computes every resize target from the tensor's own shape and every pad amount from
constants that hold no batch, so only the declared shapes of the graph's inputs and outputs say "1". This module
renames that dimension to the symbol `batch` and checks the claim instead of trusting it: the copy is written only
when ONNX Runtime gives, for a batch of different frames, what the original graph gives for each frame alone
(class ids equal, scores within float tolerance: the batched convolutions accumulate in another order).

Weights, outputs, card, calibrated tau and metrics are the original's (the same function per frame); the card
records the graph it was made from (`training.batch_graph`). The original graph stays what the single-camera node
runs. Needs the `onnx` package (a training/tools dependency; the node on a vehicle loads the written file with
onnxruntime alone).

    densehybrid batch-graph --model models/densehybrid_lite0_synthetic.onnx
    # -> models/densehybrid_lite0_synthetic_batch.onnx + .card.yaml
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densehybrid_ros.config.model_card import ModelCard, card_path_for, load_model_card, sha256_of
from densehybrid_ros.config.validation import ConfigError

BATCH_AXIS = "batch"
BATCH_SUFFIX = "_batch"
# Float outputs of the batched graph against the original per frame: the same operators with another blocking.
SCORE_TOLERANCE = 1e-3
CHECK_FRAMES = 2
CHECK_SIZE = (256, 512)  # (H, W) of the check frames for a dynamic-size graph


@dataclass
class BatchGraphResult:
    model: Path
    card: ModelCard
    class_id_mismatch: float        # fraction of pixels, over the check frames
    score_max_abs_error: float       # largest |batched - alone| over the float outputs


def default_out_path(model: Path) -> Path:
    return model.with_name(model.stem + BATCH_SUFFIX + ".onnx")


def batch_dim(shape: list[Any]) -> int | str | None:
    """The first dimension of an input/output shape as onnxruntime reports it: an int when fixed, else a symbol."""
    return shape[0] if shape else None


def with_batch_axis(proto: Any) -> Any:
    """The ModelProto with the first dimension of every graph input and output renamed to the symbol `batch`
    (a copy; the intermediate shape annotations are dropped, ONNX Runtime infers them again)."""
    out = copy.deepcopy(proto)
    for value in list(out.graph.input) + list(out.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise ConfigError(f"graph {value.name!r} has no declared shape: cannot add a batch axis")
        dims[0].ClearField("dim_value")
        dims[0].dim_param = BATCH_AXIS
    # Annotations of intermediate tensors would still say batch 1 and contradict the inputs.
    del out.graph.value_info[:]
    out.doc_string = (out.doc_string + " " if out.doc_string else "") + f"[batch axis '{BATCH_AXIS}']"
    return out


def check_frames(height: int, width: int, count: int = CHECK_FRAMES, seed: int = 0) -> np.ndarray:
    """`count` different smooth random frames (count, H, W, 3) uint8: photo-like, so the class map has regions."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        small = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3)).astype(np.uint8)
        frames.append(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))
    return np.stack(frames)


def compare_batch_with_single(original: bytes, batched: bytes, frames: np.ndarray,
                              threads: int = 1) -> tuple[float, float]:
    """(class_id mismatch fraction, max abs error of the float outputs): the batched graph on all `frames` at once
    against the original graph on each frame alone."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    alone = ort.InferenceSession(original, so, providers=["CPUExecutionProvider"])
    together = ort.InferenceSession(batched, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in alone.get_outputs()]
    batch_out = dict(zip(names, together.run(names, {"image": frames})))
    mismatch, pixels, worst = 0, 0, 0.0
    for i in range(len(frames)):
        single = dict(zip(names, alone.run(names, {"image": frames[i:i + 1]})))
        for name in names:
            a, b = single[name][0], batch_out[name][i]
            if a.shape != b.shape:
                raise ConfigError(f"output {name!r}: shape {b.shape} in the batch, {a.shape} alone")
            if name == "class_id":
                mismatch += int((a != b).sum())
                pixels += a.size
            else:
                worst = max(worst, float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))
    return mismatch / max(pixels, 1), worst


def write_batch_graph(model: str | Path, out: str | Path | None = None, force: bool = False,
                      threads: int = 1) -> BatchGraphResult:
    """Write `out` (default `<model>_batch.onnx`) and its card; refused (nothing written) when the batched graph
    does not give each frame's own outputs. Raises ConfigError naming the file."""
    import onnx

    model = Path(model)
    card = load_model_card(model)  # the source must be intact: its sha256 is recorded in the copy's card
    out = default_out_path(model) if out is None else Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out must end in .onnx, got {out}")
    if out.resolve() == model.resolve():
        raise ConfigError(f"--out {out} is the model itself; choose another file")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it")
    try:
        proto = onnx.load(str(model))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for broken files
        raise ConfigError(f"model file {model} is not a readable ONNX graph: {e}") from e
    inputs = [i for i in proto.graph.input if i.name == "image"]
    if len(inputs) != 1:
        raise ConfigError(f"model file {model}: expected one input 'image', found "
                          f"{[i.name for i in proto.graph.input]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if dims and dims[0].dim_param:
        raise ConfigError(f"model file {model} already has a batch axis ({dims[0].dim_param!r}); use it as it is")
    batched = with_batch_axis(proto)
    onnx.checker.check_model(batched)
    original_bytes, batched_bytes = proto.SerializeToString(), batched.SerializeToString()
    h, w = (card.input_height, card.input_width) if card.input_height is not None else CHECK_SIZE
    mismatch, error = compare_batch_with_single(original_bytes, batched_bytes, check_frames(h, w), threads)
    if mismatch > 0 or not error <= SCORE_TOLERANCE:
        raise ConfigError(f"model file {model}: with a batch axis the graph does not give each frame its own "
                          f"outputs (class_id differs on {mismatch:.2%} of pixels, float outputs by up to "
                          f"{error:.3g}); it holds the batch size somewhere inside and cannot be batched")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(batched_bytes)
    os.replace(tmp, out)
    new = copy.deepcopy(card)
    new.name = f"{card.name}{BATCH_SUFFIX}"
    new.model_file = out.name
    new.sha256 = sha256_of(out)
    new.training = {**card.training, "batch_graph": {
        "source": card.model_file, "source_sha256": card.sha256, "axis": BATCH_AXIS,
        "check": {"frames": CHECK_FRAMES, "size": [h, w], "class_id_mismatch": mismatch,
                  "score_max_abs_error": error}}}
    new.card_path = None
    new.save(card_path_for(out))
    return BatchGraphResult(out, load_model_card(out), mismatch, error)
