"""The road: a gently curving reference line, its cross-section (lanes, median, shoulders, verges, sidewalks)
and the shading of the ground plane with lane markings, crosswalks and side streets."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..taxonomy import SYNTHETIC
from . import textures as tx
from .camera import Camera, Pose
from .canvas import Canvas

ROAD, SIDEWALK, TERRAIN = SYNTHETIC.index("road"), SYNTHETIC.index("sidewalk"), SYNTHETIC.index("terrain")


@dataclass(frozen=True)
class Decal:
    """A mark on the road surface (still labelled road): patch, manhole, stain, drain or puddle."""
    kind: str
    d: float
    z: float
    half_long: float
    half_wide: float
    tone: float = 1.0       # brightness factor of patches and stains


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
    decals: list[Decal] = field(default_factory=list)
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
    def _centre_lookup(self, zw: np.ndarray) -> np.ndarray:
        """centre(z) in float32 (the float64 path costs twice as much on a full image)."""
        out = np.zeros_like(zw)
        for a, w, p in zip(self.amps, self.freqs, self.phases):
            out += np.float32(a) * np.sin(zw * np.float32(w) + np.float32(p))
        return out

    def draw_ground(self, canvas: Canvas, light: float = 1.0, shadow_side: int = 0, shadow_width: float = 0.0) -> None:
        cam: Camera = canvas.camera
        pose: Pose = canvas.pose
        r0 = cam.first_ground_row()
        if r0 >= cam.height:
            return
        rows = np.arange(r0, cam.height, dtype=np.float32)
        Z = cam.ground_depth(rows)[:, None].astype(np.float32)            # (h,1)
        X = cam.column_rays()[None, :] * Z                                  # (h,w)
        c, s = np.float32(math.cos(pose.heading)), np.float32(math.sin(pose.heading))
        xw = (pose.x + c * X) + s * Z
        zw = (pose.z - s * X) + c * Z
        d = xw - self._centre_lookup(zw)
        pix = Z / np.float32(cam.focal)                                     # metres per pixel across, (h,1)
        far = np.clip(Z / 40.0, 0.0, 1.0)                                   # fades texture out (no aliasing)

        right, left = self.right_edge, self.left_edge
        ad = np.abs(d)
        road = (d >= left) & (d <= right)
        median = np.zeros_like(road)
        if self.median > 0 and self.median_terrain:
            median = ad < self.median / 2
            road &= ~median
        side_d = np.abs(d - (right + left) / 2) - (right - left) / 2          # distance beyond the road edge
        walk = (side_d > self.verge) & (side_d <= self.verge + self.sidewalk) if self.sidewalk > 0 else np.zeros_like(road)
        cross = None
        if self.crossings:
            cross = np.zeros_like(road)
            cross_inner = np.zeros_like(road)
            sw = self.sidewalk if self.sidewalk > 0 else 0.0
            zmin, zmax = float(zw.min()), float(zw.max())
            for zc, w in self.crossings:
                if zc > zmax or zc + w < zmin:
                    continue
                cross |= (zw >= zc) & (zw <= zc + w)
                cross_inner |= (zw >= zc + sw) & (zw <= zc + w - sw)
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
        # one brightness factor per pixel, per material; colours come from a small palette
        lane_phase = np.abs(tx.frac((ad - self.median / 2) / self.lane_width) - 0.5)
        bump = np.clip(1.0 - ((lane_phase - 0.23) * (1 / 0.09)) ** 2, 0.0, 1.0)   # worn wheel paths
        tracks = bump * (0.08 * (1 - far * 0.5))
        f_road = (1.0 + self.wear * n_big) + (0.12 * n_fine - tracks)
        # the terrain tone varies over metres: sample it at half resolution and upsample
        n_t = tx.noise(xw[::2, ::2], zw[::2, ::2], 0.5, (oy + 31, ox + 17))
        n_t = cv2.resize(n_t, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR)
        f_terr = 1.0 + 0.25 * (n_big + n_fine)
        f = np.where(road, f_road, f_terr)
        mat = np.clip(((0.5 + 1.2 * n_t) * 3.99).astype(np.int8), 0, 3).astype(np.uint8)  # 4 terrain tones
        if self.sidewalk > 0 or self.crossings:
            paving_grid = self._paving(d, zw, pix)
            f_walk = 1.0 + 0.10 * (n_big + n_fine) - 0.25 * paving_grid
            f = np.where(walk, f_walk, f)
            mat[walk] = 4
            if self.curb > 0:
                curb = walk & (side_d - self.verge < self.curb + pix)
                mat[curb] = 5
        mat[road] = 6
        palette = np.stack([self.terrain * (1 - k / 3) + self.terrain_far * (k / 3) for k in range(4)] +
                           [self.paving, np.clip(self.paving * 1.25, 0, 1), self.asphalt]).astype(np.float32)
        if self.wet > 0:
            palette[4:] *= 1 - 0.35 * self.wet
        if shadow_side and shadow_width > 0:
            # shadow cast across the road by the buildings on the sun-far side
            edge = abs(self.outer(shadow_side)) - shadow_width
            shadowed = (np.float32(shadow_side) * d > edge)
            if cross is not None:
                shadowed &= ~cross
            f = np.where(shadowed, f * 0.55, f)
        if light != 1.0:
            f *= np.float32(light)
        img = np.take(palette, mat, axis=0, out=canvas.rgb[r0:])
        # paint first, then the brightness factor, so markings are worn and shaded like the asphalt under them
        white, yellow = self._markings(d, zw, pix, road, cross)
        for cov, colour in ((white, (0.85, 0.85, 0.82)), (yellow, (0.85, 0.7, 0.15))):
            if cov is not None:
                m = (cov * (1 - 0.3 * far))[..., None]
                img += m * (np.asarray(colour, np.float32) - img)
        img *= f[..., None]
        if self.decals:
            self._paint_decals(img, cam, pose, r0, d, zw)
        if self.snow_cover > 0:
            self._snow(img, label, ad, zw, n_big, n_fine)
        h = cam.height - r0
        canvas.label[r0:] = label
        canvas.depth[r0:] = np.minimum(np.broadcast_to(Z, (h, cam.width)), canvas.depth[r0:])
        canvas.instance[r0:] = 0
        self._last = (r0, d, zw, xw, Z)

    def _paving(self, d, zw, pix) -> np.ndarray:
        a = np.abs(tx.frac(d / self.tile) - 0.5)
        b = np.abs(tx.frac(zw / self.tile) - 0.5)
        line = np.maximum(np.clip(1 - (0.5 - a) * self.tile / np.maximum(pix, 0.02), 0, 1),
                          np.clip(1 - (0.5 - b) * self.tile / np.maximum(pix * 3, 0.02), 0, 1))
        return line * np.clip(1.5 - pix * 20, 0, 1)

    def _markings(self, d, zw, pix, road, cross):
        """Coverage (0..1) of white and yellow paint, anti-aliased across the line by the pixel footprint
        (None where a colour has no paint in view)."""
        hw = self.marking_width / 2
        foot = np.maximum(pix, 1e-3)
        inv_foot = 1.0 / foot
        lines: list[tuple[float, bool, float, bool]] = []   # (offset, dashed, half width, yellow)
        white = yellow = None
        period = self.dash[0] + self.dash[1]
        dash = tx.frac(zw * (1.0 / period)) < self.dash[0] / period
        ad = np.abs(d)
        base = self.median / 2
        lanes_max = max(self.lanes_right, self.lanes_left)
        if lanes_max > 1:
            # all dashed lane lines at once: distance to the nearest multiple of the lane width on each side
            q = (ad - base) * (1.0 / self.lane_width)
            k = np.rint(q)
            lanes_here = np.where(d > 0, self.lanes_right, self.lanes_left)
            valid = (k >= 1) & (k <= lanes_here - 1)
            cov = np.clip((hw - np.abs(q - k) * self.lane_width) * inv_foot + 0.5, 0.0, 1.0)
            white = cov * (valid & dash)
        for side, lanes in ((1, self.lanes_right), (-1, self.lanes_left)):
            if self.edge_lines:
                lines.append((side * (base + lanes * self.lane_width + min(0.1, max(self.shoulder - 0.15, -0.2))), False, hw, False))
                if self.median > 0:
                    lines.append((side * (base + 0.2), False, hw, False))
        if self.median == 0 and self.centre_line != "none":
            if self.centre_line == "double":
                lines += [(-0.12, False, hw * 0.8, self.centre_yellow), (0.12, False, hw * 0.8, self.centre_yellow)]
            else:
                lines.append((0.0, self.centre_line == "dashed", hw, self.centre_yellow))
        for offset, dashed, width, is_yellow in lines:
            cov = np.clip((width - np.abs(d - offset)) * inv_foot + 0.5, 0.0, 1.0)
            if dashed:
                cov *= dash
            if is_yellow:
                yellow = cov if yellow is None else np.maximum(yellow, cov)
            else:
                white = cov if white is None else np.maximum(white, cov)
        if self.crosswalks and self.crossings:
            zmin, zmax = float(zw.min()), float(zw.max())
            for zc, _ in self.crossings:
                if zc - 6.0 > zmax or zc < zmin:
                    continue
                zebra = (zw > zc - 4.5) & (zw < zc - 1.0) & road
                stripes = np.clip((0.25 - np.abs(d % 1.0 - 0.5)) * inv_foot + 0.5, 0, 1)
                stop = (zw > zc - 6.0) & (zw < zc - 5.6) & (d > self.median / 2) & road
                paint = np.maximum(np.where(zebra, stripes, 0), stop)
                white = paint if white is None else np.maximum(white, paint)
        if cross is not None:
            if white is not None:
                white = np.where(cross, 0.0, white)
            if yellow is not None:
                yellow = np.where(cross, 0.0, yellow)
        return white, yellow

    def _paint_decals(self, img, cam: Camera, pose: Pose, r0: int, d, zw) -> None:
        H, W = d.shape
        for dc in self.decals:
            X, Zc = pose.to_camera(*self.world(dc.d, dc.z))
            ext = max(dc.half_long, dc.half_wide) + 0.2
            if Zc - ext < 1.0 or Zc > 90.0:
                continue
            va = cam.horizon + cam.focal * cam.mount_height / (Zc + ext)
            vb = cam.horizon + cam.focal * cam.mount_height / (Zc - ext)
            ua = cam.cx + cam.focal * (X - ext) / (Zc - ext if X - ext < 0 else Zc + ext)
            ub = cam.cx + cam.focal * (X + ext) / (Zc + ext if X + ext < 0 else Zc - ext)
            a0, a1 = max(int(va) - r0, 0), min(int(math.ceil(vb)) + 1 - r0, H)
            c0, c1 = max(int(ua), 0), min(int(math.ceil(ub)) + 1, W)
            if a1 <= a0 or c1 <= c0:
                continue
            along = zw[a0:a1, c0:c1] - dc.z
            across = d[a0:a1, c0:c1] - dc.d
            crop = img[a0:a1, c0:c1]
            if dc.kind == "patch":
                cover = ((np.abs(along) < dc.half_long) & (np.abs(across) < dc.half_wide)).astype(np.float32)
                crop *= (1.0 + (dc.tone - 1.0) * cover)[..., None]
            elif dc.kind in ("stain", "puddle"):
                r2 = (along / dc.half_long) ** 2 + (across / dc.half_wide) ** 2
                cover = np.clip(1.2 - r2, 0.0, 1.0)
                if dc.kind == "stain":
                    crop *= (1.0 - (1.0 - dc.tone) * cover)[..., None]
                else:  # standing water mirrors the (grey) sky
                    sky = np.asarray((0.55, 0.58, 0.62), np.float32)
                    crop += (cover * 0.75 * self.wet)[..., None] * (sky - crop)
            elif dc.kind == "manhole":
                r = np.sqrt(along ** 2 + across ** 2)
                disc = r < dc.half_long
                ring = disc & (r > dc.half_long - 0.06)
                grid = (np.abs(tx.frac(along * 8.0) - 0.5) > 0.35) & disc
                f = np.where(disc, 0.55, 1.0) * np.where(grid, 0.8, 1.0) * np.where(ring, 1.35, 1.0)
                crop *= f[..., None]
            elif dc.kind == "drain":
                box = (np.abs(along) < dc.half_long) & (np.abs(across) < dc.half_wide)
                bars = box & (np.abs(tx.frac(along * 12.0) - 0.5) < 0.25)
                crop *= np.where(bars, 0.2, np.where(box, 0.6, 1.0))[..., None]

    def _snow(self, img, label, ad, zw, n_big, n_fine) -> None:
        cover = self.snow_cover
        snow = np.asarray((0.93, 0.94, 0.97), np.float32)
        # drivable lanes keep dark, wandering tyre tracks; edges, sidewalks and terrain whiten
        wobble = 0.25 * np.sin(zw * np.float32(0.07) + np.float32(self.offsets[0])) * np.float32(1.0 / self.lane_width)
        lane_phase = np.abs(tx.frac((ad - self.median / 2) * (1.0 / self.lane_width) + wobble) - 0.5)
        track = np.clip(1.0 - ((lane_phase - 0.23) * (1 / 0.1)) ** 2, 0.0, 1.0)
        amount = np.where(label == ROAD, np.clip(cover * (0.9 - 1.2 * track + 0.6 * n_big), 0, 1),
                          np.clip(cover * (1.1 + 0.3 * n_big), 0, 1))
        a = amount[..., None]
        img *= 1 - a
        img += (snow * a) * (1.0 + 0.05 * n_fine)[..., None]
