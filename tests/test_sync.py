"""Clock sync by trigger matching (exact, with dropped and spurious edges), on synthetic
timestamps and on the simulated rig. The software fallback: tests/test_software_sync.py."""

from __future__ import annotations

import numpy as np
import pytest

from rig.sync import (
    ClockMapping,
    SyncError,
    TriggerSync,
    match_triggers,
)
from rig.types import EventBatch, Frame

IMG = np.zeros((2, 2, 3), np.uint8)


def _synthetic(n=2000, period=10_000.0, offset=1_234_567, drift_ppm=50.0, jitter=0.0, seed=0):
    """Device timestamps and true rig times: rig = device / (1 + drift) + offset."""
    rng = np.random.default_rng(seed)
    true = 5_000 + np.arange(n) * period
    dev = np.round((true - offset) * (1 + drift_ppm * 1e-6)).astype(np.int64)
    rig = np.round(true + rng.normal(0, jitter, n)).astype(np.int64)  # edge jitter
    frames = [Frame(IMG, i, int(d), 1000) for i, d in enumerate(dev)]
    return frames, rig


def _corrupt(rig, drop=0.01, extra=20, seed=1):
    rng = np.random.default_rng(seed)
    keep = rng.random(len(rig)) > drop
    keep[:10] = True  # the first edges must be there (see TriggerSync)
    spurious = rng.integers(rig[0], rig[-1], extra)
    return np.sort(np.concatenate([rig[keep], spurious])), int((~keep).sum())


def test_mapping_roundtrip_and_drift():
    m = ClockMapping.fit(np.array([0, 1_000_000]), np.array([10, 1_000_060]), "t")
    assert m.to_rig(500_000) == 500_035
    assert m.drift_ppm == pytest.approx(50, abs=1e-6)
    assert ClockMapping.from_dict(m.to_dict()) == m
    assert m.to_rig(np.array([0, 1_000_000])).tolist() == [10, 1_000_060]


def test_exact_match_in_order():
    frames, rig = _synthetic(500)
    out, rep = match_triggers(frames, rig)
    assert [f.timestamp_us for f in out] == rig.tolist()
    assert rep.matched == 500 and rep.missing_edges == 0 and rep.spurious_edges == 0
    assert rep.mapping.drift_ppm == pytest.approx(-50, abs=0.5)
    d = rep.to_dict()
    assert {"drift_ppm", "jitter_rms_us", "missing_edges", "spurious_edges"} <= set(d)


def test_dropped_and_spurious_edges_with_jitter():
    frames, rig = _synthetic(3000, jitter=2.0)
    trig, dropped = _corrupt(rig, 0.01, 30)
    out, rep = match_triggers(frames, trig)
    got = np.array([f.timestamp_us for f in out])
    assert len(out) == 3000
    assert rep.missing_edges == dropped and rep.spurious_edges == 30
    assert np.abs(got - rig).max() <= 12  # predicted times fill the gaps
    matched = np.isin(got, trig)
    assert np.abs(got[matched] - rig[matched]).max() == 0
    assert rep.mapping.residual_rms_us == pytest.approx(2.0, abs=0.5)


def test_online_streams_with_latency():
    """Edges and frames arrive in chunks, edges well ahead of or behind the frames."""
    frames, rig = _synthetic(1000)
    trig, _ = _corrupt(rig, 0.01, 10)
    sync = TriggerSync(expected_period_us=10_000)
    out = []
    for k in range(0, 1000, 25):
        sync.add_triggers(trig[(trig >= rig[k] - 5000) & (trig < rig[min(k + 25, 999)] - 5000)])
        for f in frames[max(0, k - 40) : max(0, k - 15)]:
            sync.add_frame(f)
        out += sync.pop_matched()
    sync.add_triggers(trig[trig >= rig[999] - 5000])
    for f in frames[960:]:
        sync.add_frame(f)
    out += sync.pop_matched() + sync.flush()
    got = np.array([f.timestamp_us for f in out])
    assert len(out) == 1000 and np.abs(got - rig).max() <= 5
    assert [f.index for f in out] == list(range(1000))


def test_no_edges_is_a_sync_error():
    frames, _ = _synthetic(50)
    sync = TriggerSync(max_pending=20)
    with pytest.raises(SyncError, match="without trigger edges"):
        for f in frames:
            sync.add_frame(f)
    sync = TriggerSync(max_pending=20)
    with pytest.raises(SyncError, match="without frames"):
        sync.add_triggers(np.arange(30) * 10_000)


def test_edges_that_do_not_fit_the_frames():
    frames, rig = _synthetic(100)
    rng = np.random.default_rng(0)
    bogus = np.sort(rng.integers(0, rig[-1], 100))
    with pytest.raises(SyncError):
        match_triggers(frames, bogus)


def test_frames_going_back_in_time():
    sync = TriggerSync()
    sync.add_frame(Frame(IMG, 0, 100, 10))
    with pytest.raises(SyncError, match="not after"):
        sync.add_frame(Frame(IMG, 1, 50, 10))


# -- on the simulated rig -------------------------------------------------------------


@pytest.fixture(scope="module")
def recording():
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig

    rig = SimulatedRig(
        SimConfig(
            frame_size=(64, 48),
            event_size=(64, 48),
            fps=100,
            exposure_us=2000,
            step_us=500,
            clock_offset_us=1_234_567,
            clock_drift_ppm=40.0,
        )
    )
    events, triggers, frames = [], [], []
    for k in range(1, 31):
        s = rig.advance(k * 100_000)
        events.append(s.events)
        triggers.append(s.triggers)
        frames += s.frames
    return rig, EventBatch.concat(events), np.concatenate(triggers), frames


def _truth(rig, frames):
    return np.asarray(rig.frame_device_to_rig(np.array([f.timestamp_us for f in frames])))


def test_sim_triggers_within_5us(recording):
    rig, _, trig, frames = recording
    out, rep = match_triggers(frames, trig)
    truth = _truth(rig, [frames[f.index] for f in out])
    assert len(out) == len(frames)
    assert np.abs(np.array([f.timestamp_us for f in out]) - truth).max() <= 5
    assert rep.mapping.drift_ppm == pytest.approx(-40, abs=1)  # rig per device tick


def test_sim_triggers_dropped_and_spurious_within_5us(recording):
    rig, _, trig, frames = recording
    bad, dropped = _corrupt(trig, 0.01, 15, seed=7)
    out, rep = match_triggers(frames, bad)
    truth = _truth(rig, [frames[f.index] for f in out])
    assert len(out) == len(frames)
    assert rep.missing_edges == dropped and rep.spurious_edges == 15
    assert np.abs(np.array([f.timestamp_us for f in out]) - truth).max() <= 5
