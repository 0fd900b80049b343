"""sensor_msgs <-> numpy, both directions, without cv_bridge when it is missing (the PyPI ROS 2 has none).

Camera frames arrive as `sensor_msgs/Image` (raw) or `sensor_msgs/CompressedImage` (jpeg/png). The node needs an
(H, W, 3) uint8 RGB array; outputs go back as mono8 / rgb8 / 32FC1 images.

Two steps, kept apart on purpose:
- `check_image` / `check_compressed` look only at the header fields (O(1)) and raise `MalformedImage` with a short
  machine-readable reason (the diagnostics counter key) and a sentence for the log. The node runs them in the
  subscription callback so that a malformed frame never evicts a good frame waiting for the worker.
- `image_to_rgb` / `compressed_to_rgb` do the pixel work. For rgb8, bgr8, rgba8, bgra8 and mono8 the result is a
  numpy *view* of the message buffer (row `step` padding becomes a stride, BGR becomes a negative channel stride,
  mono becomes a zero channel stride), so no pixel is copied before the backend makes its one contiguous copy.
  YUV 4:2:2, Bayer and 16-bit encodings need arithmetic and are converted with OpenCV.

When cv_bridge imports (ROS 2 distro installs) `ImageConverter(prefer_cv_bridge=True)` hands raw frames to it,
falling back to the numpy path for the encodings it does not know; the header checks run first either way.
"""
from __future__ import annotations

import struct
import sys
from array import array as ByteArray
from dataclasses import dataclass
import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

try:  # a ROS 2 distro install; absent with the PyPI wheels
    import cv_bridge as _cv_bridge
except ImportError:  # pragma: no cover - depends on the installation
    _cv_bridge = None

CV_BRIDGE_AVAILABLE = _cv_bridge is not None
HOST_IS_BIGENDIAN = sys.byteorder == "big"


