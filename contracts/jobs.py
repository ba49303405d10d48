"""The unit of work: one interval between two consecutive keyframes.

Intervals are independent, so any number of workers can take them in any order and
replay can run them faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rig.types import EventBatch


@dataclass(frozen=True)
class IntervalJob:
    """Two keyframes and the events between them, already in the keyframes' pixel grid.

    t0_us / t1_us are the keyframes' times on the rig clock (mid-exposure).
    events: x, y float32 sub-pixel positions in the RGB grid, t within [t0_us, t1_us).
    timestamps_us: the instants to synthesise, strictly inside (t0_us, t1_us), sorted.
    """

    index: int
    frame0: np.ndarray
    frame1: np.ndarray
    t0_us: int
    t1_us: int
    events: EventBatch
    timestamps_us: np.ndarray

    def __post_init__(self) -> None:
        if self.frame0.shape != self.frame1.shape or self.frame0.ndim != 3:
            raise ValueError(
                f"interval {self.index}: keyframes must be HxWx3 and equal in shape, "
                f"got {self.frame0.shape} and {self.frame1.shape}"
            )
        if self.frame0.dtype != np.uint8 or self.frame1.dtype != np.uint8:
            raise ValueError(f"interval {self.index}: keyframes must be uint8")
        if not self.t0_us < self.t1_us:
            raise ValueError(
                f"interval {self.index}: t0_us={self.t0_us} must be before t1_us={self.t1_us}"
            )
        ts = self.timestamps_us
        if len(ts) and (ts[0] <= self.t0_us or ts[-1] >= self.t1_us or np.any(np.diff(ts) <= 0)):
            raise ValueError(
                f"interval {self.index}: timestamps_us must be sorted and inside (t0, t1)"
            )

    @property
    def taus(self) -> np.ndarray:
        """Normalised positions of the inserted frames, in (0, 1)."""
        return (self.timestamps_us - self.t0_us) / float(self.t1_us - self.t0_us)

    @property
    def height(self) -> int:
        return self.frame0.shape[0]

    @property
    def width(self) -> int:
        return self.frame0.shape[1]


def inserted_timestamps(t0_us: int, t1_us: int, factor: int) -> np.ndarray:
    """The factor-1 evenly spaced instants inside (t0, t1) for factor-times slow motion."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    k = np.arange(1, factor, dtype=np.int64)
    return t0_us + (k * (t1_us - t0_us)) // factor


@dataclass(frozen=True)
class IntervalResult:
    """What a worker sends back: frames [N,H,W,3] uint8 RGB at job.timestamps_us."""

    index: int
    timestamps_us: np.ndarray
    frames: np.ndarray
    model: str
    compute_s: float
