"""sensor_msgs <-> numpy conversions: every supported encoding in both directions, step padding, byte order,
zero-copy views, header checks for malformed frames, compressed jpeg/png, and the cv_bridge path where it exists."""
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from densehybrid_ros.ros import conversions as cv
from densehybrid_ros.ros.conversions import (CV_BRIDGE_AVAILABLE, ENCODINGS, ImageConverter, MalformedImage,
                                             check_compressed, check_image, compressed_dimensions, compressed_to_rgb,
                                             image_to_rgb, numpy_to_image, rgb_to_compressed, rgb_to_encoding)
from ros_support import pad_rows

EXACT = [e for e, enc in ENCODINGS.items() if enc.kind in ("rgb", "bgr", "rgba", "bgra")]
ZERO_COPY = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]
CONVERTERS = [
    pytest.param(False, id="numpy"),
    pytest.param(True, id="cv_bridge", marks=pytest.mark.skipif(
        not CV_BRIDGE_AVAILABLE, reason="cv_bridge is not importable (PyPI ROS 2 wheels ship none); the numpy "
                                        "path is tested instead")),
]


def smooth_rgb(h=24, w=40, seed=0):
    """A smooth colour image: chroma-subsampled and demosaiced formats reproduce it closely."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = rng.uniform(40, 215, 3)
    img = base + 30 * np.stack([np.sin(x / 7), np.cos(y / 5), np.sin((x + y) / 9)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def header(frame_id="cam"):
    h = Header()
    h.frame_id = frame_id
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def message(rgb, encoding, big=False, padding=0, pad_value=255):
    # The row padding is filled with garbage that must never reach the output.
    return pad_rows(numpy_to_image(rgb_to_encoding(rgb, encoding), encoding, header(), is_bigendian=big), padding,
                    pad_value)


@pytest.mark.parametrize("prefer_cv_bridge", CONVERTERS)
@pytest.mark.parametrize("big", [False, True], ids=["little_endian", "big_endian"])
@pytest.mark.parametrize("padding", [0, 6])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_round_trips_to_rgb(encoding, padding, big, prefer_cv_bridge):
    rgb = smooth_rgb()
    msg = message(rgb, encoding, big=big, padding=padding)
    enc = check_image(msg, max_pixels=10**6)
    out = ImageConverter(prefer_cv_bridge).to_rgb(msg, enc)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    kind = ENCODINGS[encoding].kind
    diff = np.abs(out.astype(int) - rgb.astype(int))
    if kind in ("rgb", "bgr", "rgba", "bgra"):
        assert diff.max() == 0
    elif kind == "mono":
        grey = rgb_to_encoding(rgb, "mono8")
        assert all(np.array_equal(out[..., c], grey) for c in range(3))
    elif kind in ("uyvy", "yuyv"):
        assert diff.mean() < 3 and diff.max() < 20  # 4:2:2 chroma subsampling of a smooth image
    else:  # bayer: demosaicing a smooth image; borders are the hardest
        assert diff[2:-2, 2:-2].mean() < 6


def _cv_bridge_view(msg, enc):
    """The array cv_bridge's imgmsg_to_cv2 builds before any colour conversion (vision_opencv core.py): the
    buffer viewed as (height, step // bytes per pixel, channels), cut to the width."""
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    cols = msg.step // enc.bytes_per_pixel
    view = np.ndarray((msg.height, cols, enc.channels), np.uint8, buf[: msg.height * cols * enc.bytes_per_pixel])
    return view[:, : msg.width]


@pytest.mark.parametrize("padding", range(8))
@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "yuv422", "bayer_rggb8"])
def test_frames_cv_bridge_would_shear_go_through_the_numpy_path(encoding, padding):
    # Drivers pad rows to 4 or 64 bytes; when the padding is not whole pixels, cv_bridge reads each row shifted.
    msg = message(smooth_rgb(), encoding, padding=padding)
    enc = check_image(msg, max_pixels=10**6)
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * enc.bytes_per_pixel]
    read_right = np.array_equal(_cv_bridge_view(msg, enc).reshape(msg.height, -1), rows)
    assert cv.cv_bridge_reads_rows(msg, enc) == read_right
    assert not cv.cv_bridge_reads_rows(message(smooth_rgb(), "rgb16", padding=padding), ENCODINGS["rgb16"])


