"""Clock offset and drift without a trigger wire, on the simulated rig with known truth.

The scenes move briskly (what an operator does for software sync: wave a textured card
in view of both cameras); the module docstring of rig.software_sync says why slow,
steady motion cannot time the streams to a millisecond.
"""

from __future__ import annotations

import numpy as np
import pytest

from calibration.mapping import EventToFrameMap
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig
from rig.software_sync import estimate_offset_software
from rig.sync import SyncError
from rig.types import EventBatch, Frame

BRISK = dict(object_speed=600, pan_speed=(300, 100), rotation_speed=360)


def _record(cfg: SimConfig, seconds: float):
    rig = SimulatedRig(cfg)
    events, frames = [], []
    for k in range(1, int(seconds * 10) + 1):
        step = rig.advance(k * 100_000)
        events.append(step.events)
        frames += step.frames
    return rig, EventBatch.concat(events), frames


def _calibration(rig: SimulatedRig) -> EventToFrameMap:
    cfg = rig.config
    return EventToFrameMap.from_homography(
        np.linalg.inv(rig.h_frame_to_event), cfg.event_size, cfg.frame_size
    )


def _error_us(rig: SimulatedRig, frames, mapping) -> np.ndarray:
    dev = np.array([f.mid_exposure_us for f in frames])
    return mapping.to_rig(dev) - rig.frame_device_to_rig(dev)


@pytest.fixture(scope="module")
def side_by_side():
    return _record(SimConfig(seed=1, **BRISK), 2.5)


def test_side_by_side_within_1ms(side_by_side):
    rig, events, frames = side_by_side
    rep = estimate_offset_software(frames, events, _calibration(rig))
    err = _error_us(rig, frames, rep.mapping)
    assert np.abs(err).max() < 1000, err
    assert rep.mapping.method == "software"
    assert rep.correlation > 0.3 and rep.fast_events > 2000 and not rep.notes
    d = rep.to_dict()
    assert d["mapping"]["offset_us"] == rep.mapping.offset_us and d["windows"] == 1


def test_same_sensor_without_calibration_within_1ms():
    rig, events, frames = _record(
        SimConfig(seed=5, event_view="same_sensor", frame_size=(240, 180), **BRISK), 2.5
    )
    rep = estimate_offset_software(frames, events)
    assert np.abs(_error_us(rig, frames, rep.mapping)).max() < 1000


@pytest.mark.slow
def test_drift_from_windows():
    cfg = SimConfig(
        seed=1,
        frame_size=(160, 120),
        event_size=(173, 130),
        object_speed=400,
        pan_speed=(200, 60),
        rotation_speed=360,
        clock_drift_ppm=300,
    )
    rig, events, frames = _record(cfg, 12.0)
    rep = estimate_offset_software(frames, events, _calibration(rig), window_s=4)
    assert rep.mapping.method == "software-windows" and rep.windows >= 2
    # device runs 300 ppm fast: rig per device tick is 1/(1 + 300e-6)
    assert rep.mapping.drift_ppm == pytest.approx(-300, abs=100)
    assert np.abs(_error_us(rig, frames, rep.mapping)).max() < 1000


def test_narrow_search_range(side_by_side):
    """A rough offset known beforehand (host clock) bounds the search."""
    rig, events, frames = side_by_side
    dev = np.array([f.mid_exposure_us for f in frames])
    truth = float(np.mean(rig.frame_device_to_rig(dev) - dev))
    rep = estimate_offset_software(
        frames, events, _calibration(rig), search_us=(truth - 30_000, truth + 30_000)
    )
    assert np.abs(_error_us(rig, frames, rep.mapping)).max() < 1000


# -- what cannot be matched -------------------------------------------------------------
IMG = np.zeros((48, 64, 3), np.uint8)


def _events(n=1000, t0=0, width=64, height=48):
    rng = np.random.default_rng(0)
    return EventBatch(
        t0 + np.arange(n, dtype=np.int64) * 200,
        rng.integers(0, width, n).astype(np.int16),
        rng.integers(0, height, n).astype(np.int16),
        rng.integers(0, 2, n).astype(np.int8),
    )


def test_static_scene_is_refused():
    frames = [Frame(IMG, i, i * 10_000, 1000) for i in range(20)]
    with pytest.raises(SyncError, match="never change"):
        estimate_offset_software(frames, _events())


def test_too_little_data_is_refused():
    frames = [Frame(IMG, i, i * 10_000, 1000) for i in range(20)]
    with pytest.raises(SyncError, match="at least 8 frames"):
        estimate_offset_software(frames[:3], _events())
    with pytest.raises(SyncError, match="needs events"):
        estimate_offset_software(frames, _events(50))


def test_bad_timestamps_are_refused():
    frames = [Frame(IMG, i, i * 10_000, 1000) for i in range(20)]
    frames[5] = Frame(IMG, 5, 0, 1000)
    with pytest.raises(SyncError, match="frame timestamps are not increasing"):
        estimate_offset_software(frames, _events())
    ev = _events()
    shuffled = EventBatch(ev.t[::-1].copy(), ev.x, ev.y, ev.p)
    good = [Frame(IMG, i, i * 10_000, 1000) for i in range(20)]
    with pytest.raises(SyncError, match="event timestamps are not in order"):
        estimate_offset_software(good, shuffled)


def test_events_outside_the_sensor_or_calibration_are_refused(side_by_side):
    rig, events, frames = side_by_side
    with pytest.raises(SyncError, match="outside the 100x100 event sensor"):
        estimate_offset_software(frames, events, event_size=(100, 100))
    other = EventToFrameMap.identity((64, 48))
    with pytest.raises(SyncError, match="calibration is for a"):
        estimate_offset_software(frames, events, other, event_size=rig.config.event_size)


def test_unrelated_streams_are_refused(side_by_side):
    """Events of one recording against frames of another scene do not correlate."""
    rig, events, frames = side_by_side
    other_rig, _, other_frames = _record(SimConfig(seed=9, **BRISK), 1.0)
    with pytest.raises(SyncError, match="correlate only|do not overlap"):
        estimate_offset_software(other_frames, events, _calibration(rig))
