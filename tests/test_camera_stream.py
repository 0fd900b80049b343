"""The camera stand-in of the cross-process tests (densehybrid_ros.ros.camera_stream): what it puts on the wire is
what the node's own checks and converters accept, in the size and encoding asked for. (Across processes it is
exercised by tests/test_cross_process.py and `densehybrid doctor --dds-live`.)"""
import numpy as np
import pytest

from densehybrid_ros.ros.camera_stream import VARIANTS, camera_messages, main, synthetic_rgb
from densehybrid_ros.ros.conversions import check_compressed, check_image, compressed_to_rgb, image_to_rgb

H, W = 108, 192


def test_frames_differ_from_one_variant_to_the_next():
    frames = [synthetic_rgb(H, W, i) for i in range(VARIANTS)]
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_raw_frames_decode_to_the_picture_in_the_encoding_asked_for(encoding):
    messages = camera_messages(W, H, encoding, None)
    assert len(messages) == VARIANTS
    for i, msg in enumerate(messages):
        assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
        enc = check_image(msg, H * W)
        np.testing.assert_array_equal(image_to_rgb(msg, enc), synthetic_rgb(H, W, i))


def test_jpeg_frames_carry_image_transport_format_and_decode_close_to_the_picture():
    for i, msg in enumerate(camera_messages(W, H, "bgr8", "jpeg")):
        assert msg.format == "bgr8; jpeg compressed bgr8"
        kind, rgb_order = check_compressed(msg, H * W)
        assert (kind, rgb_order) == ("jpeg", False)
        rgb = compressed_to_rgb(msg, rgb_order)
        assert rgb.shape == (H, W, 3)
        assert np.abs(rgb.astype(int) - synthetic_rgb(H, W, i)).mean() < 4  # jpeg is lossy, the colours are right
        assert len(msg.data) < H * W * 3 / 5  # smooth like a camera image, so it compresses like one


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames must be at least 1"),
    (["--width", "-4"], "--width must be at least 1"),
    (["--rate", "0"], "--rate must be positive"),
])
def test_bad_publish_arguments_are_refused_before_ros_starts(args, message):
    with pytest.raises(SystemExit, match=message):
        main(["publish", "--topic", "/cam/image", *args])
