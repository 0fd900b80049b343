"""`render_scene`: one frame of the synthetic world, deterministic from its arguments.

Pipeline: world (layout) from the seed -> sky, far silhouettes, ground with markings, contact shadows -> objects
through a z-buffer -> optional anomalies -> night lighting and emitters -> haze (by depth) -> precipitation ->
colour grading -> camera effects. Labels and depth are the geometric truth: weather and camera effects change the
image only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import CONDITIONS, SYNTHETIC
from .anomalies import ANOMALY, Anomaly, place_anomalies
from .camera import Camera, Pose
from .camera_effects import CameraEffects, apply_camera_effects
from .canvas import MAX_DEPTH_M, Canvas
from .conditions import (Atmosphere, add_emitters, apply_haze, draw_sky, grade, make_atmosphere, night_lighting,
                         precipitation)
from .layouts import LAYOUTS, World, generate_world
from .objects import DRAW_DISTANCE_M, Ctx, Pole, Vehicle
from .shadows import cast_shadows, contact_shadows, paint_shadows

# Independent random streams per concern, so e.g. the condition or the anomaly count never moves the world.
_WORLD, _CAMERA, _ATMOSPHERE, _ANOMALIES, _EFFECTS, _WEATHER_FX = range(6)
MIN_SIZE, MAX_SIZE = 16, 8192


@dataclass
class Scene:
    image: np.ndarray          # (H, W, 3) uint8 RGB
    label: np.ndarray          # (H, W) uint8: 0..K-1 inliers, K anomaly, 255 void
    depth: np.ndarray          # (H, W) float32 metres (planar depth along the optical axis), <= MAX_DEPTH_M
    meta: dict = field(default_factory=dict)


def _stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, *keys]))


def _check_args(seed, height, width, condition, layout, anomalies) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or not MIN_SIZE <= v <= MAX_SIZE:
            raise ValueError(f"{name} must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {v!r}")
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} is not one of {CONDITIONS}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS} (or None for a seeded choice)")
    if not isinstance(anomalies, (int, np.integer)) or not 0 <= anomalies <= 8:
        raise ValueError(f"anomalies must be an integer in [0, 8], got {anomalies!r}")


def choose_layout(seed: int) -> str:
    rng = _stream(seed, _WORLD, 1)
    return LAYOUTS[int(rng.choice(len(LAYOUTS), p=[0.4, 0.25, 0.2, 0.15]))]


def make_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    return Camera.forward(height, width, hfov_deg=float(rng.uniform(55, 68)), horizon_frac=float(rng.uniform(0.44, 0.54)),
                          mount_height=float(rng.uniform(1.3, 1.7)))


def ego_pose(world: World, z: float, lane_offset: float, yaw: float = 0.0) -> Pose:
    road = world.road
    d = road.lane_centre(world.ego_lane) + lane_offset
    return Pose(x=float(road.centre(z)) + d, z=z, heading=road.heading(z) + yaw)


def _background(canvas: Canvas, world: World) -> None:
    cam = canvas.camera
    az = np.arctan(cam.column_rays()) + canvas.pose.heading
    for heights, depth, label, rgb in world.background.layers:
        n = heights.shape[0]
        idx = (((az + math.pi) / (2 * math.pi)) * n).astype(np.int64) % n
        h = heights[idx]
        top = cam.horizon + cam.focal * (cam.mount_height - h) / depth
        bottom = cam.horizon + cam.focal * cam.mount_height / depth
        r0 = max(0, int(math.floor(top.min())))
        r1 = min(cam.height, int(math.ceil(bottom)) + 1)
        if r1 <= r0:
            continue
        rows = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        mask = (rows >= top[None, :]) & (rows <= bottom) & (canvas.depth[r0:r1] > depth)
        # darker towards the silhouette's foot, per row only (the shapes are far: no texture to resolve)
        shade = 0.85 + 0.15 * np.clip((rows - top.min()) / max(bottom - float(top.min()), 1e-3), 0, 1)
        col = (rgb[None, :] * shade)[:, None, :]
        np.copyto(canvas.rgb[r0:r1], col, where=mask[..., None])
        np.copyto(canvas.label[r0:r1], np.uint8(label), where=mask)
        np.copyto(canvas.depth[r0:r1], np.float32(depth), where=mask)


def _lamps(world: World, ctx: Ctx, pose: Pose) -> list[tuple[float, float, float]]:
    out = []
    for t in world.things:
        if isinstance(t, Pole) and t.lamp:
            x, z = world.road.world(t.d + t.arm_side * t.arm, t.z)
            X, Z = pose.to_camera(x, z)
            if -10 < Z < 90:
                out.append((X, Z, t.height))
    return out


def render_frame(world: World, camera: Camera, pose: Pose, atm: Atmosphere, effects: CameraEffects,
                 anomalies: list[Anomaly], t: float, fx_rng: np.random.Generator, weather_rng: np.random.Generator,
                 sky_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, Canvas]:
    canvas = Canvas(camera, pose)
    ctx = Ctx(road=world.road, light=atm.light, t=t)
    world.road.snow_cover = atm.snow_cover
    world.road.wet = atm.wet
    draw_sky(canvas, atm, sky_rng)
    shadow_side = 0
    if atm.shadow > 0 and world.layout == "urban":
        # buildings on the side away from the sun shade the road
        rel = math.sin(atm.light.sun_azimuth - world.road.heading(pose.z))
        shadow_side = 1 if rel < 0 else -1
    world.road.draw_ground(canvas, 1.0, shadow_side, atm.shadow * 8.0 * abs(math.cos(atm.light.sun_azimuth)))
    _background(canvas, world)  # after the ground: its z-test keeps near ground in front of far silhouettes
    ground = getattr(world.road, "_last", None)
    shadows = contact_shadows(world, ctx, anomalies, 0.55 if not atm.light.night else 0.3)
    if atm.light.direct >= 0.15 and not atm.light.night:
        # in sunshine: cast shadows, darker the stronger the sun is against the sky light
        dark = 0.95 * atm.light.direct / (atm.light.direct + atm.light.ambient)
        shadows = cast_shadows(world, ctx, anomalies, atm.sun_elevation, dark) + shadows
    paint_shadows(canvas, ground, shadows)
    items = []
    for thing in world.things:
        z = thing.z if not isinstance(thing, Vehicle) else thing.z0 + thing.speed * t
        dz = z - pose.z
        far = thing.z1 - pose.z if hasattr(thing, "z1") else dz
        if far < -15 or dz > DRAW_DISTANCE_M:
            continue
        items.append((dz, thing))
    for a in anomalies:
        items.append((a.z - pose.z, a))
    items.sort(key=lambda p: p[0])  # near to far: the z-buffer rejects hidden pixels early
    for _, thing in items:
        thing.draw(canvas, ctx)
    img = canvas.rgb
    if atm.light.night:
        night_lighting(canvas, atm, _lamps(world, ctx, pose))
        img = canvas.rgb
    img = add_emitters(img, canvas, 1.2 if atm.light.night else 0.6, atm.wet)
    img = apply_haze(img, canvas.depth, atm)
    img = precipitation(img, atm, weather_rng, camera)
    img = grade(img, atm)
    image = apply_camera_effects(img.astype(np.float32), effects, fx_rng)
    return image, canvas.label, canvas.depth, canvas


def anomaly_meta(canvas: Canvas, anomalies: list[Anomaly], pose: Pose, road) -> list[dict]:
    out = []
    for a in anomalies:
        ys, xs = np.nonzero(canvas.instance == a.instance)
        X, Z = pose.to_camera(*road.world(a.d, a.z))
        out.append({"instance": a.instance, "family": a.family, "kind": a.kind, "size_m": round(a.size, 3),
                    "distance": round(float(math.hypot(X, Z)), 3), "lateral_m": round(float(X), 3),
                    "pixel_area": int(xs.size),
                    "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.size else None})
    return out


def render_scene(seed: int, height: int, width: int, condition: str = "clear", layout: str | None = None,
                 anomalies: int = 0) -> Scene:
    """One frame of the synthetic world. Same arguments -> byte-identical image, label and depth.

    The world (road, objects, camera) depends on (seed, layout) only, so one seed rendered under different
    conditions gives the same labels; anomalies (evaluation only) are added on top, clearing traffic that would
    hide them.
    """
    _check_args(seed, height, width, condition, layout, anomalies)
    seed = int(seed)
    layout = layout or choose_layout(seed)
    world = generate_world(_stream(seed, _WORLD, LAYOUTS.index(layout)), layout, -20.0, DRAW_DISTANCE_M + 20.0)
    cam_rng = _stream(seed, _CAMERA)
    camera = make_camera(cam_rng, height, width)
    yaw = float(cam_rng.normal(0.0, 0.02))
    pose = ego_pose(world, 0.0, world.lane_offset, yaw)
    atm = make_atmosphere(condition, _stream(seed, _ATMOSPHERE, CONDITIONS.index(condition)))
    placed: list[Anomaly] = []
    if anomalies:
        ego_d = world.road.lane_centre(world.ego_lane) + world.lane_offset
        placed = place_anomalies(_stream(seed, _ANOMALIES), int(anomalies), world.road, pose.z, camera.focal, height,
                                 width, ego_d)
        clear_corridors(world, placed, [(0.0, pose.z, ego_d)])
    effects = CameraEffects.sample(_stream(seed, _EFFECTS, CONDITIONS.index(condition)), condition)
    image, label, depth, canvas = render_frame(world, camera, pose, atm, effects, placed, 0.0,
                                               _stream(seed, _EFFECTS, 100), _stream(seed, _WEATHER_FX, 0),
                                               _stream(seed, _WEATHER_FX, 1))
    meta = {"seed": seed, "condition": condition, "layout": layout, "height": height, "width": width,
            "camera": {"focal_px": round(camera.focal, 3), "horizon_row": round(camera.horizon, 3),
                       "mount_height_m": round(camera.mount_height, 3)},
            "anomalies": anomaly_meta(canvas, placed, pose, world.road)}
    return Scene(image=image, label=label, depth=depth, meta=meta)


def clear_corridors(world: World, anomalies: list[Anomaly], track: list[tuple[float, float, float]]) -> None:
    """Remove traffic and pedestrians that would stand on an anomaly or on the line of sight to it from any
    camera position of `track` [(time s, camera z, camera lateral d)], so each placed obstacle stays visible
    (an evaluation frame with a fully hidden obstacle measures nothing)."""
    keep = []
    for thing in world.things:
        moving = isinstance(thing, Vehicle)
        is_person = thing.__class__.__name__ == "Person"
        if not (moving or is_person):
            keep.append(thing)
            continue
        half = thing.width / 2 if moving else 0.35
        length = thing.length / 2 if moving else 0.3
        drop = False
        for a in anomalies:
            rx, rz = a.footprint()
            for t, zc, dc in track:
                z = thing.z0 + thing.speed * t if moving else thing.z + thing.walk_speed * t
                if not zc - 2.0 < z - length and not zc - 2.0 < z + length:
                    continue
                if z - length > a.z + rz + 1.5:
                    continue  # wholly beyond the obstacle
                span = max(a.z - zc, 1.0)
                # lateral offset of the sight line (camera -> obstacle) at the thing's near and far ends
                near = dc + (a.d - dc) * np.clip((z - length - zc) / span, 0, 1)
                far = dc + (a.d - dc) * np.clip((z + length - zc) / span, 0, 1)
                gap = min(abs(thing.d - near), abs(thing.d - far))
                if gap < half + rx + 0.5:
                    drop = True
                    break
            if drop:
                break
        if not drop:
            keep.append(thing)
    world.things = keep
