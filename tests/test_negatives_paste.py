"""Negatives for training and mixed-content pasting (DenseHybrid paper 7.4; ComsAmy harmonisation)."""
from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.data import negatives as negatives_module
from densehybrid_ros.data import paste as paste_module
from densehybrid_ros.data.negatives import NegativeBank, PackagedImageNegatives, ProceduralNegatives
from densehybrid_ros.data.paste import MixedContent, PasteConfig, jitter_crop, paste_negatives
from densehybrid_ros.data.taxonomy import VOID_LABEL

H, W, HORIZON = 160, 320, 60
FOCAL = 0.5 * W


@pytest.fixture(scope="module")
def bank() -> NegativeBank:
    return NegativeBank(seed=0)


def road_scene():
    """Sky above a horizon, flat road below it with ground-plane depth (camera 1.5 m high), a void strip on top."""
    image = np.empty((H, W, 3), np.uint8)
    image[:HORIZON] = (120, 160, 210)
    image[HORIZON:] = (70, 70, 75)
    image += np.random.default_rng(0).integers(0, 12, image.shape, dtype=np.uint8)
    label = np.full((H, W), 10, np.uint8)
    label[HORIZON:] = 0
    label[:4] = VOID_LABEL
    rows = np.arange(H, dtype=np.float32)[:, None].repeat(W, 1)
    depth = np.where(rows > HORIZON, FOCAL * 1.5 / np.maximum(rows - HORIZON, 1e-3), 0).astype(np.float32)
    return image, label, depth


class SquareSource:
    """A fixed bright square instance, so only the paster decides size, position and colour."""

    def __init__(self, size=40, colour=(250, 240, 30)):
        self.rgb = np.zeros((size, size, 3), np.uint8)
        self.rgb[:] = colour
        self.rgb += np.random.default_rng(1).integers(0, 20, self.rgb.shape, dtype=np.uint8)
        self.mask = np.ones((size, size), bool)

    def sample(self, rng):
        return self.rgb, self.mask


# --- negatives -------------------------------------------------------------------------------------------------

def test_bank_is_deterministic_given_rng(bank):
    a = [bank.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [bank.sample(np.random.default_rng(7)) for _ in range(3)]
    for (ra, ma), (rb, mb) in zip(a, b):
        assert np.array_equal(ra, rb) and np.array_equal(ma, mb)
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(10):
        (ra, ma), (rb, mb) = bank.sample(rng1), bank.sample(rng2)
        assert np.array_equal(ra, rb) and np.array_equal(ma, mb)


def test_bank_instances_are_cropped_nonempty_irregular_masks(bank):
    rng = np.random.default_rng(3)
    fills = []
    for _ in range(40):
        rgb, mask = bank.sample(rng)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert mask.dtype == bool and mask.shape == rgb.shape[:2]
        assert mask.any()
        # Cropped to the bounding box: every border row/column touches the mask.
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
        fills.append(mask.mean())
    # Irregular shapes: most masks do not fill their bounding box.
    assert np.median(fills) < 0.95


def test_bank_mixes_procedural_and_packaged_natural_images(bank):
    assert any(isinstance(s, ProceduralNegatives) for s in bank.sources)
    natural = [s for s in bank.sources if isinstance(s, PackagedImageNegatives)]
    assert natural and len(natural[0]) >= 8  # skimage + sklearn + matplotlib photographs load offline


def test_packaged_natural_instances_are_deterministic_and_follow_weights():
    only_natural = NegativeBank(sources=[PackagedImageNegatives()], weights=[1.0])
    (ra, ma), (rb, mb) = only_natural.sample(np.random.default_rng(5)), only_natural.sample(np.random.default_rng(5))
    assert np.array_equal(ra, rb) and np.array_equal(ma, mb) and ma.any()


def test_procedural_negatives_vary_in_content_and_size():
    source = ProceduralNegatives(min_size=32, max_size=96)
    rng = np.random.default_rng(0)
    samples = [source.sample(rng) for _ in range(20)]
    sizes = {m.shape for _, m in samples}
    means = [r[m].mean(0) for r, m in samples]
    assert len(sizes) > 10
    assert np.std(np.array(means), axis=0).min() > 10  # colours differ between instances
    assert all(max(m.shape) <= 96 for _, m in samples)


def test_facets_are_flat_shaded_regions_of_one_hue():
    """Flat-shaded facets: few brightness levels of one colour, so flat content is not a cue for inliers."""
    rng = np.random.default_rng(3)
    for _ in range(10):
        canvas = negatives_module._texture_facets(rng, 80, 120)
        colours, counts = np.unique(canvas.reshape(-1, 3).round(3), axis=0, return_counts=True)
        assert 2 <= len(colours) <= 16  # up to 2**3 facets, each maybe crossed by a darker seam
        main = colours[np.argsort(counts)[-2:]]
        hue = main / np.maximum(main.sum(1, keepdims=True), 1e-6)
        assert np.allclose(hue[0], hue[1], atol=1e-3)  # facets differ in brightness, not in hue


def test_negatives_share_no_code_with_the_test_anomalies():
    """Paper: training negatives must come from a different source than the test anomalies (data/world/)."""
    for module in (negatives_module, paste_module):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if "world" in m or "anomal" in m], imported


