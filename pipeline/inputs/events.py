"""A recording's event stream behind the live event-source interface
(rig.base.EventSource: ``read()`` -> EventSlice, ``EOFError`` at the end), the way
dv-processing's CameraInputBase serves a camera and a file alike; replay reads it as
capture reads a camera.

A file is less well behaved than a camera: a damaged packet is skipped, a chunk can be
out of order, a file can be cut off. The source hands on events in time order (a
chunk out of order inside is sorted, events going back in time are dropped; both
counted) and remembers where events were lost, so that ``lost(t0, t1)`` can say why an
interval must not be interpolated. ``EventCursor`` adds slicing per interval in the
frame grid, for readers that take events interval by interval (holdout evaluation,
`slomo-rig sync`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pipeline.intervals import FAR, EventWindow, Gap, MissingEvents, as_grid
from rig.base import EventSource
from rig.types import EventBatch, EventSlice


class FileEventSource(EventSource):
    """chunks yields EventBatch or Gap (events on the sensor's pixels); clean_end()
    says, once they are exhausted, whether the stream ended normally (else everything
    after its last event counts as lost, with what_end() as the reason)."""

    backend = "file"

    def __init__(
        self,
        chunks: Iterator[EventBatch | Gap],
        clean_end: Callable[[], bool],
        what_end: Callable[[], str] | None = None,
        resolution: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self._chunks = chunks
        self._clean_end = clean_end
        self._what_end = what_end or (lambda: "the event stream is cut off")
        self.last_t = -FAR  # the watermark: events are complete up to here
        self.first_t: int | None = None
        self.ended = False
        self._open_gap: str | None = None
        self.gaps: list[tuple[int, int, str]] = []  # (from_t, to_t, why): events lost in between
        self.dropped_backwards = 0
        self.reordered_chunks = 0
        self.events_read = 0

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        while not self.ended:
            try:
                item = next(self._chunks)
            except StopIteration:
                self._finish()
                break
            if isinstance(item, Gap):
                if item.t0_us is not None and item.t1_us is not None:
                    self.gaps.append((item.t0_us, item.t1_us, item.reason))
                else:
                    self._open_gap = self._open_gap or item.reason
                continue
            b = self._in_order(item)
            if len(b):
                return EventSlice(b)
        raise EOFError("no more events")

    def _finish(self) -> None:
        self.ended = True
        if self._open_gap is not None:
            self.gaps.append((self.last_t, FAR, self._open_gap))
        elif not self._clean_end():
            self.gaps.append((self.last_t, FAR, self._what_end()))

    def _in_order(self, b: EventBatch) -> EventBatch:
        if not len(b):
            return b
        if np.any(np.diff(b.t) < 0):
            b = b[np.argsort(b.t, kind="stable")]
            self.reordered_chunks += 1
        if b.t[0] < self.last_t:
            keep = b.t >= self.last_t
            self.dropped_backwards += int(len(b) - keep.sum())
            b = b[keep]
            if not len(b):
                return b
        if self._open_gap is not None:
            self.gaps.append((self.last_t, int(b.t[0]), self._open_gap))
            self._open_gap = None
        if self.first_t is None:
            self.first_t = int(b.t[0])
        self.last_t = int(b.t[-1])
        self.events_read += len(b)
        return b

    def lost(self, t0: int, t1: int) -> str | None:
        """Why events with t0 <= t < t1 are incomplete, or None (read up to t1 first)."""
        for g0, g1, why in self.gaps:
            if g0 < t1 and g1 > t0:
                if g1 >= FAR // 2:
                    return f"{why}: no events after t={g0} µs"
                return f"{why}: events between t={g0} and t={g1} µs are lost"
        if self.ended and self.first_t is None:
            return "the input holds no readable events"
        return None

    def report(self) -> dict[str, Any]:
        return {
            "events_read": self.events_read,
            "events_dropped_going_back_in_time": self.dropped_backwards,
            "chunks_reordered": self.reordered_chunks,
            "event_gaps": [
                {"from_us": a, "to_us": None if b >= FAR // 2 else b, "reason": why}
                for a, b, why in self.gaps
            ],
        }


class EventCursor:
    """Per-interval slices in the frame grid of a FileEventSource (same arguments as it,
    plus the mapping into the frame grid; None: the events are of the frame sensor)."""

    def __init__(
        self,
        chunks: Iterator[EventBatch | Gap],
        mapper: Callable[[EventBatch], EventBatch] | None,
        clean_end: Callable[[], bool],
        what_end: Callable[[], str] | None = None,
    ) -> None:
        self.source = FileEventSource(chunks, clean_end, what_end)
        self.map = mapper or as_grid
        self._window = EventWindow()  # raw events; mapped when an interval is taken

    def _read_to(self, t1: int) -> None:
        src = self.source
        while not src.ended and src.last_t < t1:
            try:
                item = src.read()
            except EOFError:
                return
            if item is not None:
                self._window.add(item.events)

    def to_grid(self, raw: EventBatch) -> EventBatch:
        return as_grid(self.map(raw)) if len(raw) else EventBatch.empty(np.float32)

    def take(self, t0: int, t1: int) -> EventBatch:
        """Events with t0 <= t < t1; MissingEvents when some of them are lost."""
        self._read_to(t1)
        why = self.source.lost(t0, t1)
        if why is not None:
            self._window.trim(t1)
            raise MissingEvents(why)
        out = self.to_grid(self._window.slice(t0, t1, grid=False))
        self._window.trim(t1)
        return out

    def report(self) -> dict[str, Any]:
        return self.source.report()
