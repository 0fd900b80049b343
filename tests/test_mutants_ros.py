"""Edges of ros/conversions.py and ros/alert_message.py that the mutation run (`make mutants`,
docs/DEVELOPING.md) found unguarded. Headers and messages are built by hand here, byte by byte."""
import struct

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from densehybrid_ros.ros.alert_message import (AlertReport, Region, level_number, parse_alert, report_from_state,
                                               to_message)
from densehybrid_ros.ros.conversions import (MalformedImage, check_compressed, check_image, compressed_dimensions,
                                             compressed_format, image_view)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def raw(encoding, h, w, step, nbytes):
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = bytes(nbytes)
    return msg


# -- raw image headers: every reason, and a detail that names the numbers ---------------------------------------------
@pytest.mark.parametrize("msg, reason, detail", [
    (raw("rgb9", 2, 2, 6, 12), "unknown_encoding", "'rgb9' is not one of rgb8, "),
    (raw("rgb8", 0, 4, 12, 0), "zero_size", "image is 4x0"),
    (raw("rgb8", 4, 0, 0, 0), "zero_size", "image is 0x4"),
    (raw("rgb8", 10, 11, 33, 330), "oversize", "image 11x10 = 110 pixels exceeds max_image_pixels=100"),
    (raw("yuv422_yuy2", 2, 3, 6, 12), "bad_width", "yuv422_yuy2 packs pixel pairs; width 3 is odd"),
    (raw("yuv422", 2, 3, 6, 12), "bad_width", "width 3 is odd"),
    (raw("bayer_rggb8", 3, 4, 4, 12), "bad_width", "bayer_rggb8 needs an even width and height, got 4x3"),
    (raw("bayer_rggb8", 4, 3, 3, 12), "bad_width", "got 3x4"),
    (raw("rgb8", 2, 4, 11, 24), "bad_step", "step 11 is smaller than width*bytes_per_pixel = 12 for 4 px of rgb8"),
    (raw("rgb16", 2, 2, 13, 26), "bad_step", "step 13 is not a multiple of the 2-byte sample of rgb16"),
    (raw("rgb8", 2, 4, 12, 23), "truncated", "data holds 23 bytes; 4x2 rgb8 with step 12 needs at least 24"),
])
def test_each_malformed_raw_header_names_its_reason_and_numbers(msg, reason, detail):
    with pytest.raises(MalformedImage) as info:
        check_image(msg, max_pixels=100)
    assert info.value.reason == reason
    assert detail in info.value.detail and str(info.value) == f"{reason}: {info.value.detail}"


def test_size_limits_are_inclusive_and_the_last_row_may_lack_its_padding():
    assert check_image(raw("rgb8", 10, 10, 30, 300), max_pixels=100).kind == "rgb"
    assert check_image(raw("rgb8", 2, 4, 16, 16 + 12), max_pixels=100).kind == "rgb"   # padded step 16
    assert check_image(raw("mono8", 2, 2, 2, 4), max_pixels=100).kind == "mono"       # odd steps fine for 8 bit
    assert check_image(raw("mono8", 3, 3, 3, 9), max_pixels=100).kind == "mono"


