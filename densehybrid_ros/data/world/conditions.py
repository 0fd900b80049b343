"""The seven ComsAmy conditions (clear, rain, fog, night, snow, dusk, sandstorm): sky, sun and ambient light,
depth-dependent haze, precipitation, night lighting and colour grading. Labels never change with the condition;
only the image does (the paper's section III: the same road under adverse weather).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..taxonomy import CONDITIONS
from . import textures as tx
from .camera import Camera
from .canvas import MAX_DEPTH_M, Canvas
from .objects import Lighting


@dataclass
class Atmosphere:
    condition: str
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    clouds: float                 # 0..1 cloud cover
    cloud_rgb: np.ndarray
    light: Lighting
    haze_rgb: np.ndarray
    visibility: float             # metres at which haze reaches ~63%
    grade: np.ndarray             # per-channel gain after everything
    saturation: float
    snow_cover: float = 0.0
    wet: float = 0.0
    rain: float = 0.0             # streak density 0..1
    snowfall: float = 0.0         # flake density 0..1
    dust: float = 0.0             # sandstorm particles
    headlights: bool = False
    ambient_night: float = 0.0    # multiplier of the albedo at night away from lights
    shadow: float = 0.0           # strength of building shadows on the road (sunny conditions)
    stars: bool = False
    sun_elevation: float = 0.6    # radians; sets the length of cast shadows


def make_atmosphere(condition: str, rng: np.random.Generator) -> Atmosphere:
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} is not one of {CONDITIONS}")
    u = rng.uniform
    sun_az = float(u(-math.pi, math.pi))
    c = tx.rgb
    if condition == "clear":
        return Atmosphere(condition, tx.jitter(rng, c(70, 120, 200), 0.06), tx.jitter(rng, c(175, 205, 235), 0.04),
                          float(u(0.0, 0.5)), c(245, 245, 250), Lighting(sun_az, float(u(0.3, 0.55)), float(u(0.6, 0.75))),
                          c(200, 215, 235), float(u(1500, 4000)), tx.jitter(rng, np.ones(3, np.float32), 0.04), float(u(1.0, 1.2)),
                          shadow=float(u(0.0, 1.0)), sun_elevation=float(u(0.3, 1.1)))
    if condition == "rain":
        return Atmosphere(condition, c(95, 100, 110), c(150, 155, 160), 1.0, c(120, 122, 128),
                          Lighting(sun_az, 0.05, float(u(0.5, 0.65)), lights_on=float(u(0.0, 0.4))),
                          c(140, 145, 150), float(u(150, 500)), tx.jitter(rng, np.asarray((0.92, 0.95, 1.0), np.float32), 0.03),
                          float(u(0.6, 0.8)), wet=float(u(0.6, 1.0)), rain=float(u(0.3, 1.0)))
    if condition == "fog":
        g = float(u(170, 215))
        return Atmosphere(condition, c(g, g, g + 5), c(g + 15, g + 15, g + 15), 1.0, c(g, g, g),
                          Lighting(sun_az, 0.05, float(u(0.65, 0.8))), c(g, g + 3, g + 8), float(u(25, 90)),
                          np.ones(3, np.float32), float(u(0.5, 0.8)), wet=float(u(0.0, 0.3)))
    if condition == "night":
        return Atmosphere(condition, c(5, 7, 16), c(20, 24, 40), float(u(0, 0.6)), c(25, 25, 35),
                          Lighting(sun_az, 0.0, 1.0, night=True, lights_on=float(u(0.3, 0.7))), c(15, 17, 28),
                          float(u(600, 2000)), np.asarray((0.95, 0.97, 1.05), np.float32), float(u(0.6, 0.9)),
                          wet=float(u(0, 0.5)), headlights=True, ambient_night=float(u(0.05, 0.12)), stars=True)
    if condition == "snow":
        return Atmosphere(condition, c(170, 175, 185), c(205, 210, 218), 1.0, c(200, 203, 210),
                          Lighting(sun_az, 0.05, float(u(0.7, 0.85))), c(215, 220, 228), float(u(120, 400)),
                          np.asarray((0.97, 1.0, 1.06), np.float32), float(u(0.6, 0.85)),
                          snow_cover=float(u(0.5, 1.0)), snowfall=float(u(0.2, 1.0)))
    if condition == "dusk":
        warm = float(u(0.0, 1.0))
        top = c(60, 70, 130) * (1 - warm) + c(90, 70, 120) * warm
        hor = c(250, 160, 90) * (1 - warm * 0.3)
        return Atmosphere(condition, top, hor, float(u(0.0, 0.6)), c(220, 140, 120),
                          Lighting(sun_az, float(u(0.2, 0.35)), float(u(0.35, 0.5)), lights_on=float(u(0.2, 0.6))),
                          c(200, 150, 120), float(u(800, 2500)), np.asarray((1.12, 0.92, 0.78), np.float32),
                          float(u(0.9, 1.1)), shadow=float(u(0.5, 1.0)), headlights=bool(rng.random() < 0.5),
                          sun_elevation=float(u(0.08, 0.25)))
    # sandstorm
    return Atmosphere(condition, c(170, 130, 80), c(205, 165, 110), 1.0, c(190, 150, 100),
                      Lighting(sun_az, 0.08, float(u(0.55, 0.7))), tx.jitter(rng, c(195, 150, 95), 0.05),
                      float(u(35, 120)), np.asarray((1.1, 0.95, 0.72), np.float32), float(u(0.5, 0.75)),
                      dust=float(u(0.3, 1.0)))


# -------------------------------------------------------------------------------------------------- sky
def draw_sky(canvas: Canvas, atm: Atmosphere, rng: np.random.Generator) -> None:
    """Gradient and clouds, computed at half resolution (the sky is smooth) and upsampled."""
    cam = canvas.camera
    H, W = cam.height, cam.width
    rows = max(1, min(H, int(math.ceil(cam.horizon)) + 1))
    hr, wr = max(1, (rows + 1) // 2), max(1, (W + 1) // 2)
    r = (np.arange(hr, dtype=np.float32) + 0.5) * (rows / hr)
    cols = (np.arange(wr, dtype=np.float32) + 0.5) * (W / wr)
    # elevation of each row above the horizon, 0 at the horizon
    elev = np.clip((cam.horizon - r) / cam.focal, 0, None)
    t = np.clip(elev / 0.6, 0, 1) ** 0.6
    grad = atm.sky_horizon[None, :] * (1 - t[:, None]) + atm.sky_top[None, :] * t[:, None]
    sky = np.broadcast_to(grad[:, None, :], (hr, wr, 3)).astype(np.float32)
    off = (float(rng.uniform(0, 256)), float(rng.uniform(0, 256)))
    if atm.clouds > 0:
        # clouds as noise on a plane high above: perspective squashes them toward the horizon
        zc = 1.0 / np.maximum(elev, 0.02)[:, None]
        xc = ((cols[None, :] - cam.cx) / cam.focal + canvas.pose.heading) * zc
        n = tx.noise(xc * 0.35, zc * 0.7, 6.0, off) + 0.4 * tx.noise(xc * 1.3, zc * 2.0, 6.0, (off[1], off[0]))
        cover = np.clip((n + 1.2 * atm.clouds - 0.7) * 2.0, 0, 1) * np.clip(elev[:, None] / 0.03, 0, 1)
        shade = 0.85 + 0.15 * np.clip(n, -1, 1)
        sky = sky * (1 - cover[..., None]) + atm.cloud_rgb * shade[..., None] * cover[..., None]
    sky = cv2.resize(sky.astype(np.float32), (W, rows), interpolation=cv2.INTER_LINEAR)
    if atm.stars:
        star = rng.random((rows, W), dtype=np.float32) > 0.9985
        sky[star] += 0.5 * rng.random(int(star.sum()), dtype=np.float32)[:, None]
    canvas.rgb[:rows] = sky
    canvas.label[:rows] = 10
    canvas.depth[:rows] = MAX_DEPTH_M


# ------------------------------------------------------------------------------------------ lighting passes
def night_lighting(canvas: Canvas, atm: Atmosphere, lamps: list[tuple[float, float, float]]) -> None:
    """Albedo times (dim ambient + ego headlight cone + street lamp pools). Computed at 1/4 resolution and
    upsampled: light varies smoothly so this loses nothing visible and keeps a frame well under budget."""
    cam = canvas.camera
    H, W = cam.height, cam.width
    sh, sw = max(1, H // 4), max(1, W // 4)
    depth = cv2.resize(canvas.depth, (sw, sh), interpolation=cv2.INTER_NEAREST)
    rows = (np.arange(sh, dtype=np.float32) + 0.5) * (H / sh)
    cols = (np.arange(sw, dtype=np.float32) + 0.5) * (W / sw)
    Z = depth
    X = (cols[None, :] - cam.cx) / cam.focal * Z
    Y = cam.mount_height - (rows[:, None] - cam.horizon) / cam.focal * Z
    illum = np.full((sh, sw), atm.ambient_night, np.float32)
    if atm.headlights:
        # low-beam cone: bright on the road ahead, cut off above ~1 m at distance
        ang = np.abs(X) / np.maximum(Z, 0.5)
        cone = np.exp(-(ang / 0.35) ** 2) * np.clip(1.3 - Y * (1.0 + 8.0 / np.maximum(Z, 1)), 0, 1)
        fall = 1.0 / (1.0 + (Z / 28.0) ** 2)
        illum += 1.6 * cone * fall * (Z > 1.0)
    for (lx, lz, lh) in lamps:
        # a pool of light under each lamp, falling off with the distance from the lamp head
        d2 = (X - lx) ** 2 + (Z - lz) ** 2 + (Y - lh) ** 2
        illum += 0.45 * lh * lh / (d2 + lh * lh)
    # the eye and the camera's auto exposure compress highlights: keep lit areas from burning out
    illum = illum / (1.0 + 0.35 * illum)
    illum[depth >= MAX_DEPTH_M - 1] = 1.0  # the sky keeps its own night colour
    light = cv2.resize(illum, (W, H), interpolation=cv2.INTER_LINEAR)
    warm = np.asarray((1.0, 0.93, 0.8), np.float32)
    canvas.rgb *= light[..., None] * warm


def add_emitters(img: np.ndarray, canvas: Canvas, glow: float, wet: float = 0.0) -> np.ndarray:
    """Add emitted light (windows, lamps, vehicle lights) with a bloom whose size follows the image width; on a
    wet road the lights also stretch into vertical reflections below them."""
    if not canvas.any_emit:
        return img
    e = canvas.emit
    out = img + e
    H, W = e.shape[:2]
    if glow > 0 or wet > 0.05:
        small = cv2.resize(e, (max(1, W // 4), max(1, H // 4)), interpolation=cv2.INTER_AREA)
    if glow > 0:
        k = max(3, int(W / 80) | 1)
        blur = cv2.GaussianBlur(small, (0, 0), k / 4)
        out += glow * cv2.resize(blur, (W, H), interpolation=cv2.INTER_LINEAR)
    if wet > 0.05:
        # a light at row r reflects in the wet surface below it: smear downwards (flip, causal box filter, flip)
        length = max(3, small.shape[0] // 6)
        kernel = np.linspace(1.0, 0.0, length, dtype=np.float32)[:, None]
        kernel /= kernel.sum()
        flipped = np.ascontiguousarray(small[::-1])
        smear = cv2.filter2D(flipped, -1, kernel, anchor=(0, length - 1), borderType=cv2.BORDER_CONSTANT)[::-1]
        smear = cv2.GaussianBlur(np.ascontiguousarray(smear), (0, 0), sigmaX=0.8, sigmaY=0.1)
        # only road and sidewalk are wet mirrors; masking at quarter resolution keeps this cheap
        small_label = cv2.resize(canvas.label, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        smear *= ((small_label <= 1) * np.float32(3.0 * wet))[..., None]
        out += cv2.resize(smear, (W, H), interpolation=cv2.INTER_LINEAR)
    return out


def apply_haze(img: np.ndarray, depth: np.ndarray, atm: Atmosphere) -> np.ndarray:
    """Koschmieder's law: transmittance exp(-depth / visibility) towards the haze colour."""
    t = np.exp(depth * np.float32(-1.0 / atm.visibility))[..., None]
    haze = atm.haze_rgb.astype(np.float32)
    img -= haze
    img *= t
    img += haze
    return img