class MalformedImage(ValueError):
    """A message that cannot be turned into an image. `reason` is the diagnostics counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Reasons a frame is dropped before inference (diagnostics counter keys).
DROP_REASONS = ("unknown_encoding", "zero_size", "oversize", "bad_step", "truncated", "bad_width",
                "decode_error")


def _opencv_code(*names: str) -> int:
    """The first OpenCV colour code that exists: OpenCV 4.8+ names Bayer codes by the sensor pattern
    (BayerRGGB), older releases by the second row (BayerBG == RGGB); both spellings are the same code."""
    for name in names:
        if hasattr(cv2, name):
            return getattr(cv2, name)
    raise AttributeError(f"OpenCV has none of {names}")


@dataclass(frozen=True)
class Encoding:
    """How one ROS encoding lays out a pixel in memory."""

    channels: int           # samples per pixel in the buffer (2 for packed YUV 4:2:2: one chroma + one luma)
    bytes_per_sample: int   # 1 or 2
    kind: str               # "rgb" | "bgr" | "rgba" | "bgra" | "mono" | "uyvy" | "yuyv" | "bayer"
    bayer_code: int | None = None

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.bytes_per_sample


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(3, 1, "rgb"),
    "bgr8": Encoding(3, 1, "bgr"),
    "rgba8": Encoding(4, 1, "rgba"),
    "bgra8": Encoding(4, 1, "bgra"),
    "mono8": Encoding(1, 1, "mono"),
    "8UC1": Encoding(1, 1, "mono"),
    "8UC3": Encoding(3, 1, "bgr"),  # OpenCV's default channel order
    "rgb16": Encoding(3, 2, "rgb"),
    "bgr16": Encoding(3, 2, "bgr"),
    "rgba16": Encoding(4, 2, "rgba"),
    "bgra16": Encoding(4, 2, "bgra"),
    "mono16": Encoding(1, 2, "mono"),
    # sensor_msgs/image_encodings: "yuv422" is UYVY (U0 Y0 V0 Y1); "yuv422_yuy2" is YUYV (Y0 U0 Y1 V0).
    # Jazzy+ adds the unambiguous aliases "uyvy" and "yuyv".
    "yuv422": Encoding(2, 1, "uyvy"),
    "uyvy": Encoding(2, 1, "uyvy"),
    "yuv422_yuy2": Encoding(2, 1, "yuyv"),
    "yuyv": Encoding(2, 1, "yuyv"),
    "bayer_rggb8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB")),
    "bayer_bggr8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB")),
    "bayer_gbrg8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerGBRG2RGB", "COLOR_BayerGR2RGB")),
    "bayer_grbg8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerGRBG2RGB", "COLOR_BayerGB2RGB")),
}

# Which pixel of each 2x2 Bayer cell carries R, G, G, B (row, column), used to build test mosaics.
BAYER_PATTERNS = {
    "bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR", "bayer_gbrg8": "GBRG", "bayer_grbg8": "GRBG",
}

# Output encodings the node publishes (and `numpy_to_image` accepts), with the array they expect.
OUTPUT_ENCODINGS = {"mono8": (np.uint8, 2), "rgb8": (np.uint8, 3), "32FC1": (np.float32, 2)}


def supported_encodings() -> tuple[str, ...]:
    return tuple(ENCODINGS)


# -- header checks (cheap, run on the executor thread) -------------------------------------------------------------
def check_image(msg: Image, max_pixels: int) -> Encoding:
    """Validate the header of a raw image against its buffer; return its layout or raise MalformedImage."""
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise MalformedImage("unknown_encoding", f"encoding {msg.encoding!r} is not one of "
                                                 f"{', '.join(ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise MalformedImage("zero_size", f"image is {w}x{h}")
    if h * w > max_pixels:
        raise MalformedImage("oversize", f"image {w}x{h} = {w * h} pixels exceeds max_image_pixels={max_pixels}")
    if enc.kind in ("uyvy", "yuyv") and w % 2:
        raise MalformedImage("bad_width", f"{msg.encoding} packs pixel pairs; width {w} is odd")
    if enc.kind == "bayer" and (w % 2 or h % 2):
        raise MalformedImage("bad_width", f"{msg.encoding} needs an even width and height, got {w}x{h}")
    row_bytes = w * enc.bytes_per_pixel
    if step < row_bytes:
        raise MalformedImage("bad_step", f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} "
                                         f"for {w} px of {msg.encoding}")
    if enc.bytes_per_sample > 1 and step % enc.bytes_per_sample:
        raise MalformedImage("bad_step", f"step {step} is not a multiple of the {enc.bytes_per_sample}-byte "
                                         f"sample of {msg.encoding}")
    need = step * (h - 1) + row_bytes  # the last row's padding may be absent
    if len(msg.data) < need:
        raise MalformedImage("truncated", f"data holds {len(msg.data)} bytes; {w}x{h} {msg.encoding} with "
                                          f"step {step} needs at least {need}")
    return enc


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...), not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_dimensions(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) from a PNG IHDR or JPEG SOF header without decoding, or None if not found.

    Checking the size before decoding keeps a decompression bomb from allocating gigabytes.
    """
    data = memoryview(data)
    if len(data) >= 24 and bytes(data[:8]) == _PNG_SIGNATURE and bytes(data[12:16]) == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if len(data) >= 4 and data[0] == 0xFF and data[1] == 0xD8:
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            seg_len = (data[i + 2] << 8) | data[i + 3]
            if marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return h, w
            i += 2 + seg_len
    return None


def compressed_format(fmt: str) -> tuple[str, bool]:
    """('jpeg' | 'png', rgb_order) from a CompressedImage.format such as "jpeg", "png" or
    "rgb8; jpeg compressed bgr8" (image_transport). rgb_order is True only for "... compressed rgb8"."""
    f = fmt.lower()
    if "png" in f:
        kind = "png"
    elif "jpeg" in f or "jpg" in f:
        kind = "jpeg"
    else:
        raise MalformedImage("unknown_encoding", f"compressed format {fmt!r} is neither jpeg nor png")
    rgb_order = "compressed rgb" in f
    return kind, rgb_order


def check_compressed(msg: CompressedImage, max_pixels: int) -> tuple[str, bool]:
    kind, rgb_order = compressed_format(msg.format)
    if len(msg.data) == 0:
        raise MalformedImage("zero_size", "compressed image has no data")
    dims = compressed_dimensions(memoryview(msg.data).cast("B"))
    if dims is None:
        raise MalformedImage("decode_error", f"no {kind} header found in {len(msg.data)} bytes")
    h, w = dims
    if h == 0 or w == 0:
        raise MalformedImage("zero_size", f"compressed image header says {w}x{h}")
    if h * w > max_pixels:
        raise MalformedImage("oversize", f"compressed image {w}x{h} = {w * h} pixels exceeds "
                                         f"max_image_pixels={max_pixels}")
    return kind, rgb_order