def test_bank_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        NegativeBank(sources=[ProceduralNegatives()], weights=[1.0, 2.0])
    with pytest.raises(TypeError, match="sample"):
        NegativeBank(sources=[object()])
    with pytest.raises(TypeError, match="Generator"):
        NegativeBank(sources=[ProceduralNegatives()]).sample(42)
    with pytest.raises(ValueError, match="facet_probability must be in"):
        ProceduralNegatives(facet_probability=1.5)


# --- plain pasting ---------------------------------------------------------------------------------------------

def test_pasted_pixels_are_void_and_negative_rest_unchanged(bank):
    image, label, depth = road_scene()
    for seed in range(8):
        mixed = paste_negatives(image, label, bank, np.random.default_rng(seed))
        assert isinstance(mixed, MixedContent)
        pasted = mixed.ood_target == 1
        assert pasted.any()
        assert np.all(mixed.label[pasted] == VOID_LABEL)
        keep = ~pasted
        assert np.array_equal(mixed.label[keep], label[keep])
        assert np.array_equal(mixed.image[keep], image[keep])  # hard alpha in plain mode
        assert np.all(mixed.ood_target[keep & (label == VOID_LABEL)] == VOID_LABEL)
        assert np.all(mixed.ood_target[keep & (label != VOID_LABEL)] == 0)
        assert not np.array_equal(mixed.image[pasted], image[pasted])


def test_pastes_one_or_two_instances(bank):
    image, label, _ = road_scene()
    counts = {len(paste_negatives(image, label, bank, np.random.default_rng(s)).boxes) for s in range(16)}
    assert counts == {1, 2}


