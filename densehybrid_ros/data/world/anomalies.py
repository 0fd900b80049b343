"""Road obstacles for evaluation only: families that never appear in training data (animals, lost cargo, tyres,
rocks, debris, furniture). Each is placed on or near the drivable area with its physical size (so its image size
follows from its distance), a contact shadow, and the scene's lighting and weather (applied to the whole frame
afterwards, so anomalies get exactly the same fog, night lighting and camera effects as everything else).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import SYNTHETIC
from . import textures as tx
from .canvas import Canvas, Paint
from .objects import Ctx, Thing

ANOMALY = SYNTHETIC.anomaly_label
FAMILIES = {
    "animal": ("deer", "dog", "cow", "boar"),
    "cargo": ("cardboard_box", "crate", "barrel"),
    "tyre": ("tyre_standing", "tyre_lying"),
    "rock": ("rock",),
    "debris": ("plank", "scrap_sheet", "trash_bag"),
    "furniture": ("chair", "sofa", "table", "mattress"),
}


@dataclass
class Anomaly(Thing):
    family: str
    kind: str
    d: float                 # lateral offset from the road reference line
    z: float                 # world distance along the road
    size: float              # characteristic height (m)
    yaw: float               # relative to the road direction
    rgb: np.ndarray
    rgb2: np.ndarray
    instance: int = 1
    facing: int = 1
    tex: tuple[float, float] = (0.0, 0.0)
    extra: dict = field(default_factory=dict)

    # rough ground footprint half-extents (lateral, along) for the contact shadow and corridor clearing
    def footprint(self) -> tuple[float, float]:
        k, s = self.kind, self.size
        if k in ("deer", "cow", "boar", "dog"):
            return 0.35 * s, 0.75 * s
        if k in ("sofa", "mattress", "plank"):
            return 0.9 * self.extra.get("length", 2 * s) / 2, 0.5 * s
        return 0.6 * s, 0.6 * s

    def world_xz(self, ctx: Ctx) -> tuple[float, float]:
        return ctx.road.world(self.d, self.z)

    # -- drawing -------------------------------------------------------------------------------------------
    def draw(self, cv: Canvas, ctx: Ctx) -> None:
        x, z = self.world_xz(ctx)
        X, Z = cv.pose.to_camera(x, z)
        if Z < 1.0:
            return
        light = ctx.light.facing_camera(0.0)
        heading = ctx.road.heading(self.z) + self.yaw
        k = self.kind
        if k in ("deer", "dog", "cow", "boar"):
            cv.billboard(X, Z, 1.2 * self.size + 0.3, 0.0, 1.6 * self.size, self._animal(light), self.instance)
        elif k in ("cardboard_box", "crate"):
            w = self.size * self.extra.get("aspect", 1.2)
            cv.box((x, z), heading, self.size * self.extra.get("depth", 1.0), w, 0.0, self.size,
                   self._box_faces(ctx, heading), self.instance)
        elif k == "barrel":
            cv.billboard(X, Z, self.size * 0.35, 0.0, self.size, self._barrel(light), self.instance)
            self._top_disc(cv, x, z, self.size * 0.3, self.size, light * 1.1)
        elif k == "tyre_standing":
            cv.billboard(X, Z, self.size * 0.55, 0.0, self.size, self._tyre(light), self.instance)
        elif k == "tyre_lying":
            h = self.size * 0.32
            cv.billboard(X, Z, self.size / 2, 0.0, h, self._band(self.rgb, light, h), self.instance)
            self._top_disc(cv, x, z, self.size / 2, h, light, ring=0.55)
        elif k == "rock":
            cv.billboard(X, Z, self.size * 0.9, -0.05, self.size * 1.1, self._rock(light), self.instance)
        elif k == "plank":
            length = self.extra["length"]
            cv.box((x, z), heading, 0.25, length, 0.0, self.size, {f: self._flat(self.rgb, 0.9 * light) for f in
                                                                  ("front", "back", "left", "right", "top")}, self.instance)
        elif k == "scrap_sheet":
            cv.billboard(X, Z, self.size * 0.9, 0.0, self.size, self._scrap(light), self.instance)
        elif k == "trash_bag":
            cv.billboard(X, Z, self.size * 0.6, 0.0, self.size, self._bag(light), self.instance)
        elif k == "chair":
            cv.billboard(X, Z, self.size * 0.45, 0.0, self.size, self._chair(light), self.instance)
        elif k == "table":
            cv.billboard(X, Z, self.size * 0.8, 0.0, self.size, self._table(light), self.instance)
        elif k == "sofa":
            self._sofa(cv, ctx, x, z, heading)
        elif k == "mattress":
            length = self.extra["length"]
            faces = {f: self._mattress_face(light) for f in ("front", "back", "left", "right", "top")}
            cv.box((x, z), heading, length * 0.7, length, 0.0, self.size, faces, self.instance)

    def _flat(self, rgb, light):
        a = self

        def shader(s, y, Z):
            n = tx.noise(s, y, 6.0, a.tex)
            return Paint(mask=np.asarray(True), rgb=tx.shade(rgb, light * (1 + 0.15 * n)), label=ANOMALY)
        return shader

    def _box_faces(self, ctx: Ctx, heading: float):
        a = self
        li = ctx.light
        c, s_ = math.cos(heading), math.sin(heading)
        wood = self.kind == "crate"

        def face(light, width):
            def shader(s, y, Z):
                n = tx.noise(s, y, 5.0, a.tex)
                rgb = tx.shade(a.rgb, light * (1 + 0.1 * n))
                if wood:
                    gaps = np.abs(tx.frac(y / (a.size / 4)) - 0.5) > 0.45
                    rgb = np.where(gaps[..., None], rgb * 0.45, rgb)
                    edge = (s < 0.05) | (s > width - 0.05)
                    rgb = np.where(edge[..., None], rgb * 0.75, rgb)
                else:
                    tape = np.abs(y - a.size * 0.5) < a.size * 0.06
                    rgb = np.where(tape[..., None], tx.shade(a.rgb2, light), rgb)
                return Paint(mask=np.asarray(True), rgb=rgb, label=ANOMALY)
            return shader

        depth = self.size * self.extra.get("depth", 1.0)
        width = self.size * self.extra.get("aspect", 1.2)

        def top(aa, bb, Z):
            rgb = tx.shade(a.rgb, 1.15 * li.ambient + li.direct * 0.8)
            if not wood:
                tape = np.abs(aa - width / 2) < a.size * 0.06
                rgb = np.where(tape[..., None], a.rgb2 * (1.1 * li.ambient), rgb)
            else:
                gaps = np.abs(tx.frac(aa / (width / 5)) - 0.5) > 0.44
                rgb = np.where(gaps[..., None], rgb * 0.5, rgb)
            return Paint(mask=np.asarray(True), rgb=np.broadcast_to(rgb, np.broadcast_shapes(np.shape(aa), np.shape(bb)) + (3,)),
                         label=ANOMALY)
        return {"back": face(li.face(-s_, -c), width), "front": face(li.face(s_, c), width),
                "left": face(li.face(-c, s_), depth), "right": face(li.face(c, -s_), depth), "top": top}

    def _top_disc(self, cv: Canvas, x, z, r, h, light, ring: float = 0.0):
        a = self
        pts = [(x + r * math.cos(t), z + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 13)[:-1]]

        def shader(aa, bb, Z):
            # centre in the polygon frame: first corner is at angle 0, edge runs roughly along +z
            cx_, cz_ = x - pts[0][0], z - pts[0][1]
            e = (pts[1][0] - pts[0][0], pts[1][1] - pts[0][1])
            n = math.hypot(*e)
            ex, ez = e[0] / n, e[1] / n
            ca, cb = cx_ * ex + cz_ * ez, -cx_ * ez + cz_ * ex
            rr = np.sqrt((aa - ca) ** 2 + (bb - cb) ** 2)
            mask = rr <= r
            if ring > 0:
                mask &= rr >= r * ring
            rgb = tx.shade(a.rgb2 if a.kind == "barrel" else a.rgb, light * (1 + 0.1 * tx.noise(aa, bb, 8.0, a.tex)))
            return Paint(mask=mask, rgb=rgb, label=ANOMALY)
        cv.horizontal(pts, h, shader, self.instance)

    def _band(self, rgb, light, h):
        a = self

        def shader(s, y, Z):
            r = a.size / 2
            mask = (np.abs(s) <= r * np.sqrt(np.clip(1 - (y / (h * 4)) ** 2, 0, 1))) & (y >= 0) & (y <= h)
            tread = np.abs(tx.frac(s / 0.05) - 0.5) > 0.3
            shade = light * (0.8 - 0.4 * (s / r) ** 2) * np.where(tread, 0.8, 1.0)
            return Paint(mask=mask, rgb=tx.shade(rgb, shade), label=ANOMALY)
        return shader

    def _animal(self, light):
        a = self
        h = self.size
        f = self.facing
        kind = self.kind
        body_r = {"deer": (0.55, 0.21), "dog": (0.5, 0.2), "cow": (0.62, 0.3), "boar": (0.55, 0.3)}[kind]
        body_y = {"deer": 0.78, "dog": 0.68, "cow": 0.72, "boar": 0.6}[kind]
        leg_w = {"deer": 0.045, "dog": 0.06, "cow": 0.07, "boar": 0.07}[kind]

        def shader(s, y, Z):
            u = f * s / h                     # towards the head, in body heights
            v = y / h
            body = ((u / body_r[0]) ** 2 + ((v - body_y) / body_r[1]) ** 2) <= 1
            legs = np.zeros_like(body)
            top = body_y - body_r[1] * 0.4
            for lx in (-0.42, -0.3, 0.32, 0.42):
                lx_ = lx * body_r[0] / 0.55
                legs |= (np.abs(u - lx_ - 0.03 * np.sin(7 * v + lx * 9)) < leg_w) & (v >= 0) & (v <= top)
            if kind == "deer":
                neck = (np.abs((u - 0.45) - (v - 0.85) * 0.45) < 0.08) & (v > 0.8) & (v < 1.25)
                head = (((u - 0.66) / 0.15) ** 2 + ((v - 1.28) / 0.08) ** 2) <= 1
                ears = (((u - 0.52) / 0.04) ** 2 + ((v - 1.4) / 0.07) ** 2) <= 1
                antler = a.extra.get("antlers", False) & (np.abs(u - 0.5 - 0.3 * (v - 1.35)) < 0.02) & (v > 1.33) & (v < 1.6)
                tail = (((u + 0.55) / 0.05) ** 2 + ((v - 0.88) / 0.06) ** 2) <= 1
                extra = neck | head | ears | antler | tail
            elif kind == "dog":
                neck = (np.abs((u - 0.42) - (v - 0.75) * 0.5) < 0.1) & (v > 0.7) & (v < 1.0)
                head = (((u - 0.55) / 0.16) ** 2 + ((v - 1.0) / 0.12) ** 2) <= 1
                snout = (np.abs(v - 0.95) < 0.06) & (u > 0.55) & (u < 0.78)
                ears = (((u - 0.46) / 0.05) ** 2 + ((v - 1.1) / 0.09) ** 2) <= 1
                tail = (np.abs((u + 0.55) + (v - 0.75) * 0.6) < 0.04) & (v > 0.7) & (v < 1.05)
                extra = neck | head | snout | ears | tail
            elif kind == "cow":
                head = (((u - 0.72) / 0.14) ** 2 + ((v - 0.75) / 0.17) ** 2) <= 1
                horns = (np.abs(v - 0.93) < 0.02) & (np.abs(u - 0.72) < 0.14)
                udder = (((u + 0.1) / 0.1) ** 2 + ((v - 0.42) / 0.06) ** 2) <= 1
                tail = (np.abs(u + 0.62) < 0.02) & (v > 0.35) & (v < 0.85)
                extra = head | horns | udder | tail
            else:
                head = (np.abs(v - (0.55 - 0.5 * (u - 0.45))) < 0.17 - 0.3 * (u - 0.45)) & (u > 0.4) & (u < 0.85)
                extra = head
            mask = body | legs | extra
            n = tx.noise(s, y, 5.0, a.tex)
            shade = light * (0.75 + 0.35 * np.clip((v - 0.5), 0, 1) + 0.08 * n)
            rgb = tx.shade(a.rgb, shade)
            if kind == "cow":
                patch = tx.noise(s, y, 1.5, a.tex) > 0.05
                rgb = np.where(patch[..., None], tx.shade(a.rgb2, shade), rgb)
            else:
                belly = (v < body_y - body_r[1] * 0.3) & body
                rgb = np.where(belly[..., None], tx.shade(a.rgb2, shade), rgb)
            return Paint(mask=mask, rgb=rgb, label=ANOMALY)
        return shader

    def _barrel(self, light):
        a = self

        def shader(s, y, Z):
            r = a.size * 0.3
            mask = (np.abs(s) <= r * (1 + 0.06 * np.sin(np.pi * np.clip(y / a.size, 0, 1)))) & (y >= 0) & (y <= a.size)
            bands = np.abs(tx.frac((y / a.size) * 3) - 0.5) > 0.44
            shade = light * (1.0 - 0.55 * (s / r) ** 2) * np.where(bands, 0.7, 1.0) * (1 + 0.1 * tx.noise(s, y, 6, a.tex))
            return Paint(mask=mask, rgb=tx.shade(a.rgb, shade), label=ANOMALY)
        return shader

    def _tyre(self, light):
        a = self

        def shader(s, y, Z):
            R = a.size / 2
            w = a.extra.get("width", 0.25)
            # a tyre slightly turned: ellipse of semi-axes (R * k, R)
            k = a.extra.get("turn", 0.8)
            rr = np.sqrt((s / (R * k)) ** 2 + ((y - R) / R) ** 2)
            mask = rr <= 1.0
            hub = rr <= 0.55
            rim = rr <= 0.42
            tread = np.abs((tx.frac(np.arctan2(y - R, s) * 12 / np.pi)) - 0.5) > 0.35
            shade = light * (0.9 - 0.3 * rr) * np.where(tread & ~hub, 0.75, 1.0)
            rgb = tx.shade(a.rgb, shade)
            rgb = np.where(hub[..., None], tx.shade(a.rgb * 0.7, light), rgb)
            rgb = np.where(rim[..., None] & a.extra.get("has_rim", True), tx.shade(a.rgb2, light * 0.9), rgb)
            return Paint(mask=mask, rgb=rgb, label=ANOMALY)
        return shader

    def _rock(self, light):
        a = self
        lobes = self.extra["lobes"]

        def shader(s, y, Z):
            R = a.size * 0.55
            ang = np.arctan2(y - R * 0.6, s)
            rad = R * (1 + sum(amp * np.cos(k * ang + ph) for k, amp, ph in lobes))
            dist = np.sqrt(s ** 2 + ((y - R * 0.6) * 1.1) ** 2)
            mask = (dist <= rad) & (y >= -0.02)
            n = tx.noise(s, y, 8.0, a.tex)
            shade = light * (0.65 + 0.45 * np.clip((y - R * 0.2) / R, 0, 1) + 0.15 * n)
            rgb = tx.shade(a.rgb, shade)
            rgb = np.where((n > 0.35)[..., None], tx.shade(a.rgb2, shade), rgb)
            return Paint(mask=mask, rgb=rgb, label=ANOMALY)
        return shader

    def _scrap(self, light):
        a = self
        verts = self.extra["verts"]

        def shader(s, y, Z):
            inside = np.ones(np.broadcast_shapes(np.shape(s), np.shape(y)), bool)
            n = len(verts)
            for i in range(n):
                (x1, y1), (x2, y2) = verts[i], verts[(i + 1) % n]
                inside &= ((x2 - x1) * (y - y1) - (y2 - y1) * (s - x1)) >= 0
            rust = tx.noise(s, y, 6.0, a.tex)
            rgb = tx.shade(a.rgb, light * (0.9 + 0.2 * rust))
            rgb = np.where((rust > 0.2)[..., None], tx.shade(a.rgb2, light), rgb)
            return Paint(mask=inside, rgb=rgb, label=ANOMALY)
        return shader

    def _bag(self, light):
        a = self

        def shader(s, y, Z):
            R = a.size / 2
            n = tx.noise(s, y, 6.0, a.tex)
            e = (s / (R * 1.1)) ** 2 + ((y - R) / R) ** 2
            knot = (np.abs(s) < 0.06) & (y > a.size * 0.9) & (y < a.size * 1.1)
            mask = (e + 0.15 * n <= 1.0) | knot
            spec = np.exp(-((s + 0.3 * R) ** 2 + (y - 1.4 * R) ** 2) / (0.05 * R * R + 1e-6))
            rgb = tx.shade(a.rgb, light * (0.7 + 0.3 * n)) + 0.35 * spec[..., None] * light
            return Paint(mask=mask, rgb=rgb.astype(np.float32), label=ANOMALY)
        return shader

    def _chair(self, light):
        a = self
        h = self.size
        f = self.facing

        def shader(s, y, Z):
            u = f * s / h
            v = y / h
            seat = (np.abs(u) < 0.25) & (np.abs(v - 0.5) < 0.035)
            back = (np.abs(u + 0.23) < 0.03) & (v > 0.5) & (v < 1.0)
            back_panel = (u > -0.25) & (u < -0.05) & (v > 0.7) & (v < 0.95) & a.extra.get("panel", True)
            legs = ((np.abs(u + 0.22) < 0.02) | (np.abs(u - 0.22) < 0.02)) & (v >= 0) & (v < 0.5)
            mask = seat | back | legs | back_panel
            rgb = tx.shade(a.rgb, light * (0.85 + 0.1 * tx.noise(s, y, 8, a.tex)))
            rgb = np.where(back_panel[..., None] | seat[..., None], tx.shade(a.rgb2, light), rgb)
            return Paint(mask=mask, rgb=rgb, label=ANOMALY)
        return shader

    def _table(self, light):
        a = self
        h = self.size

        def shader(s, y, Z):
            v = y / h
            top = (np.abs(s) < 0.75 * h) & (v > 0.92) & (v <= 1.0)
            legs = ((np.abs(s + 0.68 * h) < 0.035) | (np.abs(s - 0.68 * h) < 0.035)) & (v >= 0) & (v <= 0.95)
            rgb = tx.shade(a.rgb, light * (0.85 + 0.15 * tx.noise(s, y, 6, a.tex)))
            return Paint(mask=top | legs, rgb=rgb, label=ANOMALY)
        return shader

    def _mattress_face(self, light):
        a = self

        def shader(s, y, Z):
            quilt = (np.abs(tx.frac(s / 0.25) - 0.5) > 0.45) | (np.abs(tx.frac(y / 0.25) - 0.5) > 0.45)
            rgb = tx.shade(a.rgb, light * np.where(quilt, 0.85, 1.0))
            return Paint(mask=np.asarray(True), rgb=rgb, label=ANOMALY)
        return shader

    def _sofa(self, cv: Canvas, ctx: Ctx, x: float, z: float, heading: float) -> None:
        length = self.extra["length"]
        li = ctx.light
        c, s_ = math.cos(heading), math.sin(heading)
        a = self

        def uphol(light, base):
            def shader(s, y, Z):
                n = tx.noise(s, y, 4.0, a.tex)
                seam = np.abs(tx.frac(s / (length / 3)) - 0.5) > 0.47
                return Paint(mask=np.asarray(True), rgb=tx.shade(base, light * (0.9 + 0.12 * n) * np.where(seam, 0.8, 1.0)),
                             label=ANOMALY)
            return shader

        def faces(base):
            return {"back": uphol(li.face(-s_, -c), base), "front": uphol(li.face(s_, c), base),
                    "left": uphol(li.face(-c, s_), base), "right": uphol(li.face(c, -s_), base),
                    "top": uphol(1.1 * li.ambient + 0.6 * li.direct, base)}
        depth = 0.9
        # seat block, back rest and two arms (a box each); the sofa's local +z is its front
        cv.box((x, z), heading, depth, length, 0.0, self.size * 0.5, faces(self.rgb), self.instance)
        bx, bz = x - s_ * depth * 0.4, z - c * depth * 0.4
        cv.box((bx, bz), heading, 0.2, length, 0.0, self.size, faces(self.rgb2), self.instance)
        for side in (-1, 1):
            ax, az = x + side * c * (length / 2 - 0.1), z - side * s_ * (length / 2 - 0.1)
            cv.box((ax, az), heading, depth, 0.2, 0.0, self.size * 0.7, faces(self.rgb2), self.instance)


# ------------------------------------------------------------------------------------------------ placement
SIZES = {"deer": (0.9, 1.25), "dog": (0.35, 0.7), "cow": (1.25, 1.5), "boar": (0.6, 0.9),
         "cardboard_box": (0.3, 0.9), "crate": (0.4, 1.0), "barrel": (0.8, 1.0),
         "tyre_standing": (0.6, 0.85), "tyre_lying": (0.6, 0.85), "rock": (0.25, 0.9),
         "plank": (0.05, 0.12), "scrap_sheet": (0.3, 0.8), "trash_bag": (0.45, 0.8),
         "chair": (0.8, 1.0), "table": (0.7, 0.8), "sofa": (0.75, 0.95), "mattress": (0.15, 0.3)}

COLOURS = {
    "deer": ([(140, 95, 55), (120, 80, 45), (150, 110, 70)], [(210, 190, 160)]),
    "dog": ([(30, 25, 20), (150, 100, 50), (200, 160, 100), (230, 225, 215), (110, 90, 70)], [(230, 220, 200), (60, 50, 40)]),
    "cow": ([(235, 235, 230), (120, 80, 50)], [(25, 25, 25), (240, 240, 240)]),
    "boar": ([(70, 55, 45), (50, 40, 35)], [(90, 75, 60)]),
    "cardboard_box": ([(180, 140, 90), (165, 125, 80), (200, 165, 115)], [(200, 190, 170), (150, 120, 80)]),
    "crate": ([(170, 130, 80), (140, 105, 65), (190, 160, 110)], [(100, 80, 50)]),
    "barrel": ([(30, 70, 160), (170, 40, 30), (60, 100, 60), (120, 80, 50)], [(150, 150, 150)]),
    "tyre_standing": ([(25, 25, 27), (35, 35, 35)], [(160, 160, 165), (90, 90, 95)]),
    "tyre_lying": ([(25, 25, 27), (35, 35, 35)], [(160, 160, 165)]),
    "rock": ([(120, 115, 105), (100, 95, 90), (140, 125, 100), (90, 85, 80)], [(150, 145, 135), (80, 75, 70)]),
    "plank": ([(170, 130, 80), (140, 110, 70), (200, 170, 120)], [(100, 80, 50)]),
    "scrap_sheet": ([(160, 165, 170), (120, 125, 130), (80, 100, 120)], [(150, 80, 40), (120, 60, 30)]),
    "trash_bag": ([(20, 20, 22), (30, 60, 120), (80, 80, 80)], [(0, 0, 0)]),
    "chair": ([(150, 100, 60), (40, 40, 40), (200, 200, 200), (180, 40, 30)], [(60, 90, 160), (200, 180, 140), (40, 40, 40)]),
    "table": ([(160, 120, 80), (230, 230, 230), (90, 70, 50)], [(0, 0, 0)]),
    "sofa": ([(120, 40, 40), (80, 90, 110), (150, 140, 120), (60, 60, 60), (40, 80, 60)], [(100, 35, 35), (70, 75, 90), (130, 120, 100)]),
    "mattress": ([(230, 230, 225), (210, 220, 235), (220, 210, 190)], [(200, 200, 200)]),
}


def make_anomaly(rng: np.random.Generator, family: str, kind: str, d: float, z: float, instance: int) -> Anomaly:
    lo, hi = SIZES[kind]
    a, b = COLOURS[kind]
    extra: dict = {}
    if kind == "deer":
        extra["antlers"] = bool(rng.random() < 0.4)
    elif kind in ("cardboard_box", "crate"):
        extra["aspect"] = float(rng.uniform(0.8, 1.6))
        extra["depth"] = float(rng.uniform(0.7, 1.3))
    elif kind == "tyre_standing":
        extra["turn"] = float(rng.uniform(0.35, 1.0))
        extra["has_rim"] = bool(rng.random() < 0.6)
    elif kind == "rock":
        extra["lobes"] = [(int(k), float(rng.uniform(0, 0.12)), float(rng.uniform(0, 6.28))) for k in (2, 3, 5, 7)]
    elif kind == "plank":
        extra["length"] = float(rng.uniform(1.0, 2.5))
    elif kind == "scrap_sheet":
        n = int(rng.integers(4, 7))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        sz = float(rng.uniform(*SIZES[kind]))
        extra["verts"] = [(float(math.cos(t) * sz * rng.uniform(0.5, 0.9)), float(sz * 0.5 + math.sin(t) * sz * 0.45))
                          for t in ang]
    elif kind == "chair":
        extra["panel"] = bool(rng.random() < 0.6)
    elif kind in ("sofa", "mattress"):
        extra["length"] = float(rng.uniform(1.6, 2.2))
    return Anomaly(family=family, kind=kind, d=d, z=z, size=float(rng.uniform(lo, hi)), yaw=float(rng.uniform(-0.8, 0.8)),
                   rgb=tx.jitter(rng, tx.rgb(*a[int(rng.integers(len(a)))]), 0.06),
                   rgb2=tx.jitter(rng, tx.rgb(*b[int(rng.integers(len(b)))]), 0.06), instance=instance,
                   facing=int(rng.choice([-1, 1])), tex=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))), extra=extra)


def place_anomalies(rng: np.random.Generator, n: int, road, cam_z: float, focal: float, image_height: int,
                    image_width: int, ego_d: float) -> list[Anomaly]:
    """n obstacles on or near the drivable area, inside the camera's view and each at least ~2.5% of the image
    height tall when unoccluded (flat ones, planks and mattresses, count as 0.5 m)."""
    tan_half = 0.5 * image_width / focal
    out: list[Anomaly] = []
    families = list(FAMILIES)
    for i in range(n):
        family = families[int(rng.integers(len(families)))]
        kinds = FAMILIES[family]
        kind = kinds[int(rng.integers(len(kinds)))]
        anomaly = make_anomaly(rng, family, kind, 0.0, 0.0, i + 1)
        ref = anomaly.size if kind not in ("plank", "mattress") else 0.5
        min_px = max(6.0, 0.025 * image_height)
        z_max = min(70.0, focal * ref / min_px)
        z_min = 6.0
        for _ in range(20):
            Z = float(math.exp(rng.uniform(math.log(z_min), math.log(max(z_max, z_min + 1)))))
            where = rng.random()
            if where < 0.55:
                d = ego_d + float(rng.uniform(-1.2, 1.2))
            elif where < 0.88:
                d = float(rng.uniform(road.left_edge + 0.5, road.right_edge - 0.5))
            else:
                side = 1 if rng.random() < 0.6 else -1
                edge = road.right_edge if side > 0 else -road.left_edge
                d = side * (edge + float(rng.uniform(-0.3, 1.5)))
            if road.median > 0 and abs(d) < road.median / 2 + 0.3:
                continue
            if abs(d - ego_d) > 0.75 * Z * tan_half:
                continue  # outside the view (or at its very edge)
            z = cam_z + Z
            if all(abs(z - o.z) > 3.0 or abs(d - o.d) > 2.5 for o in out):
                break
        else:  # no free spot found: straight ahead in the ego lane, beyond the others
            d = ego_d + float(rng.uniform(-0.5, 0.5))
            z = max([cam_z + z_min] + [o.z + 4.0 for o in out])
        anomaly.d, anomaly.z = d, z
        out.append(anomaly)
    return out
