"""Event images for calibration: a standard checkerboard detector needs a picture, and
a blinking board gives one when its events are counted per pixel.

Counting is done with numpy (np.bincount): dv-processing's accumulators are fast but
need an EventStore, and filling one from numpy runs at about 1 M ev/s (sensors.md).
"""

from __future__ import annotations

import numpy as np

from rig.types import EventBatch

LOG_CONTRAST = 2.3  # ln(white / black) of a typical screen board; only shapes the ramp


def event_count_image(events: EventBatch, size: tuple[int, int], polarity: int | None = 1):
    """Events per pixel (float32 HxW); polarity=None counts both polarities."""
    w, h = size
    sel = slice(None) if polarity is None else events.p == polarity
    x = events.x[sel].astype(np.intp)
    y = events.y[sel].astype(np.intp)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    counts = np.bincount((y[ok] * w + x[ok]), minlength=w * h)
    return counts.reshape(h, w).astype(np.float32)


def blink_image(events: EventBatch, size: tuple[int, int]) -> np.ndarray:
    """uint8 image of a board blinking pattern <-> white: pixels that changed (the dark
    squares, ON then OFF events) come out dark, everything still comes out white, so the detector sees
    an ordinary board with a white border. Isolated noise events are removed by
    clipping at a high percentile of the board's counts."""
    counts = event_count_image(events, size, polarity=None)
    active = counts[counts > 1]
    if active.size == 0:
        return np.full(size[::-1], 255, np.uint8)
    top = float(np.percentile(active, 95))
    # counts measure log-intensity steps; exp() turns them back into a linear image,
    # whose edges the corner refinement locates more precisely
    frac = np.clip(counts / max(top, 1.0), 0.0, 1.0)
    img = (np.exp(-LOG_CONTRAST * frac) - np.exp(-LOG_CONTRAST)) / (1 - np.exp(-LOG_CONTRAST))
    return (img * 255).round().astype(np.uint8)
