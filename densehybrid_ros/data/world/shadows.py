"""Shadows on the ground: soft contact shadows under vehicles and obstacles (always), and, in sunshine, shadows
cast away from the sun by vehicles, trees, poles, people and obstacles (their length from the sun's elevation).

Shadows are painted onto the ground before objects are drawn, so objects always cover them; they change only the
image (a shadow on the road is still road). Each shadow is a soft-edged rectangle or ellipse in ground coordinates,
evaluated only inside its projected bounding box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas
from .objects import Ctx, Pole, Person, Tree, TrafficLight, Sign, Vehicle

# Cast shadows longer than this are cut (a low sun would otherwise paint the whole road from far away).
MAX_SHADOW_M = 25.0


@dataclass
class GroundShadow:
    x: float          # centre, world metres
    z: float
    ax: float         # unit vector of the shadow's long axis (world)
    az: float
    half_long: float
    half_wide: float
    darkness: float   # 0..1 fraction of light removed at the core
    ellipse: bool = False
    soft: float = 0.25  # metres of soft edge


def cast_shadows(world, ctx: Ctx, anomalies, elevation: float, darkness: float) -> list[GroundShadow]:
    """Shadows of upright things, stretched along the sun's direction of travel."""
    li = ctx.light
    sx, sz = math.sin(li.sun_azimuth), math.cos(li.sun_azimuth)   # direction the light travels (horizontal)
    cot = 1.0 / math.tan(max(elevation, 0.05))
    out: list[GroundShadow] = []

    def upright(x, z, height, half_wide, base_len=0.0, ellipse=False, lift=0.0, dark=darkness):
        length = min((height - lift) * cot, MAX_SHADOW_M)
        start = lift * cot
        if length <= 0.05:
            return
        mid = start + length / 2
        out.append(GroundShadow(x + sx * mid, z + sz * mid, sx, sz, length / 2 + base_len, half_wide, dark, ellipse))

    road = ctx.road
    for t in world.things:
        if isinstance(t, Vehicle):
            (x, z), heading = t.pose_at(ctx)
            # the box's extent across the sun direction
            across = abs(t.width * math.cos(heading - li.sun_azimuth)) + abs(t.length * math.sin(heading - li.sun_azimuth))
            upright(x, z, t.height * 0.9, across / 2, base_len=0.5 * t.length * abs(math.cos(heading - li.sun_azimuth)))
        elif isinstance(t, Tree):
            x, z = road.world(t.d, t.z)
            crown_h = t.height - t.crown
            length = min(crown_h * cot, MAX_SHADOW_M)
            out.append(GroundShadow(x + sx * length, z + sz * length, sx, sz,
                                    min(t.crown / max(math.sin(elevation), 0.2), 2.5 * t.crown), t.crown * 0.9,
                                    darkness * 0.85, ellipse=True, soft=0.6))
            upright(x, z, crown_h, 0.15, dark=darkness * 0.8)
        elif isinstance(t, (Pole, TrafficLight, Sign)):
            x, z = road.world(t.d, t.z)
            h = t.height if isinstance(t, Pole) else t.post_h
            upright(x, z, h, 0.08, dark=darkness * 0.8)
        elif isinstance(t, Person):
            x, z = road.world(t.d, t.z + t.walk_speed * ctx.t)
            upright(x, z, t.height, 0.2, ellipse=True)
    for a in anomalies:
        x, z = a.world_xz(ctx)
        rx, _ = a.footprint()
        upright(x, z, a.size, max(rx, 0.15), ellipse=True)
    return out


def contact_shadows(world, ctx: Ctx, anomalies, darkness: float) -> list[GroundShadow]:
    out = []
    for v in world.vehicles():
        x, z, heading, length, width = v.footprint(ctx)
        out.append(GroundShadow(x, z, math.sin(heading), math.cos(heading), length * 0.5 + 0.1, width * 0.5 + 0.05,
                                darkness, ellipse=False, soft=0.35))
    for a in anomalies:
        x, z = a.world_xz(ctx)
        rx, rz = a.footprint()
        heading = ctx.road.heading(a.z) + a.yaw
        out.append(GroundShadow(x, z, math.sin(heading), math.cos(heading), rz * 1.2 + 0.1, rx * 1.2 + 0.1,
                                darkness, ellipse=True, soft=0.2))
    return out


def paint_shadows(canvas: Canvas, ground, shadows: list[GroundShadow]) -> None:
    """Multiply the ground pixels inside each shadow by (1 - darkness * coverage)."""
    if ground is None or not shadows:
        return
    r0, d, zw, xw, Z = ground
    cam = canvas.camera
    H, W = d.shape
    for sh in shadows:
        # bounding box of the shadow's ground quad in the image
        ex = sh.half_long + sh.soft
        ey = sh.half_wide + sh.soft
        px, pz = -sh.az, sh.ax
        us, vs, behind = [], [], False
        for a, b in ((ex, ey), (ex, -ey), (-ex, ey), (-ex, -ey)):
            X, Zc = canvas.pose.to_camera(sh.x + a * sh.ax + b * px, sh.z + a * sh.az + b * pz)
            if Zc < 0.5:
                behind = True
                continue
            us.append(cam.cx + cam.focal * X / Zc)
            vs.append(cam.horizon + cam.focal * cam.mount_height / Zc)
        if not us:
            continue
        if behind:
            # part of the shadow is under/behind the camera: it reaches the bottom rows, columns unknown
            v0, v1, c0, c1 = int(math.floor(min(vs))), cam.height, 0, W
        else:
            v0, v1 = int(math.floor(min(vs))), int(math.ceil(max(vs))) + 1
            c0, c1 = max(int(math.floor(min(us))), 0), min(int(math.ceil(max(us))) + 1, W)
        a0, a1 = max(v0 - r0, 0), min(v1 - r0, H)
        if a1 <= a0 or c1 <= c0:
            continue
        dx = xw[a0:a1, c0:c1] - sh.x
        dz = zw[a0:a1, c0:c1] - sh.z
        along = np.abs(dx * sh.ax + dz * sh.az)
        across = np.abs(dx * px + dz * pz)
        if sh.ellipse:
            r = np.sqrt((along / max(sh.half_long, 1e-3)) ** 2 + (across / max(sh.half_wide, 1e-3)) ** 2)
            cover = np.clip((1.0 - r) * min(sh.half_long, sh.half_wide) / sh.soft + 0.5, 0.0, 1.0)
        else:
            cover = (np.clip((sh.half_long - along) / sh.soft + 0.5, 0.0, 1.0) *
                     np.clip((sh.half_wide - across) / sh.soft + 0.5, 0.0, 1.0))
        if not cover.any():
            continue
        canvas.rgb[r0 + a0:r0 + a1, c0:c1] *= (1.0 - sh.darkness * cover)[..., None]