@pytest.mark.parametrize("encoding", ZERO_COPY)
def test_eight_bit_rgb_bgr_alpha_and_mono_are_views_of_the_message_buffer(encoding):
    msg = message(smooth_rgb(), encoding, padding=4)
    out = image_to_rgb(msg, check_image(msg, 10**6))
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_big_endian_sixteen_bit_frames_differ_in_bytes_but_not_in_pixels():
    samples = np.random.default_rng(2).integers(0, 65536, (6, 10, 3)).astype(np.uint16)
    little = numpy_to_image(samples, "rgb16", is_bigendian=False)
    big = numpy_to_image(samples, "rgb16", is_bigendian=True)
    assert bytes(little.data) != bytes(big.data)
    expected = (samples >> 8).astype(np.uint8)  # the node keeps the high byte
    assert np.array_equal(image_to_rgb(little), expected)
    assert np.array_equal(image_to_rgb(big), expected)
    big.is_bigendian = 0  # ignoring the flag reads the low byte as the high one
    assert not np.array_equal(image_to_rgb(big), expected)


def test_uyvy_and_yuyv_are_not_confused():
    """ROS 'yuv422' is UYVY and 'yuv422_yuy2' is YUYV: reading one as the other must give wrong colours."""
    rgb = smooth_rgb()
    msg = message(rgb, "yuv422")
    assert np.abs(image_to_rgb(msg).astype(int) - rgb).mean() < 3
    msg.encoding = "yuv422_yuy2"
    assert np.abs(image_to_rgb(msg).astype(int) - rgb).mean() > 20


