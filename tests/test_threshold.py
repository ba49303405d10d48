"""Contrast thresholds fitted from two keyframes and the events between them."""

import numpy as np
import pytest

from models.threshold import (
    COLOUR_GAMMA,
    DEFAULT_THRESHOLD,
    MIN_PIXELS,
    fit_thresholds,
    frame_gamma,
    robust_fit,
)
from rig.sim.events import EventEmulator
from rig.types import EventBatch

H, W = 60, 80


def _encode(linear: np.ndarray, gamma: float = COLOUR_GAMMA) -> np.ndarray:
    v = np.round(np.clip(linear, 0, 1) ** (1 / gamma) * 255).astype(np.uint8)
    return np.repeat(v[..., None], 3, axis=2)


def _simulated_interval(c_on: float, c_off: float, seed: int):
    """The simulator's event model (rig.sim.events: per-pixel mismatch, refractory
    period, background noise) on a textured scene whose left half brightens and right
    half darkens over a 40 ms interval, each pixel by its own amount. Before it the light wanders with a random phase
    per pixel, so every pixel enters the interval with its own unknown reference level
    (the fit assumes nothing about it; a scene-wide swing just before the interval
    biases it by up to one event per pixel, docs/model.md)."""
    rng = np.random.default_rng(seed)
    tex = rng.uniform(0.03, 0.15, (H, W)).astype(np.float32)
    side = np.where(np.arange(W) < W // 2, 1.0, -1.0)[None, :]
    emu = EventEmulator((W, H), np.random.default_rng(seed + 1), 0.2, 0.0, 100, 0.1)
    emu.c_on[:] = c_on * (1 + 0.05 * rng.standard_normal(H * W))
    emu.c_off[:] = c_off * (1 + 0.05 * rng.standard_normal(H * W))

    phase = rng.uniform(0, 2 * np.pi, (H, W))
    rate = rng.uniform(0.4, 2.0, (H, W))  # log change over the interval, per pixel

    def light(t_ms: float) -> np.ndarray:
        if t_ms < 0:
            return (tex * np.exp(0.9 * np.sin(t_ms / 6.0 + phase))).astype(np.float32)
        entry = tex * np.exp(0.9 * np.sin(phase))
        return (entry * np.exp(side * rate * t_ms / 40.0)).astype(np.float32)

    emu.reset(light(-60), -60_000)
    chunks = [emu.step(light(t), t * 1000) for t in range(-59, 41)]
    ev = EventBatch.concat(chunks)
    ev = ev[np.argsort(ev.t, kind="stable")].time_slice(0, 40_000)
    pix = ev.y.astype(np.intp) * W + ev.x.astype(np.intp)
    on = ev.p > 0
    n_on = np.bincount(pix[on], minlength=H * W).reshape(H, W).astype(np.float32)
    n_off = np.bincount(pix[~on], minlength=H * W).reshape(H, W).astype(np.float32)
    return _encode(light(0)), _encode(light(40)), n_on, n_off


@pytest.mark.parametrize(("c_on", "c_off"), [(0.2, 0.3), (0.35, 0.15)])
def test_fit_recovers_simulator_thresholds_within_ten_percent(c_on, c_off):
    for seed in (1, 2):
        f0, f1, n_on, n_off = _simulated_interval(c_on, c_off, seed)
        th = fit_thresholds(f0, f1, n_on, n_off, COLOUR_GAMMA)
        assert th.fitted
        assert abs(th.c_on / c_on - 1) < 0.10, th
        assert abs(th.c_off / c_off - 1) < 0.10, th


def test_fit_with_the_wrong_encoding_is_not_the_threshold():
    """The fit needs linear light: the same data read as linear frames is far off."""
    f0, f1, n_on, n_off = _simulated_interval(0.2, 0.3, 1)
    th = fit_thresholds(f0, f1, n_on, n_off, 1.0)
    assert th.c_on < 0.15


def test_too_few_pixels_or_implausible_fits_give_the_prior():
    few = robust_fit(
        np.full(MIN_PIXELS - 1, 0.2), np.ones(MIN_PIXELS - 1), np.zeros(MIN_PIXELS - 1)
    )
    assert not few.fitted and few.c_on == few.c_off == DEFAULT_THRESHOLD
    n = 500
    huge = robust_fit(np.full(n, 9.0), np.ones(n), np.zeros(n))  # 9 log units per event
    assert not huge.fitted and huge.c_on == DEFAULT_THRESHOLD


def test_one_polarity_seen_fits_one_threshold_for_both():
    rng = np.random.default_rng(0)
    n_on = rng.integers(1, 6, 400).astype(np.float64)
    th = robust_fit(0.25 * n_on + 0.01 * rng.standard_normal(400), n_on, np.zeros(400))
    assert th.fitted and abs(th.c_on - 0.25) < 0.01 and th.c_off == th.c_on


def test_grey_frames_are_linear_colour_frames_display_encoded():
    grey = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    assert frame_gamma(grey) == 1.0
    colour = grey.copy()
    colour[0, 1, 2] = 7
    assert frame_gamma(colour) == COLOUR_GAMMA
