"""Pinhole forward camera and the ego pose on the road.

Coordinates: world x to the right of the road's reference line, z along it, y up from the ground (flat ground
y = 0). The camera frame has X right, Z forward (optical axis, horizontal: the horizon is a row), Y up as a height
above the ground, so a point projects to u = cx + f X / Z, v = horizon + f (h - Y) / Z with h the mount height.
Pixel (row, col) has its centre at (row + 0.5, col + 0.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Nothing nearer than this is drawn; it also keeps the per-column depth of near walls finite.
NEAR_M = 0.3


@dataclass(frozen=True)
class Camera:
    height: int
    width: int
    focal: float          # pixels
    cx: float             # principal column
    horizon: float        # row of the horizon (moves with pitch)
    mount_height: float   # metres above the ground

    @classmethod
    def forward(cls, height: int, width: int, hfov_deg: float = 60.0, horizon_frac: float = 0.5,
                mount_height: float = 1.5) -> "Camera":
        focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(height, width, focal, width / 2.0, horizon_frac * height, mount_height)

    def project(self, X, Y, Z):
        """(u, v) image coordinates of camera-frame points (Z > 0)."""
        return self.cx + self.focal * X / Z, self.horizon + self.focal * (self.mount_height - Y) / Z

    def column_rays(self) -> np.ndarray:
        """X/Z of each column centre's viewing ray, shape (W,)."""
        return ((np.arange(self.width, dtype=np.float32) + 0.5) - self.cx) / self.focal

    def first_ground_row(self) -> int:
        """First row whose centre lies below the horizon (everything from here down sees the ground)."""
        return max(0, min(self.height, int(math.floor(self.horizon - 0.5)) + 1))

    def ground_depth(self, rows: np.ndarray) -> np.ndarray:
        """Forward distance Z (m) of the flat ground seen at the centre of each row below the horizon."""
        return self.focal * self.mount_height / ((rows + 0.5) - self.horizon)


@dataclass(frozen=True)
class Pose:
    """Ego camera position on the world ground plane and heading (radians, 0 = along +z, positive to the right)."""
    x: float
    z: float
    heading: float

    def to_camera(self, xw, zw):
        """World (x, z) -> camera (X, Z)."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        dx, dz = xw - self.x, zw - self.z
        return c * dx - s * dz, s * dx + c * dz

    def to_world(self, X, Z):
        """Camera (X, Z) -> world (x, z)."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        return self.x + c * X + s * Z, self.z - s * X + c * Z