def test_pasting_is_deterministic_given_seed(bank):
    image, label, depth = road_scene()
    for harmonised in (False, True):
        a = paste_negatives(image, label, bank, np.random.default_rng(9), depth=depth, harmonised=harmonised)
        b = paste_negatives(image, label, bank, np.random.default_rng(9), depth=depth, harmonised=harmonised)
        for field in ("image", "label", "ood_target", "depth"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
        assert a.boxes == b.boxes


def test_paste_over_void_is_negative():
    image, label, _ = road_scene()
    label[:] = VOID_LABEL
    mixed = paste_negatives(image, label, SquareSource(), np.random.default_rng(0))
    assert set(np.unique(mixed.ood_target)) == {1, VOID_LABEL}


# --- harmonised pasting ----------------------------------------------------------------------------------------

def _lab_mean(pixels):
    return cv2.cvtColor(pixels.reshape(-1, 1, 3), cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64).mean(0)


def test_harmonised_colour_moves_towards_the_background():
    image, label, depth = road_scene()
    source = SquareSource()
    strength = 0.6
    cfg = PasteConfig(min_instances=1, max_instances=1, colour_match=(strength, strength))
    for seed in range(5):
        mixed = paste_negatives(image, label, source, np.random.default_rng(seed), depth=depth, harmonised=True,
                                config=cfg)
        y0, x0, y1, x1 = mixed.boxes[0]
        m = max(y1 - y0, x1 - x0) // 3
        around = np.zeros((H, W), bool)
        around[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m] = True
        around &= mixed.ood_target != 1
        background = _lab_mean(image[around])
        raw = _lab_mean(source.rgb)
        pasted = _lab_mean(mixed.image[mixed.ood_target == 1])
        # Lightness moves `strength` of the way from the instance towards its surroundings (up to rounding and
        # the feathered rim, which is part background).
        moved = (raw[0] - pasted[0]) / (raw[0] - background[0])
        assert strength - 0.1 < moved < strength + 0.15, moved


def test_harmonised_edges_are_feathered_but_target_is_the_core():
    image, label, depth = road_scene()
    mixed = paste_negatives(image, label, SquareSource(), np.random.default_rng(2), depth=depth, harmonised=True,
                            config=PasteConfig(min_instances=1, max_instances=1))
    changed = np.any(mixed.image != image, axis=2)
    halo = changed & (mixed.ood_target != 1)
    assert halo.any()                           # soft alpha touches pixels just outside the target
    assert np.array_equal(mixed.label[halo], label[halo])  # ...which keep their inlier label
    y0, x0, y1, x1 = mixed.boxes[0]
    outside = np.ones_like(changed)
    outside[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
    assert not changed[outside].any()


def test_harmonised_stands_on_ground_and_near_pastes_are_bigger():
    image, label, depth = road_scene()
    cfg = PasteConfig(min_instances=1, max_instances=1, object_height_m=(1.0, 1.0), focal_px=FOCAL)
    rows = []
    for seed in range(30):
        mixed = paste_negatives(image, label, SquareSource(size=64), np.random.default_rng(seed), depth=depth,
                                harmonised=True, config=cfg)
        y0, x0, y1, x1 = mixed.boxes[0]
        assert y1 > HORIZON  # bottom on the road, not in the sky
        rows.append((y1, y1 - y0))
    rows.sort()
    bottoms, heights = np.array(rows).T
    assert np.corrcoef(bottoms, heights)[0, 1] > 0.9
    near, far = heights[bottoms > np.median(bottoms)].mean(), heights[bottoms <= np.median(bottoms)].mean()
    assert near > 1.5 * far
    # Pinhole size: 1 m at the contact depth (clipped to at least min_size_px).
    contact_depth = FOCAL * 1.5 / (bottoms - HORIZON)
    expected = np.maximum(FOCAL / contact_depth, cfg.min_size_px)
    assert np.allclose(heights, expected, rtol=0.2, atol=3)


def _far_contact_share(far_field_probability: float, far_depth_m: float = 20.0, n: int = 60) -> float:
    image, label, depth = road_scene()
    cfg = PasteConfig(min_instances=1, max_instances=1, object_height_m=(1.0, 1.0), focal_px=FOCAL,
                      far_field_probability=far_field_probability, far_field_depth_m=far_depth_m)
    far = 0
    for seed in range(n):
        mixed = paste_negatives(image, label, SquareSource(size=64), np.random.default_rng(seed), depth=depth,
                                harmonised=True, config=cfg)
        y0, _, y1, _ = mixed.boxes[0]
        # The instance sinks max(1, h // 20) rows below its contact point.
        contact_row = y1 - max(1, (y1 - y0) // 20)
        far += FOCAL * 1.5 / max(contact_row - HORIZON, 1e-3) >= far_depth_m - 1.0
    return far / n


def test_far_field_pastes_stand_beyond_the_far_field_depth():
    # Ground at >= 20 m is the 12 rows under the horizon: about an eighth of the road.
    uniform, half, always = (_far_contact_share(p) for p in (0.0, 0.5, 1.0))
    assert always == 1.0
    assert uniform < 0.3 < half < 0.9


def test_far_field_falls_back_to_any_ground_when_none_is_that_far():
    assert _far_contact_share(1.0, far_depth_m=500.0, n=20) == 0.0


def test_far_field_settings_are_validated():
    with pytest.raises(ValueError, match="far_field_probability"):
        PasteConfig(far_field_probability=1.5)
    with pytest.raises(ValueError, match="far_field_depth_m"):
        PasteConfig(far_field_depth_m=0.0)


def test_harmonised_without_depth_is_a_clear_error(bank):
    image, label, _ = road_scene()
    with pytest.raises(ValueError, match="depth"):
        paste_negatives(image, label, bank, np.random.default_rng(0), harmonised=True)


def test_paste_and_crop_reject_bad_inputs():
    image, label, depth = road_scene()
    with pytest.raises(ValueError, match="label"):
        paste_negatives(image, label[:-1], SquareSource(), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        paste_negatives(image, label, SquareSource(), 0)
    with pytest.raises(TypeError, match="sample"):
        paste_negatives(image, label, [SquareSource()], np.random.default_rng(0))
    with pytest.raises(ValueError, match="crop size"):
        jitter_crop(image, label, depth, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_instances"):
        PasteConfig(min_instances=2, max_instances=1)


# --- inlier crops ----------------------------------------------------------------------------------------------

def test_jitter_crop_size_flip_and_determinism():
    image, label, depth = road_scene()
    a = jitter_crop(image, label, depth, 96, np.random.default_rng(4))
    b = jitter_crop(image, label, depth, 96, np.random.default_rng(4))
    assert a.image.shape == (96, 96, 3) and a.label.shape == (96, 96) and a.depth.shape == (96, 96)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    flips = set()
    for seed in range(12):
        c = jitter_crop(image, label, None, (H, W), np.random.default_rng(seed), scale_range=(1.0, 1.0))
        assert c.depth is None
        flips.add("same" if np.array_equal(c.image, image) else
                  "flipped" if np.array_equal(c.image, image[:, ::-1]) else "other")
    assert flips == {"same", "flipped"}


def test_jitter_crop_pads_with_void_and_scales_depth():
    image, label, depth = road_scene()
    label[:] = 3
    depth[:] = 10.0
    crop = jitter_crop(image, label, depth, (200, 400), np.random.default_rng(0), scale_range=(0.5, 0.5))
    valid = crop.label != VOID_LABEL
    assert valid.sum() == (H // 2) * (W // 2)  # the zoomed-out image, the rest is padding
    assert np.all(crop.depth[~valid] == 0) and np.all(crop.image[~valid] == 0)
    assert np.allclose(crop.depth[valid], 20.0)  # apparent depth = depth / zoom


def test_jitter_crop_scale_range_is_respected():
    image, _, _ = road_scene()
    label = np.tile((np.arange(W) % 250).astype(np.uint8), (H, 1))  # column ids, to count source columns
    distinct = []
    for seed in range(16):
        crop = jitter_crop(image, label, None, 64, np.random.default_rng(seed), flip=False)
        distinct.append(len(np.unique(crop.label[0])))
    # A zoom s shows 64 / s source columns: never fewer than 32 (s <= 2), fewer than 64 when zoomed in.
    assert min(distinct) >= 31 and min(distinct) < 60


def test_jitter_crop_focus_pixel_is_inside_the_crop_through_zoom_flip_and_padding():
    image, label, depth = road_scene()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y, x = int(rng.integers(H)), int(rng.integers(W))
        marked = label.copy()
        # A 5x5 patch of a class found nowhere else: nearest-neighbour zoom by 0.4 keeps one of its pixels.
        marked[max(0, y - 2):y + 3, max(0, x - 2):x + 3] = 7
        # Zooms down to 0.4 make the crop larger than the zoomed image (padding); up to 2.5 the pixel grows.
        crop = jitter_crop(image, marked, depth, (96, 160), rng, scale_range=(0.4, 2.5), focus=(y, x))
        assert (crop.label == 7).any(), f"seed {seed}: focus ({y}, {x}) fell outside the crop"


def test_jitter_crop_focus_still_places_the_pixel_at_varied_positions():
    image, label, _ = road_scene()
    label[80, 160] = 7
    rows, cols = set(), set()
    for seed in range(30):
        crop = jitter_crop(image, label, None, (64, 64), np.random.default_rng(seed), scale_range=(1.0, 1.0),
                           flip=False, focus=(80, 160))
        ys, xs = np.nonzero(crop.label == 7)
        rows.add(int(ys[0]))
        cols.add(int(xs[0]))
    assert len(rows) > 10 and len(cols) > 10  # not always centred: the context around a pole varies


def test_jitter_crop_rejects_a_focus_outside_the_image():
    image, label, depth = road_scene()
    with pytest.raises(ValueError, match="focus"):
        jitter_crop(image, label, depth, 64, np.random.default_rng(0), focus=(H, 0))
