"""Obstacle alert (core/alert.py): corridor, components, minimum area, road mode, hysteresis, run-time changes."""
import numpy as np
import pytest

from densehybrid_ros.config.detector import DEFAULT_CORRIDOR as NODE_DEFAULT_CORRIDOR
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core.alert import (DEFAULT_CORRIDOR, LEVELS, AlertConfig, AnomalyBox, ObstacleAlertDetector,
                                        road_ids_from_names)
from densehybrid_ros.data.taxonomy import SYNTHETIC

ROAD, SIDEWALK, CAR = SYNTHETIC.index("road"), SYNTHETIC.index("sidewalk"), SYNTHETIC.index("car")
# A rectangle corridor over the lower middle of the image: easy to reason about in pixel terms.
BOX_CORRIDOR = ((0.25, 0.5), (0.75, 0.5), (0.75, 1.0), (0.25, 1.0))


def scene(h=100, w=200, blobs=(), base=0.0):
    """Score map with rectangular blobs given in normalised (x0, y0, x1, y1, value)."""
    s = np.full((h, w), base, np.float32)
    for x0, y0, x1, y1, v in blobs:
        s[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = v
    return s


CENTRE_BLOB = (0.45, 0.7, 0.55, 0.8, 5.0)   # 10% x 10% of the frame, inside BOX_CORRIDOR
OUTSIDE_BLOB = (0.0, 0.6, 0.2, 0.9, 9.0)    # left of the corridor


def detector(**kw):
    kw.setdefault("corridor", BOX_CORRIDOR)
    kw.setdefault("tau", 1.0)
    return ObstacleAlertDetector(AlertConfig(**kw))


def run(det, frames):
    return [det.update(f) for f in frames]


# -- hysteresis ------------------------------------------------------------------------------------------------------
def test_alert_is_raised_on_the_mth_hit_among_the_last_n_frames_and_warning_before():
    det = detector(raise_frames=3, window_frames=5, clear_frames=4)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    states = [s.state for s in run(det, [hit, clean, hit, clean, hit])]
    assert states == ["warning", "warning", "warning", "warning", "alert"]
    assert det.state.hits_in_window == 3 and det.state.level == LEVELS["alert"] == 2


def test_hits_older_than_the_window_do_not_count():
    det = detector(raise_frames=2, window_frames=3, clear_frames=3)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    states = [s.state for s in run(det, [hit, clean, clean, hit, clean, clean, hit])]
    assert "alert" not in states  # hits are always 3 frames apart: never 2 within a window of 3


def test_alert_clears_only_after_k_consecutive_clean_frames():
    det = detector(raise_frames=2, window_frames=3, clear_frames=3)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    run(det, [hit, hit])
    assert det.state.state == "alert"
    states = [s.state for s in run(det, [clean, clean, hit, clean, clean, clean])]
    assert states == ["alert", "alert", "alert", "alert", "alert", "clear"]
    assert det.state.clean_streak == 3 and det.state.hits_in_window == 0


def test_flicker_raises_once_and_does_not_toggle():
    det = detector(raise_frames=3, window_frames=5, clear_frames=3)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    states = [s.state for s in run(det, [hit, clean] * 10)]
    first = states.index("alert")
    assert first == 4
    assert all(s == "alert" for s in states[first:])


def test_after_clearing_a_new_alert_needs_m_fresh_hits():
    det = detector(raise_frames=2, window_frames=5, clear_frames=2)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    run(det, [hit, hit, clean, clean])
    assert det.state.state == "clear"
    assert det.update(hit).state == "warning"   # the two old hits are still within 5 frames but do not count
    assert det.update(hit).state == "alert"


def test_single_spurious_frame_gives_a_warning_that_expires_with_the_window():
    det = detector(raise_frames=3, window_frames=4, clear_frames=2)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    states = [s.state for s in run(det, [hit, clean, clean, clean, clean])]
    assert states == ["warning", "warning", "warning", "warning", "clear"]


def test_m_equals_one_raises_on_the_first_hit_and_counters_are_reported():
    det = detector(raise_frames=1, window_frames=1, clear_frames=1)
    st = det.update(scene(blobs=[CENTRE_BLOB]))
    assert st.state == "alert" and st.frame_hit and st.hit_streak == 1 and st.frame_index == 1
    st = det.update(scene())
    assert st.state == "clear" and not st.frame_hit and st.hit_streak == 0 and st.clean_streak == 1


def test_reset_forgets_the_evidence():
    det = detector(raise_frames=2, window_frames=3)
    hit = scene(blobs=[CENTRE_BLOB])
    run(det, [hit, hit])
    assert det.state.state == "alert"
    det.reset()
    assert det.state.state == "clear" and det.state.frame_index == 0
    assert det.update(hit).state == "warning"


# -- corridor, components, measurements ------------------------------------------------------------------------------
def test_a_component_outside_the_corridor_never_alerts():
    det = detector(raise_frames=1, window_frames=1)
    states = run(det, [scene(blobs=[OUTSIDE_BLOB])] * 5)
    assert all(s.state == "clear" and not s.boxes and s.corridor_fraction == 0.0 for s in states)
    assert states[-1].peak_score == 0.0  # the peak is taken inside the corridor only


def test_a_component_straddling_the_corridor_edge_counts_only_its_inside_part():
    det = detector(raise_frames=1, window_frames=1)
    # x from 0.15 to 0.35 at w=200: pixels 30..69, corridor starts at pixel 50.
    st = det.update(scene(blobs=[(0.15, 0.6, 0.35, 0.7, 4.0)]))
    assert st.boxes == [AnomalyBox(50, 60, 70, 70, 20 * 10, 4.0)]


def test_corridor_fraction_peak_and_boxes_on_a_hand_made_map():
    det = detector(min_area_fraction=0.0)
    s = scene()
    s[60:70, 90:110] = 2.0     # 10 x 20 = 200 px
    s[65, 100] = 7.5           # the peak sits inside the first component
    s[80:90, 60:65] = 1.5      # 10 x 5 = 50 px
    s[95, 150] = 1.0           # equal to tau: not anomalous (strictly greater, as open_set_map)
    s[20, 100] = 50.0          # above the corridor: neither anomalous in the corridor nor the peak
    st = det.update(s)
    corridor_px = 50 * 100     # rows 50..99, columns 50..149
    assert st.corridor_pixels == corridor_px
    assert st.anomalous_pixels == 250
    assert st.corridor_fraction == pytest.approx(250 / corridor_px)
    assert st.peak_score == 7.5
    assert st.boxes == [AnomalyBox(90, 60, 110, 70, 200, 7.5), AnomalyBox(60, 80, 65, 90, 50, 1.5)]
    assert st.num_components == 2


def test_diagonal_pixels_are_one_component():
    det = detector(min_area_fraction=0.0)
    s = scene()
    for i in range(10):
        s[60 + i, 80 + i] = 3.0
    st = det.update(s)
    assert st.num_components == 1 and st.boxes[0][:5] == (80, 60, 90, 70, 10)


def test_components_below_the_minimum_area_are_ignored():
    # 200x100 image, min area 0.005 -> 100 px. A 9x10 blob is dropped, a 10x10 blob counts.
    det = detector(min_area_fraction=0.005, raise_frames=1, window_frames=1)
    small = scene()
    small[70:79, 100:110] = 3.0
    st = det.update(small)
    assert st.min_area_px == 100 and st.state == "clear" and st.boxes == [] and st.corridor_fraction == 0.0
    big = scene()
    big[70:80, 100:110] = 3.0
    assert det.update(big).state == "alert"


@pytest.mark.parametrize("area_fraction, expected", [(0.0004, "clear"), (0.0008, "alert")])
def test_minimum_area_scales_with_resolution(area_fraction, expected):
    # The same scene (a square blob of the given share of the image) at two resolutions gives the same decision.
    decisions = []
    for h, w in ((256, 512), (512, 1024)):
        side = round(np.sqrt(area_fraction * h * w))
        s = np.zeros((h, w), np.float32)
        cy, cx = int(0.8 * h), w // 2
        s[cy:cy + side, cx:cx + side] = 3.0
        det = ObstacleAlertDetector(AlertConfig(tau=1.0, min_area_fraction=0.0005, raise_frames=1, window_frames=1))
        st = det.update(s)
        decisions.append(st.state)
        assert st.min_area_px == int(np.ceil(0.0005 * h * w))
    assert decisions == [expected, expected]


def test_default_corridor_area_is_the_same_share_of_the_image_at_every_resolution():
    det = ObstacleAlertDetector(AlertConfig())
    shares = [det.corridor_mask(h, w).mean() for h, w in ((128, 256), (512, 1024), (1080, 1920))]
    # Trapezoid (0.25..0.75 at the bottom, 0.43..0.57 at y=0.55): area 0.45 * (0.5 + 0.14) / 2 = 0.144.
    assert shares == pytest.approx([0.144] * 3, abs=0.004)


def test_min_corridor_fraction_makes_small_shares_clean():
    det = detector(min_area_fraction=0.0, min_corridor_fraction=0.05, raise_frames=1, window_frames=1)
    s = scene(blobs=[(0.45, 0.7, 0.5, 0.8, 5.0)])      # 10 x 10 = 100 px of 5000: 2%
    st = det.update(s)
    assert st.state == "clear" and st.boxes and not st.frame_hit  # measured and reported, but not a hit
    assert det.update(scene(blobs=[(0.3, 0.6, 0.6, 0.9, 5.0)])).state == "alert"


def test_nan_scores_are_never_anomalous_nor_the_peak():
    det = detector(min_area_fraction=0.0, raise_frames=1, window_frames=1)
    s = scene(base=0.5)
    s[60:80, 80:120] = np.nan
    st = det.update(s)
    assert st.state == "clear" and st.peak_score == 0.5


def test_float16_scores_are_accepted():
    det = detector(raise_frames=1, window_frames=1)
    assert det.update(scene(blobs=[CENTRE_BLOB]).astype(np.float16)).state == "alert"


def test_box_list_is_capped_but_every_component_counts():
    det = detector(min_area_fraction=0.0, max_regions=2)
    s = scene()
    for i in range(5):
        s[60:62, 55 + 10 * i:55 + 10 * i + 2 + i] = 3.0
    st = det.update(s)
    assert st.num_components == 5 and len(st.boxes) == 2
    assert [b.area for b in st.boxes] == [12, 10]  # largest first
    assert st.anomalous_pixels == sum(2 * (2 + i) for i in range(5))


# -- road mode -------------------------------------------------------------------------------------------------------
def road_scene(h=100, w=200):
    """Road in the middle columns 70..129 of the lower half, sidewalk either side."""
    cls = np.full((h, w), SIDEWALK, np.uint8)
    cls[:50] = SYNTHETIC.index("building")
    cls[50:, 70:130] = ROAD
    return cls


def test_road_mode_ignores_anomalies_off_the_road_inside_the_polygon():
    det = detector(corridor_mode="polygon_and_road", road_ids=(ROAD,), min_area_fraction=0.0, raise_frames=1,
                   window_frames=1)
    cls, s = road_scene(), scene()
    s[70:80, 52:64] = 4.0          # on the sidewalk, inside the polygon (columns 50..149)
    cls[70:80, 52:64] = CAR
    st = det.update(s, cls)
    assert st.state == "clear" and st.boxes == []
    assert st.corridor_pixels == 50 * 60  # the road part of the corridor only
    assert st.peak_score == 0.0           # the sidewalk blob is not watched


def test_road_mode_counts_an_obstacle_on_the_road_although_its_own_pixels_are_not_road():
    det = detector(corridor_mode="polygon_and_road", road_ids=(ROAD,), min_area_fraction=0.0, raise_frames=1,
                   window_frames=1,
                   road_contact_gap_fraction=0.03)
    cls, s = road_scene(), scene()
    s[70:80, 90:110] = 4.0
    cls[70:82, 88:112] = CAR       # the class head calls it a car, with a 2-pixel fringe below tau (gap: 3 px)
    st = det.update(s, cls)
    assert st.state == "alert"
    assert st.boxes == [AnomalyBox(90, 70, 110, 80, 200, 4.0)]
    # Watched area: road inside the polygon (minus the fringe and the blob) plus the blob itself.
    assert st.corridor_pixels == 50 * 60 - 12 * 24 + 200
    assert st.corridor_fraction == pytest.approx(200 / st.corridor_pixels)


def test_road_mode_ignores_an_obstacle_whose_foot_is_further_above_the_road_than_the_gap():
    det = detector(corridor_mode="polygon_and_road", road_ids=(ROAD,), min_area_fraction=0.0, raise_frames=1,
                   window_frames=1,
                   road_contact_gap_fraction=0.03)
    cls, s = road_scene(), scene()
    s[70:80, 90:110] = 4.0
    cls[70:84, 88:112] = CAR       # 4 rows of non-road under it: more than the 3-pixel gap
    assert det.update(s, cls).state == "clear"


def test_road_mode_counts_an_obstacle_touching_the_bottom_of_the_image():
    det = detector(corridor_mode="polygon_and_road", road_ids=(ROAD,), min_area_fraction=0.0, raise_frames=1,
                   window_frames=1)
    cls, s = road_scene(), scene()
    s[80:100, 80:120] = 4.0
    cls[80:100, 80:120] = CAR
    assert det.update(s, cls).state == "alert"


def test_polygon_mode_counts_the_sidewalk_anomaly_that_road_mode_ignores():
    det = detector(min_area_fraction=0.0, raise_frames=1, window_frames=1)
    s = scene()
    s[70:80, 52:64] = 4.0
    assert det.update(s, road_scene()).state == "alert"


def test_road_mode_needs_the_class_map():
    det = detector(corridor_mode="polygon_and_road")
    with pytest.raises(ValueError, match="class_id is required"):
        det.update(scene())
    with pytest.raises(ValueError, match="differ in shape"):
        det.update(scene(), np.zeros((10, 10), np.uint8))


def test_road_ids_come_from_the_class_names():
    assert road_ids_from_names(SYNTHETIC.names) == (ROAD,)
    assert road_ids_from_names(SYNTHETIC.names, ("road", "sidewalk")) == (ROAD, SIDEWALK)
    with pytest.raises(ConfigError, match="road classes"):
        road_ids_from_names(("sky", "person"))


# -- configuration ---------------------------------------------------------------------------------------------------
def test_default_corridor_matches_the_node_parameter_default():
    flat = tuple(v for xy in DEFAULT_CORRIDOR for v in xy)
    assert flat == NODE_DEFAULT_CORRIDOR
    assert AlertConfig(corridor=NODE_DEFAULT_CORRIDOR).corridor == DEFAULT_CORRIDOR  # flat form accepted


@pytest.mark.parametrize("changes, message", [
    ({"window_frames": 0}, r"window_frames=0 is outside its valid range \[1, 100\]"),
    ({"raise_frames": 6, "window_frames": 5}, r"raise_frames=6 is outside its valid range \[1, 5\]"),
    ({"clear_frames": 0}, r"clear_frames=0 is outside its valid range \[1, 100\]"),
    ({"raise_frames": 2.5}, r"raise_frames: expected an integer"),
    ({"min_area_fraction": 0.7}, r"min_area_fraction=0.7 is outside its valid range \[0.0, 0.5\]"),
    ({"min_area_fraction": -0.1}, r"min_area_fraction=-0.1 is outside its valid range"),
    ({"min_corridor_fraction": 1.5}, r"min_corridor_fraction=1.5 is outside its valid range \[0.0, 1.0\]"),
    ({"tau": float("nan")}, r"tau: NaN is not a valid value"),
    ({"tau": 2000.0}, r"tau=2000.0 is outside its valid range \[-1000.0, 1000.0\]"),
    ({"tau": -1000.5}, r"tau=-1000.5 is outside its valid range"),
    ({"max_regions": -1}, r"max_regions=-1 is outside its valid range \[0, 1000\]"),
    ({"tau": "high"}, r"tau: expected a number"),
    ({"corridor_mode": "road_only"}, r"corridor_mode='road_only' is not one of 'polygon', 'polygon_and_road'"),
    ({"corridor": ((0.1, 0.5), (0.9, 1.2), (0.1, 1.0))},
     r"corridor\[1\].y=1.2 is outside its valid range \[0.0, 1.0\]"),
    ({"corridor": ((0.1, 0.5), (0.9, 0.5))}, r"corridor: expected 3..32 vertices .* each coordinate in \[0, 1\]"),
    ({"corridor": (0.1, 0.5, 0.9)}, r"corridor: expected 3..32 vertices"),
    ({"corridor": ((0.1, 0.5), (0.5, 0.5), (0.9, 0.5))}, r"corridor=.*: the polygon has no area"),
    ({"corridor_mode": "polygon_and_road", "road_ids": ()}, r"road_ids=\(\): .*needs at least one road class id"),
    ({"road_ids": (300,)}, r"road_ids\[0\]=300 is outside its valid range \[0, 254\]"),
    ({"road_contact_fraction": 2.0}, r"road_contact_fraction=2.0 is outside its valid range \[0.0, 1.0\]"),
])
def test_invalid_configs_are_rejected_naming_the_field_and_its_range(changes, message):
    with pytest.raises(ConfigError, match=message):
        AlertConfig(**changes).validate()
    with pytest.raises(ConfigError, match=message):
        ObstacleAlertDetector(AlertConfig(**changes))


def test_bad_score_maps_are_refused_with_their_shape_or_dtype():
    det = detector()
    with pytest.raises(ValueError, match=r"\(H, W\) array, got shape \(2, 3, 4\)"):
        det.update(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="float array, got dtype uint8"):
        det.update(np.zeros((20, 30), np.uint8))


# -- run-time changes ------------------------------------------------------------------------------------------------
def test_threshold_change_applies_to_the_next_frame_and_keeps_the_window():
    det = detector(raise_frames=2, window_frames=3)
    s = scene(blobs=[(0.45, 0.7, 0.55, 0.8, 2.0)])
    assert det.update(s).state == "warning"
    det.update_config(tau=3.0)
    st = det.update(s)
    assert st.state == "warning" and not st.frame_hit and st.tau == 3.0   # the earlier hit is still in the window
    det.set_config(AlertConfig(corridor=BOX_CORRIDOR, tau=1.5, raise_frames=2, window_frames=3))
    assert det.update(s).state == "alert"   # hits at frames 1 and 3 of the window


def test_a_raised_alert_survives_a_config_change_and_clears_through_clean_frames():
    det = detector(raise_frames=1, window_frames=1, clear_frames=5)
    det.update(scene(blobs=[CENTRE_BLOB]))
    det.update_config(clear_frames=2, corridor=((0.0, 0.0), (0.2, 0.0), (0.2, 0.2)))  # blob now outside the corridor
    states = [det.update(scene(blobs=[CENTRE_BLOB])).state for _ in range(3)]
    assert states == ["alert", "clear", "clear"]


def test_corridor_change_rebuilds_the_cached_mask():
    det = detector(raise_frames=1, window_frames=1)
    s = scene(blobs=[OUTSIDE_BLOB])
    assert det.update(s).state == "clear"
    det.update_config(corridor=((0.0, 0.5), (0.3, 0.5), (0.3, 1.0), (0.0, 1.0)))
    assert det.update(s).state == "alert"
    assert det.corridor_mask(100, 200)[:, :60].all(axis=1)[50:].all()


def test_shorter_window_keeps_the_most_recent_frames():
    det = detector(raise_frames=2, window_frames=5)
    hit, clean = scene(blobs=[CENTRE_BLOB]), scene()
    run(det, [hit, clean, clean])
    det.update_config(window_frames=2)
    assert det.update(hit).state == "warning"  # the first hit fell out of the shortened window
    assert det.update(hit).state == "alert"


def test_invalid_run_time_change_leaves_the_detector_unchanged():
    det = detector(raise_frames=2, window_frames=3)
    before = det.config
    with pytest.raises(ConfigError, match=r"raise_frames=4 is outside its valid range \[1, 3\]"):
        det.update_config(raise_frames=4)
    assert det.config is before


def test_reset_on_config_change_starts_over():
    det = detector(raise_frames=1, window_frames=1)
    det.update(scene(blobs=[CENTRE_BLOB]))
    det.update_config(reset=True, tau=2.0)
    assert det.state.state == "clear" and det.state.frame_index == 0


def test_resolution_change_between_frames_uses_a_mask_for_each_size():
    det = detector(raise_frames=2, window_frames=2)
    det.update(scene(blobs=[CENTRE_BLOB]))
    st = det.update(scene(h=50, w=100, blobs=[CENTRE_BLOB]))
    assert st.state == "alert" and st.boxes[0][:4] == (45, 35, 55, 40)


# -- corridor rasterisation and model cards --------------------------------------------------------------------------
@pytest.mark.parametrize("h, w", [(37, 91), (100, 200), (480, 640)])
def test_corridor_mask_is_the_set_of_pixel_centres_inside_the_polygon(h, w):
    from skimage.measure import points_in_poly
    concave = ((0.1, 0.95), (0.3, 0.4), (0.5, 0.7), (0.7, 0.35), (0.92, 0.97), (0.5, 0.85))
    mask = ObstacleAlertDetector(AlertConfig(corridor=concave)).corridor_mask(h, w)
    ys, xs = np.mgrid[0:h, 0:w]
    centres = np.stack([(xs.ravel() + 0.5) / w, (ys.ravel() + 0.5) / h], axis=1)
    reference = points_in_poly(centres, np.array(concave)).reshape(h, w)
    # Pixel centres exactly on an edge may go either way; nothing else may differ.
    assert (mask != reference).sum() <= 0.002 * h * w + 2


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (3, 1)])
def test_tiny_images_do_not_break_the_detector(h, w):
    det = detector(raise_frames=1, window_frames=1, min_area_fraction=0.0)
    st = det.update(np.full((h, w), 5.0, np.float32))
    assert st.state in ("clear", "alert") and 0.0 <= st.corridor_fraction <= 1.0


