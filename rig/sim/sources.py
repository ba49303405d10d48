"""The simulated rig behind the two sensor interfaces, so the whole pipeline runs
without hardware.

Both sources share one `SimulatedRig` through a driver that owns a queue per source:
whichever source runs dry advances the rig by one chunk and the output is split
between the queues, so the two streams stay consistent (same scene, same clock) no
matter which one is read faster. With `realtime=True` the rig never runs ahead of the
wall clock, like real cameras.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from rig.base import DeviceInfo, EventSource, FrameSource, SourceError
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig
from rig.types import EventSlice, Frame

MAX_QUEUED_CHUNKS = 1000  # an unread event queue is capped (10 s of 10 ms chunks)
MAX_QUEUED_FRAMES = 256


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

    def start_clock(self) -> None:
        with self.lock:
            if self._t0_wall is None:
                self._t0_wall = time.monotonic() - self.rig.time_us * 1e-6

    @property
    def finished(self) -> bool:
        return self.end_us is not None and self.rig.time_us >= self.end_us

    def pump(self, deadline: float) -> bool:
        """Advance one chunk if the wall clock allows (realtime) before deadline.
        Returns False when nothing could be produced (end reached or timed out)."""
        with self.lock:
            if self.finished:
                return False
            until = self.rig.time_us + self.chunk_us
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
            step = self.rig.advance(until)
            self.events.append(EventSlice(step.events, step.triggers))
            if len(self.events) > MAX_QUEUED_CHUNKS:
                self.events.popleft()
                self.dropped_chunks += 1
            self.frames.extend(step.frames)
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
