"""Camera effects applied last, on the finished image: exposure, vignetting, lens/motion blur, sensor noise,
JPEG compression. They are drawn per frame from their own seeded stream, and never touch labels or depth."""
from __future__ import annotations

from dataclasses import dataclass

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


def apply_camera_effects(img: np.ndarray, fx: CameraEffects, rng: np.random.Generator) -> np.ndarray:
    """float image in [0, ~1] -> uint8 RGB."""
    H, W = img.shape[:2]
    scale = W / 1024.0
    if fx.blur_sigma * scale > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), fx.blur_sigma * scale)
    if fx.motion_blur * scale >= 1.5:
        k = int(round(fx.motion_blur * scale)) | 1
        kernel = np.full((1, k), 1.0 / k, np.float32)
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
    img = img * fx.exposure
    if fx.vignetting > 0:
        y = (np.arange(H, dtype=np.float32) + 0.5) / H - 0.5
        x = (np.arange(W, dtype=np.float32) + 0.5) / W - 0.5
        r2 = (y[:, None] ** 2 + x[None, :] ** 2) * 2.0
        img = img * (1.0 - fx.vignetting * r2)[..., None]
    np.clip(img, 0.0, 1.0, out=img)
    if fx.gamma != 1.0:
        img = img ** np.float32(fx.gamma)
    if fx.noise_sigma > 0:
        # signal-dependent (shot) plus constant (read) noise
        sigma = fx.noise_sigma * (0.5 + np.sqrt(img.mean(axis=2, keepdims=True) + 1e-3))
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if fx.jpeg_quality > 0:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, fx.jpeg_quality])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
