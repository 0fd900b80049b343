"""The road: a gently curving reference line, its cross-section (lanes, median, shoulders, verges, sidewalks)
and the shading of the ground plane with lane markings, crosswalks and side streets."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import SYNTHETIC
from . import textures as tx
from .camera import Camera, Pose
from .canvas import Canvas

ROAD, SIDEWALK, TERRAIN = SYNTHETIC.index("road"), SYNTHETIC.index("sidewalk"), SYNTHETIC.index("terrain")


@dataclass
class Road:
    """Cross-section measured by the signed lateral offset d from the reference line (positive to the right).

    Right-hand traffic: the ego carriageway is d > median/2. Side streets cross at `crossings` (z, width).
    """
    amps: tuple[float, ...] = ()
    freqs: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()
    lane_width: float = 3.5
    lanes_right: int = 1
    lanes_left: int = 1
    median: float = 0.0
    shoulder: float = 0.3
    verge: float = 0.0              # terrain strip between the road and the sidewalk
    sidewalk: float = 2.5           # 0 = none
    curb: float = 0.2
    dash: tuple[float, float] = (3.0, 6.0)   # lane-line dash and gap lengths
    centre_line: str = "dashed"     # dashed | solid | double | none (no median only)
    centre_yellow: bool = False
    edge_lines: bool = False
    marking_width: float = 0.15
    crossings: list[tuple[float, float]] = field(default_factory=list)
    crosswalks: bool = True
    # appearance
    asphalt: np.ndarray = field(default_factory=lambda: tx.rgb(85, 85, 88))
    paving: np.ndarray = field(default_factory=lambda: tx.rgb(150, 145, 140))
    terrain: np.ndarray = field(default_factory=lambda: tx.rgb(90, 120, 50))
    terrain_far: np.ndarray = field(default_factory=lambda: tx.rgb(110, 130, 60))
    median_terrain: bool = True
    tile: float = 0.5               # paving tile size (m)
    wear: float = 0.15              # asphalt patchiness
    offsets: tuple[float, float] = (0.0, 0.0)
    snow_cover: float = 0.0         # 0..1, set by the condition
    wet: float = 0.0                # 0..1, set by the condition

    # -- geometry ------------------------------------------------------------------------------------------
    def centre(self, z):
        out = np.zeros_like(z, dtype=np.float32) if isinstance(z, np.ndarray) else 0.0
        for a, w, p in zip(self.amps, self.freqs, self.phases):
            out = out + a * (np.sin(w * z + p) if isinstance(z, np.ndarray) else math.sin(w * z + p))
        return out

    def slope(self, z: float) -> float:
        return sum(a * w * math.cos(w * z + p) for a, w, p in zip(self.amps, self.freqs, self.phases))

    def heading(self, z: float) -> float:
        return math.atan(self.slope(z))

    @property
    def right_edge(self) -> float:
        return self.median / 2 + self.lanes_right * self.lane_width + self.shoulder

    @property
    def left_edge(self) -> float:
        return -(self.median / 2 + self.lanes_left * self.lane_width + self.shoulder)

    def lane_centre(self, lane: int) -> float:
        """Lateral offset of lane `lane`: 0, 1, .. on the right carriageway, -1, -2, .. on the left."""
        if lane >= 0:
            return self.median / 2 + (lane + 0.5) * self.lane_width
        return -(self.median / 2 + (-lane - 0.5) * self.lane_width)

    def outer(self, side: int) -> float:
        """Lateral offset of the outer edge of the sidewalk (or the road when there is none) on side +-1."""
        edge = self.right_edge if side > 0 else -self.left_edge
        return side * (edge + self.verge + self.sidewalk)

    def world(self, d: float, z: float) -> tuple[float, float]:
        """World (x, z) of lateral offset d at distance z along the road (small-curvature approximation)."""
        return float(self.centre(z)) + d, z

    def in_crossing(self, z0: float, z1: float, margin: float = 0.0) -> bool:
        return any(z1 > zc - margin and z0 < zc + w + margin for zc, w in self.crossings)

    # -- ground shading ------------------------------------------------------------------------------------
    def draw_ground(self, canvas: Canvas, light: float = 1.0, shadow_side: int = 0, shadow_width: float = 0.0) -> None:
        cam: Camera = canvas.camera
        pose: Pose = canvas.pose
        r0 = cam.first_ground_row()
        if r0 >= cam.height:
            return
        rows = np.arange(r0, cam.height, dtype=np.float32)
        Z = cam.ground_depth(rows)[:, None].astype(np.float32)            # (h,1)
        X = cam.column_rays()[None, :] * Z                                  # (h,w)
        c, s = math.cos(pose.heading), math.sin(pose.heading)
        xw = pose.x + c * X + s * Z
        zw = pose.z - s * X + c * Z
        d = xw - self.centre(zw)
        pix = Z / cam.focal                                                 # metres per pixel across
        far = np.clip(Z / 40.0, 0.0, 1.0)                                   # fades texture out (no aliasing)

        right, left = self.right_edge, self.left_edge
        road = (d >= left) & (d <= right)
        if self.median > 0 and self.median_terrain:
            road &= np.abs(d) >= self.median / 2
        median = ~road & (np.abs(d) < self.median / 2)
        side_d = np.where(d > 0, d - right, left - d)                       # distance beyond the road edge
        walk = (side_d > self.verge) & (side_d <= self.verge + self.sidewalk) & ~road & ~median
        cross = np.zeros_like(road)
        cross_inner = np.zeros_like(road)
        sw = self.sidewalk if self.sidewalk > 0 else 0.0
        for zc, w in self.crossings:
            cross |= (zw >= zc) & (zw <= zc + w)
            cross_inner |= (zw >= zc + sw) & (zw <= zc + w - sw)
        if self.crossings:
            beyond = cross & (side_d > 0)
            # the side street's carriageway, with its own sidewalks along its edges
            walk = (walk & ~beyond) | (beyond & ~cross_inner & (side_d > self.verge) & (sw > 0))
            road |= beyond & (cross_inner | (side_d <= self.verge))
        label = np.full(d.shape, TERRAIN, np.uint8)
        label[walk] = SIDEWALK
        label[road] = ROAD

        ox, oy = self.offsets
        n_big = tx.noise(xw, zw, 1.5, (ox, oy))
        n_fine = tx.grain(xw, zw, 24.0, (oy, ox)) * (1.0 - far)
        # asphalt: patchy wear, tyre tracks darker, fine grain
        lane_phase = np.abs(((d - self.median / 2 * np.sign(d)) / self.lane_width) % 1.0 - 0.5)
        tracks = np.exp(-((lane_phase - 0.23) / 0.06) ** 2) * 0.08 * (1 - far * 0.5)
        asphalt_f = 1.0 + self.wear * n_big + 0.12 * n_fine - tracks
        paving_grid = self._paving(xw - self.centre(zw), zw, pix)
        walk_f = 1.0 + 0.10 * n_big + 0.10 * n_fine - 0.25 * paving_grid
        n_t = tx.noise(xw, zw, 0.5, (oy + 31, ox + 17))
        terr_f = 1.0 + 0.25 * n_big + 0.25 * n_fine
        terr_mix = np.clip(0.5 + 1.2 * n_t, 0, 1)[..., None]
        terr_rgb = self.terrain * (1 - terr_mix) + self.terrain_far * terr_mix

        img = np.empty(d.shape + (3,), np.float32)
        img[:] = terr_rgb * terr_f[..., None]
        img[walk] = (self.paving[None, :] * walk_f[walk][:, None])
        img[road] = (self.asphalt[None, :] * asphalt_f[road][:, None])
        # curb: a bright strip where the sidewalk meets the road
        if self.sidewalk > 0 and self.curb > 0:
            curb = walk & (side_d - self.verge < self.curb + pix)
            img[curb] = np.clip(self.paving * 1.25, 0, 1)
        mark, mark_yellow = self._markings(d, zw, pix, road)
        if self.crossings:
            mark = np.where(cross, 0.0, mark)
        white = np.asarray((0.85, 0.85, 0.82), np.float32)
        yellow = np.asarray((0.85, 0.7, 0.15), np.float32)
        m = (mark * (1 - 0.3 * far))[..., None]
        my = (mark_yellow * (1 - 0.3 * far))[..., None]
        img = img * (1 - m - my) + white * m + yellow * my
        if self.snow_cover > 0:
            self._snow(img, label, d, zw, n_big, n_fine, far)
        if self.wet > 0:
            wet = road | walk
            img[wet] *= 1 - 0.35 * self.wet
        shade = np.float32(light)
        if shadow_side and shadow_width > 0:
            # shadow cast across the road by the buildings on the sun-far side
            dist = np.where(np.float32(shadow_side) * d > 0, np.float32(shadow_side) * d, 0)
            edge = self.outer(shadow_side) * shadow_side - shadow_width
            shadowed = (dist > edge) & ~cross
            img[shadowed] *= 0.55
        img *= shade
        h = cam.height - r0
        canvas.rgb[r0:] = img
        canvas.label[r0:] = label
        canvas.depth[r0:] = np.minimum(np.broadcast_to(Z, (h, cam.width)), canvas.depth[r0:])
        canvas.instance[r0:] = 0
        self._last = (r0, d, zw, xw, Z)

    def _paving(self, d, zw, pix) -> np.ndarray:
        a = np.abs((d / self.tile) % 1.0 - 0.5)
        b = np.abs((zw / self.tile) % 1.0 - 0.5)
        line = np.maximum(np.clip(1 - (0.5 - a) * self.tile / np.maximum(pix, 0.02), 0, 1),
                          np.clip(1 - (0.5 - b) * self.tile / np.maximum(pix * 3, 0.02), 0, 1))
        return line * np.clip(1.5 - pix * 20, 0, 1)

    def _markings(self, d, zw, pix, road):
        """Coverage (0..1) of white and yellow paint, anti-aliased across the line by the pixel footprint."""
        hw = self.marking_width / 2
        white = np.zeros(d.shape, np.float32)
        yellow = np.zeros(d.shape, np.float32)
        foot = np.maximum(pix, 1e-3)

        def line(offset: float, dashed: bool, width: float = hw):
            cov = np.clip((width - np.abs(d - offset)) / foot + 0.5, 0.0, 1.0)
            if dashed:
                period = self.dash[0] + self.dash[1]
                cov = cov * ((zw % period) < self.dash[0])
            return cov

        for side, lanes in ((1, self.lanes_right), (-1, self.lanes_left)):
            base = self.median / 2
            for i in range(1, lanes):
                white = np.maximum(white, line(side * (base + i * self.lane_width), True))
            if self.edge_lines:
                white = np.maximum(white, line(side * (base + lanes * self.lane_width + 0.2), False))
                if self.median > 0:
                    white = np.maximum(white, line(side * (base + 0.2), False))
        if self.median == 0 and self.centre_line != "none":
            target = yellow if self.centre_yellow else white
            if self.centre_line == "double":
                c = np.maximum(line(-0.12, False, hw * 0.8), line(0.12, False, hw * 0.8))
            else:
                c = line(0.0, self.centre_line == "dashed")
            np.maximum(target, c, out=target)
        if self.crosswalks:
            for zc, _ in self.crossings:
                zebra = (zw > zc - 4.5) & (zw < zc - 1.0) & road
                stripes = np.clip((0.25 - np.abs((d / 1.0) % 1.0 - 0.5)) / np.maximum(foot, 0.01) + 0.5, 0, 1)
                white = np.maximum(white, np.where(zebra, stripes, 0))
                stop = (zw > zc - 6.0) & (zw < zc - 5.6) & (d > self.median / 2) & road
                white = np.maximum(white, stop.astype(np.float32))
        return white, yellow

    def _snow(self, img, label, d, zw, n_big, n_fine, far) -> None:
        cover = self.snow_cover
        snow = np.asarray((0.93, 0.94, 0.97), np.float32)
        # drivable lanes keep dark tyre tracks; edges, sidewalks and terrain whiten
        lane_phase = np.abs(((d - self.median / 2 * np.sign(d)) / self.lane_width) % 1.0 - 0.5)
        on_road = label == ROAD
        track = np.exp(-((lane_phase - 0.23) / 0.08) ** 2)
        amount = np.where(on_road, np.clip(cover * (0.9 - 1.4 * track + 0.5 * n_big), 0, 1),
                          np.clip(cover * (1.1 + 0.3 * n_big), 0, 1))
        f = (1.0 + 0.05 * n_fine)[..., None]
        a = amount[..., None]
        img[:] = img * (1 - a) + snow * f * a
