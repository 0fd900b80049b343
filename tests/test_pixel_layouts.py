"""Camera pixel layouts decoded by ros/conversions.py, checked against references that do not come from the
project's own tables: Bayer mosaics and packed YUV 4:2:2 frames are built byte by byte here from the layouts that
sensor_msgs/image_encodings defines, and the expected colours come from the pattern itself (Bayer) or from the
ITU-R BT.601 equations (YUV). A swapped entry in the decoder's table (RGGB for BGGR, UYVY for YUYV) fails here even
if the project's encoders were swapped the same way."""
import numpy as np
import pytest
from sensor_msgs.msg import Image

from densehybrid_ros.ros.conversions import image_to_rgb

H, W = 16, 24
R, G, B = 200, 120, 40


def message(encoding, pixels: np.ndarray) -> Image:
    """An Image built by hand (no project encoder): rows of bytes, step = bytes per row."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    msg = Image(height=pixels.shape[0], width=W, encoding=encoding, is_bigendian=0,
                step=pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1))
    msg.data = pixels.tobytes()
    return msg


# Which colour sits at (row % 2, column % 2) of the 2x2 cell; the encoding's name spells it row by row.
BAYER_CELLS = {"bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR", "bayer_gbrg8": "GBRG", "bayer_grbg8": "GRBG"}


@pytest.mark.parametrize("encoding", sorted(BAYER_CELLS))
def test_bayer_mosaics_of_a_flat_colour_decode_to_that_colour(encoding):
    value = {"R": R, "G": G, "B": B}
    mosaic = np.zeros((H, W), np.uint8)
    for i, colour in enumerate(BAYER_CELLS[encoding]):
        mosaic[i // 2::2, i % 2::2] = value[colour]
    rgb = np.asarray(image_to_rgb(message(encoding, mosaic)))
    assert rgb.shape == (H, W, 3)
    inner = rgb[2:-2, 2:-2].reshape(-1, 3).astype(int)   # demosaicing borders are extrapolated
    assert np.abs(inner - (R, G, B)).max() <= 1, (encoding, inner[0])


@pytest.mark.parametrize("encoding", sorted(BAYER_CELLS))
def test_a_single_red_site_lights_the_red_channel_where_the_pattern_puts_it(encoding):
    """A mosaic dark except its red sites: the decoded image is red, not blue (a RGGB/BGGR swap turns it blue)."""
    cells = BAYER_CELLS[encoding]
    mosaic = np.zeros((H, W), np.uint8)
    i = cells.index("R")
    mosaic[i // 2::2, i % 2::2] = 240
    inner = np.asarray(image_to_rgb(message(encoding, mosaic)))[2:-2, 2:-2].astype(int)
    assert inner[..., 0].mean() > 200 and inner[..., 2].mean() < 20, (encoding, inner[..., 0].mean(),
                                                                      inner[..., 2].mean())


def bt601(y, u, v):
    """ITU-R BT.601, studio range (Y 16..235, U/V centred on 128), as camera YUV 4:2:2 streams use it."""
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    rgb = (c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d)
    return np.clip(np.round(rgb), 0, 255)


# Two neighbouring pixels share one U and one V: different lumas show which byte is which.
Y0, Y1, U, V = 60, 180, 90, 200


@pytest.mark.parametrize("encoding, order", [
    ("yuv422", "UYVY"),        # sensor_msgs: yuv422 = U0 Y0 V0 Y1
    ("uyvy", "UYVY"),
    ("yuv422_yuy2", "YUYV"),   # sensor_msgs: yuv422_yuy2 = Y0 U0 Y1 V0
    ("yuyv", "YUYV"),
])
def test_packed_yuv422_decodes_by_its_byte_order(encoding, order):
    quad = {"UYVY": [U, Y0, V, Y1], "YUYV": [Y0, U, Y1, V]}[order]
    data = np.tile(np.array(quad, np.uint8), (H, W // 2)).reshape(H, W, 2)
    rgb = np.asarray(image_to_rgb(message(encoding, data))).astype(int)
    assert rgb.shape == (H, W, 3)
    assert np.abs(rgb[:, 0::2] - bt601(Y0, U, V)).max() <= 2, (rgb[0, 0], bt601(Y0, U, V))
    assert np.abs(rgb[:, 1::2] - bt601(Y1, U, V)).max() <= 2, (rgb[0, 1], bt601(Y1, U, V))
