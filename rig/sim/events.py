"""Event generation from log-intensity threshold crossings (the ESIM / v2e model).

Each pixel remembers the log level at its last event. When the current log level is
ON (or OFF) threshold or more away from it, the pixel fires once per threshold crossed
and the remembered level moves by that many thresholds. Between two renders the log
intensity is taken to change linearly, so each crossing gets a timestamp interpolated
inside the step. Thresholds differ per pixel (fixed-pattern mismatch), a refractory
period limits how fast one pixel can fire, and Poisson background activity adds noise.

Only full-frame work that cannot be avoided happens per step (log, subtract, compare);
everything after that touches just the pixels that fire.
"""

from __future__ import annotations

import cv2
import numpy as np

from rig.types import EventBatch

LOG_EPS = 1e-2  # log(I + eps): keeps dark pixels from firing on float noise


class EventEmulator:
    """Turns a sequence of luminance images (linear, [0, 1]) into events.

    Call `reset` with the image at the start time, then `step` with each next image.
    `c_on` / `c_off` are the per-pixel thresholds (flat float32 arrays, row-major), so a
    test can check that events integrate back to the log-intensity change.
    """

    def __init__(
        self,
        size: tuple[int, int],
        rng: np.random.Generator,
        contrast_threshold: float = 0.2,
        threshold_sigma: float = 0.02,
        refractory_us: int = 100,
        noise_rate_hz: float = 0.1,
    ) -> None:
        self.width, self.height = size
        n = self.width * self.height
        self._rng = rng
        floor = 0.25 * contrast_threshold  # a zero or negative threshold would fire forever
        self.c_on = np.maximum(rng.normal(contrast_threshold, threshold_sigma, n), floor).astype(
            np.float32
        )
        self.c_off = np.maximum(rng.normal(contrast_threshold, threshold_sigma, n), floor).astype(
            np.float32
        )
        self.refractory_us = int(refractory_us)
        self.noise_rate_hz = float(noise_rate_hz)
        # Full-frame buffers are 2-D (OpenCV treats a 1-D array as one very tall column,
        # which is several times slower); the *_flat views index them by pixel number.
        shape = (self.height, self.width)
        self._ref = np.zeros(shape, np.float32)
        self._prev = np.zeros(shape, np.float32)
        self._cur = np.zeros(shape, np.float32)
        self._diff = np.zeros(shape, np.float32)
        self._mask = np.zeros(shape, bool)
        self._mask2 = np.zeros(shape, bool)
        self._c_on2d = self.c_on.reshape(shape)
        self._neg_c_off2d = -self.c_off.reshape(shape)
        self._last_t = np.full(n, np.iinfo(np.int64).min // 2, np.int64)
        self._t = 0

    def log_image(self, luminance: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """log(I + eps) as float32 HxW."""
        if out is None:
            out = np.empty(luminance.shape, np.float32)
        np.add(luminance, np.float32(LOG_EPS), out=out)  # input may be a strided channel
        cv2.log(out, out)
        return out

    def reset(self, luminance: np.ndarray, t_us: int) -> None:
        """Start at time t_us with every pixel's reference at the current level."""
        self.log_image(luminance, self._prev)
        self._ref[:] = self._prev
        self._last_t[:] = np.iinfo(np.int64).min // 2
        self._t = int(t_us)

    def step(self, luminance: np.ndarray, t_us: int) -> EventBatch:
        """Threshold-crossing events in [previous t, t_us) for the image at t_us.

        Not sorted by time (sorting once per chunk is cheaper): the caller merges them
        with `noise` and sorts.
        """
        t0, t1 = self._t, int(t_us)
        if t1 <= t0:
            raise ValueError(f"EventEmulator.step: time must increase ({t0} -> {t1})")
        cur = self.log_image(luminance, self._cur)
        # Pixels that cross their own ON or OFF threshold: three cheap full-frame ops
        # (a looser |d| >= min(c_on, c_off) test lets ~10x more pixels through to the
        # much costlier per-pixel stage).
        d = np.subtract(cur, self._ref, out=self._diff)
        np.greater_equal(d, self._c_on2d, out=self._mask)
        np.less_equal(d, self._neg_c_off2d, out=self._mask2)
        np.logical_or(self._mask, self._mask2, out=self._mask)
        idx = np.flatnonzero(self._mask.reshape(-1))
        batch = self._crossings(idx, t0, t1) if len(idx) else EventBatch.empty()
        self._prev, self._cur = self._cur, self._prev
        self._t = t1
        return batch

    def _crossings(self, idx: np.ndarray, t0: int, t1: int) -> EventBatch:
        cur, ref_all, prev = self._cur.reshape(-1), self._ref.reshape(-1), self._prev.reshape(-1)
        d = cur[idx] - ref_all[idx]
        on = d > 0
        c = np.where(on, self.c_on[idx], self.c_off[idx])
        n = np.floor(np.abs(d) / c).astype(np.int64)
        fired = n > 0  # float rounding can differ from the full-frame test
        if not fired.all():
            idx, d, on, c, n = idx[fired], d[fired], on[fired], c[fired], n[fired]
            if len(idx) == 0:
                return EventBatch.empty()
        sign = np.where(on, np.float32(1), np.float32(-1))
        ref = ref_all[idx]
        l0 = prev[idx]
        l1 = cur[idx]
        # One row per crossing: pixel j fires n[j] times at levels ref + k * sign * c.
        total = int(n.sum())
        owner = np.repeat(np.arange(len(idx)), n)
        first = np.cumsum(n) - n
        k = np.arange(total) - first[owner] + 1
        level = ref[owner] + (sign * c)[owner] * k
        slope = (l1 - l0)[owner]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(slope != 0, (level - l0[owner]) / slope, 0.0)
        # Levels already passed before this step (left over from refractory) fire at t0.
        dt = t1 - t0
        t = t0 + np.clip(np.floor(frac * dt), 0, dt - 1).astype(np.int64)
        if self.refractory_us > 0:
            keep, n_kept = self._refractory(idx, t, n, first)
            owner_kept = owner[keep]
            t = t[keep]
        else:
            n_kept = n
            owner_kept = owner
        ref_all[idx] = ref + sign * c * n_kept
        pix = idx[owner_kept]
        y, x = np.divmod(pix, self.width)
        return EventBatch(t, x.astype(np.int16), y.astype(np.int16), on[owner_kept].astype(np.int8))

    def _refractory(
        self, idx: np.ndarray, t: np.ndarray, n: np.ndarray, first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy per pixel, in time order: keep a crossing only if the pixel's last
        event is at least refractory_us before it. Loops over the crossing rank (a
        handful), not over pixels. Dropped crossings do not move the reference level,
        so the pixel fires again once the refractory period is over."""
        last = self._last_t[idx]
        keep = np.zeros(len(t), bool)
        n_kept = np.zeros(len(idx), np.int64)
        for rank in range(int(n.max())):
            rows = np.flatnonzero(n > rank)
            e = first[rows] + rank
            te = t[e]
            ok = te - last[rows] >= self.refractory_us
            rows, e = rows[ok], e[ok]
            keep[e] = True
            last[rows] = te[ok]
            n_kept[rows] += 1
        self._last_t[idx] = last
        return keep, n_kept

    def noise(self, t0: int, t1: int) -> EventBatch:
        """Background-activity events in [t0, t1): Poisson in time, uniform over pixels,
        random polarity, independent of the scene (unsorted)."""
        n_pix = self.width * self.height
        lam = self.noise_rate_hz * n_pix * (t1 - t0) * 1e-6
        if lam <= 0:
            return EventBatch.empty()
        n = int(self._rng.poisson(lam))
        if n == 0:
            return EventBatch.empty()
        pix = self._rng.integers(0, n_pix, n)
        t = t0 + self._rng.integers(0, t1 - t0, n)
        p = self._rng.integers(0, 2, n).astype(np.int8)
        y, x = np.divmod(pix, self.width)
        return EventBatch(t.astype(np.int64), x.astype(np.int16), y.astype(np.int16), p)