def test_image_view_reads_the_encoding_from_the_message_when_not_given():
    msg = raw("mono8", 2, 3, 4, 8)
    msg.data = bytes([1, 2, 3, 0, 4, 5, 6, 0])
    np.testing.assert_array_equal(image_view(msg), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("fmt, kind", [("jpg", "jpeg"), ("JPG", "jpeg"), ("bgr8; jpg compressed bgr8", "jpeg"),
                                       ("png", "png")])
def test_compressed_formats_are_recognised_whatever_their_spelling(fmt, kind):
    assert compressed_format(fmt)[0] == kind


def test_an_unknown_compressed_format_is_named():
    with pytest.raises(MalformedImage) as info:
        compressed_format("tiff")
    assert info.value.reason == "unknown_encoding" and "'tiff' is neither jpeg nor png" in info.value.detail


# -- compressed headers: size read without decoding (the decompression-bomb guard) ----------------------------------
def png_header(w, h):
    return PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", w, h)


def jpeg_header(h, w, before=b"", sof=0xC0, tail=b"\x08\x03\x01\x22\x00"):
    """SOI, then `before` (other segments), then a start-of-frame segment: length, precision, height, width."""
    return b"\xff\xd8" + before + bytes([0xFF, sof]) + struct.pack(">HBHH", 17, 8, h, w) + tail


@pytest.mark.parametrize("h, w", [(1, 1), (480, 640), (1080, 1920)])
def test_sizes_of_real_png_and_jpeg_files_are_read_from_their_headers(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, img)
        assert ok and compressed_dimensions(buf.tobytes()) == (h, w), ext


def test_a_bare_png_header_is_enough_and_half_a_header_is_not():
    assert len(png_header(640, 480)) == 24
    assert compressed_dimensions(png_header(640, 480)) == (480, 640)
    assert compressed_dimensions(png_header(640, 480)[:23]) is None
    # The signature and the IHDR chunk are both required.
    assert compressed_dimensions(b"\x00" * 8 + png_header(640, 480)[8:]) is None
    assert compressed_dimensions(PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDX" + bytes(8)) is None


def test_jpeg_segments_before_the_frame_header_are_skipped_by_their_length():
    long_comment = b"\xff\xfe" + struct.pack(">H", 2 + 300) + bytes(300)     # a length above 255
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    assert compressed_dimensions(jpeg_header(480, 640, app0 + long_comment)) == (480, 640)


def test_jpeg_fill_bytes_and_markers_without_a_length_are_stepped_over():
    no_length = b"".join(bytes([0xFF, m]) for m in (0xD0, 0xD3, 0xD7, 0x01, 0xD8))
    assert compressed_dimensions(jpeg_header(480, 640, b"\xff\xff\xff" + no_length)) == (480, 640)
    assert compressed_dimensions(jpeg_header(480, 640, no_length + b"\xff")) == (480, 640)


@pytest.mark.parametrize("sof", [0xC0, 0xC2, 0xCF])
def test_every_start_of_frame_kind_gives_the_size(sof):
    assert compressed_dimensions(jpeg_header(33, 44, sof=sof)) == (33, 44)


def test_a_jpeg_without_a_frame_header_gives_no_size_instead_of_reading_past_its_end():
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    assert compressed_dimensions(b"\xff\xd8" + app0) is None
    assert compressed_dimensions(b"\xff\xd8" + app0 + b"\x00" * 12) is None      # garbage where a marker should be
    assert compressed_dimensions(b"\xff\xd8\xff\xd9") is None


def compressed(data, fmt="jpeg"):
    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


@pytest.mark.parametrize("data, fmt, reason, detail", [
    (b"", "jpeg", "zero_size", "compressed image has no data"),
    (b"\x00", "jpeg", "decode_error", "no jpeg header found in 1 bytes"),
    (png_header(0, 480), "png", "zero_size", "header says 0x480"),
    (jpeg_header(480, 0), "jpeg", "zero_size", "header says 0x480"),
    (jpeg_header(0, 640), "jpeg", "zero_size", "header says 640x0"),
    (png_header(11, 10), "png", "oversize", "compressed image 11x10 = 110 pixels exceeds max_image_pixels=100"),
    # Sizes beyond a signed 32-bit (PNG) or 16-bit (JPEG) field must be refused, not wrap to negative numbers.
    (png_header(2**31 + 5, 4), "png", "oversize", f"{2**31 + 5}x4"),
    (jpeg_header(40000, 10), "jpeg", "oversize", "10x40000"),
])
def test_each_malformed_compressed_frame_names_its_reason_and_numbers(data, fmt, reason, detail):
    with pytest.raises(MalformedImage) as info:
        check_compressed(compressed(data, fmt), max_pixels=100)
    assert info.value.reason == reason and detail in info.value.detail


def test_a_compressed_frame_of_exactly_max_pixels_passes():
    assert check_compressed(compressed(png_header(10, 10), "png"), max_pixels=100) == ("png", False)
    assert check_compressed(compressed(jpeg_header(10, 10)), max_pixels=100) == ("jpeg", False)


# -- the alert message ------------------------------------------------------------------------------------------------
def report(state="alert"):
    return AlertReport(state=state, corridor_fraction=0.5, peak_score=2.0, threshold=1.0,
                       regions=[Region(1, 2, 3, 4, 5, 6.0), Region(7, 8, 9, 10, 11, 12.0)], image_width=64,
                       image_height=32)


def test_every_status_names_the_camera_frame_and_the_state():
    header = Header(frame_id="front_camera")
    msg = to_message(report("warning"), header)
    assert [st.hardware_id for st in msg.status] == ["front_camera"] * 3
    assert [st.message for st in msg.status] == ["warning"] * 3
    values = {kv.key: kv.value for kv in msg.status[0].values}
    assert values["num_regions"] == "2" and values["image_width"] == "64" and values["image_height"] == "32"


def test_unknown_states_are_named_with_the_known_ones():
    with pytest.raises(ValueError, match="'panic' is not one of clear, warning, alert"):
        to_message(report("panic"), Header())
    msg = to_message(report(), Header())
    for kv in msg.status[0].values:
        if kv.key == "state":
            kv.value = "panic"
    with pytest.raises(ValueError, match="'panic' is not one of clear, warning, alert"):
        parse_alert(msg)


def test_an_empty_or_foreign_message_is_refused_naming_what_it_holds():
    with pytest.raises(ValueError, match="first status is None"):
        parse_alert(DiagnosticArray())
    foreign = DiagnosticArray(status=[DiagnosticStatus(name="camera_driver"), DiagnosticStatus(name="other")])
    with pytest.raises(ValueError, match="first status is 'camera_driver'"):
        parse_alert(foreign)


def test_levels_read_as_numbers_from_bytes_and_from_ints():
    assert [level_number(b) for b in (b"\x00", b"\x01", b"\x02", bytearray(b"\x02"))] == [0, 1, 2, 2]
    assert level_number(2) == 2 and level_number(np.uint8(1)) == 1


def test_a_report_from_a_core_state_keeps_the_image_size():
    from densehybrid_ros.core.alert import AlertState
    back = report_from_state(AlertState(state="clear", tau=0.5), width=640, height=480)
    assert (back.image_width, back.image_height, back.threshold, back.regions) == (640, 480, 0.5, [])
