"""Procedural texture helpers: a fixed tileable noise tile sampled in surface metres, colour jitter.

The tile is the same in every process (fixed seed), so textures never depend on anything but the scene seed's
offsets into it; that keeps rendering deterministic and avoids regenerating noise per frame.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

TILE = 256


def _tileable(rng: np.random.Generator, cells: int) -> np.ndarray:
    grid = rng.random((cells, cells), dtype=np.float32)
    big = np.tile(grid, (3, 3))
    up = cv2.resize(big, (3 * TILE, 3 * TILE), interpolation=cv2.INTER_CUBIC)
    return up[TILE:2 * TILE, TILE:2 * TILE]


@lru_cache(maxsize=1)
def noise_tile() -> np.ndarray:
    """Zero-mean fractal value noise in about [-1, 1], shape (TILE, TILE), tileable."""
    rng = np.random.default_rng(20220723)
    tile = np.zeros((TILE, TILE), np.float32)
    amp, total = 1.0, 0.0
    for cells in (4, 8, 16, 32, 64, 128):
        tile += amp * _tileable(rng, cells)
        total += amp
        amp *= 0.6
    tile /= total
    tile -= tile.mean()
    return (tile / np.abs(tile).max()).astype(np.float32)


@lru_cache(maxsize=1)
def fine_tile() -> np.ndarray:
    """High-frequency grain (per-texel white noise, lightly smoothed), zero mean."""
    rng = np.random.default_rng(7)
    t = rng.standard_normal((TILE, TILE)).astype(np.float32)
    t = cv2.GaussianBlur(np.tile(t, (3, 3)), (3, 3), 0.6)[TILE:2 * TILE, TILE:2 * TILE]  # tiled: wraps
    return t / np.abs(t).max()


def frac(x):
    """x - floor(x): the fractional part, several times faster than `x % 1.0` on float arrays."""
    return x - np.floor(x)


def sample(tile: np.ndarray, s, y, per_metre: float, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Bilinear lookup of the tileable `tile` at surface coordinates (s, y) metres, broadcasting s and y.
    cv2.remap does the filtering and the wrap-around in one pass (no blocky texels up close)."""
    s = np.asarray(s, np.float32)
    y = np.asarray(y, np.float32)
    shape = np.broadcast_shapes(s.shape, y.shape)
    if len(shape) != 2 or 0 in shape:
        iy = (y * per_metre + offset[1]).astype(np.int64) & (TILE - 1)
        ix = (s * per_metre + offset[0]).astype(np.int64) & (TILE - 1)
        return tile[iy, ix]
    # wrap into [0, TILE) first: remap stores coordinates in fixed point and large ones would overflow
    u = s * np.float32(per_metre / TILE) + np.float32(offset[0] / TILE)
    v = y * np.float32(per_metre / TILE) + np.float32(offset[1] / TILE)
    u = np.ascontiguousarray(np.broadcast_to(frac(u) * TILE, shape))
    v = np.ascontiguousarray(np.broadcast_to(frac(v) * TILE, shape))
    return cv2.remap(tile, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def noise(s, y, per_metre: float, offset=(0.0, 0.0)) -> np.ndarray:
    return sample(noise_tile(), s, y, per_metre, offset)


def grain(s, y, per_metre: float, offset=(0.0, 0.0)) -> np.ndarray:
    return sample(fine_tile(), s, y, per_metre, offset)


def fade(Z, per_metre: float, focal: float) -> np.ndarray:
    """Weight of a texture whose texels would look blocky up close: 1 while a texel spans <= 4 pixels, 0 from 12.
    (Nearest-texel lookups are cheap; this hides their one drawback instead of paying for filtering.)"""
    texel_px = focal / (np.asarray(Z, np.float32) * per_metre)
    return np.clip(1.5 - texel_px / 8.0, 0.0, 1.0)


def jitter(rng: np.random.Generator, rgb, amount: float = 0.08) -> np.ndarray:
    """A colour near `rgb` (brightness and per-channel jitter), clipped to [0, 1]."""
    rgb = np.asarray(rgb, np.float32)
    out = rgb * rng.uniform(1 - amount, 1 + amount) + rng.uniform(-amount, amount, 3) * 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def shade(rgb: np.ndarray, factor) -> np.ndarray:
    """Albedo times a (broadcast) brightness factor, shaped for (h, w, 3)."""
    return np.asarray(rgb, np.float32) * np.asarray(factor, np.float32)[..., None]


def rgb(*values) -> np.ndarray:
    """RGB from 0..255 integers."""
    return np.asarray(values, np.float32) / 255.0
