"""The simulated rig behind the two sensor interfaces, so the whole pipeline runs
without hardware.

Both sources share one `SimulatedRig` through a driver that owns a queue per source:
whichever source runs dry advances the rig by one chunk and the output is split
between the queues, so the two streams stay consistent (same scene, same clock) no
matter which one is read faster. With `realtime=True` the rig never runs ahead of the
wall clock, like real cameras.

With `SimConfig.loop_s` set, the driver renders that stretch once when the sources are
opened (before the real-time clock starts, so startup takes as long as rendering it)
and from then on hands the stored chunks out again and again, each loop's event and
trigger times shifted by k * loop_us on the rig clock, its frames' times by the same on
the RGB camera's clock (through `frame_rig_to_device`, so the offset and drift the sync
recovers stay exact) and its frame indices counting on. Reading then costs what reading
real cameras costs; the scene jumps back once per loop.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np

from rig.base import DeviceInfo, EventSource, FrameSource, SourceError
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig
from rig.types import EventBatch, EventSlice, Frame

MAX_QUEUED_CHUNKS = 1000  # an unread event queue is capped (10 s of 10 ms chunks)
MAX_QUEUED_FRAMES = 256


class _Loop:
    """One rendered stretch of the rig, `period_us` long, that repeats: the first n
    frames (n = loop / frame period) and their trigger edges, the events of
    [0, period_us). Loop k is the stored stretch shifted by k * period_us."""

    def __init__(self, rig: SimulatedRig, period_us: int) -> None:
        if rig.time_us != 0:
            raise SourceError(
                f"a looping simulated rig must start at rig time 0, this one is at "
                f"{rig.time_us} µs: create a new SimulatedRig for the sources"
            )
        cfg = rig.config
        self.rig = rig
        self.period_us = int(period_us)
        n = max(1, int(round(self.period_us / cfg.frame_period_us)))
        # Everything of the first n exposures, and every event before the loop's end.
        until = max(self.period_us, rig.exposure_start_us(n - 1) + cfg.exposure_us)
        step = rig.advance(until)
        self.events = step.events.time_slice(0, self.period_us)
        self.triggers = np.asarray(step.triggers[:n], np.int64)
        self.frames = step.frames[:n]
        self.starts = np.array([rig.exposure_start_us(f.index) for f in self.frames], np.int64)
        if len(self.frames) != n or len(self.triggers) != n:
            raise AssertionError(f"loop: {len(self.frames)} frames for {n} triggers")
        self.exposure_us = int(cfg.exposure_us)
        # What the sources hand out from now on is what counts as emitted.
        rig.events_emitted = rig.frames_emitted = rig.triggers_emitted = 0
        self._next_trigger = 0
        self._next_frame = 0

    def take(self, start_us: int, until_us: int) -> tuple[EventBatch, np.ndarray, list[Frame]]:
        """Events and trigger edges in [start_us, until_us) of the looped rig time, and
        the frames whose exposure ended by until_us: what `SimulatedRig.advance` would
        give for that span of an endlessly repeating scene."""
        p = self.period_us
        parts = []
        for k in range(start_us // p, (until_us - 1) // p + 1):
            lo, hi = max(start_us, k * p) - k * p, min(until_us, (k + 1) * p) - k * p
            ev = self.events.time_slice(lo, hi)
            if len(ev):
                parts.append(EventBatch(ev.t + k * p, ev.x.copy(), ev.y.copy(), ev.p.copy()))
        events = EventBatch.concat(parts)
        n = len(self.frames)
        triggers = []
        while True:
            k, i = divmod(self._next_trigger, n)
            t = int(self.triggers[i]) + k * p
            if t >= until_us:
                break
            triggers.append(t)
            self._next_trigger += 1
        frames = []
        while True:
            k, i = divmod(self._next_frame, n)
            start = int(self.starts[i]) + k * p
            if start + self.exposure_us > until_us:
                break
            frames.append(
                Frame(
                    image=self.frames[i].image.copy(),  # a camera's fresh buffer
                    index=self._next_frame,
                    timestamp_us=self.rig.frame_rig_to_device(start),
                    exposure_us=self.exposure_us,
                )
            )
            self._next_frame += 1
        self.rig.events_emitted += len(events)
        self.rig.triggers_emitted += len(triggers)
        self.rig.frames_emitted += len(frames)
        return events, np.array(triggers, np.int64), frames


class _SimDriver:
    """Advances the shared rig on demand and fans its output out to both queues."""

    def __init__(self, rig: SimulatedRig, chunk_us: int, duration_s: float | None) -> None:
        if chunk_us <= 0:
            raise ValueError(f"chunk_us must be > 0, got {chunk_us}")
        if duration_s is not None and duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        self.rig = rig
        self.chunk_us = int(chunk_us)
        self.end_us = None if duration_s is None else int(round(duration_s * 1e6))
        self.events: deque[EventSlice] = deque()
        self.frames: deque[Frame] = deque()
        self.dropped_chunks = 0
        self.dropped_frames = 0
        self.lock = threading.Lock()
        self._t0_wall: float | None = None
        self._loop: _Loop | None = None
        self._now = rig.time_us  # rig time up to which everything was handed out

    def start_clock(self) -> None:
        """Called when a source opens: a looping rig renders its loop first (that is
        the startup time), then the real-time clock starts."""
        with self.lock:
            if self._t0_wall is None:
                self._render_loop()
                self._t0_wall = time.monotonic() - self._now * 1e-6

    def _render_loop(self) -> None:
        """Render the loop once, if the rig loops and it is not rendered yet (lock held)."""
        loop_us = self.rig.config.loop_us
        if loop_us is None or self._loop is not None:
            return
        print(
            f"simulated rig: rendering its {loop_us / 1e6:g} s loop once before the clock "
            "starts (as long as rendering it live would take) ...",
            file=sys.stderr,
            flush=True,
        )
        self._loop = _Loop(self.rig, loop_us)

    @property
    def finished(self) -> bool:
        return self.end_us is not None and self._now >= self.end_us

    def pump(self, deadline: float) -> bool:
        """Advance one chunk if the wall clock allows (realtime) before deadline.
        Returns False when nothing could be produced (end reached or timed out)."""
        with self.lock:
            if self.finished:
                return False
            until = self._now + self.chunk_us
            if self.end_us is not None:
                until = min(until, self.end_us)
            if self.rig.config.realtime and self._t0_wall is not None:
                due = self._t0_wall + until * 1e-6
                wait = due - time.monotonic()
                if wait > 0:
                    if time.monotonic() + wait > deadline:
                        time.sleep(max(0.0, deadline - time.monotonic()))
                        return False
                    time.sleep(wait)
            self._render_loop()
            if self._loop is not None:
                events, triggers, frames = self._loop.take(self._now, until)
            else:
                step = self.rig.advance(until)
                events, triggers, frames = step.events, step.triggers, step.frames
            self._now = until
            self.events.append(EventSlice(events, triggers))
            if len(self.events) > MAX_QUEUED_CHUNKS:
                self.events.popleft()
                self.dropped_chunks += 1
            self.frames.extend(frames)
            while len(self.frames) > MAX_QUEUED_FRAMES:
                self.frames.popleft()
                self.dropped_frames += 1
            return True


def sim_sources(
    rig: SimulatedRig, chunk_us: int = 10_000, duration_s: float | None = None
) -> tuple[SimEventSource, SimFrameSource]:
    """An event source and a frame source sharing one rig."""
    driver = _SimDriver(rig, chunk_us, duration_s)
    return SimEventSource(driver=driver), SimFrameSource(driver=driver)


class _SimMixin:
    """The open/close/read plumbing shared by both simulated sources."""

    backend = "sim"
    _driver: _SimDriver
    _open: bool
    _closed: bool

    def _init_driver(
        self, config: SimConfig | None, driver: _SimDriver | None, duration_s: float | None
    ) -> None:
        self._driver = driver or _SimDriver(SimulatedRig(config), 10_000, duration_s)
        self._closed = False

    @property
    def rig(self) -> SimulatedRig:
        return self._driver.rig

    def open(self) -> None:
        if self._closed:
            raise SourceError("This simulated source was closed; create a new one to read again.")
        self._open = True
        self._driver.start_clock()

    def close(self) -> None:
        self._open = False
        self._closed = True

    def _read(self, queue: deque, timeout_s: float):
        if not self._open:
            raise SourceError(
                f"read() on a {'closed' if self._closed else 'unopened'} simulated "
                f"{type(self).__name__}: call open() or use it as a context manager."
            )
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._driver.lock:
                if queue:
                    return queue.popleft()
                if self._driver.finished:
                    raise EOFError(f"simulated rig reached its duration ({self._driver.end_us} µs)")
            if not self._driver.pump(deadline) and time.monotonic() >= deadline:
                with self._driver.lock:
                    if queue:
                        return queue.popleft()
                return None


class _SimSource(_SimMixin):
    """Constructor and discovery shared by both simulated sources; each subclass names
    its kind and which of the rig's sizes is its resolution."""

    _kind: str
    _size_field: str

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        duration_s: float | None = None,
        driver: _SimDriver | None = None,
    ) -> None:
        super().__init__()  # the EventSource / FrameSource base
        self._init_driver(config, driver, duration_s)
        self.resolution = getattr(self.rig.config, self._size_field)

    @classmethod
    def find(cls) -> list[DeviceInfo]:
        return [DeviceInfo("sim", "simulated", f"sim-{cls._kind}-0", cls._kind, "procedural scene")]


class SimEventSource(_SimSource, EventSource):
    """Events and trigger edges of the simulated rig, one chunk (10 ms) per read."""

    _kind = "events"
    _size_field = "event_size"

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        return self._read(self._driver.events, timeout_s)


class SimFrameSource(_SimSource, FrameSource):
    """Motion-blurred RGB frames of the simulated rig, timestamps on its own clock."""

    _kind = "frames"
    _size_field = "frame_size"

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        return self._read(self._driver.frames, timeout_s)

    @property
    def skipped_frames(self) -> int:
        return self._driver.dropped_frames
