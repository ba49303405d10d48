"""The one interval cutter, shared by live capture and replay: keyframes on the rig
clock and events in the keyframes' pixel grid in, interval jobs out.

- ``EventWindow``: the events in the frame grid that intervals are cut from (live:
  bounded, drop-oldest, counted).
- ``IntervalCutter``: drops keyframes that are not after the previous one, notes
  frame gaps, and cuts interval k (keyframe k to k+1) once the events have reached
  keyframe k+1 (live: the event watermark; a file: always), with the instants to
  synthesise (``inserted_for``). What happens to a cut job (offered to a dispatcher
  with a policy) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.jobs import IntervalJob, inserted_timestamps
from rig.types import EventBatch

GAP_FACTOR = 1.8  # an interval this many times the usual one means frames are missing
FAR = 2**62


class MissingEvents(Exception):
    """The events of one interval are incomplete (damage, missing file); the reason is
    the message."""


@dataclass
class Gap:
    """Marker in an event chunk stream: events were lost here (the text says why),
    between t0_us and t1_us where the reader knows (a missing file of a known span),
    else from the last event before the marker to the first after it."""

    reason: str
    t0_us: int | None = None
    t1_us: int | None = None


def inserted_for(t0_us: int, t1_us: int, factor: int | None, fps: float | None) -> np.ndarray:
    """Instants to synthesise inside (t0, t1): factor-1 evenly spaced ones, or for an
    output rate of fps frames per second of capture time, round(duration * fps) - 1."""
    if factor is None:
        if fps is None:
            raise ValueError("give a factor or an output rate (fps)")
        factor = max(1, int(round((t1_us - t0_us) * fps / 1e6)))
    ts = inserted_timestamps(t0_us, t1_us, factor)
    # Very short intervals can round two instants together: keep them strictly inside.
    return np.unique(ts[(ts > t0_us) & (ts < t1_us)])


def as_grid(b: EventBatch) -> EventBatch:
    """x, y as float32 frame-grid positions (events of the frame sensor itself)."""
    if b.x.dtype == np.float32:
        return b
    return EventBatch(b.t, b.x.astype(np.float32), b.y.astype(np.float32), b.p)


class EventWindow:
    """Mapped event batches in time order; slices by time, forgets what is no longer
    needed. max_events: beyond it the oldest batches go (counted in ``dropped``)."""

    def __init__(self, max_events: int | None = None) -> None:
        self.max_events = max_events
        self._batches: list[EventBatch] = []
        self.count = 0
        self.dropped = 0

    def add(self, batch: EventBatch) -> None:
        if not len(batch):
            return
        self._batches.append(batch)
        self.count += len(batch)
        if self.max_events is not None:
            while self.count > self.max_events and len(self._batches) > 1:
                old = self._batches.pop(0)
                self.count -= len(old)
                self.dropped += len(old)

    def slice(self, t0: int, t1: int, grid: bool = True) -> EventBatch:
        """Events with t0 <= t < t1; grid: x/y as float32 (else as stored)."""
        parts = [b.time_slice(t0, t1) for b in self._batches if b.t[-1] >= t0 and b.t[0] < t1]
        out = EventBatch.concat(parts) if parts else EventBatch.empty(np.float32)
        return as_grid(out) if grid else out

    def trim(self, t_keep: int) -> None:
        """Forget events before t_keep."""
        kept = []
        for b in self._batches:
            if b.t[-1] < t_keep:
                self.count -= len(b)
                continue
            if b.t[0] < t_keep:
                cut = b.time_slice(t_keep, FAR)
                self.count -= len(b) - len(cut)
                b = cut
            kept.append(b)
        self._batches = kept


@dataclass(frozen=True)
class Key:
    """A keyframe that made it into the output: index (its number there), label (its
    number in the recording), RGB image, mid-exposure time on the rig clock, and the
    host time it arrived (live latency)."""

    index: int
    label: int
    image: np.ndarray
    t_us: int
    arrival: float = 0.0


@dataclass
class Cut:
    """Interval `index` between keyframes k0 and k1: a job, or the reason for none
    ("" with no job: nothing to insert, the interval is too short). resumed: an earlier
    run wrote it already (replay)."""

    index: int
    k0: Key
    k1: Key
    job: IntervalJob | None = None
    reason: str = ""
    resumed: bool = False


class IntervalCutter:
    """Keyframes and events in, intervals out (see the module docstring).

    events(k0, k1): the events of an interval (MissingEvents when incomplete);
    instants(t0, t1): what to synthesise; skip(k0, k1): called instead of events for
    intervals before resume_from (already written by an earlier run).
    """

    def __init__(
        self,
        events: Callable[[Key, Key], EventBatch],
        instants: Callable[[int, int], np.ndarray],
        skip: Callable[[Key, Key], None] | None = None,
        resume_from: int = 0,
    ) -> None:
        self._events = events
        self._instants = instants
        self._skip = skip
        self.resume_from = resume_from
        self.pending: list[Key] = []  # keyframes not yet closing an interval
        self.keyframes = 0
        self.last: Key | None = None
        self.first_t: int | None = None
        self.dropped: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self._recent: list[int] = []

    def add_keyframe(
        self, label: int, image: np.ndarray, t_us: int, arrival: float = 0.0
    ) -> Key | None:
        """The next keyframe; None (and listed in ``dropped``) when its time is not
        after the previous one's."""
        prev = self.last
        if prev is not None and t_us <= prev.t_us:
            self.dropped.append(
                {
                    "frame": label,
                    "t_us": int(t_us),
                    "reason": f"time {t_us} µs is not after the previous keyframe "
                    f"(frame {prev.label}, {prev.t_us} µs)",
                }
            )
            return None
        key = Key(self.keyframes, label, image, int(t_us), arrival)
        self.keyframes += 1
        if prev is None:
            self.first_t = key.t_us
        else:
            self._note_gap(prev, key)
        self.last = key
        self.pending.append(key)
        return key

    def _note_gap(self, prev: Key, key: Key) -> None:
        dt = key.t_us - prev.t_us
        typical = float(np.median(self._recent)) if self._recent else None
        if typical and dt > GAP_FACTOR * typical:
            self.gaps.append(
                {
                    "interval": prev.index,
                    "frames": [prev.label, key.label],
                    "t0_us": prev.t_us,
                    "t1_us": key.t_us,
                    "detail": f"{dt / typical - 1:.1f} frame periods missing "
                    f"(frames {prev.label + 1}..{key.label - 1} absent or unusable); "
                    "interpolated across the gap",
                }
            )
        else:
            self._recent = (self._recent + [dt])[-50:]

    def cuts(self, watermark: int | None = None, final: bool = False) -> Iterator[Cut]:
        """Intervals whose events are complete: up to keyframe times <= watermark (None:
        events are read on demand, every interval is ready). final: the event stream
        is over; intervals past its end are cut without a job."""
        while len(self.pending) >= 2:
            k0, k1 = self.pending[0], self.pending[1]
            if watermark is not None and watermark < k1.t_us and not final:
                return
            self.pending.pop(0)
            cut = Cut(k0.index, k0, k1)
            if k0.index < self.resume_from:
                cut.resumed = True
                if self._skip is not None:
                    self._skip(k0, k1)
            elif watermark is not None and watermark < k1.t_us:
                cut.reason = f"no events after {watermark} us (event stream ended)"
            else:
                try:
                    events = self._events(k0, k1)
                except MissingEvents as exc:
                    cut.reason = str(exc)
                else:
                    ts = self._instants(k0.t_us, k1.t_us)
                    if len(ts):
                        cut.job = IntervalJob(
                            k0.index, k0.image, k1.image, k0.t_us, k1.t_us, events, ts
                        )
            yield cut

    @property
    def span_s(self) -> float | None:
        if self.first_t is None or self.last is None:
            return None
        return (self.last.t_us - self.first_t) / 1e6


