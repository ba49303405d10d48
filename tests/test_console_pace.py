"""The preview tap yields to capture: its pace halves while capture lags behind real
time and climbs back once it keeps up; the capture-side calls never wait and never
touch the data they are handed. Times are given to the pace, never measured, so
nothing here depends on the machine's speed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline.console.hub import PREVIEW_NICE, PreviewHub, lower_thread_priority
from pipeline.console.tap import PreviewPace, PreviewTap
from rig.types import EventBatch, Frame


class _Capture:
    """Capture handing over one batch every 10 ms of wall time whose data advance by
    `speed` x 10 ms (1.0: real time); the pace is consulted each wall second."""

    def __init__(self, pace: PreviewPace, wall_s: float = 0.0, data_us: int = 0) -> None:
        self.pace, self.ticks, self.wall0, self.data_us = pace, 0, wall_s, data_us

    @property
    def wall(self) -> float:
        return self.wall0 + self.ticks / 100

    def run(self, seconds: int, speed: float) -> None:
        for _ in range(seconds):
            for _ in range(100):
                self.ticks += 1
                self.data_us += round(10_000 * speed)
                self.pace.observe(self.data_us, self.wall)
            self.pace.update(self.wall)


def test_pace_stays_at_full_rate_while_capture_keeps_real_time() -> None:
    pace = PreviewPace(max_hz=25, every_s=0.5)
    pace.update(1000.0)
    _Capture(pace, 1000.0, 5_000_000).run(10, 1.0)  # any clock offset: only changes count
    assert pace.hz == 25
    assert pace.lag_s < 0.02
    assert pace.slowdowns == 0


def test_pace_halves_when_capture_lags_and_recovers_when_it_keeps_up() -> None:
    pace = PreviewPace(max_hz=24, min_hz=1, step_hz=2, every_s=0.5)
    pace.update(0.0)
    capture = _Capture(pace)
    capture.run(1, 0.9)  # 10 % behind real time: the lag grows
    assert pace.hz == 12
    capture.run(1, 0.9)
    assert pace.hz == 6
    capture.run(10, 0.9)
    assert pace.hz == 1  # never below min_hz
    assert pace.slowdowns == 12
    # Capture caught up (its data back at real time) and keeps it: climb back.
    capture.data_us = round(capture.wall * 1e6)
    capture.run(1, 1.0)
    assert pace.lag_s < 0.01
    assert pace.hz == 3
    capture.run(20, 1.0)
    assert pace.hz == 24  # never above max_hz


def test_a_lag_over_the_budget_slows_the_previews_even_if_it_stopped_growing() -> None:
    pace = PreviewPace(max_hz=20, lag_budget_s=0.2)
    pace.observe(0, 0.0)
    pace.update(0.0)
    pace.observe(0, 0.5)  # capture stalled half a second
    pace.update(1.0)
    assert pace.hz == 10
    pace.observe(1_000_000, 1.5)  # still 0.5 s behind, no longer growing
    pace.update(2.0)
    assert pace.hz == 5
    assert pace.to_dict() == {"hz": 5.0, "max_hz": 20, "lag_s": 0.5, "slowdowns": 2}


def test_pace_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_hz"):
        PreviewPace(max_hz=2, min_hz=5)
    with pytest.raises(ValueError, match="lag_budget_s"):
        PreviewPace(lag_budget_s=0)
    with pytest.raises(ValueError, match="max_hz"):
        PreviewPace(max_hz=float("nan"))


def _batch(n: int, t0: int) -> EventBatch:
    rng = np.random.default_rng(t0)
    return EventBatch(
        t0 + np.arange(n, dtype=np.int64),
        rng.integers(0, 40, n).astype(np.int16),
        rng.integers(0, 30, n).astype(np.int16),
        rng.integers(0, 2, n).astype(np.int8),
    )


def test_capture_side_calls_never_wait_and_never_change_the_data() -> None:
    """With the publisher never started (a stalled console), capture can hand over
    any amount: the tap keeps a bounded number of references and returns at once;
    what it was handed is exactly what capture wrote."""
    tap = PreviewTap("tcp://127.0.0.1:9", (40, 30))
    batches = [_batch(100, i * 100) for i in range(5000)]
    copies = [(b.t.copy(), b.x.copy(), b.y.copy(), b.p.copy()) for b in batches]
    done = threading.Event()

    def capture() -> None:
        for b in batches:
            tap.events(b, b)
            tap.frame(Frame(np.zeros((30, 40, 3), np.uint8), 0, 0, 100))
        done.set()

    threading.Thread(target=capture, daemon=True).start()
    assert done.wait(120), "the capture side waited on the tap"
    assert len(tap._events) <= tap._events.maxlen < len(batches)
    for b, (t, x, y, p) in zip(batches, copies, strict=True):
        assert np.array_equal(b.t, t) and np.array_equal(b.x, x)
        assert np.array_equal(b.y, y) and np.array_equal(b.p, p)


def test_preview_threads_run_at_lower_priority_than_the_rest() -> None:
    """Linux (the rig's OS): niceness is per thread."""
    import os

    seen: dict[str, int] = {}

    def worker() -> None:
        lower_thread_priority()
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == max(PREVIEW_NICE, before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_health_keeps_flowing_while_previews_are_slowed() -> None:
    """The page's health stays fresh (at least once a second) however slow the pace:
    with previews every 100 s, five health snapshots in a row still reach the hub."""
    hub = PreviewHub()
    tap = PreviewTap(hub.endpoint, (40, 30), pace=PreviewPace(max_hz=0.01, min_hz=0.01)).start()
    try:
        image = np.zeros((30, 40, 3), np.uint8)
        for i in range(1, 6):
            deadline = time.monotonic() + 60
            while hub.health.get("events") != i:  # PUB/SUB: offer until seen
                assert time.monotonic() < deadline, f"health {i} never reached the hub"
                tap.frame(Frame(image, i, 0, 100))
                tap.health({"wall": float(i), "events": i, "frames": i})
                hub.wait_newer("rgb", 10**9, 0.05)
        assert hub.health["preview"]["hz"] == 0.01
        assert hub.seq("rgb") <= 1  # one preview at most: the pace held
    finally:
        tap.close()
        hub.close()
