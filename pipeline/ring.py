"""Bounded buffers between threads, with an explicit overflow policy and counters.

Which policy goes where is a design decision, so it is always stated at construction:
- "drop_oldest": live views (the inference path): the newest data matters most.
- "drop_newest": keep what is queued, refuse new items (reported to the caller).
- "block": lossless paths (raw recording): the producer waits; `put` with a timeout
  raises `RingFull` so a stalled consumer becomes a clear error, never silent loss.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
OverflowPolicy = Literal["drop_oldest", "drop_newest", "block"]


class RingFull(RuntimeError):
    """A blocking ring stayed full for longer than the producer may wait."""


class RingClosed(RuntimeError):
    """The ring was closed and is empty."""


@dataclass
class RingCounters:
    pushed: int = 0
    popped: int = 0
    dropped: int = 0
    high_water: int = 0


class RingBuffer(Generic[T]):
    def __init__(self, capacity: int, policy: OverflowPolicy) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        if policy not in ("drop_oldest", "drop_newest", "block"):
            raise ValueError(f"unknown overflow policy {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self.counters = RingCounters()
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout_s: float | None = None) -> bool:
        """Add an item; returns False if it was refused (drop_newest when full)."""
        with self._cond:
            if self._closed:
                raise RingClosed("put on a closed ring")
            if len(self._items) >= self.capacity:
                if self.policy == "drop_oldest":
                    self._items.popleft()
                    self.counters.dropped += 1
                elif self.policy == "drop_newest":
                    self.counters.dropped += 1
                    return False
                elif not self._cond.wait_for(
                    lambda: len(self._items) < self.capacity or self._closed, timeout_s
                ):
                    raise RingFull(
                        f"ring of {self.capacity} items stayed full for {timeout_s} s: "
                        "the consumer is stalled"
                    )
                if self._closed:
                    raise RingClosed("ring closed while waiting to put")
            self._items.append(item)
            self.counters.pushed += 1
            self.counters.high_water = max(self.counters.high_water, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float | None = None) -> T | None:
        """Oldest item, or None after the timeout; RingClosed once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout_s):
                return None
            if not self._items:
                raise RingClosed("ring closed")
            item = self._items.popleft()
            self.counters.popped += 1
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts; gets drain what is left, then raise RingClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
