"""Contrast thresholds estimated from the data, per interval and per polarity.

An event says the log intensity at its pixel moved by +C_on (ON) or -C_off (OFF) since
that pixel's previous event. With sharp keyframes at both ends of an interval every
pixel that saw events gives one equation

    log I1(x) - log I0(x) ~= C_on * N_on(x) - C_off * N_off(x)

(quantised: each pixel's reference level is unknown). The reference sits anywhere in
the dead band between the pixel's next OFF and next ON level, which is C_off + C_on
wide; so a run of N same-polarity events spans on average N + 1/2 thresholds, not N
(a pixel needs half a band on average before its first event). Leaving that half event
out biased the fit by +7..+14 % on simulated events (tests/test_threshold.py). A robust (Huber, iteratively reweighted) least-squares fit of
dlog ~= C_on * (N_on + 1/2) - C_off * (N_off + 1/2) (the half only for a polarity the
pixel saw) over the pixels with events gives the two thresholds of this interval without
knowing the sensor's bias settings, so nothing is tuned per camera or per recording.
Saturated and very dark pixels are left out: their frame values do not follow the light.

Which transfer curve the frames were encoded with also matters (events see linear
light). It cannot be told reliably from one interval: fitting each candidate gamma and
keeping the smallest residual picked 2.2 for the (linear) DAVIS346 APS frames and lost
0.4 dB there (docs/model.md). So `frame_gamma` goes by the kind of sensor instead: a
grey frame (three equal channels: DAVIS APS, machine-vision mono cameras) is linear,
colour frames are display-encoded (gamma 2.2, as the simulated rig's camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: log(I + eps) on linear intensity in [0, 1]: near a sensor's noise floor (the event
#: simulator and the classical integration use the same offset).
LOG_EPS = 1e-2
#: Used when an interval has too few pixels with events to fit (a static scene).
DEFAULT_THRESHOLD = 0.2
#: Fits outside this range are not thresholds (noise, flicker, a cut): the prior is kept.
THRESHOLD_RANGE = (0.03, 1.5)
#: Pixels with events needed for a fit (fewer: too noisy to trust).
MIN_PIXELS = 64
#: At most this many pixels enter a fit (evenly subsampled).
MAX_SAMPLES = 8000
#: Luma (0-255, encoded) outside this range is left out of the fit (clipped or dark).
VALID_LUMA = (6, 250)
#: Encoding assumed for colour frames (display gamma); grey frames are linear.
COLOUR_GAMMA = 2.2

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class Thresholds:
    """Fitted contrast thresholds (log-intensity units) of one interval.

    pixels: how many pixels the fit used (0: the prior was returned).
    spread: robust scale (1.4826 * MAD) of the fit's residual, log units: the scatter
    the events leave unexplained (noise, per-pixel mismatch, quantisation).
    """

    c_on: float
    c_off: float
    pixels: int
    spread: float

    @property
    def fitted(self) -> bool:
        return self.pixels > 0


def linear_luma(frame: np.ndarray, gamma: float) -> np.ndarray:
    """Linear luminance in [0, 1], HxW float32, of an HxWx3 uint8 frame encoded with
    `gamma` (a grey frame given as three equal channels gives its own values)."""
    lut = np.power(np.arange(256, dtype=np.float32) / 255.0, np.float32(gamma))
    lin = lut[frame]
    return lin @ _LUMA


def frame_gamma(frame: np.ndarray) -> float:
    """1.0 for a grey frame given as three equal channels, COLOUR_GAMMA otherwise."""
    grey = np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(
        frame[..., 1], frame[..., 2]
    )
    return 1.0 if grey else COLOUR_GAMMA


def log_intensity(linear: np.ndarray) -> np.ndarray:
    return np.log(linear + np.float32(LOG_EPS)).astype(np.float32)


def robust_fit(
    dlog: np.ndarray,
    n_on: np.ndarray,
    n_off: np.ndarray,
    prior: float = DEFAULT_THRESHOLD,
    iterations: int = 8,
) -> Thresholds:
    """Fit dlog ~= c_on * n_on - c_off * n_off over the given samples (1-D arrays of the
    pixels to use) by Huber-weighted least squares. Returns the prior (pixels=0) when
    there are too few samples or the fit leaves the plausible range."""
    if len(dlog) > MAX_SAMPLES:  # an even subsample: the fit is as good, and fast
        keep = np.linspace(0, len(dlog) - 1, MAX_SAMPLES).astype(np.intp)
        dlog, n_on, n_off = dlog[keep], n_on[keep], n_off[keep]
    dlog = np.asarray(dlog, np.float64)
    a = np.stack([np.asarray(n_on, np.float64), -np.asarray(n_off, np.float64)], axis=1)
    if len(dlog) < MIN_PIXELS:
        return Thresholds(prior, prior, 0, 0.0)
    both = bool((n_on > 0).sum() >= MIN_PIXELS // 4 and (n_off > 0).sum() >= MIN_PIXELS // 4)
    w = np.ones_like(dlog)
    c = np.array([prior, prior])
    scale = 1.0
    for _ in range(iterations):
        if both:
            aw = a * w[:, None]
            m = aw.T @ a + 1e-9 * np.eye(2)
            c = np.linalg.solve(m, aw.T @ dlog)
        else:  # one polarity barely seen: one threshold for both
            s = a.sum(axis=1)
            c = np.full(2, float((w * s * dlog).sum() / max((w * s * s).sum(), 1e-9)))
        r = dlog - a @ c
        scale = 1.4826 * float(np.median(np.abs(r))) + 1e-6
        k = 1.345 * scale
        w = np.minimum(1.0, k / np.maximum(np.abs(r), 1e-12))
    lo, hi = THRESHOLD_RANGE
    if not (lo <= c[0] <= hi and lo <= c[1] <= hi):
        return Thresholds(prior, prior, 0, scale)
    return Thresholds(float(c[0]), float(c[1]), len(dlog), scale)


def fit_thresholds(
    frame0: np.ndarray,
    frame1: np.ndarray,
    n_on: np.ndarray,
    n_off: np.ndarray,
    gamma: float,
    prior: float = DEFAULT_THRESHOLD,
    dlog: np.ndarray | None = None,
) -> Thresholds:
    """Thresholds of one interval from its keyframes (HxWx3 uint8, encoded with gamma)
    and the per-pixel ON / OFF event counts between them (HxW). dlog: the log luma
    change F1 - F0 (`log_intensity` of `linear_luma`) when the caller has it already."""
    # Encoded luma, rounded to 8 bits (OpenCV: a fraction of a matrix product's time).
    luma0 = cv2.transform(frame0, _LUMA.reshape(1, 3))
    luma1 = cv2.transform(frame1, _LUMA.reshape(1, 3))
    lo, hi = VALID_LUMA
    use = (n_on + n_off > 0) & (luma0 > lo) & (luma0 < hi) & (luma1 > lo) & (luma1 < hi)
    if dlog is None:
        dlog = log_intensity(linear_luma(frame1, gamma)) - log_intensity(linear_luma(frame0, gamma))
    a, b = n_on[use], n_off[use]
    return robust_fit(dlog[use], a + 0.5 * (a > 0), b + 0.5 * (b > 0), prior)
