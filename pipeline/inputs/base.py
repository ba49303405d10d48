"""What every replay input provides: keyframes on the event clock and, per interval, the
events between two keyframes already in the keyframes' pixel grid.

Inputs never stop at damage they can get past: they report it in ``problems`` (what,
where, what was lost) and go on. An interval whose events are known to be incomplete
raises ``MissingEvents`` so replay keeps its keyframes but does not invent frames.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.types import EventBatch


class InputError(ValueError):
    """An input that cannot be replayed: wrong path, unknown layout, missing option.
    The message says what to do."""


class MissingEvents(Exception):
    """The events of one interval are incomplete (damage, missing file); the reason is
    the message."""


@dataclass(frozen=True)
class Keyframe:
    """index: position of the frame in the input (0-based, counting every frame the
    input holds, usable or not); image: HxWx3 uint8 RGB; t_us: mid-exposure on the
    event camera's clock."""

    index: int
    image: np.ndarray
    t_us: int


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of an input file or folder for resuming (path, size, mtime)."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class ReplaySource(abc.ABC):
    """One recording to replay. Call ``keyframes()`` once; call ``events(k0, k1)`` for
    consecutive keyframe pairs in time order (windows never go back in time)."""

    kind: str = "?"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.frame_size: tuple[int, int] = (0, 0)  # (width, height) of the keyframes
        self.problems: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def problem(self, what: str, detail: str, **where: Any) -> None:
        self.problems.append({"what": what, "detail": detail, **where})

    @abc.abstractmethod
    def keyframes(self) -> Iterator[Keyframe]:
        """Every readable frame in input order (replay drops those not after the
        previous one)."""

    @abc.abstractmethod
    def events(self, k0: Keyframe, k1: Keyframe) -> EventBatch:
        """Events with k0.t_us <= t < k1.t_us, x/y float32 in the frame grid, t sorted.
        Raises MissingEvents when they are known to be incomplete."""

    def skip(self, k0: Keyframe, k1: Keyframe) -> None:
        """Move past an interval that an earlier run already replayed (no events needed)."""
        return None

    def expected_keyframes(self) -> int | None:
        """How many frames the input holds, if cheap to know (for the progress bar)."""
        return None

    def fingerprint(self) -> list[dict[str, Any]]:
        """Identity of the input files, so a resumed replay is the same replay."""
        return [file_fingerprint(self.path)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "frame_size": list(self.frame_size)}

    def finish_report(self) -> None:
        """Called once reading is over: move any damage found into ``problems``."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        return None

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Gap:
    """Marker in an event chunk stream: events were lost here (the text says why)."""

    reason: str


def to_grid(
    mapper: Callable[[EventBatch], EventBatch] | None,
) -> Callable[[EventBatch], EventBatch]:
    """The mapping into the frame grid, or float32 identity for a sensor that is the
    frame sensor (DAVIS)."""
    if mapper is not None:
        return mapper

    def identity(b: EventBatch) -> EventBatch:
        return EventBatch(b.t, b.x.astype(np.float32), b.y.astype(np.float32), b.p)

    return identity


class EventCursor:
    """Turns a stream of raw event chunks (sensor pixels, file order) into per-interval
    slices in the frame grid, tracking where events are known to be missing.

    chunks yields EventBatch or Gap; ``clean_end()`` says, once chunks are exhausted,
    whether the stream ended normally (else everything after its last event counts as
    missing). Events that go back in time are dropped and counted; a chunk that is out
    of order inside is sorted and counted.
    """

    def __init__(
        self,
        chunks: Iterator[EventBatch | Gap],
        mapper: Callable[[EventBatch], EventBatch] | None,
        clean_end: Callable[[], bool],
        what_end: Callable[[], str] | None = None,
    ) -> None:
        self._chunks = chunks
        self._map = to_grid(mapper)
        self._clean_end = clean_end
        self._what_end = what_end or (lambda: "the event stream is cut off")
        self._buf: list[EventBatch] = []
        self._last_t = -(2**62)
        self._first_t: int | None = None
        self._ended = False
        self._open_gap: str | None = None
        self.gaps: list[tuple[int, int, str]] = []  # (from_t, to_t, why): events lost in between
        self.dropped_backwards = 0
        self.reordered_chunks = 0
        self.events_read = 0

    def _pull(self) -> bool:
        try:
            item = next(self._chunks)
        except StopIteration:
            self._ended = True
            if self._open_gap is not None:
                self.gaps.append((self._last_t, 2**62, self._open_gap))
            elif not self._clean_end():
                self.gaps.append((self._last_t, 2**62, self._what_end()))
            return False
        if isinstance(item, Gap):
            self._open_gap = self._open_gap or item.reason
            return True
        b = item
        if not len(b):
            return True
        if np.any(np.diff(b.t) < 0):
            order = np.argsort(b.t, kind="stable")
            b = b[order]
            self.reordered_chunks += 1
        if b.t[0] < self._last_t:
            keep = b.t >= self._last_t
            self.dropped_backwards += int(len(b) - keep.sum())
            b = b[keep]
            if not len(b):
                return True
        if self._open_gap is not None:
            self.gaps.append((self._last_t, int(b.t[0]), self._open_gap))
            self._open_gap = None
        if self._first_t is None:
            self._first_t = int(b.t[0])
        self._last_t = int(b.t[-1])
        self.events_read += len(b)
        mapped = self._map(b)
        if len(mapped):
            self._buf.append(mapped)
        return True

    def take(self, t0: int, t1: int) -> EventBatch:
        while not self._ended and self._last_t < t1:
            self._pull()
        for g0, g1, why in self.gaps:
            if g0 < t1 and g1 > t0:
                self._trim(t1)
                if g1 >= 2**61:
                    raise MissingEvents(f"{why}: no events after t={g0} µs")
                raise MissingEvents(f"{why}: events between t={g0} and t={g1} µs are lost")
        if self._ended and self._first_t is None:
            raise MissingEvents("the input holds no readable events")
        parts = [
            b.time_slice(t0, t1) for b in self._buf if len(b) and b.t[-1] >= t0 and b.t[0] < t1
        ]
        self._trim(t1)
        if not parts:
            return EventBatch.empty(np.float32)
        out = EventBatch.concat(parts)
        if out.x.dtype != np.float32:
            out = EventBatch(out.t, out.x.astype(np.float32), out.y.astype(np.float32), out.p)
        return out

    def skip(self, t1: int) -> None:
        """Read past t1 without keeping the events (resuming)."""
        while not self._ended and self._last_t < t1:
            self._pull()
            self._trim(t1)
        self._trim(t1)

    def _trim(self, t_keep: int) -> None:
        kept = []
        for b in self._buf:
            if not len(b) or b.t[-1] < t_keep:
                continue
            if b.t[0] < t_keep:
                b = b.time_slice(t_keep, 2**62)
            kept.append(b)
        self._buf = kept

    def report(self) -> dict[str, Any]:
        return {
            "events_read": self.events_read,
            "events_dropped_going_back_in_time": self.dropped_backwards,
            "chunks_reordered": self.reordered_chunks,
            "event_gaps": [
                {"from_us": a, "to_us": None if b >= 2**61 else b, "reason": why}
                for a, b, why in self.gaps
            ],
        }