class IntervalStream:
    """Keyframes and events as they arrive, from cameras (live) or from a file
    (replay), cut into intervals: the event window, the watermark (events are complete
    up to it) and the cutter together.

    to_grid: events are kept as they come and mapped into the frame grid per interval
    (replay: intervals already written are never mapped); None: they come mapped
    (live maps on arrival). lost(t0, t1): why events there are incomplete, or None.
    """

    def __init__(
        self,
        instants: Callable[[int, int], np.ndarray],
        max_events: int | None = None,
        to_grid: Callable[[EventBatch], EventBatch] | None = None,
        lost: Callable[[int, int], str | None] | None = None,
        resume_from: int = 0,
    ) -> None:
        self.window = EventWindow(max_events)
        self.watermark = -FAR
        self._to_grid = to_grid
        self._lost = lost
        self.cutter = IntervalCutter(self._events, instants, resume_from=resume_from)

    def _events(self, k0: Key, k1: Key) -> EventBatch:
        why = self._lost(k0.t_us, k1.t_us) if self._lost is not None else None
        if why is not None:
            raise MissingEvents(why)
        if self._to_grid is None:
            return self.window.slice(k0.t_us, k1.t_us)
        return self._to_grid(self.window.slice(k0.t_us, k1.t_us, grid=False))

    def add_events(self, batch: EventBatch) -> None:
        if len(batch):
            self.window.add(batch)
            self.advance(int(batch.t[-1]))

    def advance(self, t_us: int) -> None:
        """Nothing older than t_us will come (an event or a trigger edge arrived)."""
        self.watermark = max(self.watermark, t_us)

    def add_keyframe(
        self, label: int, image: np.ndarray, t_us: int, arrival: float = 0.0
    ) -> Key | None:
        return self.cutter.add_keyframe(label, image, t_us, arrival)

    def cuts(self, final: bool = False, ended: bool = False) -> Iterator[Cut]:
        """Intervals whose events are complete. final: no more events will come, cut
        the rest (those past the watermark without a job); ended: the event stream
        ended and knows what it lost (a file): every interval is ready."""
        for cut in self.cutter.cuts(None if ended else self.watermark, final):
            yield cut
            self.window.trim(cut.k1.t_us)

    @property
    def dropped_events(self) -> int:
        return self.window.dropped