def test_road_mode_refuses_a_class_map_that_is_not_uint8():
    det = detector(corridor_mode="polygon_and_road")
    with pytest.raises(ValueError, match="uint8 class map, got dtype int64"):
        det.update(scene(), road_scene().astype(np.int64))


# -- on rendered scenes of the synthetic world -----------------------------------------------------------------------
def oracle_frame(seed, h=256, w=512):
    """A rendered scene with an oracle score (3 on the anomaly's pixels, 0 elsewhere) and a class map in which the
    class head calls the anomaly a car, as a real closed-set head would call it something."""
    from densehybrid_ros.data.world import render_scene
    sc = render_scene(seed, h, w, anomalies=2)
    k = SYNTHETIC.anomaly_label
    score = np.where(sc.label == k, 3.0, 0.0).astype(np.float32)
    cls = np.where(sc.label == k, CAR, sc.label).astype(np.uint8)
    return score, cls


def test_road_mode_keeps_obstacles_on_the_rendered_road():
    kept = 0
    for seed in range(6):
        score, cls = oracle_frame(seed)
        boxes = {}
        for mode in ("polygon", "polygon_and_road"):
            det = ObstacleAlertDetector(AlertConfig(tau=1.0, corridor_mode=mode, raise_frames=1, window_frames=1))
            boxes[mode] = det.update(score, cls).boxes
        assert set(boxes["polygon_and_road"]) <= set(boxes["polygon"])
        for box in boxes["polygon"]:
            foot = cls[min(box.y1 + 1, cls.shape[0] - 1), (box.x0 + box.x1) // 2]
            if foot == ROAD:   # the rendered object stands on the road: road mode must keep it
                assert box in boxes["polygon_and_road"], (seed, box)
                kept += 1
    assert kept >= 3  # the scenes do put obstacles on the road ahead


def test_road_mode_ignores_an_object_on_the_rendered_pavement_inside_the_corridor():
    import cv2
    from densehybrid_ros.data.world import render_scene
    det = ObstacleAlertDetector(AlertConfig(tau=1.0, raise_frames=1, window_frames=1))
    for seed in range(30):  # the first scene whose pavement reaches far enough into the default corridor
        cls = render_scene(seed, 256, 512).label.copy()
        pavement = ((cls == SIDEWALK) & det.corridor_mask(*cls.shape)).astype(np.uint8)
        # Room for a 9x9 object (81 px, above the 66 px minimum at 256x512) with 4 rows of pavement below it.
        ys, xs = np.nonzero(cv2.erode(pavement, np.ones((13, 9), np.uint8)))
        if ys.size:
            break
    assert ys.size, "no rendered scene has pavement inside the corridor"
    score = np.zeros(cls.shape, np.float32)
    y, x = ys[0], xs[0]
    score[y - 6:y + 3, x - 4:x + 5] = 3.0
    cls[y - 6:y + 3, x - 4:x + 5] = SYNTHETIC.index("person")
    assert det.update(score, cls).state == "alert"
    det.update_config(reset=True, corridor_mode="polygon_and_road")
    st = det.update(score, cls)
    assert st.state == "clear" and st.boxes == []