# -- pixels (run on the worker thread) -----------------------------------------------------------------------------
def image_view(msg: Image, enc: Encoding | None = None) -> np.ndarray:
    """The message buffer as an (H, W, C) or (H, W) array without copying; `step` padding becomes the row stride
    and `is_bigendian` picks the byte order of 16-bit samples."""
    if enc is None:
        enc = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if enc.bytes_per_sample == 1:
        dtype = np.dtype(np.uint8)
    else:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    item = dtype.itemsize
    if enc.channels == 1:
        return np.ndarray((h, w), dtype=dtype, buffer=buf, strides=(step, item))
    return np.ndarray((h, w, enc.channels), dtype=dtype, buffer=buf,
                      strides=(step, enc.channels * item, item))


def image_to_rgb(msg: Image, enc: Encoding | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB, a zero-copy view for the 8-bit RGB/BGR/RGBA/BGRA/mono encodings.

    The returned view may be non-contiguous and read-only; consumers that need contiguous memory copy once.
    """
    if enc is None:
        enc = check_image(msg, max_pixels=int(msg.height) * int(msg.width))
    view = image_view(msg, enc)
    if enc.bytes_per_sample == 2:
        # 16-bit cameras: keep the high byte (the node's networks are trained on 8-bit images).
        view = (view >> 8).astype(np.uint8)
    kind = enc.kind
    if kind == "rgb":
        return view
    if kind == "bgr":
        return view[..., ::-1]
    if kind == "rgba":
        return view[..., :3]
    if kind == "bgra":
        return view[..., 2::-1]
    if kind == "mono":
        return np.broadcast_to(view[..., None], view.shape + (3,))
    if kind == "uyvy":
        return cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_YUV2RGB_UYVY)
    if kind == "yuyv":
        return cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_YUV2RGB_YUYV)
    if kind == "bayer":
        return cv2.cvtColor(np.ascontiguousarray(view), enc.bayer_code)
    raise AssertionError(kind)  # ENCODINGS and this function list the same kinds


def camera_info_problem(msg: CameraInfo) -> str:
    """Why a camera_info must not be stored and re-published ("" when it may): a zero size, or non-finite
    intrinsics (K, D, R, P), which would reach every consumer of ~/camera_info (RViz, image_proc-style nodes)."""
    if msg.width == 0 or msg.height == 0:
        return f"size {msg.width}x{msg.height} is zero"
    for name in ("k", "d", "r", "p"):
        values = np.asarray(getattr(msg, name), dtype=np.float64)
        if not np.isfinite(values).all():
            return f"{name.upper()} holds non-finite values {values.tolist()}"
    return ""


def quiet_decoder_logging() -> None:
    """OpenCV logs a warning for each damaged image it is given, straight to stderr, past the node's throttled log
    (the node reports each drop itself, as decode_error). Errors stay visible. libpng's and libjpeg's own lines
    are written by those libraries and cannot be lowered from here."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def compressed_to_rgb(msg: CompressedImage, rgb_order: bool = False) -> np.ndarray:
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None or decoded.ndim != 3 or decoded.shape[2] != 3:
        raise MalformedImage("decode_error", f"cv2.imdecode could not decode {len(msg.data)} bytes "
                                             f"of {msg.format!r}")
    # imdecode returns BGR; image_transport compresses colour frames as bgr8 unless it says rgb8.
    return decoded if rgb_order else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


# -- numpy -> messages ----------------------------------------------------------------------------------------------
def numpy_to_image(array: np.ndarray, encoding: str, header=None, is_bigendian: bool | None = None) -> Image:
    """An Image holding `array` in `encoding`. `array` is the pixel buffer layout of that encoding: (H, W) for
    mono/bayer/32FC1, (H, W, C) otherwise, (H, W, 2) for packed YUV."""
    array = np.asarray(array)
    if encoding in OUTPUT_ENCODINGS:
        dtype, ndim = OUTPUT_ENCODINGS[encoding]
        channels = 1 if ndim == 2 else 3
    elif encoding in ENCODINGS:
        enc = ENCODINGS[encoding]
        dtype, channels = (np.uint8 if enc.bytes_per_sample == 1 else np.uint16), enc.channels
        ndim = 2 if channels == 1 else 3
    else:
        raise ValueError(f"encoding {encoding!r} is not one of {', '.join([*OUTPUT_ENCODINGS, *ENCODINGS])}")
    if array.dtype != dtype or array.ndim != ndim or (ndim == 3 and array.shape[2] != channels):
        want = "(H, W)" if ndim == 2 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs a {want} {np.dtype(dtype).name} array, got {array.shape} {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"cannot publish an empty {array.shape} image")
    big = HOST_IS_BIGENDIAN if is_bigendian is None else bool(is_bigendian)
    if array.dtype.itemsize > 1:
        array = array.astype(array.dtype.newbyteorder(">" if big else "<"), copy=False)
    rows = np.ascontiguousarray(array).reshape(array.shape[0], -1).view(np.uint8)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(big)
    msg.step = int(rows.shape[1])
    # The message keeps its pixels in an array('B'): filled straight from the numpy buffer that is one copy
    # (`msg.data = rows.tobytes()` makes two: to bytes, then bytes to array).
    data = ByteArray("B")
    data.frombytes(memoryview(rows).cast("B"))
    msg.data = data
    return msg


def rgb_to_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Pack an (H, W, 3) uint8 RGB array into the buffer layout of `encoding` (the inverse of image_to_rgb, exact
    for the RGB/BGR/alpha encodings; mono, YUV and Bayer lose what those formats cannot hold)."""
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ValueError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    kind = enc.kind
    if kind == "rgb":
        out = rgb
    elif kind == "bgr":
        out = rgb[..., ::-1]
    elif kind in ("rgba", "bgra"):
        colour = rgb if kind == "rgba" else rgb[..., ::-1]
        out = np.concatenate([colour, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif kind == "mono":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif kind == "uyvy":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
    elif kind == "yuyv":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUYV)
    elif kind == "bayer":
        out = np.empty(rgb.shape[:2], np.uint8)
        pattern = BAYER_PATTERNS[encoding]
        channel = {"R": 0, "G": 1, "B": 2}
        for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
    else:  # pragma: no cover
        raise AssertionError(kind)
    out = np.ascontiguousarray(out)
    if enc.bytes_per_sample == 2:
        out = out.astype(np.uint16) * 257  # 0..255 -> 0..65535
    return out


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header=None, quality: int = 95) -> CompressedImage:
    """Encode RGB as image_transport does ("bgr8; jpeg compressed bgr8" style): OpenCV encodes BGR."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for a {rgb.shape} image")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = buf.tobytes()
    return msg


