"""Synthetic splits written by ``data/splits.py`` (docs/DEVELOPING.md, "Splits on disk"; StreetHazards-like):

    <root>/<split>/images/<condition>/<frame>.png        RGB
    <root>/<split>/annotations/<condition>/<frame>.png   labels 0..K-1, anomaly K, void 255
    <root>/<split>/depth/<condition>/<frame>.png         uint16 centimetres (0 = unknown)
    <root>/<split>/index.json                            taxonomy, seed, frames with condition and metadata

Frames come from ``index.json`` when it lists them (entries with a frame name and a condition), else from the
image tree. The taxonomy (and so K) comes from ``index.json`` when it has one, else ``taxonomy.SYNTHETIC``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from densehybrid_ros.data.adapters import (
    DatasetFormatError, EvalSample, SplitBase, anomaly_from_semantic, check_same_size, read_label, read_rgb,
)
from densehybrid_ros.data.taxonomy import SYNTHETIC, Taxonomy

CENTIMETRES_PER_METRE = 100.0


def _taxonomy_from_index(index: dict) -> Taxonomy:
    tax = index.get("taxonomy")
    if isinstance(tax, dict) and tax.get("names"):
        names = tuple(tax["names"])
        colours = tuple(tuple(c) for c in tax.get("colours", ())) or SYNTHETIC.colours[: len(names)]
        if len(colours) != len(names):
            colours = tuple((0, 0, 0) for _ in names)
        return Taxonomy(names=names, colours=colours)
    if isinstance(tax, (list, tuple)) and tax:
        return Taxonomy(names=tuple(tax), colours=tuple((0, 0, 0) for _ in tax))
    return SYNTHETIC


def _frame_entries(index: dict) -> list[tuple[str, str]]:
    """(condition, frame stem) pairs listed in index.json, in order; empty if the index does not list frames."""
    frames = index.get("frames")
    out = []
    if isinstance(frames, list):
        for entry in frames:
            if not isinstance(entry, dict):
                return []
            name = entry.get("name", entry.get("frame", entry.get("id")))
            condition = entry.get("condition")
            if name is None or condition is None:
                return []
            out.append((str(condition), Path(str(name)).stem))
    return out


class SyntheticSplit(SplitBase):
    """A synthetic split directory; ``condition`` filters to one condition (or several)."""

    format = "synthetic"

    def __init__(self, root: str | Path, split: str | None = None, condition: str | Iterable[str] | None = None):
        root = Path(root)
        if split is not None:
            root = root / split
        elif not (root / "index.json").is_file():
            splits = sorted(p.name for p in root.glob("*") if (p / "index.json").is_file())
            if len(splits) != 1:
                raise DatasetFormatError(f"{root} is not a synthetic split directory (no index.json); pass split= "
                                         f"(splits found: {splits})")
            root = root / splits[0]
        super().__init__(root)
        index_path = self.root / "index.json"
        self.index = json.loads(index_path.read_text()) if index_path.is_file() else {}
        self.taxonomy = _taxonomy_from_index(self.index)
        wanted = None if condition is None else {condition} if isinstance(condition, str) else set(condition)
        entries = _frame_entries(self.index)
        if not entries:
            entries = [(p.parent.name, p.stem) for p in sorted((self.root / "images").glob("*/*.png"))]
        for cond, stem in entries:
            if wanted is not None and cond not in wanted:
                continue
            image = self.root / "images" / cond / f"{stem}.png"
            if not image.is_file():
                raise DatasetFormatError(f"synthetic split {self.root}: index lists {cond}/{stem} but {image} is "
                                         f"missing")
            self._frames.append((cond, stem))
        self._require_frames(f"synthetic frames{'' if wanted is None else f' for conditions {sorted(wanted)}'}")

    @property
    def conditions(self) -> list[str]:
        return sorted({c for c, _ in self._frames})

    def _load(self, frame) -> EvalSample:
        cond, stem = frame
        image = read_rgb(self.root / "images" / cond / f"{stem}.png")
        ann_path = self.root / "annotations" / cond / f"{stem}.png"
        semantic = read_label(ann_path)
        check_same_size(image, semantic, ann_path)
        depth = None
        depth_path = self.root / "depth" / cond / f"{stem}.png"
        if depth_path.is_file():
            raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
                raise DatasetFormatError(f"depth {depth_path} must be a single-channel uint16 PNG (centimetres)")
            check_same_size(image, raw, depth_path)
            depth = raw.astype(np.float32) / CENTIMETRES_PER_METRE
        anomaly = anomaly_from_semantic(semantic, self.taxonomy.anomaly_label)
        return EvalSample(f"{cond}/{stem}", image, semantic, anomaly, depth, cond)
