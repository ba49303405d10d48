"""Classical interpolators: the yardsticks TimeLens is measured against, and fallbacks
that need no weights.

- blend: linear cross-fade of the two keyframes (what you get with no motion model).
- flow: frame-only optical flow (OpenCV DIS), warping both keyframes to each instant.
- integration: events only: the log-intensity change each event reports, integrated
  forward from the first keyframe and backward from the second, blended by time.
"""

from __future__ import annotations

import cv2
import numpy as np

from contracts.jobs import IntervalJob
from models.interpolator import Interpolator

LOG_EPS = 1e-2


class BlendInterpolator(Interpolator):
    name = "blend"

    def interpolate(self, job: IntervalJob) -> np.ndarray:
        a = job.frame0.astype(np.float32)
        b = job.frame1.astype(np.float32)
        taus = job.taus.astype(np.float32)[:, None, None, None]
        out = (1 - taus) * a[None] + taus * b[None]
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class FlowInterpolator(Interpolator):
    """Bidirectional DIS flow with the Super-SloMo linear-motion approximation of the
    intermediate flows."""

    name = "flow"

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def interpolate(self, job: IntervalJob) -> np.ndarray:
        g0 = cv2.cvtColor(job.frame0, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(job.frame1, cv2.COLOR_RGB2GRAY)
        f01, f10 = bidirectional_flow(self._dis, g0, g1)
        out = np.empty((len(job.timestamps_us), *g0.shape, 3), np.uint8)
        for i, t in enumerate(job.taus.astype(np.float32)):
            out[i] = np.clip(warp_pair(job.frame0, job.frame1, f01, f10, float(t)) + 0.5, 0, 255)
        return out


def bidirectional_flow(dis, g0: np.ndarray, g1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DIS flows F0->F1 and F1->F0 of two grey uint8 frames, HxWx2 float32 each."""
    return dis.calc(g0, g1, None), dis.calc(g1, g0, None)


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _GRIDS:
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        _GRIDS[(h, w)] = (gx, gy)
    return _GRIDS[(h, w)]


def warp_pair(
    frame0: np.ndarray,
    frame1: np.ndarray,
    f01: np.ndarray,
    f10: np.ndarray,
    t: float,
    lut: np.ndarray | None = None,
) -> np.ndarray:
    """Both keyframes warped to time t in (0, 1) and blended by time, HxWx3 float32.

    The intermediate flows use the Super-SloMo linear-motion approximation. With a
    `lut` (256 entries) uint8 frames are mapped through it first (linear light);
    float32 frames of any channel count are warped as they are."""
    h, w = frame0.shape[:2]
    gx, gy = _grid(h, w)
    ft0 = -(1 - t) * t * f01 + t * t * f10
    ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
    a = frame0 if lut is None else lut[frame0]
    b = frame1 if lut is None else lut[frame1]
    w0 = cv2.remap(
        a, gx + ft0[..., 0], gy + ft0[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    w1 = cv2.remap(
        b, gx + ft1[..., 0], gy + ft1[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return (1 - t) * w0.astype(np.float32) + t * w1.astype(np.float32)


class IntegrationInterpolator(Interpolator):
    """Event integration (no learning): I(t) = I0 * exp(C * sum of polarities in [t0, t)),
    and symmetrically from I1 backwards; the two estimates are blended by time, which
    cancels most of the drift from threshold mismatch and noise."""

    name = "integration"

    def __init__(self, contrast_threshold: float = 0.2, gamma: float = 2.2) -> None:
        """gamma: the frames' encoding (linear = (value/255) ** gamma); events see linear
        intensity, so keyframes are linearised first and re-encoded after."""
        if contrast_threshold <= 0 or gamma <= 0:
            raise ValueError("contrast_threshold and gamma must be > 0")
        self.c = contrast_threshold
        self.gamma = gamma

    def interpolate(self, job: IntervalJob) -> np.ndarray:
        h, w = job.height, job.width
        ev = job.events
        xi = np.rint(ev.x).astype(np.intp)
        yi = np.rint(ev.y).astype(np.intp)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        pix = (yi * w + xi)[ok]
        pol = np.where(ev.p[ok] > 0, 1.0, -1.0)
        t = ev.t[ok]
        splits = np.searchsorted(t, job.timestamps_us, side="left")
        total = np.bincount(pix, weights=pol, minlength=h * w)
        i0 = np.power(job.frame0.astype(np.float32) / 255.0, self.gamma)
        i1 = np.power(job.frame1.astype(np.float32) / 255.0, self.gamma)
        out = np.empty((len(splits), h, w, 3), np.uint8)
        before = np.zeros(h * w)
        prev = 0
        for k, (split, tau) in enumerate(zip(splits, job.taus, strict=True)):
            before += np.bincount(pix[prev:split], weights=pol[prev:split], minlength=h * w)
            prev = split
            gain0 = np.exp(self.c * before).reshape(h, w, 1).astype(np.float32)
            gain1 = np.exp(-self.c * (total - before)).reshape(h, w, 1).astype(np.float32)
            # Multiplicative gains act on intensity plus the log offset used by the sensor.
            from0 = (i0 + LOG_EPS) * gain0 - LOG_EPS
            from1 = (i1 + LOG_EPS) * gain1 - LOG_EPS
            est = np.clip((1 - tau) * from0 + tau * from1, 0.0, 1.0)
            out[k] = np.clip(np.power(est, 1.0 / self.gamma) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out
