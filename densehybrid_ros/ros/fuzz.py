"""Seeded adversarial camera messages for the detector node, each labelled with what the node must report for it.

`MessageFuzzer(seed, transport, max_pixels).cases(n)` yields `FuzzCase`s: sensor_msgs Image (raw transport) or
CompressedImage (compressed transport) frames and CameraInfo messages. Every malformed frame carries exactly one
defect on top of an otherwise valid frame, so the drop reason it must be counted under is known from how it was
built (conversions.DROP_REASONS). Where a defect makes a second field invalid as a consequence (100000x100000
claimed with 10 bytes is oversize *and* short), the header's size claim is what the node must refuse it for: the
size is checked before the buffer, and a compressed frame's size is read from its PNG IHDR / JPEG SOF before any
decoding. Whether a damaged JPEG/PNG body still decodes is decided by OpenCV's own decoder here (the node uses the
same call), never by the node's code.

Expected outcomes:
- a drop reason (`truncated`, `oversize`, `decode_error`, ...): counted in /diagnostics `drops.<reason>`;
- `ok`: a valid frame (any supported encoding, odd sizes down to 1x1, exactly at the pixel limit, row padding,
  trailing bytes, stamps at 0 / far in the future / negative, empty or very long or non-ASCII frame_ids): served
  (one ~/obstacle_alert with its stamp) or superseded by a newer frame (`drops.superseded`);
- `camera_info` / `camera_info_rejected`: not a frame (never in the drops); one with a zero size or a non-finite
  value in K, D, R or P must be refused and counted in /diagnostics `camera_info_rejected`, any other kept.

No torch; numpy, OpenCV and the message types only.
"""
from __future__ import annotations

import os
import string
import struct
import sys
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from densehybrid_ros.ros.conversions import ENCODINGS

OK = "ok"
NOT_A_FRAME = "camera_info"                     # a camera_info the node must keep (not a frame: never in drops)
CAMERA_INFO_REJECTED = "camera_info_rejected"   # one it must refuse: zero size or non-finite K, D, R or P
UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1
# Encodings that pack pixel pairs (even width) or 2x2 cells (even width and height).
PAIRED = tuple(e for e, v in ENCODINGS.items() if v.kind in ("uyvy", "yuyv"))
BAYER = tuple(e for e, v in ENCODINGS.items() if v.kind == "bayer")
NORMAL_FRAME_ID = "camera_optical"
# Compressed frames whose header is intact but whose coded body is damaged: only the decoder can tell.
WORKER_STAGE_LABELS = ("body_truncated", "body_corrupted", "claims_more_than_data")


@dataclass(frozen=True)
class FuzzCase:
    topic: str      # "image" | "image/compressed" | "camera_info"
    label: str      # what was done to the message, e.g. "step_below_row" (the summary groups by it)
    expected: str   # OK, NOT_A_FRAME or the drop reason
    msg: Any
    stamp_ns: int   # the header stamp (unique and positive for frames with a normal stamp)
    normal_stamp: bool
    # "header": refused by the O(1) header check in the subscription callback (counted exactly); "worker": passes
    # it and enters the one-slot mailbox, so it is served, superseded by a newer frame before the worker takes it,
    # or (a damaged JPEG/PNG body) dropped as decode_error by the worker.
    stage: str = "header"


def _patch_png_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG whose IHDR claims width x height (CRC fixed, so only the size is a lie)."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + png[33:]


def _jpeg_sof_offset(jpg: bytes) -> int:
    """Offset of the baseline/progressive SOF marker of a JPEG that OpenCV wrote (FFC0 or FFC2), found by walking
    the segments: the bytes FF C0 can also occur inside a quantisation table."""
    i = 2
    while i + 4 <= len(jpg):
        marker = jpg[i + 1]
        if marker in (0xC0, 0xC2):
            return i
        i += 2 + ((jpg[i + 2] << 8) | jpg[i + 3])
    raise ValueError("no SOF0/SOF2 marker in the JPEG")


def _patch_jpeg_size(jpg: bytes, width: int, height: int) -> bytes:
    i = _jpeg_sof_offset(jpg)
    return jpg[:i + 5] + struct.pack(">HH", height, width) + jpg[i + 9:]


def _size_end(data: bytes) -> int:
    """Offset just past the size fields (PNG IHDR width/height, JPEG SOF height/width): a file cut before it has
    no readable size."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_sof_offset(data) + 9
    return 24


def _body_start(data: bytes) -> int:
    """Where the coded pixels start (after the JPEG SOS header / the PNG IHDR chunk): damage after this offset
    cannot change the size the header claims."""
    if data[:2] == b"\xff\xd8":
        i = data.find(b"\xff\xda")
        return i + 2 + ((data[i + 2] << 8) | data[i + 3])
    return 33


def _floats(*values: float) -> list[float]:
    return [float(v) for v in values]


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """libjpeg prints "Corrupt JPEG data" warnings straight to file descriptor 2; keep this tool's output readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def decodes(data: bytes) -> bool:
    """Whether OpenCV's decoder (the one the node uses) turns these bytes into a colour image."""
    if not data:
        return False
    with _quiet_stderr():
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img is not None and img.ndim == 3 and img.shape[2] == 3


