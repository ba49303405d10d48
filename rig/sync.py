"""One clock: map every RGB frame onto the rig clock (the event camera's).

With wiring, the frame camera's exposure-active output puts a trigger edge into the
event stream at every exposure start, and frames are matched to edges by order.
`ClockMapping` is the fitted device->rig line; its residuals tell how good the sync is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from rig.types import Frame


class SyncError(RuntimeError):
    """The frame and event streams cannot be matched; the message says why."""


@dataclass(frozen=True)
class ClockMapping:
    """rig_us = offset_us + scale * device_us."""

    scale: float = 1.0
    offset_us: float = 0.0
    residual_rms_us: float = 0.0
    residual_max_us: float = 0.0
    n: int = 0
    method: str = "identity"

    @property
    def drift_ppm(self) -> float:
        return (self.scale - 1.0) * 1e6

    def to_rig(self, device_us):
        if np.isscalar(device_us):
            return int(round(self.offset_us + self.scale * device_us))
        return np.round(self.offset_us + self.scale * np.asarray(device_us, np.float64)).astype(
            np.int64
        )

    @classmethod
    def fit(cls, device_us: np.ndarray, rig_us: np.ndarray, method: str) -> ClockMapping:
        device_us = np.asarray(device_us, np.float64)
        rig_us = np.asarray(rig_us, np.float64)
        if len(device_us) == 0:
            return cls(method="identity")
        if len(device_us) == 1:
            return cls(1.0, float(rig_us[0] - device_us[0]), 0.0, 0.0, 1, method)
        # Centre before fitting: µs timestamps are large and the slope is close to 1.
        d0, r0 = device_us[0], rig_us[0]
        a, b = np.polyfit(device_us - d0, rig_us - r0, 1)
        resid = (rig_us - r0) - (a * (device_us - d0) + b)
        return cls(
            scale=float(a),
            offset_us=float(r0 + b - a * d0),
            residual_rms_us=float(np.sqrt(np.mean(resid**2))),
            residual_max_us=float(np.max(np.abs(resid))),
            n=len(device_us),
            method=method,
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"drift_ppm": self.drift_ppm}

    @classmethod
    def from_dict(cls, d: dict) -> ClockMapping:
        fields = {
            k: d[k]
            for k in ("scale", "offset_us", "residual_rms_us", "residual_max_us", "n", "method")
            if k in d
        }
        return cls(**fields)


class TriggerSync:
    """Online matching of frames (device clock) to trigger edges (rig clock) by order.

    Frames and edges arrive in separate streams with different latencies; matched
    pairs come out of `pop_matched` with the frame's timestamp replaced by its edge.
    """

    def __init__(self, max_pending: int = 1000) -> None:
        self._triggers: deque[int] = deque()
        self._frames: deque[Frame] = deque()
        self._max_pending = max_pending
        self._pairs_device: list[int] = []
        self._pairs_rig: list[int] = []
        self.matched = 0

    def add_triggers(self, t: np.ndarray) -> None:
        self._triggers.extend(int(v) for v in t)
        if len(self._triggers) > self._max_pending:
            raise SyncError(
                f"{len(self._triggers)} trigger edges arrived without frames: is the frame "
                "camera's exposure-active output wired to the event camera's trigger input, "
                "and is the frame camera running?"
            )

    def add_frame(self, frame: Frame) -> None:
        self._frames.append(frame)
        if len(self._frames) > self._max_pending:
            raise SyncError(
                f"{len(self._frames)} frames arrived without trigger edges: check the sync "
                "cable and that the event camera's trigger detector is enabled, or run "
                "with software sync."
            )

    def pop_matched(self) -> list[Frame]:
        out = []
        while self._frames and self._triggers:
            f = self._frames.popleft()
            t = self._triggers.popleft()
            self._pairs_device.append(f.timestamp_us)
            self._pairs_rig.append(t)
            self.matched += 1
            out.append(Frame(f.image, f.index, t, f.exposure_us))
        return out

    def mapping(self) -> ClockMapping:
        return ClockMapping.fit(np.array(self._pairs_device), np.array(self._pairs_rig), "triggers")
