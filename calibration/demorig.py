"""A calibration for the simulated demo rig, so its recordings replay as plain files.

The demo rig knows its geometry as one event->RGB homography H (rig/sim). Tools that
take a recording without its session (`replay raw.aedat4 --calibration FILE`, DV) need
a calibration file instead, so H is factored into two pinhole cameras and a rotation,
H ~ K_rgb R' K_ev^-1, the "infinite" mapping of a beam-splitter rig: the saved file then
maps events exactly as the live pipeline did (to about 1e-4 px), through the same
loader and lookup table as any calibration from `slomo-rig calibrate`.

The factorisation has 8 unknowns for H's 8 degrees of freedom (event focal length
and principal point, rotation, RGB focal lengths and principal point, with the event
camera's principal point and focal length gently held near nominal values), solved
with a few Levenberg-Marquardt steps on a grid of pixel correspondences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.align import MappingSpec
from calibration.camera import CameraModel
from calibration.errors import CalibrationError
from calibration.model import Calibration

NOMINAL_EVENT_FOCAL_PX = 300.0
MAX_FIT_ERROR_PX = 0.01
_PRIOR = 1e-3  # weight of the nominal values: decides among exact solutions only


def _matrix(p: np.ndarray) -> np.ndarray:
    f, cxe, cye, r1, r2, r3, fx, fy, cx, cy = p
    k_ev = np.array([[f, 0, cxe], [0, f, cye], [0, 0, 1.0]])
    k_rgb = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    rot = cv2.Rodrigues(np.array([r1, r2, r3], np.float64))[0]
    return k_rgb @ rot @ np.linalg.inv(k_ev)


def _initial(h: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """RQ decomposition of H K_ev at the nominal event camera: exact but for a small skew."""
    f = NOMINAL_EVENT_FOCAL_PX
    k_ev = np.array([[f, 0, centre[0]], [0, f, centre[1]], [0, 0, 1.0]])
    _, k, rot = cv2.RQDecomp3x3(h @ k_ev)[:3]
    d = np.diag(np.sign(np.diag(k)))
    k, rot = k @ d, d @ rot
    if np.linalg.det(rot) < 0:
        k, rot = -k, -rot
    k = k / k[2, 2]
    rvec = cv2.Rodrigues(rot)[0].ravel()
    return np.array([f, *centre, *rvec, k[0, 0], k[1, 1], k[0, 2], k[1, 2]])


def calibration_from_homography(
    h: np.ndarray, event_size: tuple[int, int], frame_size: tuple[int, int]
) -> Calibration:
    """Two pinhole cameras and a rotation whose infinite-depth mapping is H."""
    h = np.asarray(h, np.float64) / h[2, 2]
    ew, eh = event_size
    gx, gy = np.meshgrid(np.linspace(0, ew - 1, 12), np.linspace(0, eh - 1, 9))
    pts = np.column_stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    target = pts @ h.T
    target = target[:, :2] / target[:, 2:]
    centre = np.array([(ew - 1) / 2, (eh - 1) / 2])

    def residuals(p: np.ndarray) -> np.ndarray:
        q = pts @ _matrix(p).T
        err = (q[:, :2] / q[:, 2:] - target).ravel()
        prior = [*(p[1:3] - centre), p[0] - NOMINAL_EVENT_FOCAL_PX]
        return np.concatenate([err, _PRIOR * np.array(prior)])

    p, damping = _initial(h, centre), 1e-3
    for _ in range(100):
        r = residuals(p)
        jac = np.empty((r.size, p.size))
        for j in range(p.size):
            step = np.zeros_like(p)
            step[j] = 1e-6 * max(1.0, abs(p[j]))
            jac[:, j] = (residuals(p + step) - residuals(p - step)) / (2 * step[j])
        a, g = jac.T @ jac, jac.T @ r
        delta = np.linalg.solve(a + damping * np.diag(np.diag(a)), -g)
        if np.sum(residuals(p + delta) ** 2) < np.sum(r**2):
            p, damping = p + delta, damping * 0.3
        else:
            damping *= 10
    err = np.abs(residuals(p)[: 2 * len(pts)]).max()
    if not err <= MAX_FIT_ERROR_PX:
        raise CalibrationError(
            f"the simulated rig's homography could not be factored into cameras ({err:.3f} px off)",
            "simulated rig",
            "replay the session folder instead of its raw file.",
        )
    f, cxe, cye, *_ = p
    rot = cv2.Rodrigues(p[3:6])[0]
    events = CameraModel("events", tuple(event_size), _k(f, f, cxe, cye), rms_px=0.0)
    rgb = CameraModel("rgb", tuple(frame_size), _k(p[6], p[7], p[8], p[9]), rms_px=0.0)
    # Calibration.r maps RGB -> event coordinates; H's rotation maps event -> RGB.
    return Calibration(rgb, events, rot.T, np.zeros(3), "beam_splitter", MappingSpec(), None, 0.0)


def _k(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]], np.float64)


def save_sim_calibration(rig_info: dict[str, Any], session_path: Path) -> Path | None:
    """Write the demo rig's calibration into its session (calibration.json, .yaml,
    .lut.npz); None when the sensors share one pixel grid (nothing to map)."""
    from calibration.storage import save_calibration
    from pipeline.inputs.session import sim_homography
    from pipeline.session import CALIBRATION_FILE, Session

    sim = sim_homography(rig_info)
    if sim is None:
        return None
    h, event_size, frame_size = sim
    if np.allclose(h, np.eye(3)) and tuple(event_size) == tuple(frame_size):
        return None
    path = Path(session_path) / CALIBRATION_FILE
    save_calibration(calibration_from_homography(h, event_size, frame_size), path)
    Session(Path(session_path)).update(
        calibration={"file": CALIBRATION_FILE, "source": "the simulated rig's geometry"}
    )
    return path
