"""Z-buffered canvas with the two drawing primitives every object is made of.

`billboard` draws a shape on a camera-facing vertical plane at one depth (people, poles, trees, animals);
`wall` draws a shape on a vertical plane through two ground points (facades, car sides, fences), with the
per-column depth of that plane, so textures defined in metres on the surface come out perspective-correct.
Shapes are functions of surface coordinates in metres, `shader(s, y, Z) -> Paint`, which keeps every object
independent of the image size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .camera import NEAR_M, Camera, Pose

# Depth maps are written as uint16 centimetres; anything farther (the sky, the far ground) reads as this.
MAX_DEPTH_M = 655.35


@dataclass
class Paint:
    """What a shader puts on its surface: coverage, albedo colour (RGB in [0, 1]), label, optional light emitted."""
    mask: np.ndarray
    rgb: np.ndarray
    label: np.ndarray | int
    emit: np.ndarray | None = None


Shader = Callable[[np.ndarray, np.ndarray, float | np.ndarray], Paint | None]


class Canvas:
    def __init__(self, camera: Camera, pose: Pose):
        h, w = camera.height, camera.width
        self.camera = camera
        self.pose = pose
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.emit = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.depth = np.full((h, w), MAX_DEPTH_M, np.float32)
        # 0 = not an anomaly; k > 0 = anomaly instance k (gives each instance its visible pixel area)
        self.instance = np.zeros((h, w), np.int16)
        self.any_emit = False

    # -- writing -------------------------------------------------------------------------------------------
    def _write(self, r0: int, c0: int, vis: np.ndarray, depth, paint: Paint, instance: int) -> None:
        h, w = vis.shape
        sl = (slice(r0, r0 + h), slice(c0, c0 + w))
        # copyto(where=) is several times faster than boolean fancy indexing for these block writes
        np.copyto(self.depth[sl], depth, where=vis)
        vis3 = vis[..., None]
        np.copyto(self.rgb[sl], paint.rgb, where=vis3, casting="unsafe")
        np.copyto(self.label[sl], paint.label, where=vis, casting="unsafe")
        np.copyto(self.instance[sl], instance, where=vis, casting="unsafe")
        if paint.emit is not None:
            np.copyto(self.emit[sl], paint.emit, where=vis3, casting="unsafe")
            self.any_emit = True
        elif self.any_emit:
            np.copyto(self.emit[sl], 0.0, where=vis3)

    # -- primitives ----------------------------------------------------------------------------------------
    def billboard(self, X: float, Z: float, half_width: float, y0: float, y1: float, shader: Shader,
                  instance: int = 0) -> bool:
        """Vertical plane through camera-frame point (X, Z) facing the camera (perpendicular to the viewing ray,
        so objects beside the car stay the right size), spanning s in [-half_width, half_width] and heights
        [y0, y1] metres."""
        if Z < NEAR_M:
            return False
        r = math.hypot(X, Z)
        px, pz = Z / r * half_width, -X / r * half_width      # towards the viewer's right
        p1, p2 = (X - px, Z - pz), (X + px, Z + pz)

        def centred(s, y, Zc):
            return shader(s - half_width, y, Zc)
        return self.wall(p1, p2, y0, y1, centred, instance=instance, world=False)

    def wall(self, p1: tuple[float, float], p2: tuple[float, float], y0: float, y1: float, shader: Shader,
             instance: int = 0, world: bool = True, two_sided: bool = True) -> bool:
        """Vertical plane through ground points p1 -> p2 (world (x, z), or camera (X, Z) with world=False),
        heights [y0, y1]; the shader gets s = metres along p1->p2 and y = height. With two_sided=False the
        face is drawn only when the camera is on its outward side, the right of p1->p2 seen from above (so s runs
        left-to-right for the viewer)."""
        cam = self.camera
        if world:
            X1, Z1 = self.pose.to_camera(*p1)
            X2, Z2 = self.pose.to_camera(*p2)
        else:
            (X1, Z1), (X2, Z2) = p1, p2
        length = math.hypot(X2 - X1, Z2 - Z1)
        if length < 1e-6:
            return False
        if not two_sided and (X2 - X1) * (-Z1) - (Z2 - Z1) * (-X1) >= 0:
            return False  # camera (origin) is on the right of p1->p2: back face
        t_lo, t_hi = 0.0, 1.0
        if Z1 < NEAR_M and Z2 < NEAR_M:
            return False
        if Z1 < NEAR_M or Z2 < NEAR_M:
            tc = (NEAR_M - Z1) / (Z2 - Z1)
            if Z1 < NEAR_M:
                t_lo = tc
            else:
                t_hi = tc
        f = cam.focal
        ua = cam.cx + f * (X1 + t_lo * (X2 - X1)) / (Z1 + t_lo * (Z2 - Z1))
        ub = cam.cx + f * (X1 + t_hi * (X2 - X1)) / (Z1 + t_hi * (Z2 - Z1))
        u0 = max(math.floor(min(ua, ub)), 0)
        u1 = min(math.ceil(max(ua, ub)), cam.width)
        if u1 <= u0:
            return False
        xn = (np.arange(u0, u1, dtype=np.float32) + 0.5 - cam.cx) / f
        dX, dZ = X2 - X1, Z2 - Z1
        denom = dX - xn * dZ
        denom = np.where(np.abs(denom) < 1e-9, 1e-9, denom)
        t = (xn * Z1 - X1) / denom
        zc = Z1 + t * dZ
        ok = (t >= t_lo - 1e-6) & (t <= t_hi + 1e-6) & (zc >= NEAR_M)
        if not ok.any():
            return False
        zmin = float(zc[ok].min())
        # columns off the segment get a harmless finite depth; `ok` masks them out below
        zc = np.where(ok, zc, np.float32(zmin)).astype(np.float32)
        zmax = float(zc.max())
        v0 = max(math.floor(cam.horizon + f * (cam.mount_height - y1) / (zmin if y1 > cam.mount_height else zmax)), 0)
        v1 = min(math.ceil(cam.horizon + f * (cam.mount_height - y0) / (zmin if y0 < cam.mount_height else zmax)),
                 cam.height)
        if v1 <= v0:
            return False
        rows = np.arange(v0, v1, dtype=np.float32)[:, None] + 0.5
        y = cam.mount_height - (rows - cam.horizon) * (zc[None, :] / f)
        s = (t * length).astype(np.float32)[None, :]
        inside = (y >= y0) & (y <= y1) & ok[None, :]
        if not inside.any():
            return False
        paint = shader(s, y, zc[None, :])
        if paint is None:
            return False
        depth = np.broadcast_to(zc[None, :], inside.shape)
        vis = inside & np.broadcast_to(paint.mask, inside.shape) & (self.depth[v0:v1, u0:u1] > depth)
        if not vis.any():
            return False
        self._write(v0, u0, vis, depth, paint, instance)
        return True

    def box(self, centre: tuple[float, float], heading: float, length: float, width: float, y0: float, y1: float,
            shaders: dict[str, Shader], instance: int = 0) -> None:
        """Upright box on the ground (world centre (x, z), heading along +z): draws its visible faces among
        'front', 'back', 'left', 'right' (missing keys are skipped); s runs left-to-right as seen from outside."""
        c, s = math.cos(heading), math.sin(heading)
        fx, fz = s * length / 2, c * length / 2     # forward half-vector
        rx, rz = c * width / 2, -s * width / 2      # right half-vector
        x, z = centre
        fl = (x + fx - rx, z + fz - rz)
        fr = (x + fx + rx, z + fz + rz)
        bl = (x - fx - rx, z - fz - rz)
        br = (x - fx + rx, z - fz + rz)
        # each face left-to-right as seen from outside (outward side on the right of p1->p2)
        faces = {"back": (bl, br), "front": (fr, fl), "left": (fl, bl), "right": (br, fr)}
        for name, (p1, p2) in faces.items():
            shader = shaders.get(name)
            if shader is not None:
                self.wall(p1, p2, y0, y1, shader, instance=instance, two_sided=False)
        if "top" in shaders and y1 < self.camera.mount_height - 0.02:
            # a = metres from the left-rear corner towards the right, b = metres towards the front
            self.horizontal([bl, br, fr, fl], y1, shaders["top"], instance=instance)

    def horizontal(self, corners: list[tuple[float, float]], y: float, shader: Shader, instance: int = 0) -> bool:
        """Horizontal convex polygon at height y below the camera (tops of low objects), world (x, z) corners
        in order; the shader gets (a, b) = metres along the first edge and across it, and the depth."""
        cam = self.camera
        hc = cam.mount_height - y
        if hc <= 0.02:
            return False
        pts = [self.pose.to_camera(*p) for p in corners]
        if max(p[1] for p in pts) < NEAR_M:
            return False
        f = cam.focal
        us, vs = [], []
        for X, Z in pts:
            Zc = max(Z, NEAR_M)
            us.append(cam.cx + f * X / Zc)
            vs.append(cam.horizon + f * hc / Zc)
        u0, u1 = max(math.floor(min(us)), 0), min(math.ceil(max(us)), cam.width)
        v0, v1 = max(math.floor(min(vs)), 0), min(math.ceil(max(vs)), cam.height)
        v0 = max(v0, math.floor(cam.horizon) + 1)
        if u1 <= u0 or v1 <= v0:
            return False
        rows = np.arange(v0, v1, dtype=np.float32)[:, None] + 0.5
        Z = f * hc / (rows - cam.horizon)                                   # (h,1)
        X = ((np.arange(u0, u1, dtype=np.float32) + 0.5 - cam.cx) / f)[None, :] * Z
        inside = np.ones((v1 - v0, u1 - u0), bool)
        n = len(pts)
        # winding-independent convex test: all edge cross products share a sign
        crosses = []
        for i in range(n):
            (xa, za), (xb, zb) = pts[i], pts[(i + 1) % n]
            crosses.append((xb - xa) * (Z - za) - (zb - za) * (X - xa))
        pos = np.all([c >= 0 for c in crosses], axis=0)
        neg = np.all([c <= 0 for c in crosses], axis=0)
        inside &= pos | neg
        if not inside.any():
            return False
        (xa, za), (xb, zb) = pts[0], pts[1]
        e = math.hypot(xb - xa, zb - za) or 1.0
        ex, ez = (xb - xa) / e, (zb - za) / e
        a = (X - xa) * ex + (Z - za) * ez
        b = -(X - xa) * ez + (Z - za) * ex
        paint = shader(a, b, Z)
        if paint is None:
            return False
        depth = np.broadcast_to(Z, inside.shape)
        vis = inside & np.broadcast_to(paint.mask, inside.shape) & (self.depth[v0:v1, u0:u1] > depth)
        if not vis.any():
            return False
        self._write(v0, u0, vis, depth, paint, instance)
        return True
