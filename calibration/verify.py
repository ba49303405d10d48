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
    view_errors_px: list[float] = field(default_factory=list)  # mapping error per stereo view

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        """The one line an operator reads first: PASS or FAIL, why, and what to do."""
        if self.passed:
            return (
                f"PASS: reprojection {self.rgb_rms_px:.2f}/{self.event_rms_px:.2f} px (RGB/events,"
                f" limits {MAX_RMS_PX['rgb']}/{MAX_RMS_PX['events']}), alignment "
                f"{self.geometric_px:.2f} px (limit {MAX_GEOMETRIC_PX}), coverage "
                f"{self.rgb_coverage:.0%}/{self.event_coverage:.0%} (min {MIN_COVERAGE:.0%}), "
                f"{self.n_views} views"
            )
        reason, _, advice = self.problems[0].partition(": ")
        more = f" (+{len(self.problems) - 1} more problems above)" if len(self.problems) > 1 else ""
        return f"FAIL: {reason}{more}. Advice: {advice or 'see the problems above'}"

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


COVERAGE_GRID = (8, 6)


def coverage_grid(
    corners: list[np.ndarray], size: tuple[int, int], grid=COVERAGE_GRID
) -> np.ndarray:
    """Which cells (rows x cols bool) of an image's grid some board corner fell into."""
    w, h = size
    hit = np.zeros(grid[::-1], bool)
    for c in corners:
        gx = np.clip((c[:, 0] / w * grid[0]).astype(int), 0, grid[0] - 1)
        gy = np.clip((c[:, 1] / h * grid[1]).astype(int), 0, grid[1] - 1)
        hit[gy, gx] = True
    return hit


def coverage(corners: list[np.ndarray], size: tuple[int, int], grid=COVERAGE_GRID) -> float:
    """Fraction of an image's grid cells that some board corner fell into: distortion is
    only constrained where corners were seen, so the edges and corners need views too."""
    return float(coverage_grid(corners, size, grid).mean())


def alignment_errors(
    calib: Calibration,
    rgb_corners: list[np.ndarray],
    ev_corners: list[np.ndarray],
    per_view: list[float] | None = None,
) -> tuple[float, float, float]:
    """(geometric, mapping, predicted) mean px over all stereo views. Each board's pose
    comes from the RGB camera (solvePnP), so corner depths are known. per_view, if
    given, receives each view's mapping error (nan where the pose failed)."""
    obj = calib.board.object_points() if calib.board is not None else None
    geo, mapped, pred = [], [], []
    for a, b in zip(rgb_corners, ev_corners, strict=True):
        ok, rvec, tvec = cv2.solvePnP(obj, a, calib.rgb.k, calib.rgb.dist)
        if not ok:
            if per_view is not None:
                per_view.append(float("nan"))
            continue
        rb, _ = cv2.Rodrigues(rvec)
        x_ev = (obj @ rb.T + tvec.ravel()) @ calib.r.T + calib.t
        rays = calib.events.rays(b)
        x_rgb = (rays * x_ev[:, 2:3] - calib.t) @ calib.r
        geo.append(np.linalg.norm(calib.rgb.project(x_rgb) - a, axis=1).mean())
        mapped.append(np.linalg.norm(calib.map_points(b) - a, axis=1).mean())
        if per_view is not None:
            per_view.append(float(mapped[-1]))
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
    per_view: list[float] = []
    geo, mapped, pred = alignment_errors(calib, *stereo_pairs, per_view=per_view)
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
    v.view_errors_px = per_view
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


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _RED, _GREY, _WHITE = (40, 170, 60), (210, 40, 40), (110, 110, 110), (255, 255, 255)


def _text(img: np.ndarray, text: str, x: int, y: int, colour=(20, 20, 20), scale=0.45) -> int:
    """Write text wrapped to the image width; returns the y below it."""
    per_line = max(20, int((img.shape[1] - x - 8) / (scale * 19)))
    words, line = text.split(), ""
    for word in words:
        if line and len(line) + 1 + len(word) > per_line:
            cv2.putText(img, line, (x, y), _FONT, scale, colour, 1, cv2.LINE_AA)
            y, line = y + int(36 * scale) + 2, word
        else:
            line = f"{line} {word}".strip()
    cv2.putText(img, line, (x, y), _FONT, scale, colour, 1, cv2.LINE_AA)
    return y + int(36 * scale) + 4


