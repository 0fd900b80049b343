"""Colouring and the RViz overlay (core/overlay.py)."""
import cv2
import numpy as np
import pytest

from densehybrid_ros.core.alert import AlertConfig, AnomalyBox, AlertState, ObstacleAlertDetector
from densehybrid_ros.core.open_set import open_set_map
from densehybrid_ros.core.overlay import (CORRIDOR_COLOUR, STATE_COLOURS, colourise, overlay, palette_lut,
                                          score_to_colour, status_text)
from densehybrid_ros.data.taxonomy import SYNTHETIC

PALETTE = list(SYNTHETIC.colours) + [SYNTHETIC.anomaly_colour]
K = SYNTHETIC.anomaly_label
H, W = 64, 128


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cls = rng.integers(0, K, (H, W)).astype(np.uint8)
    score = np.zeros((H, W), np.float32)
    score[40:50, 60:80] = 5.0
    return rgb, cls, score, open_set_map(cls, score, 1.0, K)


def test_colourise_gives_each_label_its_palette_colour_exactly():
    labels = np.array([[0, 1, K], [13, 255, 20]], np.uint8)
    out = colourise(labels, PALETTE)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    expected = np.array([[PALETTE[0], PALETTE[1], PALETTE[K]], [PALETTE[13], (0, 0, 0), (0, 0, 0)]], np.uint8)
    np.testing.assert_array_equal(out, expected)  # void and labels past the palette are black


def test_colourise_matches_a_numpy_lookup_on_every_label(frame):
    _, cls, _, _ = frame
    np.testing.assert_array_equal(colourise(cls, PALETTE), np.asarray(PALETTE, np.uint8)[cls])


def test_colourise_accepts_an_array_palette_and_a_non_contiguous_label_view():
    cls = np.arange(256, dtype=np.uint8).reshape(16, 16)
    palette = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 7)], axis=1)
    np.testing.assert_array_equal(colourise(cls[:, ::2], palette), palette.astype(np.uint8)[cls[:, ::2]])


def test_bad_palettes_and_label_maps_are_refused():
    with pytest.raises(ValueError, match="RGB triples"):
        palette_lut([(1, 2)])
    with pytest.raises(ValueError, match=r"values in \[0, 255\]"):
        palette_lut([(1, 2, 300)])
    with pytest.raises(ValueError, match=r"\(H, W\) uint8 label map"):
        colourise(np.zeros((4, 4), np.int64), PALETTE)


def test_overlay_keeps_shape_and_dtype_and_leaves_inputs_untouched(frame):
    rgb, cls, score, open_set = frame
    copies = [a.copy() for a in (rgb, open_set, score)]
    state = AlertState(state="alert", level=2, boxes=[AnomalyBox(60, 40, 80, 50, 200, 5.0)])
    out = overlay(rgb, open_set, PALETTE, K, 0.5, score=score, tau=1.0, alert_state=state,
                  corridor_polygon=AlertConfig().corridor, text="ALERT")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, rgb)
    for a, c in zip((rgb, open_set, score), copies):
        np.testing.assert_array_equal(a, c)


def test_alpha_zero_returns_the_input_image(frame):
    rgb, _, score, open_set = frame
    out = overlay(rgb, open_set, PALETTE, K, 0.0, score=score, tau=1.0)
    np.testing.assert_array_equal(out, rgb)


