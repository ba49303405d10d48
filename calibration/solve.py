"""Steps 1-3 of the wizard: intrinsics of each camera and the extrinsics between them,
from checkerboard corners. OpenCV does the optimisation; this module decides flags
and returns per-view errors so verification can name the bad views."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.camera import CameraModel
from calibration.errors import CalibrationError

# k3 stays 0: ordinary lenses do not need it, and freeing it with few views lets it
# trade off against the focal length.
INTRINSIC_FLAGS = cv2.CALIB_FIX_K3
_CRIT = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


@dataclass(frozen=True)
class IntrinsicsResult:
    camera: CameraModel
    per_view_rms: np.ndarray  # px, one per view
    rvecs: list[np.ndarray]
    tvecs: list[np.ndarray]


@dataclass(frozen=True)
class StereoResult:
    r: np.ndarray  # X_event = R X_rgb + T
    t: np.ndarray
    rms_px: float
    per_view_rms: np.ndarray
    rgb: CameraModel  # jointly refined intrinsics
    events: CameraModel


def calibrate_intrinsics(
    name: str, size: tuple[int, int], board: BoardSpec, corners: list[np.ndarray]
) -> IntrinsicsResult:
    if len(corners) < 3:
        raise CalibrationError(
            f"{name}: {len(corners)} usable views; at least 3 are needed to solve intrinsics",
            f"{name} intrinsics",
            "capture more views with the whole board visible.",
        )
    obj = [board.object_points()] * len(corners)
    img = [c.reshape(-1, 1, 2).astype(np.float32) for c in corners]
    rms, k, dist, rvecs, tvecs, _, _, per_view = cv2.calibrateCameraExtended(
        obj, img, size, None, None, flags=INTRINSIC_FLAGS, criteria=_CRIT
    )
    cam = CameraModel(name, size, k, dist.ravel()[:5], float(rms))
    return IntrinsicsResult(cam, per_view.ravel(), list(rvecs), list(tvecs))


def calibrate_stereo(
    board: BoardSpec,
    rgb: CameraModel,
    events: CameraModel,
    rgb_corners: list[np.ndarray],
    ev_corners: list[np.ndarray],
) -> StereoResult:
    """Extrinsics, then a joint refinement of both cameras: the rigid link between them
    pins each event-camera board pose to the (sharper, higher-resolution) RGB one,
    which constrains the event camera's principal point far better than its own views.
    Returns the refined cameras as well."""
    if len(rgb_corners) < 3:
        raise CalibrationError(
            f"{len(rgb_corners)} views show the board in both cameras at once; at least 3 "
            "are needed for the extrinsics",
            "stereo",
            "hold the board where both cameras see all of it, in more positions.",
        )
    obj = [board.object_points()] * len(rgb_corners)
    a = [c.reshape(-1, 1, 2).astype(np.float32) for c in rgb_corners]
    b = [c.reshape(-1, 1, 2).astype(np.float32) for c in ev_corners]
    out = cv2.stereoCalibrateExtended(
        obj,
        a,
        b,
        rgb.k.copy(),
        rgb.dist.copy(),
        events.k.copy(),
        events.dist.copy(),
        rgb.size,
        np.eye(3),
        np.zeros((3, 1)),
        flags=cv2.CALIB_FIX_INTRINSIC,
        criteria=_CRIT,
    )
    r, t = out[5], out[6]
    joint = cv2.stereoCalibrateExtended(
        obj,
        a,
        b,
        rgb.k.copy(),
        rgb.dist.copy(),
        events.k.copy(),
        events.dist.copy(),
        rgb.size,
        r.copy(),
        t.copy(),
        flags=cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_USE_EXTRINSIC_GUESS | INTRINSIC_FLAGS,
        criteria=_CRIT,
    )
    rms, k1, d1, k2, d2, r, t, per_view = *joint[:7], joint[-1]
    if not np.isfinite(rms) or rms > 2 * out[0] + 0.5:  # refinement diverged: keep step 3
        rms, k1, d1, k2, d2, r, t, per_view = out[0], *out[1:7], out[-1]
    rgb_j = CameraModel(rgb.name, rgb.size, k1, d1.ravel()[:5], rgb.rms_px)
    ev_j = CameraModel(events.name, events.size, k2, d2.ravel()[:5], events.rms_px)
    return StereoResult(
        np.asarray(r), np.asarray(t).ravel(), float(rms), np.asarray(per_view), rgb_j, ev_j
    )
