"""Settings of the simulated rig, checked once so the simulator never fails half-way.

Every physical knob of the simulation lives here: the scene, the event sensor's
contrast model and noise, the RGB camera's exposure and clock, and where the event
camera sits relative to the RGB camera.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

EVENT_VIEWS = ("side_by_side", "same_sensor")


def _pair(name: str, value: object, kind: type) -> tuple:
    try:
        a, b = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"SimConfig.{name} must be a pair, got {value!r}") from None
    return kind(a), kind(b)


@dataclass
class SimConfig:
    """All sizes are (width, height) in pixels, times in µs, speeds per second.

    event_view: "side_by_side" puts the event camera next to the RGB camera (a fixed,
    plausible homography: scale ~0.95, ~1 degree rotation, a few pixels shift, mild
    perspective); "same_sensor" is a DAVIS-style sensor that sees exactly the RGB pixel
    grid (event_size is forced to frame_size and the homography is the identity).
    clock_offset_us / clock_drift_ppm define the RGB camera's clock:
    device_us = round((rig_us - clock_offset_us) * (1 + clock_drift_ppm * 1e-6)).
    camera_shake / object_swing are (amplitude px, frequency Hz) of a sinusoidal sway of
    the camera / of each object on top of the straight-line motion (non-linear motion:
    what slow motion is mostly for); (0, 0) is none.
    loop_s: None renders the scene live, step by step, as the sources are read (it
    costs the reading process about a core at the default size). A number of seconds
    (0.2 to 60, rounded up to a whole number of frame periods: `loop_us`) makes the
    sources render that much once when they are opened (startup takes that long) and
    then hand the stored stretch out again and again, every timestamp shifted by a
    whole loop: a camera whose scene costs nothing to render, so the reading process
    pays only what it pays with real cameras. The scene jumps back once per loop (the
    seam); frames, events and trigger edges stay consistent across it.
    """

    frame_size: tuple[int, int] = (320, 240)
    event_size: tuple[int, int] = (346, 260)
    fps: float = 50.0
    exposure_us: int = 2000
    step_us: int = 1000
    seed: int = 0
    pan_speed: tuple[float, float] = (60.0, 20.0)
    n_objects: int = 3
    object_speed: float = 150.0
    rotation_speed: float = 90.0
    camera_shake: tuple[float, float] = (0.0, 0.0)
    object_swing: tuple[float, float] = (0.0, 0.0)
    contrast_threshold: float = 0.2
    threshold_sigma: float = 0.02
    refractory_us: int = 100
    noise_rate_hz: float = 0.1
    clock_offset_us: int = 1_234_567
    clock_drift_ppm: float = 30.0
    event_view: str = "side_by_side"
    realtime: bool = False
    loop_s: float | None = None

    def __post_init__(self) -> None:
        self.frame_size = _pair("frame_size", self.frame_size, int)
        self.event_size = _pair("event_size", self.event_size, int)
        self.pan_speed = _pair("pan_speed", self.pan_speed, float)
        self.camera_shake = _pair("camera_shake", self.camera_shake, float)
        self.object_swing = _pair("object_swing", self.object_swing, float)
        for name in ("camera_shake", "object_swing"):
            amp, hz = getattr(self, name)
            if not (0 <= amp <= 500 and 0 <= hz <= 100):
                raise ValueError(
                    f"SimConfig.{name} is (amplitude px in [0, 500], frequency Hz in "
                    f"[0, 100]), got {(amp, hz)}"
                )
        for name in ("frame_size", "event_size"):
            w, h = getattr(self, name)
            if not (16 <= w <= 8192 and 16 <= h <= 8192):
                raise ValueError(
                    f"SimConfig.{name} must be between 16 and 8192 pixels, got {(w, h)}"
                )
        if self.event_view not in EVENT_VIEWS:
            raise ValueError(
                f"SimConfig.event_view must be one of {EVENT_VIEWS}, got {self.event_view!r}"
            )
        if self.event_view == "same_sensor":
            self.event_size = self.frame_size
        if not (math.isfinite(self.fps) and 0 < self.fps <= 10_000):
            raise ValueError(f"SimConfig.fps must be in (0, 10000], got {self.fps}")
        period_us = 1e6 / self.fps
        if not (1 <= self.exposure_us <= period_us):
            raise ValueError(
                f"SimConfig.exposure_us must be between 1 and the frame period "
                f"({period_us:.0f} µs at {self.fps} fps), got {self.exposure_us}"
            )
        if not (1 <= self.step_us <= 1000):
            raise ValueError(
                f"SimConfig.step_us must be between 1 and 1000 (render at >= 1 kHz so "
                f"event timestamps stay meaningful), got {self.step_us}"
            )
        if self.n_objects < 0 or self.n_objects > 64:
            raise ValueError(f"SimConfig.n_objects must be in [0, 64], got {self.n_objects}")
        for name in ("object_speed", "rotation_speed", "noise_rate_hz", "clock_drift_ppm"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"SimConfig.{name} must be finite, got {getattr(self, name)}")
        if not all(math.isfinite(v) for v in self.pan_speed):
            raise ValueError(f"SimConfig.pan_speed must be finite, got {self.pan_speed}")
        if self.object_speed < 0 or self.rotation_speed < 0:
            raise ValueError("SimConfig.object_speed and rotation_speed must be >= 0")
        if not (0.01 <= self.contrast_threshold <= 5.0):
            raise ValueError(
                f"SimConfig.contrast_threshold must be in [0.01, 5] (log-intensity units), "
                f"got {self.contrast_threshold}"
            )
        if not (0 <= self.threshold_sigma <= self.contrast_threshold / 2):
            raise ValueError(
                f"SimConfig.threshold_sigma must be in [0, contrast_threshold/2], "
                f"got {self.threshold_sigma}"
            )
        if self.refractory_us < 0:
            raise ValueError(f"SimConfig.refractory_us must be >= 0, got {self.refractory_us}")
        if not (0 <= self.noise_rate_hz <= 1000):
            raise ValueError(
                f"SimConfig.noise_rate_hz must be in [0, 1000], got {self.noise_rate_hz}"
            )
        if abs(self.clock_drift_ppm) > 1000:
            raise ValueError(
                f"SimConfig.clock_drift_ppm must be within +-1000, got {self.clock_drift_ppm}"
            )

        if self.loop_s is not None:
            ok = isinstance(self.loop_s, int | float) and not isinstance(self.loop_s, bool)
            if not (ok and math.isfinite(self.loop_s) and 0.2 <= self.loop_s <= 60):
                raise ValueError(
                    f"SimConfig.loop_s must be a number of seconds from 0.2 to 60 (render that "
                    f"much once, then repeat it), or left out to render live; got {self.loop_s!r}"
                )
            self.loop_s = float(self.loop_s)

    @property
    def frame_period_us(self) -> float:
        return 1e6 / self.fps

    @property
    def loop_us(self) -> int | None:
        """The loop's length in µs: loop_s rounded up to a whole number of frame periods,
        so each loop starts a frame exactly one loop after the previous one did."""
        if self.loop_s is None:
            return None
        n = math.ceil(self.loop_s * self.fps - 1e-9)
        return int(round(n * self.frame_period_us))

    def to_dict(self) -> dict:
        """JSON-ready copy (tuples as lists), e.g. for session.json; SimConfig(**d) reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
