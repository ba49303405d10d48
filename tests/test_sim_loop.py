"""The simulated rig's render-ahead loop (`SimConfig.loop_s`): rendered once, handed out
again and again with every timestamp shifted by a whole loop. What must hold across a
seam is what capture relies on: time never goes back, the trigger edges and frames
stay matched (the sync recovers the clock mapping), frame indices count on."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cli import main
from rig.config import ConfigError, RigConfig, open_sources
from rig.sim import SimConfig, SimulatedRig
from rig.sync import TriggerSync, match_triggers
from rig.types import EventBatch, Frame

LOOP = dict(
    frame_size=(64, 48),
    event_size=(72, 54),
    fps=100.0,
    step_us=500,
    clock_offset_us=1_234_567,
    clock_drift_ppm=40.0,
    loop_s=0.2,
)
LOOP_US = 200_000
N_FRAMES = 20  # per loop: 0.2 s at 100 fps


def _read(
    config: SimConfig, until_us: int, duration_s: float | None = None
) -> tuple[SimulatedRig, EventBatch, np.ndarray, list[Frame], list[tuple]]:
    """Read both sources up to rig time until_us (or their end), one event chunk (10 ms)
    and one frame (10 ms at 100 fps) in turn: events, triggers, frames, and the order
    things came in (for the online sync)."""
    rig = SimulatedRig(config)
    ev_src, fr_src = rig.sources(duration_s=duration_s)
    events, triggers, frames, order = [], [], [], []
    with ev_src, fr_src:
        ended = False
        while not ended:
            try:
                sl = ev_src.read(timeout_s=60)
            except EOFError:
                ended = True
            else:
                assert sl is not None
                events.append(sl.events)
                triggers.append(sl.triggers)
                order.append(("triggers", sl.triggers))
                ended = bool(len(sl.events)) and sl.events.t[-1] >= until_us
            while True:  # one frame, or all that are left at the end
                try:
                    fr = fr_src.read(timeout_s=60)
                except EOFError:
                    break
                assert fr is not None
                frames.append(fr)
                order.append(("frame", fr))
                if not ended or duration_s is None:
                    break
    return rig, EventBatch.concat(events), np.concatenate(triggers), frames, order


@pytest.fixture(scope="module")
def looped():
    return _read(SimConfig(**LOOP), 3 * LOOP_US + 10_000)


def test_loop_length_is_whole_frame_periods():
    assert SimConfig(**LOOP).loop_us == LOOP_US
    assert SimConfig(fps=50.0, loop_s=4).loop_us == 4_000_000
    assert SimConfig(fps=50.0, loop_s=0.21).loop_us == 220_000  # rounded up to 11 frames
    assert SimConfig(fps=30.0, loop_s=0.25).loop_us == 266_667  # 8 frames of 33 333.3 µs
    assert SimConfig().loop_s is None and SimConfig().loop_us is None
    assert SimConfig(**SimConfig(**LOOP).to_dict()).loop_s == 0.2


def test_events_never_go_back_and_repeat_shifted(looped):
    _, ev, _, _, _ = looped
    assert np.all(np.diff(ev.t) >= 0)
    first = ev.time_slice(0, LOOP_US)
    assert len(first) > 1000
    for k in (1, 2):
        again = ev.time_slice(k * LOOP_US, (k + 1) * LOOP_US)
        assert np.array_equal(again.t, first.t + k * LOOP_US)
        for col in ("x", "y", "p"):
            assert np.array_equal(getattr(again, col), getattr(first, col))


def test_first_loop_is_the_live_rig():
    """What repeats is exactly what the live rig renders for the same seed."""
    cfg = SimConfig(**LOOP)
    live = SimulatedRig(SimConfig(**(LOOP | {"loop_s": None})))
    want = live.advance(LOOP_US).events
    _, ev, _, frames, _ = _read(cfg, LOOP_US)
    got = ev.time_slice(0, LOOP_US)
    assert np.array_equal(got.t, want.t) and np.array_equal(got.x, want.x)
    step = SimulatedRig(SimConfig(**(LOOP | {"loop_s": None}))).advance(LOOP_US + 5000)
    assert np.array_equal(frames[0].image, step.frames[0].image)


def test_frames_count_on_and_repeat(looped):
    rig, _, triggers, frames, _ = looped
    assert len(frames) >= 3 * N_FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames[N_FRAMES : 3 * N_FRAMES]:
        assert np.array_equal(f.image, frames[f.index % N_FRAMES].image)
        shifted = rig.frame_device_to_rig(frames[f.index % N_FRAMES].timestamp_us)
        assert (
            abs(rig.frame_device_to_rig(f.timestamp_us) - shifted - LOOP_US * (f.index // N_FRAMES))
            <= 1
        )
    assert np.all(np.diff(triggers) > 0)
    assert np.array_equal(triggers[N_FRAMES : 2 * N_FRAMES], triggers[:N_FRAMES] + LOOP_US)


def test_sync_recovers_the_clock_across_seams(looped):
    """Offline and online, as capture does: every frame matched to its own edge, the
    RGB camera's drift recovered, nothing missing at the seams."""
    rig, _, triggers, frames, order = looped
    out, rep = match_triggers(frames, triggers)
    assert len(out) == len(frames) and rep.missing_edges == 0
    truth = rig.frame_device_to_rig(np.array([f.timestamp_us for f in frames]))
    got = np.array([f.timestamp_us for f in out])
    assert np.abs(got - truth[[f.index for f in out]]).max() <= 5
    assert rep.mapping.drift_ppm == pytest.approx(-40, abs=1)

    sync = TriggerSync()
    matched = []
    for kind, item in order:
        if kind == "triggers":
            sync.add_triggers(item)
        else:
            sync.add_frame(item)
        matched += sync.pop_matched()
    matched += sync.flush()
    by_index = {f.index: f.timestamp_us for f in matched}
    assert set(range(3 * N_FRAMES)) <= set(by_index)
    for i in range(3 * N_FRAMES):
        assert abs(by_index[i] - truth[i]) <= 5
    assert sync.report().missing_edges == 0


def test_a_duration_limited_loop_ends_at_its_duration():
    rig, ev, triggers, frames, _ = _read(SimConfig(**LOOP), 10**9, duration_s=0.5)
    assert ev.t[-1] < 500_000 and ev.t[-1] > 2 * LOOP_US
    assert len(triggers) == 50  # edges at 1 ms + i * 10 ms, below 0.5 s
    assert len(frames) == 50  # and each exposure (2 ms) over by then
    assert frames[-1].index == len(frames) - 1
    ends = rig.frame_device_to_rig(np.array([f.timestamp_us for f in frames])) + 2000
    assert ends.max() <= 500_000
    assert rig.events_emitted == len(ev) and rig.frames_emitted == len(frames)


@pytest.mark.parametrize("bad", [0.1, 61, float("nan"), True, "4"])
def test_bad_loop_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"SimConfig\.loop_s must be a number of seconds"):
        SimConfig(loop_s=bad)


def test_loop_from_a_rig_file(tmp_path, capsys):
    text = '[events]\nbackend = "sim"\n[frames]\nbackend = "sim"\n[sim]\nframe_size = [64, 48]\n'
    good = tmp_path / "rig.toml"
    good.write_text(text + "loop_s = 0.5\n")
    ev, fr = open_sources(RigConfig.load(good))
    assert ev.rig.config.loop_s == 0.5 and ev.rig is fr.rig
    bad = tmp_path / "bad.toml"
    bad.write_text(text + "loop_s = 0.05\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*loop_s"):
        RigConfig.load(bad)
    code = main(["record", "--config", str(bad), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "loop_s" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
