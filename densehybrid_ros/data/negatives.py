"""Negative instances for mixed-content training (DenseHybrid paper, section 7.4).

The paper pastes ADE20K instances over inlier crops and insists that the training negatives come from a different
source than the test anomalies. The test anomalies of this project are the procedural road obstacles of
``data/world/anomalies.py`` (animals, boxes, tyres, rocks, debris, furniture); the negatives here share no code with
them and come from two unrelated sources:

* ``ProceduralNegatives``: generic content (fractal noise, stripes, checkers, colour gradients, overlapping blobs and
  polygons) cut out by random irregular masks (Fourier-perturbed blobs, random polygons, thresholded noise);
* ``PackagedImageNegatives``: natural photographs shipped inside installed packages (scikit-image, scikit-learn,
  matplotlib; nothing is downloaded), cut into irregular instances by growing regions of SLIC superpixels.

With a real ADE20K tree, ``data.adapters.ade20k.ADE20KNegatives`` is a third source with the same ``sample`` API.

Every source exposes ``sample(rng) -> (rgb uint8 (h, w, 3), mask bool (h, w))`` and is deterministic given ``rng``
(a ``numpy.random.Generator``). The returned image is cropped to the mask's bounding box; pixels outside the mask are
undefined content that the paster ignores.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


class NegativeSource(Protocol):
    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


def check_rng(rng: object) -> np.random.Generator:
    """`rng` itself, or TypeError: every random draw of the data pipeline goes through one seeded Generator."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def crop_to_mask(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop an instance to the bounding box of its mask (the mask must not be empty)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("negative instance mask is empty")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(mask[y0:y1, x0:x1])


# ----------------------------------------------------------------------------------------------------------------
# Procedural content
# ----------------------------------------------------------------------------------------------------------------

