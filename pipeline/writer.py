"""The ordered writer, shared by the live recorder and offline replay: keyframes and
interpolated frames go out in time order, every interval either with its frames or
listed as skipped with the reason, never both and never twice.

Interval k lies between keyframe k and keyframe k+1. Keyframe k and interval k are
written once keyframe k+1 is known and interval k is settled (its frames came, it was
skipped, or it timed out); the last keyframe is written alone. The writer starts at any
keyframe (a resumed replay starts where the last commit left off) and can be forced to
write what is still unsettled (the recording is over and its drain time spent).

Where frames go is an ``Output``; the writer only decides the order and counts.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.outputs import Output


@dataclass
class IntervalState:
    """What is known about one interval: "pending" (sent, no answer yet), "done"
    (frames came) or "skipped" (with the reason)."""

    status: str
    since: float
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    reason: str = ""
    model: str = ""


@dataclass
class WriterCounts:
    """What has been written, in order; a resumed writer starts from the saved counts."""

    next_keyframe: int = 0
    original: int = 0
    interpolated: int = 0
    intervals_done: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    last_written: bool = False  # the last keyframe is out: nothing follows

    @property
    def frames(self) -> int:
        return self.original + self.interpolated

    def to_dict(self) -> dict[str, Any]:
        return {
            "next_keyframe": self.next_keyframe,
            "original": self.original,
            "interpolated": self.interpolated,
            "intervals_done": self.intervals_done,
            "skipped": list(self.skipped),
            "last_written": self.last_written,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WriterCounts:
        return cls(
            int(d["next_keyframe"]),
            int(d["original"]),
            int(d["interpolated"]),
            int(d["intervals_done"]),
            list(d["skipped"]),
            bool(d["last_written"]),
        )


@dataclass
class _Key:
    image: np.ndarray
    t_us: int
    label: int  # the frame's number in the recording (replay: in the input file)


class OrderedWriter:
    """Ordering and counting; ``write_ready`` hands frames to the output in time order.

    job_timeout_s: a pending interval with no answer after this long is written as
    skipped (None: wait forever, as replay does: its dispatcher reports losses itself).
    """

    def __init__(
        self,
        output: Output,
        counts: WriterCounts | None = None,
        job_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.counts = counts or WriterCounts()
        self.job_timeout_s = job_timeout_s
        self.clock = clock
        self.keyframes: dict[int, _Key] = {}
        self.intervals: dict[int, IntervalState] = {}
        self.last_keyframe: int | None = None  # known once the capture side says "end"
        self.late_results = 0
        self.models: set[str] = set()

    @property
    def next_keyframe(self) -> int:
        return self.counts.next_keyframe

    # -- what the producer says ---------------------------------------------------------
    def keyframe(self, k: int, image: np.ndarray, t_us: int, label: int | None = None) -> None:
        if k < self.counts.next_keyframe or k in self.keyframes:
            return  # already written (a resumed run reads it again) or known
        self.keyframes[k] = _Key(image, int(t_us), k if label is None else label)

    def pending(self, k: int) -> None:
        """Interval k was sent for interpolation."""
        if k >= self.counts.next_keyframe:
            self.intervals.setdefault(k, IntervalState("pending", self.clock()))

    def skip(self, k: int, reason: str) -> None:
        """Interval k gets no frames (a result that already came is kept)."""
        prev = self.intervals.get(k)
        if k >= self.counts.next_keyframe and (prev is None or prev.status == "pending"):
            self.intervals[k] = IntervalState("skipped", self.clock(), reason=reason)

    def result(self, k: int, frames: np.ndarray, timestamps: np.ndarray, model: str = "") -> bool:
        """Frames for interval k; False (and counted) when it was already written or
        settled without them."""
        prev = self.intervals.get(k)
        if k < self.counts.next_keyframe or (prev is not None and prev.status != "pending"):
            self.late_results += 1
            return False
        self.intervals[k] = IntervalState("done", self.clock(), frames, timestamps, model=model)
        if model:
            self.models.add(model)
        return True

    def end(self, last_keyframe: int) -> None:
        """Keyframe last_keyframe is the last one (-1: there were none)."""
        self.last_keyframe = last_keyframe

    def expire(self) -> None:
        if self.job_timeout_s is None:
            return
        now = self.clock()
        for iv in self.intervals.values():
            if iv.status == "pending" and now - iv.since > self.job_timeout_s:
                iv.status = "skipped"
                iv.reason = f"no result within {self.job_timeout_s:g} s (worker lost or too slow)"

    # -- writing ------------------------------------------------------------------------
    def write_ready(self, force: bool = False) -> int:
        """Write keyframe k and interval k as soon as both are settled, in order; returns
        how many frames went out. force: whatever is still unsettled is written as
        skipped (the recording is over)."""
        c = self.counts
        before = c.frames
        while not c.last_written:
            k = c.next_keyframe
            key = self.keyframes.get(k)
            if key is None:
                break
            is_last = self.last_keyframe is not None and k >= self.last_keyframe
            nxt = self.keyframes.get(k + 1)
            iv = self.intervals.get(k)
            if not is_last and nxt is None and not force:
                break
            if not is_last and nxt is not None and (iv is None or iv.status == "pending"):
                if not force:
                    break
                iv = IntervalState("skipped", 0.0, reason="recording ended before its result")
            self.output.write(key.image, key.t_us, "original")
            c.original += 1
            del self.keyframes[k]
            self.intervals.pop(k, None)
            c.next_keyframe = k + 1
            if is_last or nxt is None:  # the last, or the next never came (cut off)
                c.last_written = True
                break
            assert iv is not None
            if iv.status == "done" and iv.frames is not None and iv.timestamps is not None:
                for frame, ts in zip(iv.frames, iv.timestamps, strict=True):
                    self.output.write(frame, int(ts), "interpolated")
                c.interpolated += len(iv.frames)
                c.intervals_done += 1
            else:
                c.skipped.append(
                    {
                        "index": k,
                        "interval": k,
                        "frames": [key.label, nxt.label],
                        "t0_us": key.t_us,
                        "t1_us": nxt.t_us,
                        "reason": iv.reason,
                    }
                )
        return c.frames - before

    @property
    def intervals_written(self) -> int:
        c = self.counts
        return c.next_keyframe - 1 if c.last_written else c.next_keyframe

    @property
    def finished(self) -> bool:
        last = self.last_keyframe
        return self.counts.last_written or (last is not None and self.next_keyframe > last)

    def held(self) -> int:
        """Keyframes and intervals held in memory, waiting for their turn."""
        return len(self.keyframes) + len(self.intervals)


class WriterThread(threading.Thread):
    """Runs an OrderedWriter on its own thread, so encoding overlaps reading and
    interpolation (replay). Calls are queued in order; ``after_write`` runs on the
    writer thread after every batch of frames (replay commits there). The first error
    stops writing; it is kept in ``error`` and the producer is never blocked by it."""

    def __init__(
        self, writer: OrderedWriter, after_write: Callable[[OrderedWriter], None] | None = None
    ) -> None:
        super().__init__(name="ordered-writer", daemon=True)
        self.writer = writer
        self.after_write = after_write
        self.q: queue.Queue = queue.Queue(maxsize=16)
        self.error: BaseException | None = None

    def call(self, method: str, *args: Any) -> None:
        """Queue writer.method(*args); raises the writer's error if it failed."""
        if self.error is not None:
            raise self.error
        self.q.put((method, args))

    def finish(self) -> None:
        """Write what is settled, stop the thread and wait for it."""
        self.q.put(None)
        self.join()

    def run(self) -> None:
        try:
            while (item := self.q.get()) is not None:
                method, args = item
                getattr(self.writer, method)(*args)
                if self.writer.write_ready() and self.after_write is not None:
                    self.after_write(self.writer)
        except BaseException as exc:  # handed to the producer
            self.error = exc
            while self.q.get() is not None:  # keep the producer from blocking forever
                pass


class CommitTally(Output):
    """Counts, per source, the frames an output has committed (its ``commit`` says how
    many of the frames written, in order, are durable)."""

    def __init__(self, inner: Output) -> None:
        self.inner = inner
        self._uncommitted: deque[str] = deque()
        self.committed = {"original": 0, "interpolated": 0}

    @property
    def frames_written(self) -> int:  # type: ignore[override]
        return self.inner.frames_written

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        self.inner.write(image, timestamp_us, source)
        self._uncommitted.append(source)

    def _settle(self, durable: int) -> int:
        done = sum(self.committed.values())
        for _ in range(max(0, durable - done)):
            if not self._uncommitted:
                break
            self.committed[self._uncommitted.popleft()] += 1
        return sum(self.committed.values())

    def commit(self) -> int:
        return self._settle(self.inner.commit())

    def close(self) -> None:
        self.inner.close()
        self._settle(self.inner.frames_written)
