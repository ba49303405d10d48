"""A pinhole camera with OpenCV's radial-tangential distortion.

Both the simulated rig (ground truth) and the solvers' results use this one type, so
tests compare like with like and the mapping code has one projection path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """size is (width, height); k is 3x3; dist is OpenCV's (k1, k2, p1, p2, k3)."""

    name: str
    size: tuple[int, int]
    k: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    rms_px: float = float("nan")  # reprojection error of the fit that produced it

    @classmethod
    def pinhole(
        cls,
        name: str,
        size: tuple[int, int],
        f: float,
        c: tuple[float, float] | None = None,
        dist: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0),
    ) -> CameraModel:
        cx, cy = c if c is not None else ((size[0] - 1) / 2, (size[1] - 1) / 2)
        k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)
        return cls(name, size, k, np.asarray(dist, np.float64))

    @property
    def focal(self) -> tuple[float, float]:
        return float(self.k[0, 0]), float(self.k[1, 1])

    @property
    def principal_point(self) -> tuple[float, float]:
        return float(self.k[0, 2]), float(self.k[1, 2])

    def project(self, pts_cam: np.ndarray) -> np.ndarray:
        """Nx3 points in this camera's frame -> Nx2 distorted pixel positions."""
        pts = np.asarray(pts_cam, np.float64).reshape(-1, 1, 3)
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), self.k, self.dist)
        return uv.reshape(-1, 2)

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """Nx2 distorted pixel positions -> Nx3 rays (z = 1) in this camera's frame."""
        pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
        xn = cv2.undistortPoints(pts, self.k, self.dist, None, None, None, crit).reshape(-1, 2)
        return np.column_stack([xn, np.ones(len(xn))])

    def pixel_grid(self, supersample: int = 1) -> np.ndarray:
        """Pixel-centre positions (or s x s sub-samples per pixel) as Nx2, row-major."""
        w, h = self.size
        s = supersample
        off = (np.arange(s) + 0.5) / s - 0.5
        xs = (np.arange(w)[:, None] + off[None, :]).ravel()
        ys = (np.arange(h)[:, None] + off[None, :]).ravel()
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])


def relative_pose(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 matrix of X_b = R X_a + T."""
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = np.asarray(t, np.float64).ravel()
    return m
