"""Mixed-content training samples: negatives pasted over inlier crops (DenseHybrid paper, section 7.4).

Plain mode follows the paper: the inlier crop comes from scale jitter in [0.5, 2], a random horizontal flip and a
random crop (``jitter_crop``); 1-2 negative instances are resized with scale jitter, randomly cropped and pasted at
random positions. Pasted pixels become void in the class label (ignored by the class loss, eq. 7) and 1 in the
``ood_target`` (negative for the dataset posterior, eq. 14, and the likelihood term, eq. 12).

Harmonised mode follows the harmonisation blender of the ComsAmy paper (open-set-anomaly-segmentation-complex-
scenarios, sections III-IV): the instance stands on the ground (road/sidewalk/terrain pixels) with a pixel size set
by the depth at its contact point (pinhole: ``h_px = focal_px * h_m / depth``, so near pastes are bigger), its Lab
colour statistics are pulled part of the way towards the surrounding background, and its edges are feathered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from densehybrid_ros.data.negatives import check_rng
from densehybrid_ros.data.taxonomy import VOID_LABEL

INLIER_TARGET = 0
NEGATIVE_TARGET = 1
DEFAULT_HFOV_DEG = 60.0


@dataclass
class MixedContent:
    image: np.ndarray        # RGB uint8 (H, W, 3)
    label: np.ndarray        # uint8 (H, W): inlier classes, VOID_LABEL on pasted and void pixels
    ood_target: np.ndarray   # uint8 (H, W): 0 inlier, 1 pasted negative, 255 void in the original label
    depth: np.ndarray | None = None  # float32 metres; pasted pixels take the instance's depth in harmonised mode
    # (y0, x0, y1, x1) per pasted instance: the bounding box of its target pixels (alpha >= 0.5)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class PasteConfig:
    """Settings of ``paste_negatives``; defaults follow paper 7.4 (1-2 instances)."""

    min_instances: int = 1
    max_instances: int = 2
    # Plain mode: the instance's longer side as a fraction of the crop's shorter side (scale jitter). The paper
    # pastes instances from a 384 crop of a negative resized to 768 onto 768 inlier crops, i.e. up to half the crop.
    size_range: tuple[float, float] = (0.08, 0.5)
    # Random crop of the resized instance: each side keeps at least this fraction.
    min_crop_fraction: float = 0.6
    # Harmonised mode.
    ground_labels: tuple[int, ...] = (0, 1, 9)  # road, sidewalk, terrain (synthetic taxonomy = Cityscapes train ids)
    object_height_m: tuple[float, float] = (0.3, 2.0)
    # Focal length in pixels of the camera that took the inlier image *before* jitter_crop (jitter_crop returns
    # apparent depth, so the original focal stays valid on the crop). None: a 60-degree horizontal field of view
    # over the given image's width, the synthetic world's camera (data/world/camera.py) when the image is uncropped.
    focal_px: float | None = None
    colour_match: tuple[float, float] = (0.4, 0.8)  # fraction of the way towards the background statistics
    feather_px: tuple[float, float] = (0.8, 2.0)    # Gaussian sigma of the alpha edge
    min_size_px: int = 8
    # Harmonised mode: with this probability the contact point is drawn among the ground pixels at least
    # far_field_depth_m away (apparent depth), where there are any. Drawn uniformly over ground pixels, contact
    # points are mostly near the camera, because near ground covers most of the image, so distant, few-pixel
    # pastes were rare; distant obstacles are where most of the missed anomaly pixels are.
    far_field_probability: float = 0.0
    far_field_depth_m: float = 20.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_instances <= self.max_instances:
            raise ValueError(f"instances must satisfy 1 <= min_instances <= max_instances, got "
                             f"{self.min_instances}, {self.max_instances}")
        for name in ("size_range", "object_height_m", "colour_match", "feather_px"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")
        if not 0 < self.min_crop_fraction <= 1:
            raise ValueError(f"min_crop_fraction must be in (0, 1], got {self.min_crop_fraction}")
        if self.focal_px is not None and self.focal_px <= 0:
            raise ValueError(f"focal_px must be positive, got {self.focal_px}")
        if not 0 <= self.far_field_probability <= 1:
            raise ValueError(f"far_field_probability must be in [0, 1], got {self.far_field_probability}")
        if not self.far_field_depth_m > 0:
            raise ValueError(f"far_field_depth_m must be positive, got {self.far_field_depth_m}")


class JitteredCrop(NamedTuple):
    image: np.ndarray
    label: np.ndarray
    depth: np.ndarray | None


def _check_pair(image: np.ndarray, label: np.ndarray, depth: np.ndarray | None) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if label.dtype != np.uint8 or label.shape != image.shape[:2]:
        raise ValueError(f"label must be uint8 {image.shape[:2]}, got {label.dtype} {label.shape}")
    if depth is not None and depth.shape != image.shape[:2]:
        raise ValueError(f"depth must have shape {image.shape[:2]}, got {depth.shape}")


def jitter_crop(image: np.ndarray, label: np.ndarray, depth: np.ndarray | None, size: int | tuple[int, int],
                rng: np.random.Generator, scale_range: tuple[float, float] = (0.5, 2.0),
                flip: bool = True, focus: tuple[int, int] | None = None) -> JitteredCrop:
    """Inlier crop of paper 7.4: random zoom in ``scale_range``, random horizontal flip, random crop of ``size``.

    ``focus`` (row, column) of the source image, if given, lies inside the crop at a random place in it: the
    class-balanced sampling of rare classes (poles, signs, lights, people) without changing their appearance.

    Where the zoomed image is smaller than ``size`` it is padded with black image, void label and depth 0 (invalid).
    Depth is returned as the *apparent* depth ``depth / zoom``: a zoom by s looks like the scene moved s times
    closer to a camera with the original focal length, which keeps depth-based paste sizing valid on the crop.
    """
    _check_pair(image, label, depth)
    check_rng(rng)
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    # Log-uniform zoom: 0.5x and 2x are equally likely, as the symmetric range intends.
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    do_flip = flip and bool(rng.random() < 0.5)
    h, w = label.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.resize(image, (nw, nh), interpolation=interp)
    lab = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    dep = None if depth is None else cv2.resize(depth.astype(np.float32), (nw, nh), interpolation=cv2.INTER_NEAREST) / s
    if do_flip:
        img, lab = img[:, ::-1], lab[:, ::-1]
        dep = None if dep is None else dep[:, ::-1]
    ph, pw = max(0, out_h - nh), max(0, out_w - nw)
    top = left = 0
    if ph or pw:
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        pad = dict(top=top, bottom=ph - top, left=left, right=pw - left, borderType=cv2.BORDER_CONSTANT)
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), value=(0, 0, 0), **pad)
        lab = cv2.copyMakeBorder(np.ascontiguousarray(lab), value=VOID_LABEL, **pad)
        dep = None if dep is None else cv2.copyMakeBorder(np.ascontiguousarray(dep), value=0.0, **pad)
    if focus is None:
        y0 = int(rng.integers(0, img.shape[0] - out_h + 1))
        x0 = int(rng.integers(0, img.shape[1] - out_w + 1))
    else:
        fy, fx = _focus_in_zoomed(focus, (h, w), (nh, nw), do_flip, (top, left))
        y0 = _window_start(rng, fy, img.shape[0], out_h)
        x0 = _window_start(rng, fx, img.shape[1], out_w)
    win = np.s_[y0:y0 + out_h, x0:x0 + out_w]
    return JitteredCrop(np.ascontiguousarray(img[win]), np.ascontiguousarray(lab[win]),
                        None if dep is None else np.ascontiguousarray(dep[win], dtype=np.float32))


def _focus_in_zoomed(focus, src_shape, zoomed_shape, flipped, offset) -> tuple[int, int]:
    """Where source pixel ``focus`` lands after zoom, flip and padding."""
    (y, x), (h, w), (nh, nw) = focus, src_shape, zoomed_shape
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"focus {tuple(focus)} lies outside the image of {h}x{w}")
    fy = min(nh - 1, int((y + 0.5) * nh / h))
    fx = min(nw - 1, int((x + 0.5) * nw / w))
    if flipped:
        fx = nw - 1 - fx
    return fy + offset[0], fx + offset[1]


def _window_start(rng: np.random.Generator, f: int, length: int, out: int) -> int:
    """A start in [0, length - out] whose window of ``out`` holds index ``f``."""
    lo, hi = max(0, f - out + 1), min(f, length - out)
    return int(rng.integers(lo, hi + 1))


def _resize_instance(rgb: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    # Resizing the mask as float and thresholding keeps thin parts better than nearest neighbour.
    m = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR) >= 0.5
    return rgb, m


def _random_instance_crop(rng, rgb, mask, min_fraction):
    h, w = mask.shape
    ch = max(1, int(round(h * rng.uniform(min_fraction, 1.0))))
    cw = max(1, int(round(w * rng.uniform(min_fraction, 1.0))))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return rgb[y0:y0 + ch, x0:x0 + cw], mask[y0:y0 + ch, x0:x0 + cw]


def match_colour_statistics(patch: np.ndarray, mask: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """Move the patch's per-channel Lab mean/std (over ``mask``) ``strength`` of the way to ``reference`` (N, 3)."""
    lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ref = cv2.cvtColor(reference.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    src = lab[mask]
    mu_s, sd_s = src.mean(0), src.std(0) + 1e-3
    mu_r, sd_r = ref.mean(0), ref.std(0) + 1e-3
    # Lightness moves fully by `strength`, chroma half as much: illumination should match the scene while the
    # object keeps some of its own colour. Contrast moves geometrically and at most 2x either way, so a flat
    # background (std ~ 0) cannot erase the object's texture.
    mu_t = mu_s + strength * np.array([1.0, 0.5, 0.5], np.float32) * (mu_r - mu_s)
    sd_t = sd_s * np.clip((sd_r / sd_s) ** strength, 0.5, 2.0)
    lab = (lab - mu_s) / sd_s * sd_t + mu_t
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _harmonised_placement(rng, cfg, label, depth, rgb, mask, focal_px):
    """Pick a ground contact point and scale the instance by pinhole geometry; None if no valid ground."""
    h, w = label.shape
    valid = np.isfinite(depth) & (depth > 0)
    ground = valid & np.isin(label, cfg.ground_labels)
    candidates = ground if ground.any() else valid & (np.arange(h)[:, None] >= h // 2)
    # Drawn only when enabled, so configs without it keep their random streams.
    if cfg.far_field_probability > 0 and rng.random() < cfg.far_field_probability:
        far = candidates & (depth >= cfg.far_field_depth_m)
        if far.any():
            candidates = far
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    cy, cx = int(ys[i]), int(xs[i])
    d = float(depth[cy, cx])
    height_px = focal_px * rng.uniform(*cfg.object_height_m) / d
    height_px = float(np.clip(height_px, cfg.min_size_px, 0.9 * h))
    inst_rgb, inst_mask = _resize_instance(rgb, mask, height_px / mask.shape[0])
    ih, iw = inst_mask.shape
    if iw > 0.9 * w:
        inst_rgb, inst_mask = _resize_instance(inst_rgb, inst_mask, 0.9 * w / iw)
        ih, iw = inst_mask.shape
    # The instance's bottom row sits on the contact point (a little sunk so it reads as standing, not floating).
    y1 = min(h, cy + max(1, ih // 20))
    y0 = max(0, y1 - ih)
    x0 = int(np.clip(cx - iw // 2, 0, w - iw))
    return inst_rgb[ih - (y1 - y0):], inst_mask[ih - (y1 - y0):], y0, x0, d


def paste_negatives(image: np.ndarray, label: np.ndarray, negatives, rng: np.random.Generator,
                    depth: np.ndarray | None = None, harmonised: bool = False,
                    config: PasteConfig | None = None) -> MixedContent:
    """Paste 1-2 negative instances from ``negatives`` (anything with ``sample(rng)``) over an inlier crop.

    Returns ``MixedContent``: pasted pixels are void in ``label`` and 1 in ``ood_target``; other pixels keep their
    label, with ``ood_target`` 0 where the label is an inlier class and 255 where it was void. Harmonised mode needs
    ``depth`` (metres; 0 or non-finite = invalid); with no valid ground it falls back to plain placement.
    """
    cfg = config or PasteConfig()
    _check_pair(image, label, depth)
    check_rng(rng)
    if not callable(getattr(negatives, "sample", None)):
        raise TypeError(f"negatives must have a sample(rng) method (e.g. NegativeBank), got {type(negatives).__name__}")
    if harmonised and depth is None:
        raise ValueError("harmonised pasting needs a depth map (metres) to scale instances by distance")
    h, w = label.shape
    out = image.astype(np.float32)
    out_label = label.copy()
    pasted = np.zeros((h, w), bool)
    out_depth = None if depth is None else depth.astype(np.float32, copy=True)
    boxes: list[tuple[int, int, int, int]] = []
    focal_px = cfg.focal_px if cfg.focal_px is not None else 0.5 * w / np.tan(np.radians(DEFAULT_HFOV_DEG) / 2)
    n = int(rng.integers(cfg.min_instances, cfg.max_instances + 1))
    attempts = 0
    while len(boxes) < n and attempts < 4 * n:  # a random crop can cut away the whole mask: draw again
        attempts += 1
        rgb, mask = negatives.sample(rng)
        placed = None
        if harmonised:
            placed = _harmonised_placement(rng, cfg, label, depth, rgb, mask, focal_px)
        if placed is None:
            target = rng.uniform(*cfg.size_range) * min(h, w)
            inst_rgb, inst_mask = _resize_instance(rgb, mask, max(target, cfg.min_size_px) / max(mask.shape))
            inst_rgb, inst_mask = _random_instance_crop(rng, inst_rgb, inst_mask, cfg.min_crop_fraction)
            ih, iw = min(inst_mask.shape[0], h), min(inst_mask.shape[1], w)
            inst_rgb, inst_mask = inst_rgb[:ih, :iw], inst_mask[:ih, :iw]
            y0, x0 = int(rng.integers(0, h - ih + 1)), int(rng.integers(0, w - iw + 1))
            d = None
        else:
            inst_rgb, inst_mask, y0, x0, d = placed
            ih, iw = inst_mask.shape
        if not inst_mask.any():
            continue
        if harmonised:
            # Reference statistics: the background in a margin around the instance (not other pastes).
            margin = max(4, max(ih, iw) // 3)
            ry0, rx0 = max(0, y0 - margin), max(0, x0 - margin)
            ry1, rx1 = min(h, y0 + ih + margin), min(w, x0 + iw + margin)
            around = ~pasted[ry0:ry1, rx0:rx1]
            around[y0 - ry0:y0 - ry0 + ih, x0 - rx0:x0 - rx0 + iw] &= ~inst_mask
            ref = out[ry0:ry1, rx0:rx1][around]
            if len(ref) < 16:
                ref = out[~pasted]
            inst_rgb = match_colour_statistics(inst_rgb, inst_mask, ref, rng.uniform(*cfg.colour_match))
            # Feathering needs room outside the mask's box for the soft edge; pad, blur, then clip to the image.
            sigma = rng.uniform(*cfg.feather_px)
            pad = int(np.ceil(3 * sigma))
            inst_rgb = cv2.copyMakeBorder(inst_rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            alpha = cv2.GaussianBlur(np.pad(inst_mask, pad).astype(np.float32), (0, 0), sigma)
            y0, x0 = y0 - pad, x0 - pad
        else:
            alpha = inst_mask.astype(np.float32)
        # Clip the instance window to the image (harmonised pads and contact points can reach past the border).
        ah, aw = alpha.shape
        cy0, cx0 = max(0, -y0), max(0, -x0)
        cy1, cx1 = min(ah, h - y0), min(aw, w - x0)
        alpha, inst_rgb = alpha[cy0:cy1, cx0:cx1], inst_rgb[cy0:cy1, cx0:cx1]
        y0, x0 = y0 + cy0, x0 + cx0
        win = np.s_[y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]]
        covered = alpha >= 0.5
        if not covered.any():
            continue
        a = alpha[..., None]
        out[win] = a * inst_rgb.astype(np.float32) + (1 - a) * out[win]
        pasted[win] |= covered
        if out_depth is not None and d is not None:
            out_depth[win][covered] = d
        ys, xs = np.nonzero(covered)
        boxes.append((y0 + int(ys.min()), x0 + int(xs.min()), y0 + int(ys.max()) + 1, x0 + int(xs.max()) + 1))
    ood = np.where(label == VOID_LABEL, VOID_LABEL, INLIER_TARGET).astype(np.uint8)
    ood[pasted] = NEGATIVE_TARGET
    out_label[pasted] = VOID_LABEL
    return MixedContent(np.clip(out + 0.5, 0, 255).astype(np.uint8), out_label, ood, out_depth, boxes)
