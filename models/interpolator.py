"""One interface for every interpolation method, so the worker, replay, eval and bench
treat TimeLens and the classical baselines alike."""

from __future__ import annotations

import abc

import numpy as np

from contracts.jobs import IntervalJob


class Interpolator(abc.ABC):
    name: str = "?"

    @abc.abstractmethod
    def interpolate(self, job: IntervalJob) -> np.ndarray:
        """Frames at job.timestamps_us: [N, H, W, 3] uint8 RGB."""
