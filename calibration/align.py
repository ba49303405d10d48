"""Step 4: where an event pixel lands in the RGB image.

Two cameras with a baseline cannot be aligned exactly without depth, so the mapping
assumes every event comes from one surface:
- "infinite": points at infinity. Exact at every depth for a beam splitter (no
  baseline); for side-by-side rigs it leaves a parallax of f*B/Z pixels.
- "plane": a fronto-parallel plane at a working distance Z0 in the event camera's
  frame; the residual is f*B*|1/Z - 1/Z0| pixels, zero at Z0.
Both are the same ray computation: undistort the event pixel, place the point on the
surface, move it into the RGB frame, project it with the RGB camera's distortion. That
is what "rectify, then K_f R K_e^-1 (or the plane homography)" does, without needing a
separate rectified image grid, and it lands in the RGB camera's raw (distorted) pixels,
which is the grid the frames arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.camera import CameraModel
from calibration.mapping import EventToFrameMap

METHODS = ("infinite", "plane")
DEFAULT_WORKING_DISTANCE_M = 2.0


@dataclass(frozen=True)
class MappingSpec:
    method: str = "infinite"
    depth_m: float | None = None  # the plane's distance for method "plane"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"mapping method must be one of {METHODS}, got {self.method!r}")
        if self.method == "plane" and not (self.depth_m and self.depth_m > 0):
            raise ValueError("mapping method 'plane' needs a positive depth_m")

    @classmethod
    def for_rig(cls, rig_type: str, working_distance_m: float | None = None) -> MappingSpec:
        """A beam splitter has no parallax, so points at infinity are exact; a
        side-by-side rig is exact only at one distance, the one the user works at."""
        if rig_type == "beam_splitter":
            return cls("infinite")
        return cls("plane", working_distance_m or DEFAULT_WORKING_DISTANCE_M)

    @property
    def label(self) -> str:
        return "infinite" if self.method == "infinite" else f"plane@{self.depth_m:g}m"


def map_event_points(
    events: CameraModel,
    rgb: CameraModel,
    r: np.ndarray,
    t: np.ndarray,
    uv: np.ndarray,
    depth_m: float | None,
) -> np.ndarray:
    """Nx2 event-camera pixels -> Nx2 RGB pixels; depth_m None means infinity.
    r, t: X_event = R X_rgb + T."""
    rays = events.rays(uv)
    if depth_m is None:
        x_rgb = rays @ r  # R^T ray: directions only
    else:
        x_rgb = (rays * depth_m - np.asarray(t).ravel()) @ r
    out = np.full((len(uv), 2), np.nan)
    front = x_rgb[:, 2] > 1e-9
    if front.any():
        out[front] = rgb.project(x_rgb[front])
    return out


def build_map(
    events: CameraModel, rgb: CameraModel, r: np.ndarray, t: np.ndarray, spec: MappingSpec
) -> EventToFrameMap:
    uv = map_event_points(events, rgb, r, t, events.pixel_grid(1), _depth(spec))
    w, h = events.size
    return EventToFrameMap(
        uv[:, 0].reshape(h, w).astype(np.float32),
        uv[:, 1].reshape(h, w).astype(np.float32),
        rgb.size,
    )


def homography(
    events: CameraModel, rgb: CameraModel, r: np.ndarray, t: np.ndarray, spec: MappingSpec
) -> np.ndarray:
    """3x3 event->RGB homography between UNDISTORTED pixel grids:
    K_f (R' + T' n^T / Z0) K_e^-1 with R' = R^T, T' = -R^T T the event->RGB motion and
    n = (0, 0, 1); for infinity the T' term vanishes (K_f R' K_e^-1)."""
    r_er = np.asarray(r).T
    h = r_er.copy()
    if spec.method == "plane":
        t_er = -r_er @ np.asarray(t).ravel()
        h = h + np.outer(t_er, [0.0, 0.0, 1.0 / float(spec.depth_m)])
    hm = rgb.k @ h @ np.linalg.inv(events.k)
    return hm / hm[2, 2]


def parallax_px(rgb: CameraModel, t: np.ndarray, spec: MappingSpec, depth_m: float) -> float:
    """Expected misalignment for a scene point at depth_m: f*B*|1/Z - 1/Z0| (Z0 = inf
    for the "infinite" mapping), f the RGB focal length, B the baseline across the view."""
    b = float(np.hypot(t[0], t[1]))
    inv0 = 0.0 if spec.method == "infinite" else 1.0 / float(spec.depth_m)
    inv = 0.0 if not np.isfinite(depth_m) else 1.0 / depth_m
    return rgb.focal[0] * b * abs(inv - inv0)


def _depth(spec: MappingSpec) -> float | None:
    return None if spec.method == "infinite" else float(spec.depth_m)
