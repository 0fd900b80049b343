"""Camera effects applied last, on the finished image: exposure, vignetting, lens/motion blur, sensor noise,
JPEG compression. They are drawn per frame from their own seeded stream, and never touch labels or depth."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraEffects:
    exposure: float = 1.0       # multiplicative gain
    gamma: float = 1.0
    vignetting: float = 0.0     # darkening at the corners, 0..1
    blur_sigma: float = 0.0     # gaussian defocus (pixels at 1024 width)
    motion_blur: float = 0.0    # horizontal smear length (pixels at 1024 width)
    noise_sigma: float = 0.0    # std of additive sensor noise on the [0, 1] scale
    jpeg_quality: int = 0       # 0 = none

    @classmethod
    def sample(cls, rng: np.random.Generator, condition: str) -> "CameraEffects":
        dark = condition in ("night", "dusk")
        return cls(exposure=float(rng.uniform(0.85, 1.2)),
                   gamma=float(rng.uniform(0.9, 1.1)),
                   vignetting=float(rng.uniform(0.0, 0.45)),
                   blur_sigma=float(rng.choice([0.0, rng.uniform(0.4, 1.2)], p=[0.6, 0.4])),
                   motion_blur=float(rng.choice([0.0, rng.uniform(2.0, 7.0)], p=[0.8, 0.2])),
                   noise_sigma=float(rng.uniform(0.004, 0.02) * (2.2 if dark else 1.0)),
                   jpeg_quality=int(rng.choice([0, int(rng.integers(45, 95))], p=[0.5, 0.5])))


_NOISE_MARGIN = 64


@lru_cache(maxsize=4)
def _noise_field(h: int, w: int) -> np.ndarray:
    """Fixed gaussian field slightly larger than the frame; each frame uses a random shifted, flipped window
    of it. Drawing 3 normals per pixel per frame would cost more than the rest of the camera model."""
    rng = np.random.default_rng(1234)
    return rng.standard_normal((h + _NOISE_MARGIN, w + _NOISE_MARGIN, 3), dtype=np.float32)


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    y = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    x = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    return (1.0 - strength * 2.0 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def apply_camera_effects(img: np.ndarray, fx: CameraEffects, rng: np.random.Generator) -> np.ndarray:
    """float image in [0, ~1] -> uint8 RGB."""
    H, W = img.shape[:2]
    scale = W / 1024.0
    if fx.blur_sigma * scale > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), fx.blur_sigma * scale)
    if fx.motion_blur * scale >= 1.5:
        k = int(round(fx.motion_blur * scale)) | 1
        img = cv2.blur(img, (k, 1), borderType=cv2.BORDER_REFLECT)
    gain = np.float32(fx.exposure * 255.0)
    if fx.vignetting > 0:
        img *= (_vignette(H, W, fx.vignetting) * gain)[..., None]
    else:
        img *= gain
    if fx.noise_sigma > 0:
        # shot noise grows with the signal, read noise does not; both on the 0..255 scale
        field = _noise_field(H, W)
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_MARGIN, 2))
        noise = field[oy:oy + H, ox:ox + W]
        if rng.random() < 0.5:
            noise = noise[::-1]
        if rng.random() < 0.5:
            noise = noise[:, ::-1]
        sigma = np.clip(img, 0, 255)
        sigma *= np.float32(fx.noise_sigma * 0.6)
        sigma += np.float32(fx.noise_sigma * 0.5 * 255)
        sigma *= noise[..., rng.permutation(3)]
        noise = sigma
        img += noise
    out = np.empty((H, W, 3), np.uint8)
    np.clip(img + 0.5, 0, 255, out=img)
    out[:] = img
    if fx.gamma != 1.0:
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** fx.gamma + 0.5, 0, 255).astype(np.uint8)
        out = cv2.LUT(out, lut)
    if fx.jpeg_quality > 0:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, fx.jpeg_quality])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