def _info_must_be_rejected(label: str, info: CameraInfo) -> bool:
    """From how the camera_info was built: zero sizes and NaN/inf intrinsics must be refused (docs/NODE.md)."""
    if label in ("nan_intrinsics", "inf_huge_intrinsics", "nan_rectification"):
        return True
    if label == "absurd_size":
        return info.width == 0 or info.height == 0
    if label == "odd_distortion":
        return len(info.d) > 0  # every coefficient is NaN
    return False


class MessageFuzzer:
    """Seeded generator of adversarial camera messages for one detector input transport."""

    def __init__(self, seed: int = 0, transport: str = "raw", max_pixels: int = 256 * 512,
                 valid_fraction: float = 0.25, camera_info_fraction: float = 0.05,
                 negative_stamps: bool = True, one_pixel_frames: bool = True, first_stamp_s: int = 1_000) -> None:
        if transport not in ("raw", "compressed"):
            raise ValueError(f"transport must be 'raw' or 'compressed', got {transport!r}")
        self.rng = np.random.default_rng(seed)
        self.transport = transport
        self.max_pixels = int(max_pixels)
        self.valid_fraction = valid_fraction
        self.camera_info_fraction = camera_info_fraction
        self.negative_stamps = negative_stamps
        self.one_pixel_frames = one_pixel_frames
        self._stamp_ns = first_stamp_s * 1_000_000_000
        self._bombs: list[bytes] | None = None

    # -- headers ------------------------------------------------------------------------------------------------------
    def _header(self) -> tuple[Header, int, bool]:
        rng = self.rng
        h = Header()
        r = rng.random()
        if r < 0.85:
            ids = [NORMAL_FRAME_ID] * 6 + ["", "f" * int(rng.integers(256, 20_000)), "камера/кадр_😀",
                                             "a\nb\tc\\x00", "/" * 300]
            h.frame_id = ids[int(rng.integers(len(ids)))]
        else:
            h.frame_id = NORMAL_FRAME_ID
        kinds = ["normal"] * 17 + ["zero", "future", "max_nanosec"] + (["negative"] if self.negative_stamps else [])
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "normal":
            self._stamp_ns += 1_000_000
            sec, nsec = divmod(self._stamp_ns, 1_000_000_000)
        elif kind == "zero":
            sec, nsec = 0, 0
        elif kind == "future":
            sec, nsec = INT32_MAX, 999_999_999
        elif kind == "max_nanosec":
            sec, nsec = 1, UINT32_MAX
        else:
            sec, nsec = -int(rng.integers(1, 2**31)), int(rng.integers(0, 1_000_000_000))
        h.stamp.sec, h.stamp.nanosec = int(sec), int(nsec)
        return h, sec * 1_000_000_000 + nsec, kind == "normal"

    # -- raw images ---------------------------------------------------------------------------------------------------
    def _size(self, encoding: str, limit: int | None = None) -> tuple[int, int]:
        """A valid (height, width) for `encoding` with at most `limit` pixels: mostly small, sometimes degenerate."""
        rng = self.rng
        limit = self.max_pixels if limit is None else limit
        r = rng.random()
        if r < 0.1:
            h, w = 1, int(rng.integers(1, 64))
        elif r < 0.2:
            h, w = int(rng.integers(1, 64)), 1
        else:
            h, w = int(rng.integers(1, 97)), int(rng.integers(1, 161))
        if encoding in PAIRED or encoding in BAYER:
            w += w % 2
        if encoding in BAYER:
            h += h % 2
        if h * w == 1 and not self.one_pixel_frames:
            w = 2
        while h * w > limit:
            h = max(2, h // 2)
        return h, w

    def _raw(self, encoding: str, h: int, w: int, pad: int = 0, extra: int = 0) -> Image:
        enc = ENCODINGS[encoding]
        row = w * enc.bytes_per_pixel
        step = row + pad
        msg = Image()
        msg.height, msg.width, msg.encoding, msg.step = h, w, encoding, step
        msg.is_bigendian = int(self.rng.integers(0, 2))
        msg.data = self.rng.integers(0, 256, step * h + extra, dtype=np.uint8).tobytes()
        return msg

    def _valid_image(self) -> tuple[str, Image]:
        rng = self.rng
        encoding = list(ENCODINGS)[int(rng.integers(len(ENCODINGS)))]
        bps = ENCODINGS[encoding].bytes_per_sample
        r = rng.random()
        if r < 0.06:
            # Exactly at the pixel limit, as one wide row or a near-square frame.
            h = 1 if rng.random() < 0.3 else 2 ** int(np.log2(max(1, int(np.sqrt(self.max_pixels / 2)))))
            w = self.max_pixels // h
            if encoding in PAIRED or encoding in BAYER:
                w -= w % 2
            if encoding in BAYER:
                h += h % 2
                while h * w > self.max_pixels:
                    w -= 2
            return "at_pixel_limit", self._raw(encoding, h, w)
        h, w = self._size(encoding)
        if r < 0.3:
            return "row_padding", self._raw(encoding, h, w, pad=bps * int(rng.integers(1, 33)))
        if r < 0.45:
            return "trailing_bytes", self._raw(encoding, h, w, extra=int(rng.integers(1, 4097)))
        if r < 0.55:
            msg = self._raw(encoding, h, w)
            msg.is_bigendian = int(rng.integers(2, 256))  # any non-zero byte means big-endian
            return "odd_is_bigendian", msg
        if r < 0.6:
            # Last row without its padding: the smallest buffer the header allows.
            msg = self._raw(encoding, h, w, pad=bps * 4)
            msg.data = msg.data[:len(msg.data) - bps * 4]
            return "last_row_unpadded", msg
        return "valid", self._raw(encoding, h, w)

    def _bad_image(self) -> tuple[str, str, Image]:
        rng = self.rng
        encoding = list(ENCODINGS)[int(rng.integers(len(ENCODINGS)))]
        enc = ENCODINGS[encoding]
        defect = ["unknown_encoding", "zero_size", "oversize", "bad_width", "bad_step", "truncated"][
            int(rng.integers(6))]
        if defect == "unknown_encoding":
            h, w = self._size(encoding)
            msg = self._raw(encoding, h, w)
            choices = [encoding.upper(), encoding.capitalize(), encoding.swapcase() + " ", "", "rgb9", "32FC1",
                       "16UC1", "jpeg", "\u0440gb8", "x" * 4096,
                       "".join(rng.choice(list(string.printable), int(rng.integers(1, 40))))]
            bad = choices[int(rng.integers(len(choices)))]
            if bad in ENCODINGS:
                bad = bad + "?"
            msg.encoding = bad
            label = "mixed_case_encoding" if bad.lower() == encoding.lower() else "unknown_encoding"
            return label, "unknown_encoding", msg
        if defect == "zero_size":
            msg = Image()
            msg.encoding = encoding
            choice = int(rng.integers(3))
            msg.height = 0 if choice != 1 else int(rng.integers(1, 100))
            msg.width = 0 if choice != 0 else int(rng.integers(1, 100))
            msg.step = int(rng.integers(0, 1000))
            msg.data = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
            return "zero_size", "zero_size", msg
        if defect == "oversize":
            msg = Image()
            msg.encoding = encoding
            r = rng.random()
            if r < 0.3:
                h, w, label = 100_000, 100_000, "claims_100000x100000"
            elif r < 0.6:
                h, w, label = UINT32_MAX, UINT32_MAX, "claims_uint32_max"
            elif r < 0.8:
                # One pixel over the limit (even sides kept even for the packed encodings).
                h, w, label = 1, self.max_pixels + 1, "limit_plus_one"
                if encoding in PAIRED or encoding in BAYER:
                    h, w = 2, self.max_pixels // 2 + 2
            else:
                h = int(rng.integers(1, 2**16))
                low = self.max_pixels // h + 1
                w = int(rng.integers(low, max(low + 1, 2**24)))
                label = "random_oversize"
            msg.height, msg.width = int(h), int(w)
            msg.step = min(UINT32_MAX, int(w) * enc.bytes_per_pixel)
            msg.data = rng.integers(0, 256, 10, dtype=np.uint8).tobytes()
            return label, "oversize", msg
        if defect == "bad_width":
            kind = PAIRED if rng.random() < 0.5 else BAYER
            encoding = kind[int(rng.integers(len(kind)))]
            h, w = self._size(encoding)
            if kind is PAIRED or rng.random() < 0.5:
                w = w + 1 if w * h + h <= self.max_pixels else w - 1
                if w % 2 == 0:
                    w -= 1
            else:
                h = h + 1 if h * w + w <= self.max_pixels else h - 1
                if h % 2 == 0:
                    h -= 1
            msg = Image()
            msg.height, msg.width, msg.encoding = h, w, encoding
            msg.step = w * ENCODINGS[encoding].bytes_per_pixel
            msg.data = rng.integers(0, 256, msg.step * h, dtype=np.uint8).tobytes()
            return "odd_width_or_height", "bad_width", msg
        if defect == "bad_step":
            h, w = self._size(encoding)
            row = w * enc.bytes_per_pixel
            msg = self._raw(encoding, h, w)
            if enc.bytes_per_sample > 1 and rng.random() < 0.4:
                msg.step = row + 1  # 16-bit samples cannot start at odd offsets
                msg.data = rng.integers(0, 256, msg.step * (h - 1) + row, dtype=np.uint8).tobytes()
                return "step_not_sample_multiple", "bad_step", msg
            msg.step = int(rng.integers(0, row))
            return "step_below_row", "bad_step", msg
        h, w = self._size(encoding)
        msg = self._raw(encoding, h, w)
        need = msg.step * h
        r = rng.random()
        if r < 0.2:
            msg.data = b""
            return "empty_data", "truncated", msg
        n = need - 1 if r < 0.5 else int(rng.integers(0, need))
        msg.data = msg.data[:n]
        return "data_short", "truncated", msg

    # -- compressed images --------------------------------------------------------------------------------------------
    def _picture(self, h: int, w: int) -> np.ndarray:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        y, x = np.mgrid[0:h, 0:w]
        return np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x ^ y) & 255], -1).astype(np.uint8)

    def _encode(self, kind: str, h: int, w: int) -> bytes:
        bgr = self._picture(h, w)
        if kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.rng.integers(5, 101)),
                                                 cv2.IMWRITE_JPEG_PROGRESSIVE, int(self.rng.random() < 0.2)])
        else:
            ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(self.rng.integers(0, 10))])
        assert ok
        return buf.tobytes()

    def _bomb_files(self) -> list[bytes]:
        """Real decompression bombs: constant images far over the limit that compress to a few kB."""
        if self._bombs is None:
            side = int(np.sqrt(self.max_pixels)) * 2 + 2
            zeros = np.zeros((side, side, 3), np.uint8)
            self._bombs = [cv2.imencode(".png", zeros, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes(),
                           cv2.imencode(".jpg", zeros, [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()]
        return self._bombs

    def _compressed(self, fmt: str, data: bytes) -> CompressedImage:
        msg = CompressedImage()
        msg.format = fmt
        msg.data = data
        return msg

    def _format_for(self, kind: str) -> str:
        names = {"jpeg": ["jpeg", "jpg", "JPEG", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed rgb8"],
                 "png": ["png", "PNG", "rgb8; png compressed bgr8", "mono8; png compressed mono8"]}[kind]
        return names[int(self.rng.integers(len(names)))]

    def _valid_compressed(self) -> tuple[str, CompressedImage]:
        rng = self.rng
        kind = "jpeg" if rng.random() < 0.6 else "png"
        r = rng.random()
        if r < 0.05:
            h = 2 ** int(np.log2(max(1, int(np.sqrt(self.max_pixels / 2)))))
            return "at_pixel_limit", self._compressed(self._format_for(kind),
                                                      self._encode(kind, h, self.max_pixels // h))
        h, w = int(rng.integers(1, 97)), int(rng.integers(1, 161))
        if h * w == 1 and not self.one_pixel_frames:
            w = 2
        data = self._encode(kind, h, w)
        if r < 0.15:
            other = "png" if kind == "jpeg" else "jpeg"
            return "format_says_other_kind", self._compressed(self._format_for(other), data)
        if r < 0.25:
            return "trailing_bytes", self._compressed(self._format_for(kind),
                                                      data + rng.integers(0, 256, int(rng.integers(1, 2048)),
                                                                          dtype=np.uint8).tobytes())
        return "valid", self._compressed(self._format_for(kind), data)

    def _bad_compressed(self) -> tuple[str, str, CompressedImage]:
        rng = self.rng
        kind = "jpeg" if rng.random() < 0.6 else "png"
        h, w = int(rng.integers(8, 97)), int(rng.integers(8, 161))
        data = self._encode(kind, h, w)
        fmt = self._format_for(kind)
        defect = int(rng.integers(9))
        if defect == 0:
            bad = ["", "tiff", "webp", "bmp", "rgb8", "raw", "x" * 2000, "jpe g", "pn g"][int(rng.integers(9))]
            return "unknown_format", "unknown_encoding", self._compressed(bad, data)
        if defect == 1:
            return "empty_data", "zero_size", self._compressed(fmt, b"")
        if defect == 2:
            zw, zh = (0, h) if rng.random() < 0.5 else (w, 0)
            patched = _patch_png_size(data, zw, zh) if kind == "png" else _patch_jpeg_size(data, zw, zh)
            return "header_claims_zero", "zero_size", self._compressed(fmt, patched)
        if defect == 3:
            # Small files whose header claims gigapixels: refused from the header, never decoded.
            if kind == "png":
                side = [50_000, 100_000, INT32_MAX][int(rng.integers(3))]
                patched = _patch_png_size(data, side, side)
            else:
                patched = _patch_jpeg_size(data, 65_535, 65_535)
            return "header_claims_gigapixels", "oversize", self._compressed(fmt, patched)
        if defect == 4:
            bomb = self._bomb_files()[0 if kind == "png" else 1]
            return "decompression_bomb", "oversize", self._compressed(fmt, bomb)
        if defect == 5:
            noise = bytearray(rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes())
            noise[0] = 0  # neither a JPEG SOI nor a PNG signature
            junk = [bytes(noise),
                    b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"\xff\xd8\xff\xe1\xff\xff" + bytes(20),
                    data[:int(rng.integers(1, _size_end(data)))],
                    cv2.imencode(".bmp", self._picture(h, w))[1].tobytes()]
            j = int(rng.integers(len(junk)))
            label = ["random_bytes", "png_signature_only", "jpeg_soi_only", "segment_length_past_end",
                     "header_cut", "bmp_labelled_" + kind][j]
            return label, "decode_error", self._compressed(fmt, junk[j])
        start = _body_start(data)
        if defect == 6:
            cut = int(rng.integers(start, len(data)))
            out = data[:cut]
            label = "body_truncated"
        elif defect == 7:
            arr = bytearray(data)
            for _ in range(int(rng.integers(1, 20))):
                i = int(rng.integers(start, len(arr)))
                arr[i] ^= int(rng.integers(1, 256))
            out = bytes(arr)
            label = "body_corrupted"
        else:
            # A few-hundred-byte file that claims more pixels than it holds (still under the limit).
            ch = int(rng.integers(h, max(h + 1, int(np.sqrt(self.max_pixels)))))
            cw = max(1, min(self.max_pixels // ch, int(rng.integers(w, 4 * w + 1))))
            out = _patch_png_size(data, cw, ch) if kind == "png" else _patch_jpeg_size(data, cw, ch)
            label = "claims_more_than_data"
        # Whether damaged coded data still decodes is the decoder's business (libjpeg fills missing blocks):
        # ask the same OpenCV call the node makes.
        return label, (OK if decodes(out) else "decode_error"), self._compressed(fmt, out)

    # -- camera_info --------------------------------------------------------------------------------------------------
    def _camera_info(self) -> tuple[str, CameraInfo]:
        rng = self.rng
        info = CameraInfo()
        info.width, info.height = 1024, 512
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = _floats(500, 0, 512, 0, 500, 256, 0, 0, 1)
        info.r = _floats(1, 0, 0, 0, 1, 0, 0, 0, 1)
        info.p = _floats(500, 0, 512, 0, 0, 500, 256, 0, 0, 0, 1, 0)
        r = int(rng.integers(7))
        if r == 0:
            return "valid", info
        if r == 1:
            info.k = [float("nan")] * 9
            info.p = [float("nan")] * 12
            return "nan_intrinsics", info
        if r == 2:
            info.k = _floats(float("inf"), 0, -float("inf"), 0, 1e308, -1e308, 0, 0, 1)
            return "inf_huge_intrinsics", info
        if r == 3:
            info.width, info.height = [(0, 0), (UINT32_MAX, UINT32_MAX), (1, UINT32_MAX)][int(rng.integers(3))]
            return "absurd_size", info
        if r == 4:
            info.d = [float("nan")] * int(rng.integers(0, 2000))
            info.distortion_model = "".join(rng.choice(list(string.printable), int(rng.integers(0, 500))))
            return "odd_distortion", info
        if r == 5:
            info.binning_x, info.binning_y = UINT32_MAX, 0
            info.roi.x_offset, info.roi.width = UINT32_MAX, UINT32_MAX
            return "absurd_binning_roi", info
        info.r = [float("nan")] * 9
        return "nan_rectification", info

    # -- the stream ---------------------------------------------------------------------------------------------------
    def case(self) -> FuzzCase:
        rng = self.rng
        header, stamp_ns, normal = self._header()
        r = rng.random()
        if r < self.camera_info_fraction:
            label, msg = self._camera_info()
            topic = "camera_info"
            expected = CAMERA_INFO_REJECTED if _info_must_be_rejected(label, msg) else NOT_A_FRAME
        elif r < self.camera_info_fraction + self.valid_fraction:
            label, msg = self._valid_image() if self.transport == "raw" else self._valid_compressed()
            topic, expected = self._frame_topic, OK
        else:
            label, expected, msg = self._bad_image() if self.transport == "raw" else self._bad_compressed()
            topic = self._frame_topic
        msg.header = header
        stage = "worker" if expected == OK or label in WORKER_STAGE_LABELS else "header"
        return FuzzCase(topic, label, expected, msg, stamp_ns, normal, stage)

    @property
    def _frame_topic(self) -> str:
        return "image" if self.transport == "raw" else "image/compressed"

    def valid_frame(self) -> FuzzCase:
        """A plain valid frame with a fresh normal stamp (liveness probes between batches)."""
        self._stamp_ns += 1_000_000
        header = Header(frame_id=NORMAL_FRAME_ID)
        header.stamp.sec, header.stamp.nanosec = divmod(self._stamp_ns, 1_000_000_000)
        if self.transport == "raw":
            msg = self._raw("rgb8", 48, 96)
        else:
            msg = self._compressed("jpeg", self._encode("jpeg", 48, 96))
        msg.header = header
        return FuzzCase(self._frame_topic, "liveness_probe", OK, msg, self._stamp_ns, True, "worker")

    def cases(self, n: int) -> Iterator[FuzzCase]:
        for _ in range(n):
            yield self.case()


# -- the run against a node process ------------------------------------------------------------------------------------
# Log lines of the node that must be throttled (one call site each, WARN_THROTTLE_S apart) and decoder chatter that
# OpenCV/libpng/libjpeg print on their own (one line per damaged file, outside the node's logger).
THROTTLED_LOGS = {"dropped_frame_warnings": r"dropped a frame", "frame_failed_errors": r"frame failed"}
DECODER_LOGS = r"libpng|Corrupt JPEG|Premature end|grfmt_|JPEG datastream|Invalid SOS|Bogus"


@dataclass
class FuzzReport:
    transport: str
    seed: int
    messages: int
    seconds: float
    sent_by_label: Counter          # (label, expected) -> count
    sent_frames: Counter            # expected outcome -> frames sent (liveness probes included under OK)
    sent_worker: Counter            # the same for frames that pass the header check (OK, late decode_error)
    drops: dict[str, int]           # /diagnostics drops.<reason> at the end
    served: int                     # ~/obstacle_alert messages received (one per served frame)
    image_outputs: int              # image output messages received
    probes_sent: int
    probes_served: int
    batches_unsettled: int          # batches whose accounting did not add up within the timeout
    rss_mb: list[float]
    threads: list[int]
    fds: list[int]
    log_counts: dict[str, int]
    log_lines: int
    throttle_budget: int            # most throttled lines allowed for the run's length
    alive: bool
    exit_code: int | None
    exit_seconds: float
    traceback: bool
    problems: list[str]
    error_lines: list[str] = field(default_factory=list)  # the node's first "frame failed" lines
    camera_info_rejected: int | None = None  # the node's count, where its diagnostics carry it

    @property
    def passed(self) -> bool:
        return not self.problems


def _params(model: str, transport: str, max_pixels: int, threshold: float) -> dict[str, Any]:
    # Reliable camera QoS with a deep queue: every message must reach the node so that the accounting can be exact
    # (a best-effort sensor queue of 1 would drop most of a burst inside DDS, uncounted by design).
    return dict(model=model, threshold_source="parameter", threshold=threshold, backend_threads=1, warmup_runs=1,
                diagnostics_period=0.2, qos_reliability="reliable", qos_depth=100, max_image_pixels=max_pixels,
                input_transport=transport, prefer_cv_bridge=False)


def run_fuzz(model: str, messages: int = 10_000, seed: int = 0, transport: str = "raw",
             max_pixels: int = 256 * 512, batch: int = 50, negative_stamps: bool = True,
             one_pixel_frames: bool = True, threshold: float = 0.0,
             namespace: str | None = None, settle_timeout: float = 30.0, nice: int = 0,
             progress: bool = False) -> FuzzReport:
    """Start the node in its own process, send `messages` fuzz messages (+ one liveness frame per batch) and check
    the node's account of them. The caller has applied the DDS environment (node_process.prepare_ros_environment)."""
    import math
    import time

    import rclpy

    from densehybrid_ros.ros.diagnostics import INFERENCE_ERROR, SUPERSEDED
    from densehybrid_ros.ros.node_process import Driver, NodeProcess, Spin, wait_until
    from densehybrid_ros.ros.testing import IMAGE_OUTPUTS

    namespace = namespace or f"/fuzz_{transport}_{os.getpid()}"
    fuzzer = MessageFuzzer(seed, transport, max_pixels, negative_stamps=negative_stamps,
                           one_pixel_frames=one_pixel_frames)
    frame_topic = "image" if transport == "raw" else "image/compressed"
    problems: list[str] = []
    sent_by_label: Counter = Counter()
    sent_frames: Counter = Counter()
    sent_worker: Counter = Counter()
    probes: list[int] = []
    unsettled = 0
    first_mismatch = ""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = NodeProcess(namespace, _params(str(model), transport, max_pixels, threshold), nice=nice).start()
    driver = Driver(namespace, "fuzz_driver", image_outputs=IMAGE_OUTPUTS, context=context)
    spin = Spin(driver.node, context=context)
    t_start = time.monotonic()
    bar = None
    try:
        node.wait_ready(lambda: driver.connected(frame_topic))
        first = fuzzer.valid_frame()
        driver.publish(frame_topic, first.msg)
        if not wait_until(lambda: driver.served(first.stamp_ns), 60.0):
            raise RuntimeError(f"the node did not serve a first valid frame:\n{node.output()[-4000:]}")
        sent_frames[OK] += 1
        sent_worker[OK] += 1
        node.sample(0)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=messages, unit="msg", desc=f"fuzz {transport}")

        def accounted() -> int:
            return driver.count("obstacle_alert") + sum(driver.drops().values())

        done = 0
        while done < messages and node.alive():
            n = min(batch, messages - done)
            # A batch fits the node's reader queue (qos_depth 100), and the next batch starts only once the node
            # has accounted for this one, so no message can be lost inside DDS and the counts must match exactly.
            batch_cases = list(fuzzer.cases(n))
            for case in batch_cases:
                driver.publish(case.topic, case.msg)
                sent_by_label[(case.label, case.expected)] += 1
                if case.topic != "camera_info":
                    sent_frames[case.expected] += 1
                    if case.stage == "worker":
                        sent_worker[case.expected] += 1
            probe = fuzzer.valid_frame()
            driver.publish(probe.topic, probe.msg)
            sent_frames[OK] += 1
            sent_worker[OK] += 1
            probes.append(probe.stamp_ns)
            total = sum(sent_frames.values())
            if not wait_until(lambda: accounted() >= total or not node.alive(), settle_timeout):
                unsettled += 1
            wait_until(lambda: driver.served(probe.stamp_ns) or not node.alive(), settle_timeout)
            if not first_mismatch:
                # Header-stage reasons are counted synchronously: a difference here points at the batch.
                now = driver.drops()
                for reason in sent_frames:
                    early = sent_frames[reason] - sent_worker.get(reason, 0)
                    if reason != OK and not sent_worker.get(reason) and now.get(reason, 0) != early:
                        first_mismatch = (f"first miscount after message {done + n}: drops.{reason} = "
                                          f"{now.get(reason, 0)}, sent {early}; batch labels "
                                          f"{sorted(Counter(c.label for c in batch_cases if c.expected == reason))}")
                        break
            done += n
            if node.alive():
                node.sample(done)
            if bar is not None:
                bar.update(n)
        # The last diagnostics window and the last outputs.
        total = sum(sent_frames.values())
        wait_until(lambda: accounted() >= total, 5.0)
        # The node counts a frame out after its last publish and reports the count on its diagnostics timer, so a
        # status taken while the last frame was in flight lags its alert by one (seen once in CI: 83 against 84).
        # Wait for two fresh statuses that agree with what was received; a real miscount stays and is reported.
        seen = driver.status_count

        def caught_up() -> bool:
            out = driver.status_values().get("frames_out_total")
            return driver.status_count >= seen + 2 and out is not None and int(out) == driver.count("obstacle_alert")
        wait_until(caught_up, 5.0)
    finally:
        if bar is not None:
            bar.close()
        seconds = time.monotonic() - t_start
        alive = node.alive()
        drops = driver.drops()
        node_totals = {k: int(v) for k, v in driver.status_values().items()
                       if k in ("frames_in_total", "frames_out_total", CAMERA_INFO_REJECTED)}
        served = driver.count("obstacle_alert")
        image_outputs = sum(driver.count(t) for t in IMAGE_OUTPUTS)
        probes_served = sum(1 for s in probes if driver.served(s))
        code, exit_s = node.stop()
        spin.stop()
        driver.destroy()
        rclpy.try_shutdown(context=context)

    lines = node.lines()
    log_counts = {k: node.count_lines(rx) for k, rx in THROTTLED_LOGS.items()}
    log_counts["decoder_messages"] = node.count_lines(DECODER_LOGS)
    # Throttled at WARN_THROTTLE_S per call site: at most one line per 5 s window of the run (+1 for the first).
    budget = int(math.ceil((node.samples[-1].t if node.samples else seconds) / 5.0)) + 2
    traceback = any("Traceback" in line for line in lines)

    if not alive:
        problems.append("the node process died during the run")
    if code != 0:
        problems.append(f"exit code {code} after SIGINT (want 0)")
    if traceback:
        problems.append("a Python traceback in the node's output")
    problems += account(sent_frames, sent_worker, drops, served)
    if first_mismatch:
        problems.append(first_mismatch)
    # The node's own totals, where its diagnostics carry them.
    if "frames_in_total" in node_totals and node_totals["frames_in_total"] != sum(sent_frames.values()):
        problems.append(f"node frames_in_total {node_totals['frames_in_total']}, sent {sum(sent_frames.values())}")
    infos_rejected = sum(n for (_, e), n in sent_by_label.items() if e == CAMERA_INFO_REJECTED)
    if CAMERA_INFO_REJECTED in node_totals and node_totals[CAMERA_INFO_REJECTED] != infos_rejected:
        problems.append(f"node {CAMERA_INFO_REJECTED} {node_totals[CAMERA_INFO_REJECTED]}, sent {infos_rejected} "
                        f"camera_info with a zero size or non-finite intrinsics")
    if "frames_out_total" in node_totals and node_totals["frames_out_total"] != served:
        problems.append(f"node frames_out_total {node_totals['frames_out_total']}, alerts received {served}")
    if probes_served != len(probes):
        problems.append(f"liveness frames served {probes_served}/{len(probes)}")
    for key, count in log_counts.items():
        if key in THROTTLED_LOGS and count > budget:
            problems.append(f"{key}: {count} lines in {seconds:.0f} s (throttle budget {budget})")
    rss = [s.rss_mb for s in node.samples]
    return FuzzReport(transport, seed, messages, seconds, sent_by_label, sent_frames, sent_worker, drops, served,
                      image_outputs,
                      len(probes), probes_served, unsettled, rss, [s.threads for s in node.samples],
                      [s.fds for s in node.samples], log_counts, len(lines), budget, alive, code, exit_s, traceback,
                      problems, [line for line in lines if "frame failed" in line][:5],
                      node_totals.get(CAMERA_INFO_REJECTED))


def account(sent: Counter, sent_worker: Counter, drops: dict[str, int], served: int) -> list[str]:
    """Compare what was sent with the node's account; returns the discrepancies (empty: the counts add up).

    sent: frames by expected outcome; sent_worker: the part of them that passes the header check (valid frames and
    damaged bodies). Header-stage drops must match exactly; a frame that passed the header check is served,
    superseded or (a damaged body) dropped by the worker as its reason; and frames in = served + all drops."""
    from densehybrid_ros.ros.diagnostics import INFERENCE_ERROR, SUPERSEDED

    problems = []
    for reason in sorted((set(sent) | set(drops)) - {OK, SUPERSEDED}):
        early = sent.get(reason, 0) - sent_worker.get(reason, 0)
        late = sent_worker.get(reason, 0)
        got = drops.get(reason, 0)
        if not early <= got <= early + late:
            want = f"{early}" if not late else f"{early}..{early + late} ({late} decided by the decoder)"
            hint = " (valid frames failed after their alert or in the backend)" if reason == INFERENCE_ERROR else ""
            problems.append(f"drops.{reason} = {got}, expected {want}{hint}")
    worker_drops = sum(drops.get(r, 0) - (sent.get(r, 0) - sent_worker.get(r, 0))
                       for r in drops if r not in (SUPERSEDED,))
    in_mailbox = sum(sent_worker.values())
    if served + drops.get(SUPERSEDED, 0) + worker_drops != in_mailbox:
        problems.append(f"frames past the header check: {in_mailbox} sent, {served} served + "
                        f"{drops.get(SUPERSEDED, 0)} superseded + {worker_drops} dropped by the worker")
    if served > sent.get(OK, 0):
        problems.append(f"{served} frames served but only {sent.get(OK, 0)} valid frames sent")
    total = sum(sent.values())
    if served + sum(drops.values()) != total:
        problems.append(f"frames in {total} != served {served} + drops {sum(drops.values())}")
    return problems


def rss_growth_mb(report: FuzzReport, warmup: int = 3) -> float:
    """Largest RSS after the first `warmup` samples minus the RSS at the end of warm-up."""
    rss = report.rss_mb
    if len(rss) <= warmup:
        return 0.0
    return max(rss[warmup:]) - rss[warmup - 1]


def summary_table(report: FuzzReport) -> str:
    """Markdown tables: what was sent by kind, and the node's account of it."""
    rows = ["| message kind | expected outcome | sent |", "|---|---|---:|"]
    for (label, expected), n in sorted(report.sent_by_label.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rows.append(f"| {label} | {expected} | {n} |")
    rows += ["", "| outcome | frames sent | node counted |", "|---|---:|---:|"]
    from densehybrid_ros.ros.diagnostics import SUPERSEDED
    for outcome in sorted(set(report.sent_frames) | set(report.drops)):
        if outcome == OK:
            rows.append(f"| valid: served + superseded | {report.sent_frames[OK]} | "
                        f"{report.served} + {report.drops.get(SUPERSEDED, 0)} |")
        elif outcome != SUPERSEDED:
            late = report.sent_worker.get(outcome, 0)
            note = f" (of which {late} past the header check: decoded, dropped or superseded)" if late else ""
            rows.append(f"| drops.{outcome} | {report.sent_frames.get(outcome, 0)}{note} | "
                        f"{report.drops.get(outcome, 0)} |")
    kept = sum(n for (_, e), n in report.sent_by_label.items() if e == NOT_A_FRAME)
    refused = sum(n for (_, e), n in report.sent_by_label.items() if e == CAMERA_INFO_REJECTED)
    rows.append(f"| camera_info kept / refused (not frames) | {kept} / {refused} | "
                f"refused: {report.camera_info_rejected if report.camera_info_rejected is not None else 'n/a'} |")
    rss = report.rss_mb
    rows += ["", "| measure | value |", "|---|---|",
             f"| messages / seconds | {report.messages} / {report.seconds:.0f} |",
             f"| liveness frames served | {report.probes_served}/{report.probes_sent} |",
             f"| image outputs received | {report.image_outputs} |",
             f"| batches whose count did not settle | {report.batches_unsettled} |",
             f"| node RSS MB: start / max / end | {rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} |" if rss else
             "| node RSS | n/a |",
             f"| node threads min-max / fds min-max | {min(report.threads)}-{max(report.threads)} / "
             f"{min(report.fds)}-{max(report.fds)} |" if rss else "| threads/fds | n/a |",
             f"| log lines: dropped-frame warnings / frame-failed errors (budget) | "
             f"{report.log_counts['dropped_frame_warnings']} / {report.log_counts['frame_failed_errors']} "
             f"({report.throttle_budget}) |",
             f"| decoder messages (OpenCV/libpng/libjpeg, not throttled) | {report.log_counts['decoder_messages']} |",
             f"| all node output lines | {report.log_lines} |",
             f"| SIGINT: exit code / seconds | {report.exit_code} / {report.exit_seconds:.2f} |"]
    return "\n".join(rows) + "\n"
