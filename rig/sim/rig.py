"""The simulated rig: an RGB camera and an event camera looking at one procedural scene.

The rig clock is the event camera's clock and is the true time of the scene; it starts
at 0. The RGB camera's exposure-active output is "wired" to the event camera, so every
exposure start appears as a trigger edge on the rig clock, while the frames themselves
carry the RGB camera's own clock:

    device_us = round((rig_us - clock_offset_us) * (1 + clock_drift_ppm * 1e-6))
    rig_us    = device_us / (1 + clock_drift_ppm * 1e-6) + clock_offset_us   (inverse)

That gives the sync code a real offset and drift to recover, with the exact answer
available from `frame_device_to_rig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rig.sim.config import SimConfig
from rig.sim.events import EventEmulator
from rig.sim.scene import Scene
from rig.types import EventBatch, Frame

FIRST_EXPOSURE_US = 1000
GAMMA = 1 / 2.2


def side_by_side_homography(frame_size: tuple[int, int], event_size: tuple[int, int]) -> np.ndarray:
    """A plausible fixed event<-RGB homography for two cameras side by side looking at a
    far plane: scale 0.95, 1 degree roll, a few pixels of shift, mild perspective."""
    fw, fh = frame_size
    ew, eh = event_size
    to_centre = np.array([[1, 0, -(fw - 1) / 2], [0, 1, -(fh - 1) / 2], [0, 0, 1]], np.float64)
    a = math.radians(1.0)
    rot_scale = np.array(
        [
            [0.95 * math.cos(a), -0.95 * math.sin(a), 0],
            [0.95 * math.sin(a), 0.95 * math.cos(a), 0],
            [0, 0, 1],
        ]
    )
    persp = np.array([[1, 0, 0], [0, 1, 0], [8e-5, -5e-5, 1]], np.float64)
    back = np.array([[1, 0, (ew - 1) / 2 + 6.0], [0, 1, (eh - 1) / 2 - 4.0], [0, 0, 1]], np.float64)
    h = back @ persp @ rot_scale @ to_centre
    return h / h[2, 2]


_LUT_SIZE = 1 << 14
_GAMMA_LUT = np.round(np.linspace(0.0, 1.0, _LUT_SIZE) ** GAMMA * 255.0).astype(np.uint8)


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> gamma-encoded uint8, the camera's simple output transfer
    (a 16k-entry table: np.power on every pixel costs more than the render)."""
    q = np.clip(linear * (_LUT_SIZE - 1) + 0.5, 0, _LUT_SIZE - 1).astype(np.uint16)
    return _GAMMA_LUT[q]


@dataclass
class SimStep:
    """What one `advance` produced: events (event-sensor pixels, rig clock), trigger
    rising edges (rig clock) and the frames whose exposure ended (RGB camera clock)."""

    events: EventBatch
    triggers: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    frames: list[Frame] = field(default_factory=list)


