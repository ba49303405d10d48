"""A simulated calibration rig with ground truth: an RGB camera and an event camera with
known intrinsics and extrinsics, a checkerboard shown at random poses seen by both.

The RGB camera gets a rendered image. The event camera watches the board blink on a
screen (pattern <-> white): pixels on black squares brighten and produce ON events, then
OFF events, with a count proportional to the log-intensity step, so accumulating a blink
cycle gives an anti-aliased image of the board, as on a real DVS. Not `rig.sim` (the
scene simulator): this one exists so the solvers can be tested against known answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.camera import CameraModel
from rig.types import EventBatch

RIG_TYPES = ("beam_splitter", "side_by_side")


@dataclass(frozen=True)
class SimTruth:
    rgb: CameraModel
    events: CameraModel
    r: np.ndarray  # X_event = R X_rgb + T (OpenCV stereoCalibrate convention)
    t: np.ndarray  # metres
    rig_type: str

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.t))


@dataclass(frozen=True)
class SimView:
    rgb: np.ndarray  # HxWx3 uint8 RGB
    events: EventBatch  # one blink cycle
    board_r: np.ndarray  # board -> RGB camera rotation
    board_t: np.ndarray  # board origin in the RGB camera frame, metres


def default_truth(rig_type: str = "beam_splitter") -> SimTruth:
    if rig_type not in RIG_TYPES:
        raise ValueError(f"rig_type must be one of {RIG_TYPES}, got {rig_type!r}")
    rgb = CameraModel.pinhole("rgb", (640, 480), 600.0, (323.5, 236.0), (-0.08, 0.05, 0, 0, 0))
    ev = CameraModel.pinhole(
        "events", (346, 260), 300.0, (171.0, 132.5), (-0.12, 0.08, 0.0005, -0.0004, 0.0)
    )
    r, _ = cv2.Rodrigues(np.deg2rad([0.6, -0.9, 0.4]))
    t = np.zeros(3) if rig_type == "beam_splitter" else np.array([-0.025, 0.0004, 0.0003])
    return SimTruth(rgb, ev, r, t, rig_type)


class SimCalibRig:
    """Renders views of a board for both cameras; `views(n)` is what --rig sim feeds the
    wizard. blur_px softens the RGB image (to test the blur advice); display_board is
    the board actually shown, which may differ from the one the user declares."""

    def __init__(
        self,
        truth: SimTruth | None = None,
        board: BoardSpec | None = None,
        seed: int = 0,
        blur_px: float = 0.4,
        contrast_threshold: float = 0.2,
        noise_events: int = 300,
    ) -> None:
        self.truth = truth or default_truth()
        self.board = board or BoardSpec()
        self.rng = np.random.default_rng(seed)
        self.blur_px = blur_px
        self.c_mean = contrast_threshold
        self.noise_events = noise_events
        self._rgb_rays = self.truth.rgb.rays(self.truth.rgb.pixel_grid(1))
        self._ev_rays = self.truth.events.rays(self.truth.events.pixel_grid(1))
        # per-pixel threshold mismatch, fixed for the sensor
        self._c_pix = np.clip(
            self.rng.normal(self.c_mean, 0.02 * self.c_mean / 0.2, self.truth.events.size[::-1]),
            0.05,
            None,
        )
        self._t0 = 0

    # ---- geometry -------------------------------------------------------------
    def _board_extent(self) -> tuple[float, float, float, float]:
        s = self.board.square_m
        return -2 * s, (self.board.cols + 1) * s, -2 * s, (self.board.rows + 1) * s

    def sample_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """A random board pose whose whole board (with margin) both cameras see."""
        tr = self.truth
        b = self.board
        x0, x1, y0, y1 = self._board_extent()
        outline = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]])
        centre = np.array([(b.cols - 1) * b.square_m / 2, (b.rows - 1) * b.square_m / 2, 0])
        for _ in range(500):
            # strong tilts constrain the focal length; spread positions constrain
            # the principal point and distortion
            tilt = self.rng.uniform(15, 45, 2) * self.rng.choice([-1, 1], 2)
            ang = np.deg2rad([tilt[0], tilt[1], self.rng.uniform(-15, 15)])
            r, _ = cv2.Rodrigues(ang)
            z = self.rng.uniform(0.4, 0.85)
            fx = tr.rgb.focal[0]
            u = self.rng.uniform(0.1, 0.9) * tr.rgb.size[0]
            v = self.rng.uniform(0.1, 0.9) * tr.rgb.size[1]
            cx, cy = tr.rgb.principal_point
            target = np.array([(u - cx) / fx * z, (v - cy) / fx * z, z])
            t = target - r @ centre
            pts_rgb = outline @ r.T + t
            pts_ev = pts_rgb @ tr.r.T + tr.t
            if _inside(tr.rgb, pts_rgb, 4) and _inside(tr.events, pts_ev, 3):
                return r, t
        raise RuntimeError("could not place the board in both views; widen the pose ranges")

    # ---- rendering --------------------------------------------------------------
    def _board_value(
        self, cam: CameraModel, rays: np.ndarray, r: np.ndarray, t: np.ndarray, black: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(reflectance HxW, on-board fraction HxW) with analytic anti-aliasing: each
        pixel's footprint on the board (from the local Jacobian) turns every edge into
        a linear ramp, i.e. a box filter, so corners are rendered without the bias of
        coarse supersampling and at one ray per pixel."""
        w, h = cam.size
        n = r[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (t @ n) / (rays @ n)
        pts = rays * depth[:, None] - t
        bx = (pts @ r[:, 0]).reshape(h, w) / self.board.square_m
        by = (pts @ r[:, 1]).reshape(h, w) / self.board.square_m
        front = (depth > 0).reshape(h, w)
        bx = np.where(front, bx, -1e6)
        by = np.where(front, by, -1e6)
        # half the pixel's extent along board x / y, in squares
        fx = 0.5 * (np.abs(np.gradient(bx, axis=1)) + np.abs(np.gradient(bx, axis=0)))
        fy = 0.5 * (np.abs(np.gradient(by, axis=1)) + np.abs(np.gradient(by, axis=0)))
        fx = np.clip(np.nan_to_num(fx, nan=1.0), 1e-6, 1.0)
        fy = np.clip(np.nan_to_num(fy, nan=1.0), 1e-6, 1.0)

        def soft_sign(u: np.ndarray, f: np.ndarray) -> np.ndarray:
            base = np.where(np.floor(u) % 2 == 0, 1.0, -1.0)
            return base * np.clip(np.abs(u - np.round(u)) / f, 0.0, 1.0)

        def window(u: np.ndarray, lo: float, hi: float, f: np.ndarray) -> np.ndarray:
            return np.clip(0.5 + np.minimum(u - lo, hi - u) / (2 * f), 0.0, 1.0)

        gx, gy = soft_sign(bx, fx), soft_sign(by, fy)
        dark = 0.5 * (1 + gx * gy)
        dark *= window(bx, -1, self.board.cols, fx) * window(by, -1, self.board.rows, fy)
        on = window(bx, -2, self.board.cols + 1, fx) * window(by, -2, self.board.rows + 1, fy)
        on = np.where(front, on, 0.0)
        return 1.0 - (1.0 - black) * dark, on

    def render_rgb(self, r: np.ndarray, t: np.ndarray) -> np.ndarray:
        val, on = self._board_value(self.truth.rgb, self._rgb_rays, r, t, 0.08)
        img = (on * val + (1 - on) * 0.35) * 0.85
        if self.blur_px > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.blur_px)
        img = img + self.rng.normal(0, 0.008, img.shape)
        g = np.clip(img * 255, 0, 255).astype(np.uint8)
        return np.dstack([g, g, (g * 0.97).astype(np.uint8)])

    def render_events(
        self, r: np.ndarray, t: np.ndarray, period_us: int = 100_000, cycles: int = 3
    ) -> EventBatch:
        """`cycles` blinks: the screen goes white (ON events where it was dark), then
        back to the pattern (OFF events). Each pixel's leftover below its threshold
        carries over between steps (modelled as a uniform offset), so counts over
        several blinks average to step / threshold, as on a real sensor."""
        cam = self.truth.events
        w, h = cam.size
        r_e = self.truth.r @ r
        t_e = self.truth.r @ t + self.truth.t
        val, on = self._board_value(cam, self._ev_rays, r_e, t_e, 0.08)
        pattern = on * val + (1 - on) * 0.35
        white = on * 1.0 + (1 - on) * 0.35
        step = np.log(white + 0.01) - np.log(pattern + 0.01)
        cols = [[], [], [], []]
        half = period_us // 2
        for _ in range(cycles):
            for pol, t_start in ((1, self._t0), (0, self._t0 + half)):
                n = np.floor(step / self._c_pix + self.rng.random(step.shape)).astype(np.int64)
                ys, xs = np.nonzero(np.clip(n, 0, 64))
                rep = np.repeat(np.arange(len(xs)), n[ys, xs])
                cols[0].append(t_start + self.rng.integers(0, 2000, len(rep)))
                cols[1].append(xs[rep])
                cols[2].append(ys[rep])
                cols[3].append(np.full(len(rep), pol))
            k = self.noise_events
            cols[0].append(self._t0 + self.rng.integers(0, period_us, k))
            cols[1].append(self.rng.integers(0, w, k))
            cols[2].append(self.rng.integers(0, h, k))
            cols[3].append(self.rng.integers(0, 2, k))
            self._t0 += period_us
        tt = np.concatenate(cols[0]).astype(np.int64)
        order = np.argsort(tt, kind="stable")
        return EventBatch(
            tt[order],
            np.concatenate(cols[1]).astype(np.int16)[order],
            np.concatenate(cols[2]).astype(np.int16)[order],
            np.concatenate(cols[3]).astype(np.int8)[order],
        )

    def view(self) -> SimView:
        r, t = self.sample_pose()
        return SimView(self.render_rgb(r, t), self.render_events(r, t), r, t)

    def views(self, n: int) -> Iterator[SimView]:
        for _ in range(n):
            yield self.view()

    def pairs(self, n: int) -> Iterator[tuple[np.ndarray, EventBatch]]:
        """What the wizard consumes: (RGB image, events of one blink) per view."""
        for v in self.views(n):
            yield v.rgb, v.events


def _inside(cam: CameraModel, pts: np.ndarray, margin: float) -> bool:
    if np.any(pts[:, 2] <= 0.05):
        return False
    uv = cam.project(pts)
    w, h = cam.size
    return bool(
        np.all(uv[:, 0] > margin)
        and np.all(uv[:, 0] < w - 1 - margin)
        and np.all(uv[:, 1] > margin)
        and np.all(uv[:, 1] < h - 1 - margin)
    )


def true_lut(truth: SimTruth, depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each event pixel's scene point at depth depth_m (event-camera z) lands in
    the RGB image, from the true parameters: the reference for alignment errors."""
    ev = truth.events
    rays = ev.rays(ev.pixel_grid(1))
    x_ev = rays * depth_m
    x_rgb = (x_ev - truth.t) @ truth.r  # R^T (X - T)
    uv = truth.rgb.project(x_rgb)
    w, h = ev.size
    return uv[:, 0].reshape(h, w), uv[:, 1].reshape(h, w)