@pytest.mark.parametrize("encoding,pattern", sorted(cv.BAYER_PATTERNS.items()))
def test_bayer_patterns_put_red_where_the_ros_name_says(encoding, pattern):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[...] = (250, 10, 10)
    mosaic = rgb_to_encoding(rgb, encoding)
    r_pos = pattern.index("R")
    assert mosaic[r_pos // 2, r_pos % 2] == 250  # the raw sample at the pattern's R position is the red one
    out = image_to_rgb(numpy_to_image(mosaic, encoding))
    assert np.abs(out[2:-2, 2:-2].astype(int) - rgb[2:-2, 2:-2]).max() <= 2


@pytest.mark.parametrize("encoding,dtype,shape", [("mono8", np.uint8, (5, 7)), ("rgb8", np.uint8, (5, 7, 3)),
                                                  ("32FC1", np.float32, (5, 7))])
def test_output_encodings_hold_the_array(encoding, dtype, shape):
    arr = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    if dtype == np.float32:
        arr = arr * -0.5
    msg = numpy_to_image(arr, encoding, header("out"))
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (5, 7, encoding, "out")
    assert msg.step == 7 * arr.itemsize * (3 if arr.ndim == 3 else 1)
    order = ">" if msg.is_bigendian else "<"
    back = np.frombuffer(msg.data, np.dtype(dtype).newbyteorder(order)).reshape(shape)
    assert np.array_equal(back, arr)


@pytest.mark.parametrize("encoding,arr", [("mono8", np.zeros((4, 4, 3), np.uint8)),
                                          ("rgb8", np.zeros((4, 4), np.uint8)),
                                          ("32FC1", np.zeros((4, 4), np.float64)),
                                          ("nv12", np.zeros((4, 4), np.uint8)),
                                          ("mono8", np.zeros((0, 4), np.uint8))])
def test_numpy_to_image_rejects_arrays_that_do_not_match_the_encoding(encoding, arr):
    with pytest.raises(ValueError, match=encoding if encoding != "mono8" or arr.ndim == 3 else "empty"):
        numpy_to_image(arr, encoding)


def good_msg():
    return message(smooth_rgb(), "rgb8")


@pytest.mark.parametrize("reason,mutate", [
    ("unknown_encoding", lambda m: setattr(m, "encoding", "nv12_with_typo")),
    ("zero_size", lambda m: setattr(m, "height", 0)),
    ("zero_size", lambda m: setattr(m, "width", 0)),
    ("oversize", lambda m: (setattr(m, "height", 4000), setattr(m, "width", 4000),
                            setattr(m, "step", 12000))),
    ("bad_step", lambda m: setattr(m, "step", m.width * 3 - 1)),
    ("truncated", lambda m: setattr(m, "data", bytes(m.data)[:-10])),
    ("truncated", lambda m: setattr(m, "data", b"")),
    ("bad_width", lambda m: (setattr(m, "encoding", "yuv422"), setattr(m, "width", 39),
                             setattr(m, "step", 78))),
])
def test_malformed_headers_are_rejected_with_a_reason(reason, mutate):
    msg = good_msg()
    mutate(msg)
    with pytest.raises(MalformedImage) as err:
        check_image(msg, max_pixels=1_000_000)
    assert err.value.reason == reason
    assert err.value.reason in cv.DROP_REASONS


def test_sixteen_bit_step_must_be_whole_samples():
    msg = message(smooth_rgb(), "mono16", padding=1)
    with pytest.raises(MalformedImage, match="multiple"):
        check_image(msg, 10**6)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_frames_decode_to_rgb_and_report_their_size_without_decoding(fmt):
    rgb = smooth_rgb(48, 64)
    msg = rgb_to_compressed(rgb, fmt, header())
    assert compressed_dimensions(bytes(msg.data)) == (48, 64)
    kind, rgb_order = check_compressed(msg, 10**6)
    out = compressed_to_rgb(msg, rgb_order)
    assert kind == fmt and out.shape == rgb.shape
    tol = 0 if fmt == "png" else 6
    assert np.abs(out.astype(int) - rgb).mean() <= tol


def test_image_transport_rgb8_payload_is_not_channel_swapped():
    rgb = smooth_rgb()
    import cv2
    ok, buf = cv2.imencode(".png", rgb)  # the payload holds RGB order: format says so
    msg = CompressedImage(format="rgb8; png compressed rgb8", data=buf.tobytes())
    _, rgb_order = check_compressed(msg, 10**6)
    assert rgb_order and np.array_equal(compressed_to_rgb(msg, rgb_order), rgb)


def test_compressed_oversize_is_refused_from_the_header_alone():
    msg = rgb_to_compressed(smooth_rgb(48, 64), "png")
    with pytest.raises(MalformedImage) as err:
        check_compressed(msg, max_pixels=48 * 64 - 1)
    assert err.value.reason == "oversize"


@pytest.mark.parametrize("case", ["truncated", "garbage_body", "not_an_image", "empty", "unknown_format"])
def test_corrupt_compressed_frames_are_malformed_not_exceptions(case):
    msg = rgb_to_compressed(smooth_rgb(48, 64), "jpeg")
    data = bytes(msg.data)
    if case == "truncated":
        msg.data = data[: len(data) // 2]
    elif case == "garbage_body":
        msg.data = data[:300] + bytes(len(data) - 300)
    elif case == "not_an_image":
        msg.data = bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8))
    elif case == "empty":
        msg.data = b""
    else:
        msg.format = "tiff"
    with pytest.raises(MalformedImage) as err:
        _, rgb_order = check_compressed(msg, 10**6)
        compressed_to_rgb(msg, rgb_order)
    assert err.value.reason in ("decode_error", "zero_size", "unknown_encoding")


@pytest.mark.parametrize("prefer_cv_bridge", CONVERTERS)
def test_converter_output_messages_carry_the_header(prefer_cv_bridge):
    conv = ImageConverter(prefer_cv_bridge)
    h = header("camera_left")
    msg = conv.to_msg(np.ones((6, 8), np.float32), "32FC1", h)
    assert isinstance(msg, Image) and msg.header.frame_id == "camera_left" and msg.header.stamp.nanosec == 345
    assert (msg.width, msg.height, msg.encoding) == (8, 6, "32FC1")
