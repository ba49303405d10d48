"""One clock: map every RGB frame onto the rig clock (the event camera's).

With wiring, the frame camera's exposure-active output puts a trigger edge into the
event stream at every exposure start, and frames are matched to edges by order.
Real wires lose edges (a loose contact, a trigger detector that was busy) and pick up
spurious ones (ringing, a second pulse), so matching by bare order would shift every
later frame by one period. Instead `TriggerSync` predicts each frame's edge from a
running device->rig line fitted to the pairs matched so far and takes the edge nearest
the prediction within a tolerance; a frame whose edge is missing gets the predicted
time, an edge that no frame claims is counted as spurious.

Without a wire, `HostClockSync` ties both streams to the host clock live (a few ms),
and `rig.software_sync.estimate_offset_software` refines the offset (and drift) offline
from the frames and events themselves.

`ClockMapping` is the fitted device->rig line; its residuals tell how good the sync is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

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

    def to_rig_float(self, device_us) -> np.ndarray | float:
        """Unrounded mapping, for predictions and residuals."""
        return self.offset_us + self.scale * np.asarray(device_us, np.float64)

    @classmethod
    def fit(cls, device_us: np.ndarray, rig_us: np.ndarray, method: str) -> ClockMapping:
        device_us = np.asarray(device_us, np.float64)
        rig_us = np.asarray(rig_us, np.float64)
        if len(device_us) == 0:
            return cls(method="identity")
        if len(device_us) == 1 or np.ptp(device_us) == 0:
            off = float(np.mean(rig_us - device_us))
            resid = rig_us - device_us - off
            return cls(
                1.0,
                off,
                float(np.sqrt(np.mean(resid**2))),
                float(np.max(np.abs(resid))),
                len(device_us),
                method,
            )
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


@dataclass(frozen=True)
class SyncReport:
    """How the matching went; goes into session.json via `to_dict`."""

    mapping: ClockMapping
    matched: int = 0
    missing_edges: int = 0
    spurious_edges: int = 0
    frames_pending: int = 0
    triggers_pending: int = 0
    period_us: float | None = None
    tolerance_us: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "method": self.mapping.method,
            "mapping": self.mapping.to_dict(),
            "drift_ppm": self.mapping.drift_ppm,
            "jitter_rms_us": self.mapping.residual_rms_us,
            "jitter_max_us": self.mapping.residual_max_us,
            "matched": self.matched,
            "missing_edges": self.missing_edges,
            "spurious_edges": self.spurious_edges,
            "frames_pending": self.frames_pending,
            "triggers_pending": self.triggers_pending,
            "period_us": self.period_us,
            "tolerance_us": self.tolerance_us,
            "notes": list(self.notes),
        }


class TriggerSync:
    """Online matching of frames (device clock) to trigger edges (rig clock).

    Frames and edges arrive in separate streams with different latencies; matched
    frames come out of `pop_matched`, in order, with the timestamp on the rig clock.

    expected_period_us: the frame period, if known (else estimated from the frames'
    device timestamps). tolerance_us: how far an edge may sit from its prediction
    (default 30 % of the period). fit_window: pairs used for the running line, so slow
    drift changes (temperature) are followed.
    """

    BOOTSTRAP_FRAMES = 8

    def __init__(
        self,
        max_pending: int = 1000,
        expected_period_us: float | None = None,
        tolerance_us: float | None = None,
        fit_window: int = 400,
    ) -> None:
        if expected_period_us is not None and expected_period_us <= 0:
            raise ValueError(f"expected_period_us must be > 0, got {expected_period_us}")
        if tolerance_us is not None and tolerance_us <= 0:
            raise ValueError(f"tolerance_us must be > 0, got {tolerance_us}")
        self._triggers: deque[int] = deque()
        self._frames: deque[Frame] = deque()
        self._max_pending = max_pending
        self._period = expected_period_us
        self._tol_given = tolerance_us
        self._window: deque[tuple[int, int]] = deque(maxlen=max(8, fit_window))
        self._running: ClockMapping | None = None
        self._since_fit = 0
        self._last_trigger = -(2**62)
        self._pairs_device: list[int] = []
        self._pairs_rig: list[int] = []
        self.matched = 0
        self.missing_edges = 0
        self.spurious_edges = 0
        self._notes: list[str] = []

    # -- input ---------------------------------------------------------------------
    def add_triggers(self, t: np.ndarray) -> None:
        for v in np.asarray(t, np.int64).tolist():
            if v < self._last_trigger:
                self._note(f"trigger edges went back in time ({v} after {self._last_trigger})")
                continue
            self._last_trigger = v
            self._triggers.append(v)
        # With a lock, edges are consumed as soon as their frame arrives; without one,
        # a backlog means frames are not coming at all.
        if self._running is None and len(self._triggers) > self._max_pending:
            raise SyncError(
                f"{len(self._triggers)} trigger edges arrived without frames: is the frame "
                "camera's exposure-active output wired to the event camera's trigger input, "
                "and is the frame camera running?"
            )

    def observe_events(self, t_last_us: int) -> None:
        """Trigger sync needs nothing from the events themselves."""

    def add_frame(self, frame: Frame) -> None:
        if self._frames and frame.timestamp_us <= self._frames[-1].timestamp_us:
            raise SyncError(
                f"frame {frame.index} has device time {frame.timestamp_us} µs, not after the "
                f"previous frame ({self._frames[-1].timestamp_us} µs): the frame camera's "
                "timestamps are not usable (chunk timestamps off, or host time stepped?)"
            )
        self._frames.append(frame)
        if len(self._frames) > self._max_pending:
            raise SyncError(
                f"{len(self._frames)} frames arrived without trigger edges: check the sync "
                "cable and that the event camera's trigger detector is enabled, or run "
                "with software sync."
            )

    # -- matching ------------------------------------------------------------------
    @property
    def period_us(self) -> float | None:
        return self._period

    @property
    def tolerance_us(self) -> float | None:
        if self._tol_given is not None:
            return self._tol_given
        return None if self._period is None else 0.3 * self._period

    def _note(self, msg: str) -> None:
        if msg not in self._notes and len(self._notes) < 20:
            self._notes.append(msg)

    def _estimate_period(self) -> None:
        if self._period is None and len(self._frames) >= 3:
            d = np.diff([f.timestamp_us for f in self._frames])
            # The smallest common gap is the period; dropped frames only make gaps longer.
            self._period = float(np.median(d[d <= np.percentile(d, 50) * 1.5]))

    def _bootstrap(self) -> bool:
        """Find the first frame<->edge pairing by voting: try pairing each of the first
        frames with each of the first edges and keep the offset most frames agree on."""
        self._estimate_period()
        k = min(self.BOOTSTRAP_FRAMES, len(self._frames))
        if self._period is None or k < 3:
            return False
        tol = self.tolerance_us
        dev = np.array([f.timestamp_us for f in list(self._frames)[:k]], np.float64)
        trig = np.array(self._triggers, np.float64)
        if len(trig) == 0 or trig[-1] < trig[0] + (dev[-1] - dev[0]):
            return False  # the edges for these frames have not all arrived yet
        best = None
        for i in range(min(4, k)):
            for j in range(min(6, len(trig))):
                off = trig[j] - dev[i]
                pred = dev + off
                idx = np.clip(np.searchsorted(trig, pred), 1, len(trig) - 1)
                near = np.minimum(np.abs(trig[idx] - pred), np.abs(trig[idx - 1] - pred))
                votes = int(np.sum(near <= tol))
                if best is None or votes > best[0]:
                    best = (votes, off)
        if best is None or best[0] < max(3, (k + 1) // 2):
            return False
        self._running = ClockMapping(1.0, best[1], n=0, method="bootstrap")
        return True

    def _refit(self) -> None:
        if len(self._window) < 2:
            return
        d, r = zip(*self._window, strict=True)
        m = ClockMapping.fit(np.array(d), np.array(r), "running")
        if len(self._window) < 20:
            # Few pairs: keep the slope at 1 until they span enough time to trust it.
            off = float(np.mean(np.array(r, np.float64) - np.array(d, np.float64)))
            m = ClockMapping(1.0, off, n=len(self._window), method="running")
        self._running = m

    def pop_matched(self) -> list[Frame]:
        out: list[Frame] = []
        if self._running is None and not self._bootstrap():
            self._check_bootstrap_stuck()
            return out
        tol = self.tolerance_us
        assert tol is not None and self._running is not None
        while self._frames:
            f = self._frames[0]
            pred = float(self._running.to_rig_float(f.timestamp_us))
            if self._last_trigger < pred + tol:
                # An edge close to the prediction settles it now; otherwise a nearer
                # edge, or the evidence that the edge is missing, could still arrive.
                if not any(abs(t - pred) <= tol / 3 for t in self._triggers):
                    break
            while self._triggers and self._triggers[0] < pred - tol:
                self._triggers.popleft()
                self.spurious_edges += 1
            best_i, best_d = -1, tol
            for i, t in enumerate(self._triggers):  # nearest edge within the tolerance
                if t > pred + tol:
                    break
                if abs(t - pred) <= best_d:
                    best_i, best_d = i, abs(t - pred)
            self._frames.popleft()
            if best_i < 0:
                self.missing_edges += 1
                rig_t = int(round(pred))
            else:
                for _ in range(best_i):  # edges skipped over for a nearer one
                    self._triggers.popleft()
                    self.spurious_edges += 1
                rig_t = self._triggers.popleft()
                self._window.append((f.timestamp_us, rig_t))
                self._pairs_device.append(f.timestamp_us)
                self._pairs_rig.append(rig_t)
                self.matched += 1
                self._since_fit += 1
                if len(self._window) < 50 or self._since_fit >= 10:
                    self._refit()
                    self._since_fit = 0
                    if self.matched % 200 == 0:
                        self.check()
            out.append(Frame(f.image, f.index, rig_t, f.exposure_us))
        return out

    def check(self) -> None:
        """Raise SyncError when the matching so far is not believable: most frames
        without an edge, or edges scattered over the tolerance window instead of
        sitting on the predicted line (random edges, a wrong signal on the wire)."""
        total = self.matched + self.missing_edges
        if total < 20:
            return
        if self.missing_edges > 0.5 * total:
            raise SyncError(
                f"{self.missing_edges} of {total} frames found no trigger edge: the edges do "
                "not follow the frames (wrong signal on the trigger input, or a different "
                "frame rate?)"
            )
        m = self.mapping()
        tol = self.tolerance_us or 0.0
        if m.residual_rms_us > tol / 4:
            raise SyncError(
                f"trigger edges scatter by {m.residual_rms_us:.0f} µs rms around the fitted "
                f"clock line (tolerance {tol:.0f} µs): they are not the frame camera's "
                "exposure edges; check the wiring or use software sync"
            )

    def flush(self) -> list[Frame]:
        """End of recording: no more edges will come, so settle the frames still
        waiting (a frame without an edge gets the predicted time)."""
        self._last_trigger = 2**62
        return self.pop_matched()

    def _check_bootstrap_stuck(self) -> None:
        if len(self._frames) >= 4 * self.BOOTSTRAP_FRAMES and len(self._triggers) >= 4 * (
            self.BOOTSTRAP_FRAMES
        ):
            raise SyncError(
                f"cannot match {len(self._frames)} frames to {len(self._triggers)} trigger "
                f"edges: their spacing disagrees (frame period {self._period} µs). Is the "
                "trigger wired to this camera's exposure output, and are the edges the "
                "rising ones?"
            )

    # -- results -------------------------------------------------------------------
    def mapping(self) -> ClockMapping:
        return ClockMapping.fit(np.array(self._pairs_device), np.array(self._pairs_rig), "triggers")

    def report(self) -> SyncReport:
        return SyncReport(
            mapping=self.mapping(),
            matched=self.matched,
            missing_edges=self.missing_edges,
            spurious_edges=self.spurious_edges,
            frames_pending=len(self._frames),
            triggers_pending=len(self._triggers),
            period_us=self._period,
            tolerance_us=self.tolerance_us,
            notes=tuple(self._notes),
        )

    def to_dict(self) -> dict:
        return self.report().to_dict()


def match_triggers(
    frames: Sequence[Frame],
    triggers_us: np.ndarray,
    expected_period_us: float | None = None,
) -> tuple[list[Frame], SyncReport]:
    """Offline matching of a whole recording: frames on the rig clock plus the report.
    Frames after the last edge get mapped times only when edges follow them."""
    sync = TriggerSync(
        max_pending=len(frames) + len(triggers_us) + 1, expected_period_us=expected_period_us
    )
    sync.add_triggers(np.asarray(triggers_us, np.int64))
    for f in frames:
        sync.add_frame(f)
    out = sync.pop_matched() + sync.flush()
    if not out and len(frames) >= 3:
        raise SyncError(
            f"none of {len(frames)} frames could be matched to {len(triggers_us)} trigger "
            "edges: check the wiring, or use software sync"
        )
    sync.check()
    return out, sync.report()


class HostClockSync:
    """Live sync without a wire: both streams are tied to this computer's clock.

    Every event read tells us "the event clock was at least t_last when the host
    clock read h"; every frame tells us "device time d arrived at host time h". The
    smallest (clock - host) differences seen are the ones with the least transport
    latency, so their running minima give the two offsets, and frames map onto the
    rig clock through the host clock. Good to a few milliseconds (USB/network
    latency jitter); `rig.software_sync.estimate_offset_software` refines it offline from the data
    (`slomo-rig sync SESSION`).
    Same interface as TriggerSync, so the capture node does not care which it has.
    """

    MIN_OBSERVATIONS = 3

    def __init__(self, host_clock=None) -> None:
        import time as _time

        self._host = host_clock or (lambda: _time.monotonic_ns() // 1000)
        self._rig_minus_host: float | None = None
        self._host_minus_device: float | None = None
        self._event_obs = 0
        self._frames: deque[Frame] = deque()
        self._pairs_device: list[int] = []
        self._pairs_rig: list[int] = []
        self.matched = 0
        self.ignored_triggers = 0

    def observe_events(self, t_last_us: int) -> None:
        # Events arrive after they happen: event clock - host clock is largest for the
        # freshest delivery, so keep the running maximum.
        d = float(t_last_us - self._host())
        self._rig_minus_host = d if self._rig_minus_host is None else max(self._rig_minus_host, d)
        self._event_obs += 1

    def add_triggers(self, t: np.ndarray) -> None:
        self.ignored_triggers += len(t)

    def add_frame(self, frame: Frame) -> None:
        # Frames also arrive after their exposure start: host - device is smallest for
        # the quickest delivery.
        d = float(self._host() - frame.timestamp_us)
        self._host_minus_device = (
            d if self._host_minus_device is None else min(self._host_minus_device, d)
        )
        self._frames.append(frame)

    def _ready(self) -> bool:
        return self._event_obs >= self.MIN_OBSERVATIONS and self._host_minus_device is not None

    def pop_matched(self) -> list[Frame]:
        out: list[Frame] = []
        if not self._ready():
            return out
        assert self._rig_minus_host is not None and self._host_minus_device is not None
        offset = self._rig_minus_host + self._host_minus_device
        while self._frames:
            f = self._frames.popleft()
            rig_t = int(round(f.timestamp_us + offset))
            self._pairs_device.append(f.timestamp_us)
            self._pairs_rig.append(rig_t)
            self.matched += 1
            out.append(Frame(f.image, f.index, rig_t, f.exposure_us))
        return out

    def flush(self) -> list[Frame]:
        return self.pop_matched()

    def mapping(self) -> ClockMapping:
        m = ClockMapping.fit(np.array(self._pairs_device), np.array(self._pairs_rig), "host-clock")
        return m

    def to_dict(self) -> dict:
        return {
            "method": "host-clock",
            "matched": self.matched,
            "frames_pending": len(self._frames),
            "ignored_triggers": self.ignored_triggers,
            "note": "software sync through the host clock: expect a few ms of error",
        }
