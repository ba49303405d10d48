"""Step 5: is the calibration good enough, and if not, what should the user change?

Numbers alone do not help an operator; every failed check comes with the action that
usually fixes it (more views, cover the corners, refocus, check the board size)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.model import Calibration
from rig.types import EventBatch

MIN_VIEWS = 8
MIN_COVERAGE = 0.45
MAX_RMS_PX = {"rgb": 0.5, "events": 0.6}
MAX_STEREO_RMS_PX = 1.0
MAX_GEOMETRIC_PX = 1.0
MAX_EDGE_WIDTH_PX = 4.0


@dataclass
class Verification:
    rgb_rms_px: float
    event_rms_px: float
    stereo_rms_px: float
    rgb_coverage: float
    event_coverage: float
    geometric_px: float  # event corners mapped at their true depth vs RGB corners
    mapping_px: float  # with the pipeline's mapping surface (includes parallax)
    predicted_parallax_px: float  # f*B*|1/Z - 1/Z0| at the boards' depths
    edge_width_px: float
    n_views: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [
            f"reprojection rms: RGB {self.rgb_rms_px:.3f} px, events {self.event_rms_px:.3f} px,"
            f" stereo {self.stereo_rms_px:.3f} px",
            f"coverage: RGB {self.rgb_coverage:.0%}, events {self.event_coverage:.0%}"
            f" ({self.n_views} stereo views)",
            f"alignment on the boards: {self.geometric_px:.3f} px at their depth, "
            f"{self.mapping_px:.2f} px with the mapping surface "
            f"(parallax predicted {self.predicted_parallax_px:.2f} px)",
        ]
        out += [f"PROBLEM: {p}" for p in self.problems]
        return out


def coverage(corners: list[np.ndarray], size: tuple[int, int], grid=(8, 6)) -> float:
    """Fraction of an image's grid cells that some board corner fell into: distortion is
    only constrained where corners were seen, so the edges and corners need views too."""
    w, h = size
    hit = np.zeros(grid[::-1], bool)
    for c in corners:
        gx = np.clip((c[:, 0] / w * grid[0]).astype(int), 0, grid[0] - 1)
        gy = np.clip((c[:, 1] / h * grid[1]).astype(int), 0, grid[1] - 1)
        hit[gy, gx] = True
    return float(hit.mean())


def alignment_errors(
    calib: Calibration,
    rgb_corners: list[np.ndarray],
    ev_corners: list[np.ndarray],
) -> tuple[float, float, float]:
    """(geometric, mapping, predicted) mean px over all stereo views. Each board's pose
    comes from the RGB camera (solvePnP), so corner depths are known."""
    obj = calib.board.object_points() if calib.board is not None else None
    geo, mapped, pred = [], [], []
    for a, b in zip(rgb_corners, ev_corners, strict=True):
        ok, rvec, tvec = cv2.solvePnP(obj, a, calib.rgb.k, calib.rgb.dist)
        if not ok:
            continue
        rb, _ = cv2.Rodrigues(rvec)
        x_ev = (obj @ rb.T + tvec.ravel()) @ calib.r.T + calib.t
        rays = calib.events.rays(b)
        x_rgb = (rays * x_ev[:, 2:3] - calib.t) @ calib.r
        geo.append(np.linalg.norm(calib.rgb.project(x_rgb) - a, axis=1).mean())
        mapped.append(np.linalg.norm(calib.map_points(b) - a, axis=1).mean())
        pred.append(np.mean([calib.expected_parallax_px(z) for z in x_ev[:, 2]]))
    if not geo:
        return float("nan"), float("nan"), float("nan")
    return float(np.mean(geo)), float(np.mean(mapped)), float(np.mean(pred))


def verify(
    calib: Calibration,
    rgb_corners: list[np.ndarray],
    ev_corners: list[np.ndarray],
    stereo_pairs: tuple[list[np.ndarray], list[np.ndarray]],
    edge_width_px: float,
    min_views: int = MIN_VIEWS,
) -> Verification:
    geo, mapped, pred = alignment_errors(calib, *stereo_pairs)
    v = Verification(
        calib.rgb.rms_px,
        calib.events.rms_px,
        calib.stereo_rms_px,
        coverage(rgb_corners, calib.rgb.size),
        coverage(ev_corners, calib.events.size),
        geo,
        mapped,
        pred,
        edge_width_px,
        len(stereo_pairs[0]),
    )
    v.problems = advise(v, len(rgb_corners), len(ev_corners), min_views)
    return v


def advise(v: Verification, n_rgb: int, n_ev: int, min_views: int) -> list[str]:
    p: list[str] = []
    for cam, n in (("RGB", n_rgb), ("event", n_ev)):
        if n < min_views:
            p.append(
                f"only {n} {cam} views were usable; at least {min_views} are needed: "
                "capture more views, tilting the board up to about 40 degrees each way."
            )
    if v.n_views < min_views:
        p.append(
            f"only {v.n_views} views show the board in both cameras; at least {min_views} "
            "are needed: keep the whole board inside both images."
        )
    for cam, cov in (("RGB", v.rgb_coverage), ("event", v.event_coverage)):
        if cov < MIN_COVERAGE:
            p.append(
                f"board corners covered only {cov:.0%} of the {cam} image: move the board "
                "into the corners and along the edges of the image."
            )
    if v.edge_width_px > MAX_EDGE_WIDTH_PX:
        p.append(
            f"board edges are {v.edge_width_px:.1f} px wide (too much blur): refocus the "
            "lens, hold the board still, or shorten the exposure."
        )
    for cam, key, rms in (("RGB", "rgb", v.rgb_rms_px), ("event", "events", v.event_rms_px)):
        if not rms <= MAX_RMS_PX[key]:
            p.append(
                f"{cam} reprojection error {rms:.2f} px is above {MAX_RMS_PX[key]} px: drop "
                "blurred views, check the board is flat and --square-mm is right, refocus."
            )
    if not v.stereo_rms_px <= MAX_STEREO_RMS_PX:
        p.append(
            f"stereo error {v.stereo_rms_px:.2f} px: the two cameras' views were not taken "
            "at the same moment (check sync) or the rig moved during calibration."
        )
    if not v.geometric_px <= MAX_GEOMETRIC_PX:
        p.append(
            f"events and RGB disagree by {v.geometric_px:.2f} px on the boards: recalibrate "
            "with more views; make sure the rig did not move."
        )
    return p


def overlay_image(calib: Calibration, rgb: np.ndarray, events: EventBatch) -> np.ndarray:
    """The RGB frame with the events drawn where the pipeline's mapping puts them
    (ON red, OFF blue), as an RGB uint8 image: misalignment is visible at a glance."""
    mapped = calib.event_to_frame_map()(events)
    out = rgb.copy()
    w, h = calib.rgb.size
    for pol, colour in ((1, (255, 40, 40)), (0, (40, 120, 255))):
        sel = mapped.p == pol
        x = np.clip(np.rint(mapped.x[sel]).astype(int), 0, w - 1)
        y = np.clip(np.rint(mapped.y[sel]).astype(int), 0, h - 1)
        mask = np.zeros((h, w), np.uint8)
        mask[y, x] = 1
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8)).astype(bool)
        out[mask] = (0.4 * out[mask] + 0.6 * np.array(colour)).astype(np.uint8)
    return out