def cv_bridge_reads_rows(msg: Image, enc: Encoding) -> bool:
    """Whether cv_bridge's imgmsg_to_cv2 reads this frame's rows where they are. It views the buffer as
    (height, step // bytes per pixel, channels): when the row padding is not a whole number of pixels (rgb8 rows
    padded to a multiple of 4 or 64 bytes, as some drivers do), every row after the first is read shifted, and the
    frame comes out sheared with its channels rotated, without an error. Such frames, and 16-bit ones, go through
    the numpy path, which reads each row at its step."""
    return enc.bytes_per_sample == 1 and msg.step % enc.bytes_per_pixel == 0


# -- the converter the node holds ----------------------------------------------------------------------------------
class ImageConverter:
    """Raw/compressed messages to RGB arrays and arrays to output messages, through cv_bridge when it is importable
    and preferred, through the numpy functions above otherwise (and for encodings cv_bridge rejects)."""

    def __init__(self, prefer_cv_bridge: bool = True):
        self.uses_cv_bridge = bool(prefer_cv_bridge and CV_BRIDGE_AVAILABLE)
        self._bridge = _cv_bridge.CvBridge() if self.uses_cv_bridge else None

    @property
    def name(self) -> str:
        return "cv_bridge" if self.uses_cv_bridge else "numpy"

    def to_rgb(self, msg: Image, enc: Encoding) -> np.ndarray:
        if self._bridge is not None and cv_bridge_reads_rows(msg, enc):
            try:
                return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            except Exception:  # noqa: BLE001 - cv_bridge raises its own CvBridgeError for encodings it lacks
                pass
        return image_to_rgb(msg, enc)

    def compressed_to_rgb(self, msg: CompressedImage, rgb_order: bool) -> np.ndarray:
        # cv_bridge's compressed path also calls cv2.imdecode; one implementation keeps the error handling in one place.
        return compressed_to_rgb(msg, rgb_order)

    def to_msg(self, array: np.ndarray, encoding: str, header) -> Image:
        if self._bridge is not None:
            msg = self._bridge.cv2_to_imgmsg(np.ascontiguousarray(array), encoding=encoding)
            msg.header = header
            return msg
        return numpy_to_image(array, encoding, header)

