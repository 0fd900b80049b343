"""`render_sequence`: a drive through one world with smooth ego motion, for rosbags and temporal tests.

The ego car follows its lane at `speed` with a slow lateral sway and small smooth pitch/yaw oscillations; other
traffic and pedestrians move with their own speeds. Weather particles and sensor noise are redrawn per frame
(as in a real camera); the world, the lighting and the camera effects' settings stay fixed.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from typing import Iterator

from ..taxonomy import CONDITIONS
from .camera import Camera
from .camera_effects import CameraEffects
from .layouts import LAYOUTS, generate_world
from .objects import DRAW_DISTANCE_M
from .scene import (_ANOMALIES, _ATMOSPHERE, _CAMERA, _EFFECTS, _WEATHER_FX, _WORLD, Scene, _check_args, _stream,
                    anomaly_meta, choose_layout, clear_corridors, ego_pose, make_camera, render_frame)
from .anomalies import place_anomalies

MAX_FRAMES = 100_000


def render_sequence(seed: int, n_frames: int, height: int, width: int, condition: str = "clear",
                    layout: str | None = None, fps: float = 10.0, speed: float = 10.0, anomalies: int = 0
                    ) -> Iterator[Scene]:
    """Yield `n_frames` Scenes of one drive (same world, camera advancing `speed` m/s at `fps` frames/s)."""
    _check_args(seed, height, width, condition, layout, anomalies)
    if not isinstance(n_frames, (int, np.integer)) or not 1 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"n_frames must be an integer in [1, {MAX_FRAMES}], got {n_frames!r}")
    if not 0.5 <= float(fps) <= 120:
        raise ValueError(f"fps must be in [0.5, 120], got {fps!r}")
    if not 0.0 <= float(speed) <= 50:
        raise ValueError(f"speed must be in [0, 50] m/s, got {speed!r}")
    seed = int(seed)
    layout = layout or choose_layout(seed)
    duration = (n_frames - 1) / float(fps)
    length = speed * duration
    world = generate_world(_stream(seed, _WORLD, LAYOUTS.index(layout)), layout, -20.0, length + DRAW_DISTANCE_M + 20.0)
    cam_rng = _stream(seed, _CAMERA)
    base: Camera = make_camera(cam_rng, height, width)
    yaw0 = float(cam_rng.normal(0.0, 0.01))
    sway_a, sway_w, sway_p = float(cam_rng.uniform(0.05, 0.3)), float(cam_rng.uniform(0.1, 0.3)), float(cam_rng.uniform(0, 6.28))
    pitch_a, pitch_w = float(cam_rng.uniform(0.0, 0.004)), float(cam_rng.uniform(0.8, 2.0))
    from .conditions import make_atmosphere
    atm = make_atmosphere(condition, _stream(seed, _ATMOSPHERE, CONDITIONS.index(condition)))
    effects = CameraEffects.sample(_stream(seed, _EFFECTS, CONDITIONS.index(condition)), condition)
    effects = dataclasses.replace(effects, motion_blur=min(effects.motion_blur, 0.2 * speed / fps * 10))
    ego_d = world.road.lane_centre(world.ego_lane) + world.lane_offset
    for v in world.vehicles():
        # traffic in the ego lane keeps its distance: ahead drives a little faster, behind a little slower, so the
        # camera never passes through a vehicle
        if not v.oncoming and v.speed != 0 and abs(v.d - ego_d) < 1.6:
            v.speed = speed * (1.05 if v.z0 > 0 else 0.95)
    placed = []
    if anomalies:
        # obstacles ahead of the drive's last position: approached over the sequence, never driven through
        placed = place_anomalies(_stream(seed, _ANOMALIES), int(anomalies), world.road, length, base.focal, height,
                                 width, ego_d)
        samples = np.linspace(0.0, duration, min(n_frames, 12))
        clear_corridors(world, placed, [(float(t), speed * float(t), ego_d) for t in samples])
    for k in range(n_frames):
        t = k / float(fps)
        z = speed * t
        lateral = world.lane_offset + sway_a * math.sin(sway_w * t + sway_p)
        pose = ego_pose(world, z, lateral, yaw0 + 0.004 * math.sin(0.5 * t + sway_p))
        cam = dataclasses.replace(base, horizon=base.horizon + base.focal * pitch_a * math.sin(pitch_w * t))
        image, label, depth, canvas = render_frame(world, cam, pose, atm, effects, placed, t,
                                                   _stream(seed, _EFFECTS, 100, k), _stream(seed, _WEATHER_FX, 0, k),
                                                   _stream(seed, _WEATHER_FX, 1))
        meta = {"seed": seed, "condition": condition, "layout": layout, "height": height, "width": width,
                "frame": k, "time_s": round(t, 6), "fps": float(fps), "speed_mps": float(speed),
                "ego": {"x": round(pose.x, 4), "z": round(pose.z, 4), "heading": round(pose.heading, 6)},
                "camera": {"focal_px": round(cam.focal, 3), "horizon_row": round(cam.horizon, 3),
                           "mount_height_m": round(cam.mount_height, 3)},
                "anomalies": anomaly_meta(canvas, [a for a in placed], pose, world.road)}
        yield Scene(image=image, label=label, depth=depth, meta=meta)