def _random_colour(rng: np.random.Generator) -> np.ndarray:
    # HSV sampling spreads colours better than uniform RGB (which is mostly greyish browns).
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(40, 255), rng.uniform(40, 255)]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 5,
                  persistence: float = 0.55) -> np.ndarray:
    """Sum of upsampled random grids (value noise over octaves), scaled to [0, 1]; a cheap Perlin-like texture."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
        cells *= 2
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _palette_map(rng: np.random.Generator, field: np.ndarray, n_colours: int) -> np.ndarray:
    """Map a [0, 1] scalar field through a random piecewise-linear colour palette."""
    stops = np.sort(np.concatenate([[0.0, 1.0], rng.random(n_colours - 2)])) if n_colours > 2 else np.array([0.0, 1.0])
    colours = np.stack([_random_colour(rng) for _ in stops])
    return np.stack([np.interp(field, stops, colours[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def _texture_noise(rng, h, w):
    return _palette_map(rng, fractal_noise(rng, h, w, octaves=int(rng.integers(3, 7))), int(rng.integers(2, 5)))


def _texture_stripes(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, max(6.0, min(h, w) / 3))
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    # Wobble the stripes with low-frequency noise so they are not perfectly regular.
    phase += rng.uniform(0, 2) * fractal_noise(rng, h, w, octaves=2)
    field = (np.sin(2 * np.pi * phase) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    a, b = _random_colour(rng), _random_colour(rng)
    return field[..., None] * a + (1 - field[..., None]) * b


def _texture_checkers(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(4, max(6.0, min(h, w) / 4))
    u = (np.cos(angle) * xx + np.sin(angle) * yy) / cell
    v = (-np.sin(angle) * xx + np.cos(angle) * yy) / cell
    field = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    a, b = _random_colour(rng), _random_colour(rng)
    return field[..., None] * a + (1 - field[..., None]) * b


def _texture_gradient(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xx / max(w, 1) + np.sin(angle) * yy / max(h, 1)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return _palette_map(rng, t, int(rng.integers(2, 4)))


def _texture_shapes(rng, h, w):
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = _random_colour(rng)
    for _ in range(int(rng.integers(6, 25))):
        colour = tuple(float(c) for c in _random_colour(rng))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(2, max(3, min(h, w) // 3)))
        if rng.random() < 0.5:
            axes = (r, int(max(1, r * rng.uniform(0.3, 1.0))))
            cv2.ellipse(canvas, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = r * rng.uniform(0.4, 1.0, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)
    return canvas


def _texture_facets(rng, h, w):
    """Flat-shaded facets: one hue at a few brightness levels, cut by straight edges, with optional seam lines.

    The synthetic world renders flat-shaded surfaces. Negatives that are all busy texture teach the dataset
    posterior that texture alone marks an outlier, and then large flat-faced obstacles are missed: on the
    validation split the interiors of near, flat-faced obstacles taken for truck or building were three quarters
    of the anomaly pixels below the TPR-95% threshold.
    """
    base = _random_colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    region = np.zeros((h, w), np.int32)
    for bit in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h  # each edge crosses the middle
        region |= (np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy) > 0).astype(np.int32) << bit
    brightness = rng.uniform(0.45, 1.2, int(region.max()) + 1).astype(np.float32)
    canvas = base[None, None, :] * brightness[region][..., None]
    if rng.random() < 0.5:  # seams of planks, panels or tiles
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, max(8.0, min(h, w) / 2))
        u = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        seam = np.abs(u - np.round(u)) * period < rng.uniform(0.6, 1.6)
        canvas = np.where(seam[..., None], canvas * rng.uniform(0.4, 0.8), canvas)
    return canvas


_TEXTURES = (_texture_noise, _texture_stripes, _texture_checkers, _texture_gradient, _texture_shapes)


def _mask_fourier_blob(rng, h, w):
    """Star-shaped blob whose radius is a random low-order Fourier series of the angle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    theta = np.arctan2((yy - cy) / max(h, 1), (xx - cx) / max(w, 1))
    rho = np.hypot((yy - cy) / (h / 2), (xx - cx) / (w / 2))
    radius = np.full_like(theta, 0.7)
    for k in range(1, int(rng.integers(3, 8))):
        radius += rng.normal(0, 0.25 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return rho < np.clip(radius, 0.2, 1.0)


def _mask_polygon(rng, h, w):
    n = int(rng.integers(4, 12))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.35, 1.0, n)
    pts = np.stack([(w - 1) / 2 * (1 + rad * np.cos(ang)), (h - 1) / 2 * (1 + rad * np.sin(ang))], 1)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def _mask_noise(rng, h, w):
    """Largest component of thresholded low-frequency noise under a soft radial window (organic outlines)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    window = 1 - np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    field = 0.6 * fractal_noise(rng, h, w, octaves=3) + window
    mask = (field > np.quantile(field, rng.uniform(0.45, 0.75))).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n <= 1:
        return mask.astype(bool)
    return comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


_MASKS = (_mask_fourier_blob, _mask_polygon, _mask_noise)


@dataclass
class ProceduralNegatives:
    """Generic procedural content under random irregular masks; sizes in pixels of the returned instance."""

    min_size: int = 48
    max_size: int = 256
    # Share of flat-shaded facets (see _texture_facets); the rest draws one of the busier textures.
    facet_probability: float = 0.3

    def __post_init__(self) -> None:
        if not 8 <= self.min_size <= self.max_size:
            raise ValueError(f"ProceduralNegatives sizes must satisfy 8 <= min_size <= max_size, "
                             f"got {self.min_size}, {self.max_size}")
        if not 0 <= self.facet_probability <= 1:
            raise ValueError(f"facet_probability must be in [0, 1], got {self.facet_probability}")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rng = check_rng(rng)
        h = int(rng.integers(self.min_size, self.max_size + 1))
        w = int(np.clip(h * np.exp(rng.uniform(-0.6, 0.6)), self.min_size, self.max_size))
        if rng.random() < self.facet_probability:
            texture = _texture_facets(rng, h, w)
        else:
            texture = _TEXTURES[int(rng.integers(len(_TEXTURES)))](rng, h, w)
        if rng.random() < 0.5:  # a second texture layered by noise gives mixed-material objects
            other = _TEXTURES[int(rng.integers(len(_TEXTURES)))](rng, h, w)
            blend = (fractal_noise(rng, h, w, octaves=3) > 0.5).astype(np.float32)[..., None]
            texture = blend * texture + (1 - blend) * other
        # Shading and grain of random strength: from as flat as the world's own surfaces to clearly mottled.
        amplitude = rng.uniform(0.0, 0.5)
        shade = 1.0 - amplitude / 2 + amplitude * fractal_noise(rng, h, w, octaves=2)[..., None]
        texture = texture * shade + rng.normal(0, rng.uniform(0, 8), (h, w, 1)).astype(np.float32)
        mask = _MASKS[int(rng.integers(len(_MASKS)))](rng, h, w)
        if mask.sum() < 16:  # degenerate draw: fall back to the always-large Fourier blob
            mask = _mask_fourier_blob(rng, h, w)
        rgb = np.clip(texture, 0, 255).astype(np.uint8)
        return crop_to_mask(rgb, mask)


# ----------------------------------------------------------------------------------------------------------------
# Natural images shipped by installed packages
# ----------------------------------------------------------------------------------------------------------------

# (module, loader) pairs of colour photographs bundled inside the installed wheels. skimage loaders that need a
# pooch download (e.g. skimage.data.lily, kidney) are not listed. A loader that fails at run time is skipped (an
# optional package may be absent), so tests/test_packaged_images.py checks that every one listed here loads with
# the pinned packages: a renamed loader would otherwise drop its photograph without a word.
# Photographs of people or vehicles are left out (skimage's astronaut and stereo_motorcycle, matplotlib's
# grace_hopper): persons, riders and vehicles are inlier classes of a road scene, and a negative of an inlier class
# teaches the model to flag the class itself (the paper removes such negatives).
PACKAGED_IMAGES: tuple[tuple[str, str], ...] = (
    ("skimage.data", "coffee"), ("skimage.data", "chelsea"),
    ("skimage.data", "rocket"), ("skimage.data", "hubble_deep_field"), ("skimage.data", "immunohistochemistry"),
    ("skimage.data", "retina"), ("skimage.data", "colorwheel"),
    ("sklearn:china.jpg", ""), ("sklearn:flower.jpg", ""),
)
EXCLUDED_PACKAGED_IMAGES = ("astronaut", "stereo_motorcycle", "grace_hopper.jpg")  # people and vehicles


def _load_packaged(module: str, name: str) -> np.ndarray | None:
    try:
        if module.startswith("sklearn:"):
            from sklearn.datasets import load_sample_image
            img = load_sample_image(module.split(":", 1)[1])
        elif module.startswith("matplotlib:"):
            import matplotlib.cbook
            path = matplotlib.cbook.get_sample_data(module.split(":", 1)[1], asfileobj=False)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            img = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            img = getattr(importlib.import_module(module), name)()
            if isinstance(img, tuple):  # stereo_motorcycle gives (left, right, disparity): the left photograph
                img = img[0]
    except Exception:  # noqa: BLE001 - a missing optional package or a download-only file just drops the image
        return None
    if img is None:
        return None
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        return None
    return np.ascontiguousarray(img[..., :3])


@dataclass
class _Segmented:
    image: np.ndarray          # RGB uint8, longer side <= working size
    segments: np.ndarray       # int32 superpixel ids 0..n-1
    neighbours: list[np.ndarray]


def _adjacency(segments: np.ndarray, n: int) -> list[np.ndarray]:
    pairs = np.concatenate([
        np.stack([segments[:, :-1].ravel(), segments[:, 1:].ravel()], 1),
        np.stack([segments[:-1, :].ravel(), segments[1:, :].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.concatenate([pairs, pairs[:, ::-1]]), axis=0)
    return [pairs[pairs[:, 0] == i, 1] for i in range(n)]


class PackagedImageNegatives:
    """Irregular instances cut from natural photographs bundled with installed packages.

    Each image is over-segmented once with SLIC (deterministic); an instance is a connected region grown from a
    random superpixel through 1-7 adjacent superpixels, so its outline follows real image edges, as object masks do.
    """

    def __init__(self, images: Sequence[np.ndarray] | None = None, working_size: int = 384, n_segments: int = 80):
        if images is None:
            images = [img for img in (_load_packaged(m, n) for m, n in PACKAGED_IMAGES) if img is not None]
        if not images:
            raise RuntimeError("no packaged natural images could be loaded (need scikit-image, scikit-learn or "
                               "matplotlib sample data); use ProceduralNegatives or an ADE20K tree instead")
        self._images = list(images)
        self.working_size = working_size
        self.n_segments = n_segments
        self._cache: dict[int, _Segmented] = {}

    def __len__(self) -> int:
        return len(self._images)

    def _segmented(self, index: int) -> _Segmented:
        if index not in self._cache:
            from skimage.segmentation import slic

            img = self._images[index]
            scale = self.working_size / max(img.shape[:2])
            if scale < 1:
                img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                                 interpolation=cv2.INTER_AREA)
            segments = slic(img, n_segments=self.n_segments, compactness=10, start_label=0).astype(np.int32)
            n = int(segments.max()) + 1
            self._cache[index] = _Segmented(img, segments, _adjacency(segments, n))
        return self._cache[index]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rng = check_rng(rng)
        seg = self._segmented(int(rng.integers(len(self._images))))
        n = len(seg.neighbours)
        region = {int(rng.integers(n))}
        frontier = set(int(j) for j in seg.neighbours[next(iter(region))])
        for _ in range(int(rng.integers(0, 7))):
            if not frontier:
                break
            nxt = sorted(frontier)[int(rng.integers(len(frontier)))]
            region.add(nxt)
            frontier |= set(int(j) for j in seg.neighbours[nxt])
            frontier -= region
        mask = np.isin(seg.segments, np.fromiter(region, np.int32)).astype(np.uint8)
        # Closing smooths the superpixel staircase without changing the outline's character.
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        rgb, m = crop_to_mask(seg.image, mask.astype(bool))
        if rng.random() < 0.5:
            rgb, m = rgb[:, ::-1].copy(), m[:, ::-1].copy()
        return rgb, m


# ----------------------------------------------------------------------------------------------------------------
# The bank used by training
# ----------------------------------------------------------------------------------------------------------------

class NegativeBank:
    """Mixture of negative sources; ``sample(rng)`` picks a source by weight and draws one instance from it.

    ``NegativeBank(seed)`` uses procedural content and the packaged natural images (equal weights). Pass
    ``sources=[ADE20KNegatives(root), ...]`` to use real ADE20K instances as in the paper. ``seed`` seeds the
    generator used when ``sample`` is called without one; training passes its own per-sample generator.
    """

    def __init__(self, seed: int = 0, sources: Sequence[NegativeSource] | None = None,
                 weights: Sequence[float] | None = None):
        if sources is None:
            sources = [ProceduralNegatives()]
            try:
                sources.append(PackagedImageNegatives())
            except RuntimeError:
                pass  # no packaged images installed: procedural content alone is still a valid negative source
        sources = list(sources)
        if not sources:
            raise ValueError("NegativeBank needs at least one negative source")
        for s in sources:
            if not callable(getattr(s, "sample", None)):
                raise TypeError(f"negative source {s!r} has no sample(rng) method")
        w = np.ones(len(sources)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(sources),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be {len(sources)} non-negative numbers with a positive sum, got {weights}")
        self.sources = sources
        self.weights = w / w.sum()
        self._rng = np.random.default_rng(seed)

    def sample(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng if rng is None else check_rng(rng)
        source = self.sources[int(rng.choice(len(self.sources), p=self.weights))]
        rgb, mask = source.sample(rng)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or mask.shape != rgb.shape[:2]:
            raise ValueError(f"negative source {type(source).__name__} returned rgb {rgb.dtype} {rgb.shape} and "
                             f"mask {mask.shape}; expected uint8 (h, w, 3) and (h, w)")
        return rgb, mask.astype(bool, copy=False)