def precipitation(img: np.ndarray, atm: Atmosphere, rng: np.random.Generator, camera: Camera) -> np.ndarray:
    H, W = img.shape[:2]
    scale = W / 1024.0
    if atm.rain > 0:
        layer = np.zeros((H, W), np.float32)
        n = int(atm.rain * 1400 * (H * W) / (512 * 1024))
        x = rng.uniform(0, W, n)
        y = rng.uniform(0, H, n)
        length = rng.uniform(10, 35, n) * scale
        slant = rng.normal(0.15, 0.05)
        bright = rng.uniform(0.08, 0.25, n)
        for i in range(n):
            cv2.line(layer, (int(x[i]), int(y[i])), (int(x[i] + slant * length[i]), int(y[i] + length[i])),
                     float(bright[i]), 1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (3, 3), 0)
        img = img * (1 - 0.5 * layer[..., None]) + 0.85 * layer[..., None]
    if atm.snowfall > 0:
        layer = np.zeros((H, W), np.float32)
        n = int(atm.snowfall * 1800 * (H * W) / (512 * 1024))
        x = rng.uniform(0, W, n).astype(np.int32)
        y = rng.uniform(0, H, n).astype(np.int32)
        r = np.maximum(1, (rng.pareto(2.5, n) * 1.2 + 0.6) * scale).astype(np.int32)
        a = rng.uniform(0.4, 1.0, n)
        for i in range(n):
            cv2.circle(layer, (int(x[i]), int(y[i])), int(min(r[i], 8 * scale + 1)), float(a[i]), -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.8 * max(scale, 0.5))
        layer = np.clip(layer, 0, 1)[..., None]
        img = img * (1 - layer) + np.asarray((0.95, 0.96, 1.0), np.float32) * layer
    if atm.dust > 0:
        grain = rng.random((H // 2 + 1, W // 2 + 1), dtype=np.float32)
        grain = cv2.resize(grain, (W, H), interpolation=cv2.INTER_LINEAR)
        streak = cv2.GaussianBlur(grain, (0, 0), sigmaX=6 * scale + 1, sigmaY=1)
        img = img + (streak[..., None] - 0.5) * 0.12 * atm.dust * atm.haze_rgb
    return img


def grade(img: np.ndarray, atm: Atmosphere) -> np.ndarray:
    """Per-channel gain and saturation as one 3x3 colour matrix (a single pass over the image)."""
    luma = np.asarray((0.299, 0.587, 0.114), np.float32)
    s = np.float32(atm.saturation)
    sat = s * np.eye(3, dtype=np.float32) + (1 - s) * np.ones((3, 1), np.float32) * luma[None, :]
    m = (np.diag(atm.grade.astype(np.float32)) @ sat).astype(np.float32)
    return cv2.transform(img, m)