def test_alpha_zero_with_drawings_changes_only_the_drawn_pixels(frame):
    rgb, _, _, open_set = frame
    out = overlay(rgb, open_set, PALETTE, K, 0.0, corridor_polygon=AlertConfig().corridor)
    changed = (out != rgb).any(axis=2)
    assert changed.any()
    # The corridor outline only: nothing changes above the default corridor (y >= 0.55) nor in its middle.
    assert not changed[:H // 2].any()
    assert not changed[48:56, 56:72].any()


def test_alpha_one_shows_class_colours_and_anomaly_colour(frame):
    rgb, _, _, open_set = frame
    out = overlay(rgb, open_set, PALETTE, K, 1.0)
    inlier = open_set != K
    np.testing.assert_array_equal(out[inlier], np.asarray(PALETTE, np.uint8)[open_set[inlier]])
    np.testing.assert_array_equal(out[open_set == K], np.tile(PALETTE[K], ((open_set == K).sum(), 1)))


def test_anomaly_pixels_are_highlighted_more_strongly_than_the_classes(frame):
    rgb, _, _, open_set = frame
    alpha = 0.3
    out = overlay(rgb, open_set, PALETTE, K, alpha).astype(np.float64)
    inside = np.zeros((H, W), bool)
    inside[42:48, 62:78] = True  # away from the outline
    expected = (1 - np.sqrt(alpha)) * rgb[inside] + np.sqrt(alpha) * np.asarray(PALETTE[K], np.float64)
    np.testing.assert_allclose(out[inside], expected, atol=1.0)
    # ... and the outline is drawn in the anomaly colour around the region.
    assert (out[39:51, 59:81][~inside[39:51, 59:81]] == PALETTE[K]).all(axis=1).any()


@pytest.mark.parametrize("size, thickness", [((64, 128), 1), ((512, 1024), 2), ((1024, 2048), 4)])
def test_anomaly_outline_straddles_every_boundary_holes_included(size, thickness):
    """The outline is the regions' boundary band: `thickness` px (half in, half out; 1 px: the inner pixel), in the
    anomaly colour, around the outer edge and around holes, and nothing else is painted in that colour."""
    h, w = size
    rgb = np.zeros((h, w, 3), np.uint8)
    labels = np.zeros((h, w), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cy, cx, r = h // 2, w // 2, h // 4
    cv2.rectangle(mask, (cx - 2 * r, cy - r), (cx + 2 * r, cy + r), 1, -1)
    cv2.rectangle(mask, (cx - r // 2, cy - r // 2), (cx + r // 2, cy + r // 2), 0, -1)  # a hole
    labels[mask > 0] = K
    out = overlay(rgb, labels, PALETTE, K, 1.0)  # alpha 1: region pixels are the anomaly colour too
    painted = (out == PALETTE[K]).all(axis=2)
    half = max(1, thickness // 2)
    if thickness == 1:
        band_out = np.zeros_like(mask)
    else:
        band_out = cv2.dilate(mask, np.ones((2 * half + 1, 2 * half + 1), np.uint8)) - mask
    np.testing.assert_array_equal(painted, (mask > 0) | (band_out > 0))
    # The outer band around the hole exists too (holes are outlined).
    if thickness > 1:
        assert painted[cy, cx - r // 2 - 1] and painted[cy, cx - r // 2] and not painted[cy, cx]


def test_anomalies_come_from_the_score_when_no_open_set_map_is_given(frame):
    rgb, _, score, _ = frame
    out = overlay(rgb, None, PALETTE, K, 1.0, score=score, tau=1.0)
    assert (out[45, 70] == PALETTE[K]).all()
    np.testing.assert_array_equal(out[:30], rgb[:30])  # no class colours without an open-set map


def test_alert_boxes_are_drawn_in_the_colour_of_the_state(frame):
    rgb, _, _, _ = frame
    rgb = np.zeros_like(rgb)
    for name in ("warning", "alert"):
        state = AlertState(state=name, boxes=[AnomalyBox(10, 20, 30, 40, 400, 3.0)])
        out = overlay(rgb, None, PALETTE, K, 0.0, alert_state=state)
        assert tuple(out[20, 15]) == STATE_COLOURS[name]      # top edge
        assert tuple(out[39, 15]) == STATE_COLOURS[name]      # bottom edge: y1 is exclusive
        assert tuple(out[30, 20]) == (0, 0, 0)                # inside stays


def test_corridor_is_drawn_along_the_polygon():
    rgb = np.zeros((100, 200, 3), np.uint8)
    out = overlay(rgb, None, PALETTE, K, 0.0, corridor_polygon=((0.25, 0.5), (0.75, 0.5), (0.75, 1.0), (0.25, 1.0)))
    row = out[75]
    lit = np.flatnonzero(row.any(axis=1))
    assert lit.min() in range(47, 52) and lit.max() in range(148, 153)
    assert out[75, 60:140].sum() == 0                      # outline only, not filled
    for segment in (out[75, 47:52], out[75, 148:153]):
        # Anti-aliased: the brightest pixel of the edge carries most of the corridor colour.
        brightest = segment[segment.astype(int).sum(axis=1).argmax()].astype(float)
        assert brightest.max() > 150 and np.allclose(brightest / brightest.max(), np.array(CORRIDOR_COLOUR) / 255)


def test_text_is_drawn_top_left_only():
    rgb = np.full((240, 480, 3), 200, np.uint8)
    out = overlay(rgb, None, PALETTE, K, 0.0, text="ALERT corridor 3.0%")
    changed = (out != rgb).any(axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.max() < 40 and xs.min() < 10 and xs.max() < 240


def test_overlay_refuses_bad_inputs(frame):
    rgb, _, _, open_set = frame
    with pytest.raises(ValueError, match=r"alpha=1.5 is outside its valid range \[0, 1\]"):
        overlay(rgb, open_set, PALETTE, K, 1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(rgb, open_set[:10], PALETTE, K, 0.5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        overlay(rgb[..., 0], open_set, PALETTE, K, 0.5)


def test_overlay_accepts_a_reversed_channel_view(frame):
    rgb, _, _, open_set = frame
    bgr_view = rgb[..., ::-1]
    out = overlay(bgr_view, open_set, PALETTE, K, 0.0)
    np.testing.assert_array_equal(out, bgr_view)


def test_status_text_reads_state_fraction_peak_and_latency():
    state = AlertState(state="alert", corridor_fraction=0.031, peak_score=4.2,
                       boxes=[AnomalyBox(0, 0, 1, 1, 1, 4.2), AnomalyBox(2, 2, 3, 3, 1, 3.0)])
    expected = "ALERT 2 boxes corridor 3.1% peak 4.20 tau 1.50 latency 42 ms"
    assert status_text(state, latency_s=0.0421, tau=1.5) == expected
    assert status_text(AlertState()) == "CLEAR corridor 0.0%"


def test_score_heat_map_is_monotone_and_clipped():
    score = np.linspace(-2, 6, 64, dtype=np.float32)[None].repeat(4, axis=0)
    score[0, 0] = np.nan
    out = score_to_colour(score, 0.0, 4.0)
    assert out.shape == (4, 64, 3) and out.dtype == np.uint8
    lum = out[1].astype(int).sum(axis=1)
    assert (np.diff(lum[(score[1] >= 0) & (score[1] <= 4)]) >= 0).all()   # inferno brightens with the score
    assert (out[1, score[1] < 0] == out[1, 0]).all() and (out[1, score[1] > 4] == out[1, -1]).all()
    assert (out[0, 0] == 0).all()
    with pytest.raises(ValueError, match="finite lo < hi"):
        score_to_colour(score, 1.0, 1.0)


def test_overlay_of_a_detector_state_on_a_full_size_frame():
    rng = np.random.default_rng(1)
    h, w = 512, 1024
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cls = np.zeros((h, w), np.uint8)
    score = np.zeros((h, w), np.float32)
    score[400:440, 500:540] = 3.0
    det = ObstacleAlertDetector(AlertConfig(tau=1.0, raise_frames=1, window_frames=1))
    state = det.update(score, cls)
    out = overlay(rgb, open_set_map(cls, score, 1.0, K), PALETTE, K, 0.5, alert_state=state,
                  corridor_polygon=det.config.corridor, text=status_text(state, 0.03, 1.0))
    assert state.state == "alert"
    assert tuple(out[400, 520]) == STATE_COLOURS["alert"]  # the box's top edge over the blob
    assert cv2.countNonZero((out != rgb).any(axis=2).astype(np.uint8)) > 0.4 * h * w


def test_per_frame_cost_at_512x1024_stays_within_a_few_milliseconds_of_cpu():
    # CPU time of this process (not wall time) with OpenCV on one thread: robust to other jobs on the machine.
    import time
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rng = np.random.default_rng(2)
        h, w = 512, 1024
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cls = rng.integers(0, K, (h, w)).astype(np.uint8)
        score = cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 3) * 3.0  # ~2% above tau
        score[400:450, 480:560] = 4.0
        det = ObstacleAlertDetector(AlertConfig(tau=1.0, corridor_mode="polygon_and_road"))

        def frame():
            state = det.update(score, cls)
            return overlay(rgb, open_set_map(cls, score, 1.0, K), PALETTE, K, 0.5, alert_state=state,
                           corridor_polygon=det.config.corridor, text=status_text(state, 0.03, 1.0))

        frame()
        best = min(_cpu_ms(frame, time) for _ in range(5))
        print(f"update + open_set_map + overlay at 512x1024: {best:.2f} ms CPU")
        assert best < 20.0
    finally:
        cv2.setNumThreads(threads)


def _cpu_ms(f, time, n=10):
    t0 = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - t0) / n * 1e3
