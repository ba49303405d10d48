"""Data that flows from the sensors through the pipeline.

All timestamps are int64 microseconds. Events and triggers are on the rig clock
(the event camera's). A `Frame` from a source carries its own camera's clock until
`rig.sync` maps it; the capture node replaces the timestamps then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EventBatch:
    """Events as columns, so slicing, mapping and the wire stay zero-copy.

    x and y are int16 pixel indices on the sensor that produced them, or float32
    sub-pixel positions once mapped into another camera's grid.
    p is int8 in {0, 1} (0 = OFF / darker, 1 = ON / brighter).
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.t)
        if not (len(self.x) == len(self.y) == len(self.p) == n):
            raise ValueError(
                f"EventBatch columns differ in length: t={n} x={len(self.x)} "
                f"y={len(self.y)} p={len(self.p)}"
            )
        if self.t.dtype != np.int64:
            raise ValueError(f"EventBatch.t must be int64 microseconds, got {self.t.dtype}")

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls, xy_dtype: type = np.int16) -> EventBatch:
        return cls(
            np.empty(0, np.int64),
            np.empty(0, xy_dtype),
            np.empty(0, xy_dtype),
            np.empty(0, np.int8),
        )

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.t for b in batches]),
            np.concatenate([b.x for b in batches]),
            np.concatenate([b.y for b in batches]),
            np.concatenate([b.p for b in batches]),
        )

    def time_slice(self, t_start: int, t_end: int) -> EventBatch:
        """Events with t_start <= t < t_end; assumes t is sorted (sources guarantee it)."""
        i0, i1 = np.searchsorted(self.t, [t_start, t_end], side="left")
        return self[i0:i1]

    def __getitem__(self, index: slice | np.ndarray) -> EventBatch:
        return EventBatch(self.t[index], self.x[index], self.y[index], self.p[index])

    @property
    def nbytes(self) -> int:
        return self.t.nbytes + self.x.nbytes + self.y.nbytes + self.p.nbytes


@dataclass(frozen=True)
class EventSlice:
    """What an event source returns from one read: events plus the trigger edges
    that arrived with them (rising edges, rig clock)."""

    events: EventBatch
    triggers: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


@dataclass(frozen=True)
class Frame:
    """One RGB image. `timestamp_us` is the start of the exposure.

    image is HxWx3 uint8 in RGB order (not OpenCV's BGR).
    """

    image: np.ndarray
    index: int
    timestamp_us: int
    exposure_us: int

    @property
    def exposure_end_us(self) -> int:
        return self.timestamp_us + self.exposure_us

    @property
    def mid_exposure_us(self) -> int:
        return self.timestamp_us + self.exposure_us // 2
