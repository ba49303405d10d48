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
        f01 = self._dis.calc(g0, g1, None)
        f10 = self._dis.calc(g1, g0, None)
        h, w = g0.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        out = np.empty((len(job.timestamps_us), h, w, 3), np.uint8)
        for i, t in enumerate(job.taus.astype(np.float32)):
            ft0 = -(1 - t) * t * f01 + t * t * f10
            ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
            w0 = cv2.remap(
                job.frame0,
                gx + ft0[..., 0],
                gy + ft0[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            w1 = cv2.remap(
                job.frame1,
                gx + ft1[..., 0],
                gy + ft1[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            out[i] = np.clip((1 - t) * w0 + t * w1 + 0.5, 0, 255).astype(np.uint8)
        return out


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
