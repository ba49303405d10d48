"""Compare a solved calibration with the simulated rig's ground truth (tests and the
`--rig sim` report use it): relative focal / principal-point errors and the event-to-RGB
alignment error of the pipeline's lookup table at given scene depths."""

from __future__ import annotations

import numpy as np

from calibration.model import Calibration
from calibration.simrig import SimTruth, true_lut


def intrinsic_errors(calib: Calibration, truth: SimTruth) -> dict[str, float]:
    """Largest relative error (fraction) of focal lengths and principal point per camera."""
    out = {}
    for tag, est, ref in (("rgb", calib.rgb, truth.rgb), ("events", calib.events, truth.events)):
        f = np.abs(np.subtract(est.focal, ref.focal)) / np.asarray(ref.focal)
        c = np.abs(np.subtract(est.principal_point, ref.principal_point)) / np.asarray(
            ref.principal_point
        )
        out[f"{tag}_focal_rel"] = float(f.max())
        out[f"{tag}_pp_rel"] = float(c.max())
    return out


def alignment_error_px(calib: Calibration, truth: SimTruth, depth_m: float) -> float:
    """Mean distance between where the LUT puts each event pixel and where a scene point
    at depth_m seen by that pixel truly is in the RGB image (pixels both place inside)."""
    lut = calib.event_to_frame_map()
    lx, ly = lut.luts()
    tx, ty = true_lut(truth, depth_m)
    w, h = truth.rgb.size
    ok = np.isfinite(lx) & (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    return float(np.hypot(lx - tx, ly - ty)[ok].mean())