class SimulatedRig:
    """Deterministic for a given config: the same seed gives the same events and frames
    however `advance` is chunked (the scene is rendered on a fixed step grid)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        cfg = self.config
        if cfg.event_view == "same_sensor":
            self.h_frame_to_event = np.eye(3)
        else:
            self.h_frame_to_event = side_by_side_homography(cfg.frame_size, cfg.event_size)
        self.h_event_to_frame = np.linalg.inv(self.h_frame_to_event)
        self.h_event_to_frame /= self.h_event_to_frame[2, 2]
        self.scene = Scene(
            cfg.seed,
            cfg.frame_size,
            self._world_bounds(),
            cfg.pan_speed,
            cfg.n_objects,
            cfg.object_speed,
            cfg.rotation_speed,
            cfg.step_us,
            camera_shake=cfg.camera_shake,
            object_swing=cfg.object_swing,
        )
        self._batch_anchor = -1
        self._batch = np.empty(0, np.float32)
        self.emulator = EventEmulator(
            cfg.event_size,
            np.random.default_rng([cfg.seed, 0xE7E7]),
            cfg.contrast_threshold,
            cfg.threshold_sigma,
            cfg.refractory_us,
            cfg.noise_rate_hz,
        )
        self._drift = 1.0 + cfg.clock_drift_ppm * 1e-6
        self._max_speed_px_per_us = self.scene.max_speed_px_per_s() * 1e-6
        self._now = 0  # rig time up to which everything was handed out
        self._grid = 0  # last rendered step time
        self._pending = EventBatch.empty()
        self._next_frame = 0
        self._next_trigger = 0
        self.events_emitted = 0
        self.frames_emitted = 0
        self.triggers_emitted = 0
        self.emulator.reset(self._event_view_on_grid(0), 0)

    def _world_bounds(self) -> tuple[float, float, float, float]:
        """World rectangle seen by either camera (the event view reaches past the RGB one)."""
        fw, fh = self.config.frame_size
        ew, eh = self.config.event_size
        corners = np.array([[0, 0, 1], [ew, 0, 1], [0, eh, 1], [ew, eh, 1]], np.float64)
        inv = np.linalg.inv(self.h_frame_to_event)
        p = corners @ inv.T
        xs = np.concatenate([p[:, 0] / p[:, 2], [0, fw]])
        ys = np.concatenate([p[:, 1] / p[:, 2], [0, fh]])
        return float(xs.min()) - 2, float(ys.min()) - 2, float(xs.max()) + 2, float(ys.max()) + 2

    # -- clocks ------------------------------------------------------------------------
    @property
    def time_us(self) -> int:
        """Rig time up to which `advance` has run."""
        return self._now

    def frame_rig_to_device(self, rig_us):
        """The RGB camera's clock reading at rig time rig_us (see the module docstring)."""
        cfg = self.config
        v = (np.asarray(rig_us, np.float64) - cfg.clock_offset_us) * self._drift
        return int(round(float(v))) if np.isscalar(rig_us) else np.round(v).astype(np.int64)

    def frame_device_to_rig(self, device_us):
        """Exact inverse of frame_rig_to_device (up to its rounding): ground truth for sync."""
        v = np.asarray(device_us, np.float64) / self._drift + self.config.clock_offset_us
        return int(round(float(v))) if np.isscalar(device_us) else np.round(v).astype(np.int64)

    def exposure_start_us(self, index: int) -> int:
        """Rig time at which frame `index` starts exposing."""
        return FIRST_EXPOSURE_US + int(round(index * self.config.frame_period_us))

    # -- rendering ---------------------------------------------------------------------
    def render_frame_view(self, t_us: float) -> np.ndarray:
        """Linear RGB float32 HxWx3 of the RGB camera's view at rig time t_us."""
        return self.scene.render(t_us, self.config.frame_size, np.eye(3))

    def render_event_view(self, t_us: int) -> np.ndarray:
        """Linear luminance float32 HxW of the event camera's view at rig time t_us:
        on the step grid, exactly the image the events were generated from."""
        step = self.config.step_us
        if t_us % step == 0:
            return self._event_view_on_grid(int(t_us) // step, cache=False).copy()
        return self.scene.render_gray(t_us, self.config.event_size, self.h_frame_to_event)

    def _event_view_on_grid(self, k: int, cache: bool = True) -> np.ndarray:
        """Event view at step k, from a batch of Scene.BATCH steps rendered at once."""
        n = self.scene.BATCH
        anchor = k - k % n
        if anchor == self._batch_anchor:
            return self._batch[k % n]
        batch = self.scene.render_gray_batch(
            anchor * self.config.step_us, self.config.event_size, self.h_frame_to_event
        )
        if cache:
            self._batch_anchor, self._batch = anchor, batch
        return batch[k % n]

    def ground_truth(self, t_us: int) -> np.ndarray:
        """Sharp RGB uint8 HxWx3 frame at rig time t_us, encoded like the camera's frames:
        what an ideal interpolator should produce at that instant."""
        return encode(self.render_frame_view(t_us))

    def _expose(self, start_us: int) -> np.ndarray:
        """Mean of renders over the exposure (midpoint rule, in linear light, then
        encoded): real motion blur. Samples are spaced so that nothing in the scene
        moves more than half a pixel between two of them (finer buys nothing visible)."""
        exp = self.config.exposure_us
        n = max(1, math.ceil(exp * self._max_speed_px_per_us / 0.5))
        size, eye = self.config.frame_size, np.eye(3)
        acc = self.scene.render_rgba(start_us + 0.5 * exp / n, size, eye)
        for j in range(1, n):
            acc += self.scene.render_rgba(start_us + (j + 0.5) * exp / n, size, eye)
        return encode(acc[..., :3] * (1.0 / n))

    # -- stepping ----------------------------------------------------------------------
    def advance(self, until_us: int) -> SimStep:
        """Run the rig up to rig time until_us and return everything produced in
        [previous until_us, until_us): events, trigger edges, and frames whose exposure
        ended at or before until_us."""
        until_us = int(until_us)
        if until_us < self._now:
            raise ValueError(f"advance: until_us={until_us} is before the rig time {self._now}")
        step = self.config.step_us
        block = self.scene.BATCH * step
        chunks = [self._pending]
        while self._grid < until_us:
            if self._grid % block == 0:  # noise per fixed block: same stream however chunked
                chunks.append(self.emulator.noise(self._grid, self._grid + block))
            t1 = self._grid + step
            chunks.append(self.emulator.step(self._event_view_on_grid(t1 // step), t1))
            self._grid = t1
        events = EventBatch.concat(chunks)
        if len(events) > len(self._pending):
            events = events[np.argsort(events.t, kind="stable")]
        cut = int(np.searchsorted(events.t, until_us, side="left"))
        out_events, self._pending = events[:cut], events[cut:]

        triggers = []
        while self.exposure_start_us(self._next_trigger) < until_us:
            triggers.append(self.exposure_start_us(self._next_trigger))
            self._next_trigger += 1
        frames = []
        while True:
            start = self.exposure_start_us(self._next_frame)
            if start + self.config.exposure_us > until_us:
                break
            frames.append(
                Frame(
                    image=self._expose(start),
                    index=self._next_frame,
                    timestamp_us=self.frame_rig_to_device(start),
                    exposure_us=self.config.exposure_us,
                )
            )
            self._next_frame += 1
        self._now = until_us
        self.events_emitted += len(out_events)
        self.triggers_emitted += len(triggers)
        self.frames_emitted += len(frames)
        return SimStep(out_events, np.array(triggers, np.int64), frames)

    def sources(self, chunk_us: int = 10_000, duration_s: float | None = None):
        """An event source and a frame source sharing this rig (see rig.sim.sources)."""
        from rig.sim.sources import sim_sources

        return sim_sources(self, chunk_us=chunk_us, duration_s=duration_s)
