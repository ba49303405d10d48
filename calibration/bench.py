"""Throughput of the event-to-RGB lookup on the live path (the pipeline needs >= 20 M
events/s on one core)."""

from __future__ import annotations

import time

import numpy as np

from calibration.align import MappingSpec, build_map
from calibration.simrig import default_truth
from rig.types import EventBatch


def bench_mapping(n_events: int = 5_000_000, repeats: int = 5, seed: int = 0) -> dict:
    """Map n_events random events (worst case: no locality) with a realistic LUT (the
    simulated side-by-side rig) and report the best of `repeats` runs."""
    tr = default_truth("side_by_side")
    lut = build_map(tr.events, tr.rgb, tr.r, tr.t, MappingSpec("plane", 2.0))
    rng = np.random.default_rng(seed)
    w, h = tr.events.size
    ev = EventBatch(
        np.arange(n_events, dtype=np.int64),
        rng.integers(0, w, n_events).astype(np.int16),
        rng.integers(0, h, n_events).astype(np.int16),
        rng.integers(0, 2, n_events).astype(np.int8),
    )
    times = []
    kept = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = lut(ev)
        times.append(time.perf_counter() - t0)
        kept = len(out)
    best = min(times)
    return {
        "events": n_events,
        "best_s": best,
        "median_s": float(np.median(times)),
        "mev_per_s": n_events / best / 1e6,
        "kept_fraction": kept / n_events,
        "event_size": (w, h),
        "frame_size": tr.rgb.size,
    }


__all__ = ["bench_mapping"]