def _coverage_box(img, grid: np.ndarray, x: int, y: int, w: int, label: str) -> None:
    rows, cols = grid.shape
    cell = w // cols
    for r in range(rows):
        for c in range(cols):
            p0 = (x + c * cell, y + r * cell)
            p1 = (p0[0] + cell - 2, p0[1] + cell - 2)
            cv2.rectangle(img, p0, p1, _GREEN if grid[r, c] else (225, 225, 225), -1)
    _text(img, f"{label} {grid.mean():.0%}", x, y + rows * cell + 14)


def _error_bars(img, errors: list[float], x: int, y: int, w: int, h: int) -> None:
    """One bar per stereo view (mapping error, px) against the pass limit."""
    finite = [e for e in errors if np.isfinite(e)]
    top = max([MAX_GEOMETRIC_PX * 1.5, *finite]) if finite else MAX_GEOMETRIC_PX * 1.5
    cv2.rectangle(img, (x, y), (x + w, y + h), (200, 200, 200), 1)
    n = max(len(errors), 1)
    bw = max(1, (w - 4) // n)
    for i, e in enumerate(errors):
        if not np.isfinite(e):
            continue
        bh = int(round(e / top * (h - 2)))
        colour = _GREEN if e <= MAX_GEOMETRIC_PX else _RED
        x0 = x + 2 + i * bw
        cv2.rectangle(img, (x0, y + h - 1 - bh), (x0 + max(bw - 2, 1), y + h - 1), colour, -1)
    ly = y + h - 1 - int(round(MAX_GEOMETRIC_PX / top * (h - 2)))
    for xx in range(x, x + w, 8):
        cv2.line(img, (xx, ly), (min(xx + 4, x + w), ly), _RED, 1)
    _text(img, f"limit {MAX_GEOMETRIC_PX:g} px", x + w - 95, ly - 4, _RED, 0.4)
    _text(img, f"0 .. {top:.2f} px", x, y + h + 14, _GREY, 0.4)


def annotated_overlay(
    calib: Calibration,
    rgb: np.ndarray,
    events: EventBatch,
    ver: Verification,
    rgb_corners: list[np.ndarray],
    ev_corners: list[np.ndarray],
    board_corners: np.ndarray | None = None,
) -> np.ndarray:
    """The overlay plus what it means: a legend, the mapping error of every stereo view,
    the coverage of both images, and the verdict, so the PNG alone tells the story."""
    ov = overlay_image(calib, rgb, events)
    if board_corners is not None:
        for cx, cy in np.asarray(board_corners).reshape(-1, 2):
            cv2.circle(ov, (int(round(cx)), int(round(cy))), 3, (40, 220, 60), 1, cv2.LINE_AA)
    h, w = ov.shape[:2]
    width = max(w, 640)
    panel = np.full((320, width, 3), 255, np.uint8)
    top = np.full((h, width, 3), 255, np.uint8)
    top[:, :w] = ov
    colour = _GREEN if ver.passed else _RED
    y = _text(panel, ver.verdict(), 8, 20, colour, 0.5)
    for i, (c, label) in enumerate(
        (
            ((255, 40, 40), "ON events"),
            ((40, 120, 255), "OFF events"),
            ((40, 220, 60), "RGB corners"),
        )
    ):
        x0 = 8 + i * 150
        cv2.rectangle(panel, (x0, y - 10), (x0 + 12, y + 2), c, -1)
        _text(panel, label, x0 + 18, y)
    y = _text(
        panel,
        f"events mapped into the RGB frame ({calib.rig_type}, mapping {calib.mapping.label}): "
        "their edges should lie on the board's edges",
        8,
        y + 20,
        _GREY,
        0.4,
    )
    chart_w = width - 2 * 130 - 40
    _text(panel, f"mapping error per stereo view ({len(ver.view_errors_px)} views)", 8, y)
    _error_bars(panel, ver.view_errors_px, 8, y + 8, chart_w, 150)
    gx = 8 + chart_w + 24
    _text(panel, "coverage", gx, y)
    _coverage_box(panel, coverage_grid(rgb_corners, calib.rgb.size), gx, y + 8, 104, "RGB")
    _coverage_box(
        panel, coverage_grid(ev_corners, calib.events.size), gx + 124, y + 8, 104, "events"
    )
    cv2.rectangle(top, (0, 0), (w - 1, h - 1), colour, 3)
    return np.vstack([top, panel])
