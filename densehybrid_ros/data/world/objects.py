"""Inlier objects of the world: buildings, walls, fences, hedges, poles and lamps, traffic signs and lights,
trees and bushes, people, cars, trucks and buses. Each is built from canvas primitives with shaders defined in
surface metres, so sizes are physical and perspective follows from the camera."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import SYNTHETIC
from . import textures as tx
from .canvas import Canvas, Paint

L = {name: i for i, name in enumerate(SYNTHETIC.names)}

# Objects farther than this (camera Z) are not drawn; the background silhouette and haze take over.
DRAW_DISTANCE_M = 220.0


@dataclass
class Lighting:
    """Direct sun (azimuth in world radians, 0 = along +z) plus ambient; `night` switches emitters on."""
    sun_azimuth: float = 0.8
    direct: float = 0.45
    ambient: float = 0.6
    night: bool = False
    lights_on: float = 0.0  # fraction of windows lit (dusk/night)

    def face(self, nx: float, nz: float) -> float:
        """Brightness of a vertical face with outward horizontal normal (nx, nz)."""
        sx, sz = math.sin(self.sun_azimuth), math.cos(self.sun_azimuth)
        return self.ambient + self.direct * max(0.0, -(nx * sx + nz * sz))

    def facing_camera(self, heading: float) -> float:
        return self.face(-math.sin(heading), -math.cos(heading))


@dataclass
class Ctx:
    road: object
    light: Lighting
    t: float = 0.0
    rng_hash: int = 0


def _emit_none():
    return None


def _rect(s, y, s0, s1, y0, y1):
    return (s >= s0) & (s <= s1) & (y >= y0) & (y <= y1)


def _ellipse(s, y, cs, cy, rs, ry):
    return ((s - cs) / rs) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _footprint(Z) -> np.ndarray:
    return np.asarray(Z, np.float32)


class Thing:
    """Anything drawn in the world; subclasses have a world distance `z` along the road."""

    def draw(self, cv: Canvas, ctx: Ctx) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _face_normal(p1, p2):
    dx, dz = p2[0] - p1[0], p2[1] - p1[1]
    n = math.hypot(dx, dz) or 1.0
    return dz / n, -dx / n  # outward: right of p1->p2


# -------------------------------------------------------------------------------------------------- buildings
@dataclass
class Building(Thing):
    side: int                 # +1 right of the road, -1 left
    d: float                  # lateral offset of the facade
    z0: float
    z1: float
    depth: float
    height: float
    wall: np.ndarray
    trim: np.ndarray
    glass: np.ndarray
    floor_h: float = 3.2
    win_w: float = 1.2
    win_h: float = 1.5
    win_pitch: float = 3.0
    shop: bool = False
    shop_rgb: np.ndarray | None = None
    roof_h: float = 0.0
    roof_rgb: np.ndarray | None = None
    tex: tuple[float, float] = (0.0, 0.0)
    brick: bool = False
    lit_seed: int = 0
    door_at: float = -1.0

    @property
    def z(self):
        return self.z0

    def _facade(self, light: float, length: float, lit: float, night: bool):
        b = self
        # material palette: one gather and one multiply instead of a 3-channel blend per feature
        sign_rgb = b.trim * 0.6 + 0.3
        palette = np.stack([b.wall, b.trim, b.glass, b.shop_rgb if b.shop_rgb is not None else b.glass,
                            sign_rgb, b.trim * 0.5, b.roof_rgb if b.roof_rgb is not None else b.wall]).astype(np.float32)
        palette *= np.float32(light)
        window_light = np.asarray((1.0, 0.82, 0.5), np.float32) * 0.8
        shop_light = np.asarray((0.9, 0.85, 0.7), np.float32) * 0.6
        offset = 0.5 * (length % b.win_pitch)

        def shader(s, y, Z):
            shape = np.broadcast_shapes(np.shape(s), np.shape(y))
            n = tx.noise(s, y, 2.0, b.tex)
            factor = 1.0 + 0.10 * n
            if b.brick:
                rows = (np.abs(tx.frac(y * (1 / 0.3)) - 0.5) > 0.42) & (np.asarray(Z) < 45.0)
                factor = factor - 0.2 * rows
            # windows on a floor grid, inset from the corners
            fl = np.floor(y * (1.0 / b.floor_h))
            fy = np.abs(y - fl * b.floor_h - b.floor_h * 0.55)
            col = np.floor((s - offset) * (1.0 / b.win_pitch))
            fx = np.abs((s - offset) - col * b.win_pitch - b.win_pitch / 2)
            rows_ok = (fl >= (1.0 if b.shop else 0.0)) & (y < b.height - 0.6)
            cols_ok = (s > 0.8) & (s < length - 0.8)
            zone = rows_ok & cols_ok
            frame = (fx < b.win_w / 2 + 0.12) & (fy < b.win_h / 2 + 0.12) & zone
            win = frame & (fx < b.win_w / 2) & (fy < b.win_h / 2)
            mat = np.zeros(shape, np.uint8)
            mat[frame] = 1
            mat[win] = 2
            # glass brightens upwards (it reflects more sky)
            factor = np.where(win, 0.9 + 0.25 * np.clip(y * (1.0 / b.height), 0, 1), factor)
            emit = None
            if lit > 0:
                h = tx.sample(tx.fine_tile(), col, fl, 1.0, (b.lit_seed, b.lit_seed * 3))
                on = win & (h > 1.0 - 2.0 * lit)
                emit = on[..., None] * window_light
            if b.shop:
                shop = (y > 0.3) & (y < 2.6) & (np.abs(tx.frac(s * 0.25) - 0.5) < 0.38) & (s > 0.5) & (s < length - 0.5)
                mat[shop] = 3
                mat[(y > 2.8) & (y < 3.4) & (s > 1.0) & (s < length - 1.0)] = 4
                if lit > 0 or night:
                    e = shop[..., None] * shop_light
                    emit = e if emit is None else np.maximum(emit, e)
            if b.door_at >= 0:
                mat[(np.abs(s - b.door_at) < 0.55) & (y < 2.2)] = 5
            mask = True
            if b.roof_h > 0:
                over = y > b.height
                # hipped roof seen from the street: a band with sloped ends and tile rows
                top = b.height + np.minimum(b.roof_h, np.minimum(s + 0.4, length + 0.4 - s) * 0.8)
                mat[np.broadcast_to(over, shape)] = 6
                tiles = np.abs(tx.frac((y - b.height) * 4.0) - 0.5) > 0.4
                factor = np.where(over, 0.85 * (factor - 0.15 * tiles), factor)
                mask = ~over | (y <= top)
            rgb = np.take(palette, mat, axis=0)
            rgb *= np.broadcast_to(factor, shape)[..., None]
            return Paint(mask=np.asarray(mask), rgb=rgb, label=L["building"], emit=emit)
        return shader

    def _end(self, light: float, length: float):
        b = self

        def shader(s, y, Z):
            n = tx.noise(s, y, 2.0, (b.tex[1], b.tex[0]))
            rgb = tx.shade(b.wall, light * (1.0 + 0.10 * n))
            if b.roof_h > 0:
                over = y > b.height
                top = b.height + b.roof_h * (1 - np.abs(s - length / 2) / (length / 2))
                rgb = np.where(over[..., None], tx.shade(b.roof_rgb, light * 0.8), rgb)
                mask = ~over | (y <= top)
            else:
                mask = True
            return Paint(mask=np.asarray(mask), rgb=rgb, label=L["building"])
        return shader

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        road = ctx.road
        zm = 0.5 * (self.z0 + self.z1)
        x0 = float(road.centre(zm))
        heading = road.heading(zm)
        length = self.z1 - self.z0
        centre = (x0 + self.d + self.side * self.depth / 2, zm)
        top = self.height + self.roof_h
        lit = ctx.light.lights_on
        fac_name = "left" if self.side > 0 else "right"
        # outward normals (world) for the sun shading
        nf = (-self.side * math.cos(heading), self.side * math.sin(heading))
        shaders = {fac_name: self._facade(ctx.light.face(*nf), length, lit, ctx.light.night),
                   "back": self._end(ctx.light.face(-math.sin(heading), -math.cos(heading)), self.depth),
                   "front": self._end(ctx.light.face(math.sin(heading), math.cos(heading)), self.depth)}
        cv.box(centre, heading, length, self.depth, 0.0, top, shaders)


# ---------------------------------------------------------------------------------------- linear structures
@dataclass
class Linear(Thing):
    """A wall, fence, guard rail or hedge following the road at lateral offset d from z0 to z1."""
    kind: str           # wall | fence | rail | hedge | barrier
    d: float
    z0: float
    z1: float
    height: float
    rgb: np.ndarray
    tex: tuple[float, float] = (0.0, 0.0)
    pitch: float = 2.5   # post spacing

    @property
    def z(self):
        return self.z0

    def _shader(self, light: float):
        o = self

        def shader(s, y, Z):
            pix = np.broadcast_to(np.asarray(Z, np.float32) / 900.0, np.broadcast_shapes(np.shape(s), np.shape(y)))
            n = tx.noise(s, y, 3.0, o.tex)
            if o.kind in ("wall", "barrier"):
                rgb = tx.shade(o.rgb, light * (1 + 0.12 * n + 0.05 * tx.grain(s, y, 20, o.tex)))
                if o.kind == "barrier":
                    rgb = np.where((y > o.height * 0.7)[..., None], rgb * 1.08, rgb)
                return Paint(mask=np.asarray(True), rgb=rgb, label=L["wall"])
            if o.kind == "hedge":
                top = o.height * (1 + 0.12 * tx.noise(s, 0.0 * s, 4.0, o.tex))
                leaf = tx.grain(s, y, 14.0, o.tex)
                rgb = tx.shade(o.rgb, light * (0.85 + 0.25 * leaf + 0.15 * n + 0.2 * (y / o.height)))
                return Paint(mask=y <= top, rgb=rgb, label=L["vegetation"])
            post = np.abs(tx.frac(s / o.pitch) - 0.5) * o.pitch > o.pitch / 2 - 0.06
            if o.kind == "rail":
                band = (y > 0.55) & (y < 0.85)
                post = post & (y < 0.8)
                mask = band | post
                shine = np.where(band, 1.0 + 0.3 * ((y - 0.7) / 0.15) ** 2 * -1 + 0.2, 0.8)
                return Paint(mask=mask, rgb=tx.shade(o.rgb, light * shine), label=L["fence"])
            # picket / bar fence: bars resolve near, a solid darker band far away (no aliasing)
            bar_w = 0.05
            bars = np.abs(tx.frac(s / 0.14) - 0.5) * 0.14 < bar_w / 2
            rails = (np.abs(y - 0.15) < 0.04) | (np.abs(y - (o.height - 0.12)) < 0.04)
            coarse = pix > 0.035
            mask = bars | rails | post | coarse
            shade_f = np.where(coarse & ~(bars | rails | post), 0.8, 1.0)
            return Paint(mask=mask, rgb=tx.shade(o.rgb, light * shade_f * (1 + 0.1 * n)), label=L["fence"])
        return shader

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        road = ctx.road
        n = max(1, int(math.ceil((self.z1 - self.z0) / 8.0)))
        zs = np.linspace(self.z0, self.z1, n + 1)
        s_off = 0.0
        for za, zb in zip(zs[:-1], zs[1:]):
            pa, pb = road.world(self.d, float(za)), road.world(self.d, float(zb))
            side = 1 if self.d > 0 else -1
            # shade by the face the camera sees (towards the road)
            nx = -side
            light = ctx.light.face(nx, 0.0)
            base = self._shader(light)
            off = s_off

            def shifted(s, y, Z, base=base, off=off):
                return base(s + off, y, Z)
            cv.wall(pa, pb, 0.0, self.height * (1.3 if self.kind == "hedge" else 1.0), shifted)
            s_off += float(zb - za)


# --------------------------------------------------------------------------------------------- street furniture
@dataclass
class Pole(Thing):
    """Street lamp or utility pole; `arm` > 0 reaches over the road towards `side` (-1 left, +1 right)."""
    d: float
    z: float
    height: float
    radius: float
    rgb: np.ndarray
    arm: float = 0.0
    arm_side: int = -1
    lamp: bool = False

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, self.z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        light = ctx.light.facing_camera(0.0)
        p = self
        lamp_on = ctx.light.night or ctx.light.lights_on > 0.3

        focal = cv.camera.focal

        def shader(s, y, Zc):
            px = 0.5 * Zc / focal   # half a pixel in metres: thin parts never vanish between pixels
            taper = np.maximum(p.radius * (1.0 - 0.4 * y / p.height), px)
            shaft = (np.abs(s) <= taper) & (y <= p.height)
            mask = shaft
            rgb = tx.shade(p.rgb, light * (1.0 - 0.5 * np.clip((s / p.radius) ** 2, 0.0, 1.0)))  # round shaft
            emit = None
            if p.arm > 0:
                a = p.arm_side * s
                arm = (a >= 0) & (a <= p.arm) & (np.abs(y - (p.height - 0.1 - 0.05 * a)) < np.maximum(0.06, px))
                head = (np.abs(a - p.arm) < 0.35) & (y > p.height - 0.1 - 0.05 * p.arm - 0.2) & (y < p.height - 0.05 * p.arm + 0.02)
                mask = mask | arm | head
                if p.lamp and lamp_on:
                    bulb = (np.abs(a - p.arm) < 0.3) & (np.abs(y - (p.height - 0.24 - 0.05 * p.arm)) < 0.06)
                    emit = np.where(bulb[..., None], np.asarray((1.0, 0.85, 0.55), np.float32) * 1.5, 0.0)
            return Paint(mask=mask, rgb=rgb, label=L["pole"], emit=emit)
        cv.billboard(X, Z, max(self.radius, self.arm + 0.4), 0.0, self.height + 0.1, shader)


@dataclass
class Sign(Thing):
    d: float
    z: float
    kind: str            # round | triangle | square | octagon | rect
    size: float
    post_h: float
    colours: tuple[np.ndarray, np.ndarray]
    facing: int = 1      # 1 = front towards the camera, -1 = its back

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, self.z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        p = self
        light = ctx.light.facing_camera(0.0)
        cy = self.post_h + self.size / 2

        focal = cv.camera.focal

        def shader(s, y, Zc):
            r = p.size / 2
            post = (np.abs(s) < np.maximum(0.04, 0.5 * Zc / focal)) & (y <= p.post_h + 0.1)
            ds, dy = s, y - cy
            if p.kind == "round":
                plate = ds ** 2 + dy ** 2 <= r * r
                inner = ds ** 2 + dy ** 2 <= (0.75 * r) ** 2
            elif p.kind == "triangle":
                plate = (dy >= -r * 0.8) & (np.abs(ds) <= (r * 0.95 - dy) * 0.62) & (dy <= r)
                inner = (dy >= -r * 0.55) & (np.abs(ds) <= (r * 0.6 - dy) * 0.62)
            elif p.kind == "octagon":
                plate = (np.abs(ds) <= r) & (np.abs(dy) <= r) & (np.abs(ds) + np.abs(dy) <= 1.41 * r)
                inner = (np.abs(ds) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r) & (np.abs(ds) + np.abs(dy) <= 1.13 * r)
            elif p.kind == "rect":
                plate = (np.abs(ds) <= r * 1.6) & (np.abs(dy) <= r * 0.7)
                inner = (np.abs(ds) <= r * 1.45) & (np.abs(dy) <= r * 0.55)
            else:
                plate = (np.abs(ds) <= r) & (np.abs(dy) <= r)
                inner = (np.abs(ds) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
            outer_c, inner_c = p.colours
            if p.facing < 0:
                outer_c = inner_c = tx.rgb(150, 150, 150)
            rgb = np.where(inner[..., None], inner_c, outer_c) * light
            rgb = np.where(post[..., None] & ~plate[..., None], tx.rgb(120, 120, 120) * light, rgb)
            label = np.where(plate, L["traffic_sign"], L["pole"]).astype(np.uint8)
            return Paint(mask=plate | post, rgb=rgb.astype(np.float32), label=label)
        cv.billboard(X, Z, self.size * 0.85, 0.0, cy + self.size * 0.55, shader)


@dataclass
class TrafficLight(Thing):
    d: float
    z: float
    post_h: float
    state: int           # 0 red, 1 amber, 2 green
    arm: float = 0.0     # mast arm reaching over the road (towards -side)
    arm_side: int = -1

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, self.z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        p = self
        light = ctx.light.facing_camera(0.0)
        cols = [np.asarray(c, np.float32) for c in ((1.0, 0.15, 0.1), (1.0, 0.7, 0.1), (0.2, 1.0, 0.5))]

        focal = cv.camera.focal

        def shader(s, y, Zc):
            px = 0.5 * Zc / focal
            post = (np.abs(s) < np.maximum(0.07, px)) & (y <= p.post_h + 0.15)
            a = p.arm_side * s
            arm = (a >= 0) & (a <= p.arm) & (np.abs(y - (p.post_h + 0.1)) < np.maximum(0.07, px)) if p.arm > 0 else np.zeros_like(post)
            boxes, lamp_rgb, lamp_mask = [], None, None
            centres = [0.0] + ([p.arm * p.arm_side] if p.arm > 0 else [])
            mask_box = np.zeros(np.broadcast_shapes(np.shape(s), np.shape(y)), bool)
            emit = np.zeros(mask_box.shape + (3,), np.float32)
            rgb = np.broadcast_to(tx.rgb(70, 70, 70) * light, mask_box.shape + (3,)).copy()
            for cs in centres:
                top = p.post_h + (0.1 if cs != 0 else 0.95)
                box = (np.abs(s - cs) < 0.17) & (y <= top) & (y >= top - 0.95)
                mask_box |= box
                rgb[box] = tx.rgb(25, 25, 25) * light
                for k in range(3):
                    cy = top - 0.17 - 0.3 * k
                    lamp = ((s - cs) ** 2 + (y - cy) ** 2) <= 0.1 ** 2
                    on = k == p.state
                    rgb[lamp] = cols[k] * (0.9 if on else 0.18)
                    if on:
                        emit[lamp] = cols[k] * 1.2
            label = np.where(mask_box, L["traffic_light"], L["pole"]).astype(np.uint8)
            return Paint(mask=post | arm | mask_box, rgb=rgb, label=label, emit=emit)
        cv.billboard(X, Z, max(0.2, p.arm + 0.2), 0.0, self.post_h + 1.1, shader)


# ------------------------------------------------------------------------------------------------- vegetation
@dataclass
class Tree(Thing):
    d: float
    z: float
    height: float
    crown: float          # crown radius
    trunk_rgb: np.ndarray
    leaf_rgb: np.ndarray
    conifer: bool = False
    tex: tuple[float, float] = (0.0, 0.0)
    blobs: tuple = ()

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, self.z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        p = self
        light = ctx.light.facing_camera(0.0)
        sun_s = math.sin(ctx.light.sun_azimuth - ctx.road.heading(self.z))
        crown_c = self.height - self.crown
        focal = cv.camera.focal
        palette = np.stack([self.trunk_rgb, self.leaf_rgb]).astype(np.float32)

        def shader(s, y, Zc):
            trunk = (np.abs(s) < 0.12 + 0.04 * (crown_c - y).clip(0) / max(crown_c, 1)) & (y < crown_c + 0.3)
            n = tx.noise(s, y, 3.0, p.tex)
            if p.conifer:
                rel = (p.height - y) / (p.height - 0.8)
                width = p.crown * rel * (0.85 + 0.25 * np.abs((tx.frac(y * 1.3)) - 0.5) * 2)
                crown = (y > 0.8) & (y <= p.height) & (np.abs(s) <= width * (1 + 0.15 * n))
            else:
                field_ = np.zeros(np.broadcast_shapes(np.shape(s), np.shape(y)), np.float32)
                for (bs, by, br) in p.blobs:
                    field_ = np.maximum(field_, 1.0 - ((s - bs) ** 2 + (y - by) ** 2) / (br * br))
                crown = (field_ + 0.35 * n > 0.25) & (field_ > 0.0)  # noise roughens the edge, never floats
            leaf = tx.grain(s, y, 10.0, p.tex) * tx.fade(Zc, 10.0, focal)
            # sunlit side and top brighter; leaf grain and clumps
            dir_shade = 1.0 + 0.25 * np.clip(s * (1 / p.crown), -1, 1) * sun_s + 0.15 * np.clip((y - crown_c) * (1 / p.crown), -1, 1)
            leaf_f = dir_shade * (0.8 + 0.3 * leaf + 0.2 * n)
            trunk_f = 1.0 - 2.0 * np.abs(s)
            factor = np.where(crown, leaf_f, trunk_f) * light
            rgb = np.take(palette, crown.astype(np.uint8), axis=0)
            rgb *= factor[..., None]
            return Paint(mask=crown | trunk, rgb=rgb, label=L["vegetation"])
        cv.billboard(X, Z, self.crown * 1.4, 0.0, self.height + 0.5, shader)


@dataclass
class Bush(Thing):
    d: float
    z: float
    height: float
    width: float
    rgb: np.ndarray
    tex: tuple[float, float] = (0.0, 0.0)

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, self.z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        p = self
        light = ctx.light.facing_camera(0.0)

        def shader(s, y, Zc):
            n = tx.noise(s, y, 4.0, p.tex)
            e = (s / (p.width / 2)) ** 2 + ((y - p.height * 0.45) / (p.height * 0.55)) ** 2
            mask = (e + 0.3 * n < 1.0) & (e < 1.2) & (y >= 0)
            rgb = tx.shade(p.rgb, light * (0.75 + 0.35 * (y / p.height) + 0.25 * tx.grain(s, y, 12.0, p.tex)))
            return Paint(mask=mask, rgb=rgb, label=L["vegetation"])
        cv.billboard(X, Z, self.width * 0.65, 0.0, self.height * 1.15, shader)


# ------------------------------------------------------------------------------------------------------ people
@dataclass
class Person(Thing):
    d: float
    z: float
    height: float
    shirt: np.ndarray
    pants: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    phase: float = 0.0
    walk_speed: float = 0.0     # m/s along the road (sequences)
    bag: bool = False

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        z = self.z + self.walk_speed * ctx.t
        X, Z = cv.pose.to_camera(*ctx.road.world(self.d, z))
        if Z < 0.5 or Z > DRAW_DISTANCE_M:
            return
        p = self
        light = ctx.light.facing_camera(0.0)
        H = self.height
        stride = 0.18 * math.sin(self.phase + 2.0 * ctx.t * (1 if self.walk_speed else 0))

        def shader(s, y, Zc):
            head_r = 0.062 * H
            head = ((s / (head_r * 0.85)) ** 2 + ((y - (H - head_r)) / head_r) ** 2) <= 1
            hair = head & (y > H - head_r * 0.8)
            neck = (np.abs(s) < 0.05) & (y > 0.80 * H) & (y < H - 1.8 * head_r)
            ty = (y - 0.5 * H) / (0.33 * H)
            torso = (ty >= 0) & (ty <= 1) & (np.abs(s) <= 0.11 * H * (0.8 + 0.25 * ty))
            shoulder_w = 0.13 * H
            arm_l = (np.abs(s + shoulder_w - 0.015 * H * (1 - ty) * 0 + stride * 0.3 * (0.82 * H - y) / H) < 0.028 * H) & (y > 0.46 * H) & (y < 0.81 * H)
            arm_r = (np.abs(s - shoulder_w - stride * 0.3 * (0.82 * H - y) / H) < 0.028 * H) & (y > 0.46 * H) & (y < 0.81 * H)
            ly = np.clip((0.52 * H - y) / (0.52 * H), 0, 1)
            leg_l = (np.abs(s + 0.045 * H + stride * ly) < 0.032 * H) & (y >= 0) & (y <= 0.53 * H)
            leg_r = (np.abs(s - 0.045 * H - stride * ly) < 0.032 * H) & (y >= 0) & (y <= 0.53 * H)
            shoes = (leg_l | leg_r) & (y < 0.035 * H)
            body = torso | arm_l | arm_r
            rgb = np.broadcast_to(tx.shade(p.pants, light), np.broadcast_shapes(np.shape(s), np.shape(y)) + (3,)).copy()
            shade = light * (1.0 - 0.25 * np.abs(s) / (0.15 * H))
            shirt = np.broadcast_to(tx.shade(p.shirt, shade), rgb.shape)
            rgb[body] = shirt[body]
            hands = (arm_l | arm_r) & (y < 0.5 * H)
            rgb[head | neck | hands] = p.skin * light
            rgb[hair] = p.hair * light
            rgb[shoes] = tx.rgb(30, 30, 30)
            mask = head | neck | body | leg_l | leg_r
            if p.bag:
                bag = (np.abs(s - 0.14 * H) < 0.05 * H) & (y > 0.45 * H) & (y < 0.62 * H)
                rgb[bag] = tx.rgb(60, 40, 30) * light
                mask = mask | bag
            return Paint(mask=mask, rgb=rgb, label=L["person"])
        cv.billboard(X, Z, 0.3 * H, 0.0, H + 0.02, shader)


# ---------------------------------------------------------------------------------------------------- vehicles
@dataclass
class Vehicle(Thing):
    kind: str             # sedan | hatch | suv | van | truck | bus
    d: float
    z0: float
    speed: float          # m/s along +z (negative: oncoming)
    length: float
    width: float
    height: float
    paint: np.ndarray
    glass: np.ndarray
    oncoming: bool = False
    cargo_rgb: np.ndarray | None = None
    brake: bool = False

    @property
    def z(self):
        return self.z0

    @property
    def label(self) -> int:
        return L["truck"] if self.kind in ("truck", "bus") else L["car"]

    def _rear(self, light: float, night: bool):
        v = self
        W, H = self.width, self.height
        big = self.kind in ("truck", "bus")

        def shader(s, y, Z):
            clear = 0.2 if not big else 0.45
            wheels = (y < 0.38 + 0.2 * big) & ((s < 0.32) | (s > W - 0.32))
            under = (y < clear) & ~wheels
            if big:
                cabin = np.ones(np.broadcast_shapes(np.shape(s), np.shape(y)), bool)
                body_top = H
            else:
                hb = 0.58 * H if v.kind != "van" else 0.9 * H
                inset = 0.08 + 0.35 * np.clip((y - hb) / (H - hb + 1e-6), 0, 1) * (0.6 if v.kind != "van" else 0.2)
                cabin = (y <= hb) | ((y <= H) & (np.abs(s - W / 2) <= W / 2 - inset))
                body_top = hb
            mask = (cabin & ~under & (y <= H)) | wheels
            n = tx.noise(s, y, 6.0, (v.z0, v.d))
            rgb = tx.shade(v.paint, light * (1.0 + 0.05 * n + 0.1 * np.clip((y - 0.5) / H, -0.3, 0.5)))
            rgb = np.where(wheels[..., None], tx.rgb(25, 25, 25), rgb)
            bumper = (y > clear) & (y < clear + 0.18) & ~wheels
            rgb = np.where(bumper[..., None], tx.shade(tx.rgb(40, 40, 40), light), rgb)
            if v.kind == "bus":
                window = (y > 0.6 * H) & (y < 0.9 * H) & (np.abs(s - W / 2) < W / 2 - 0.25)
            elif big:
                window = np.zeros_like(mask)
                seams = (np.abs(s - W / 2) < 0.03) & (y > clear + 0.2) | (np.abs(y - (H - 0.08)) < 0.05)
                rgb = np.where(seams[..., None], rgb * 0.6, rgb)
            else:
                window = (y > body_top + 0.06) & (y < H - 0.06) & (np.abs(s - W / 2) <= W / 2 - inset - 0.06)
            rgb = np.where(window[..., None], tx.shade(v.glass, light * (0.8 + 0.4 * (y / H))), rgb)
            ly0 = (0.62 if not big else 0.55) - 0.15
            lamp = (y > ly0 * (H if not big else 1.6)) & (y < (ly0 * (H if not big else 1.6)) + 0.14) & (
                (s < 0.1 + 0.3) & (s > 0.08) | (s > W - 0.38) & (s < W - 0.08))
            red = np.asarray((0.75, 0.05, 0.05), np.float32)
            rgb = np.where(lamp[..., None], red, rgb)
            plate = (np.abs(s - W / 2) < 0.26) & (y > clear + 0.2) & (y < clear + 0.31)
            rgb = np.where(plate[..., None], tx.rgb(225, 225, 215) * light, rgb)
            emit = None
            if night or v.brake:
                emit = np.where(lamp[..., None], red * (1.6 if v.brake else 1.0), 0.0)
            return Paint(mask=mask, rgb=rgb, label=v.label, emit=emit)
        return shader

    def _front(self, light: float, night: bool):
        v = self
        W, H = self.width, self.height
        big = self.kind in ("truck", "bus")

        def shader(s, y, Z):
            clear = 0.2 if not big else 0.45
            wheels = (y < 0.38 + 0.2 * big) & ((s < 0.32) | (s > W - 0.32))
            under = (y < clear) & ~wheels
            hb = (0.55 * H) if not big else 0.45 * H
            if big:
                inset = 0.05
                cabin = np.ones(np.broadcast_shapes(np.shape(s), np.shape(y)), bool)
            else:
                inset = 0.08 + 0.3 * np.clip((y - hb) / (H - hb + 1e-6), 0, 1) * (0.6 if v.kind != "van" else 0.2)
                cabin = (y <= hb) | ((y <= H) & (np.abs(s - W / 2) <= W / 2 - inset))
            mask = (cabin & ~under & (y <= H)) | wheels
            rgb = tx.shade(v.paint, light * (1.0 + 0.05 * tx.noise(s, y, 6.0, (v.d, v.z0))))
            rgb = np.where(wheels[..., None], tx.rgb(25, 25, 25), rgb)
            window = (y > hb + 0.08) & (y < H - 0.08) & (np.abs(s - W / 2) <= W / 2 - inset - 0.05)
            rgb = np.where(window[..., None], tx.shade(v.glass, light * (0.8 + 0.4 * (y / H))), rgb)
            grille = (np.abs(s - W / 2) < W * 0.25) & (y > clear + 0.15) & (y < hb - 0.12)
            rgb = np.where(grille[..., None], tx.rgb(30, 30, 32) * light, rgb)
            lamp = (y > hb - 0.22) & (y < hb - 0.06) & ((s > 0.1) & (s < 0.45) | (s > W - 0.45) & (s < W - 0.1))
            white = np.asarray((0.95, 0.95, 0.85), np.float32)
            rgb = np.where(lamp[..., None], white * 0.9, rgb)
            emit = np.where(lamp[..., None], white * 2.0, 0.0) if night else None
            return Paint(mask=mask, rgb=rgb, label=v.label, emit=emit)
        return shader

    def _side(self, light: float, front_at_zero: bool):
        v = self
        Lh, H = self.length, self.height
        big = self.kind in ("truck", "bus")

        def shader(s, y, Z):
            u = s if front_at_zero else Lh - s          # metres from the front
            r = 0.33 if not big else 0.5
            wf, wr = (0.8 if not big else 1.4), Lh - (0.9 if not big else 2.2)
            wheel = ((u - wf) ** 2 + (y - r) ** 2 <= r * r) | ((u - wr) ** 2 + (y - r) ** 2 <= r * r)
            if big:
                wheel |= (v.kind == "truck") & ((u - (wr - 1.3)) ** 2 + (y - r) ** 2 <= r * r)
            rim = ((u - wf) ** 2 + (y - r) ** 2 <= (r * 0.55) ** 2) | ((u - wr) ** 2 + (y - r) ** 2 <= (r * 0.55) ** 2)
            clear = 0.25 if not big else 0.5
            if v.kind == "truck":
                cab_l = 2.2
                cab = (u < cab_l) & (y <= H * 0.85) & (y >= clear)
                cargo = (u > cab_l + 0.15) & (y <= H) & (y >= clear + 0.3)
                body = cab | cargo
                window = (u > 0.5) & (u < cab_l - 0.2) & (y > H * 0.5) & (y < H * 0.78)
            elif v.kind == "bus":
                body = (y >= clear) & (y <= H)
                window = (y > 0.55 * H) & (y < 0.9 * H) & (u > 0.3) & (u < Lh - 0.5) & (np.abs((tx.frac(u / 1.6)) - 0.5) < 0.44)
            else:
                hb = 0.55 * H if v.kind != "van" else 0.9 * H
                hood, tail = (1.1, 0.7) if v.kind == "sedan" else (0.9, 0.25) if v.kind in ("hatch", "suv") else (0.5, 0.05)
                slope_f = np.clip((u - hood * 0.5) / max(hood, 0.1), 0, 1)
                slope_r = np.clip((Lh - u - tail * 0.2) / max(tail + 0.3, 0.1), 0, 1)
                top = hb + (H - hb) * np.minimum(slope_f, slope_r)
                body = (y >= clear) & (y <= top) & (u >= 0.05 * (y > hb)) & (u <= Lh)
                window = (y > hb + 0.07) & (y < top - 0.06) & (u > hood * 0.7) & (u < Lh - tail - 0.15)
                pillar = np.abs(u - (hood + (Lh - tail - hood) * 0.5)) < 0.06
                window &= ~pillar
            mask = body | wheel
            rgb = tx.shade(v.paint if v.kind != "truck" or True else v.paint, light * (1.0 + 0.08 * np.clip((y - 0.6) / H, -0.3, 0.5)))
            if v.kind == "truck" and v.cargo_rgb is not None:
                rgb = np.where(((u > 2.35))[..., None], tx.shade(v.cargo_rgb, light), rgb)
            rgb = np.where(window[..., None], tx.shade(v.glass, light * (0.8 + 0.3 * y / H)), rgb)
            sill = np.abs(y - (clear + 0.08)) < 0.05
            rgb = np.where(sill[..., None], rgb * 0.6, rgb)
            rgb = np.where(wheel[..., None], tx.rgb(22, 22, 22), rgb)
            rgb = np.where(rim[..., None], tx.rgb(120, 120, 125) * light, rgb)
            return Paint(mask=mask, rgb=rgb, label=v.label)
        return shader

    def pose_at(self, ctx: Ctx):
        z = self.z0 + self.speed * ctx.t
        x = float(ctx.road.centre(z)) + self.d
        heading = ctx.road.heading(z) + (math.pi if self.oncoming else 0.0)
        return (x, z), heading

    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        (x, z), heading = self.pose_at(ctx)
        X, Z = cv.pose.to_camera(x, z)
        if Z < -self.length or Z > DRAW_DISTANCE_M:
            return
        li = ctx.light
        night = li.night or li.lights_on > 0.5
        c, s_ = math.cos(heading), math.sin(heading)
        shaders = {"back": self._rear(li.face(-s_, -c), night), "front": self._front(li.face(s_, c), night),
                   "left": self._side(li.face(-c, s_), True), "right": self._side(li.face(c, -s_), False)}
        cv.box((x, z), heading, self.length, self.width, 0.0, self.height, shaders)

    def footprint(self, ctx: Ctx):
        (x, z), heading = self.pose_at(ctx)
        return x, z, heading, self.length, self.width
