"""`slomo-rig sync SESSION` on real session folders from the simulated rig: frames stored
7.3 ms late (what a host-clock sync can leave) come back within 1 ms, a second run
replaces the correction instead of stacking it, replay's keyframes follow it, and the
errors an operator can hit exit 2 with advice and leave the session as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.aedat4 import Aedat4Writer
from pipeline.cli import main
from pipeline.inputs.session import SessionSource
from pipeline.session import CLOCK_FILE, MANIFEST, Session
from pipeline.sync_commands import MAX_WINDOWS, choose_spans, refine_session_clock
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig
from rig.sync import ClockMapping
from rig.types import Frame

LIVE_ERROR_US = 7300  # stored frame time - true exposure start
TOLERANCE_US = 1000
BRISK = dict(
    frame_size=(160, 120),
    event_size=(173, 130),
    object_speed=600.0,
    pan_speed=(300.0, 100.0),
    rotation_speed=360.0,
)


def record_session(parent: Path, name: str, **overrides: object) -> dict:
    """A session as a live recording without a wire leaves it: events on the rig clock,
    frames on it too but LIVE_ERROR_US late, the host-clock mapping in clock.json."""
    cfg = SimConfig(**{**BRISK, **overrides})
    rig = SimulatedRig(cfg)
    session = Session.create(parent, {"backend": "sim", "sim": cfg.to_dict()}, name=name)
    device, true_start, exposure = [], [], []
    with Aedat4Writer(
        session.raw_path, "slomo-rig", cfg.event_size, cfg.frame_size, triggers=True
    ) as raw:
        for t in range(100_000, 3_100_001, 100_000):
            step = rig.advance(t)
            raw.write_events(step.events)
            for f in step.frames:
                start = rig.frame_device_to_rig(f.timestamp_us)
                raw.write_frame(Frame(f.image, f.index, start + LIVE_ERROR_US, f.exposure_us))
                device.append(f.timestamp_us)
                true_start.append(start)
                exposure.append(f.exposure_us)
    stored = np.array(true_start, np.int64) + LIVE_ERROR_US
    live = ClockMapping.fit(np.array(device), stored, "host-clock").to_dict()
    (session.path / CLOCK_FILE).write_text(json.dumps(live, indent=2))
    session.update(status="complete", clock=live, sync={"method": "host-clock"})
    return {
        "path": session.path,
        "stored": stored,
        "truth": np.array(true_start, np.int64),
        "exposure": np.array(exposure, np.int64),
        "live": live,
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return record_session(tmp_path_factory.mktemp("rec"), "brisk")


@pytest.fixture
def session(recorded: dict, tmp_path: Path) -> dict:
    """A fresh copy per test: `sync` writes into the session."""
    path = tmp_path / "brisk"
    shutil.copytree(recorded["path"], path)
    return {**recorded, "path": path}


def _state(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def _mid_truth(s: dict) -> np.ndarray:
    return s["truth"] + s["exposure"] // 2


@pytest.mark.slow
def test_sync_recovers_the_clock_and_replay_applies_it(session, capsys):
    path = session["path"]
    with SessionSource.open(path) as src:
        before = np.array([kf.t_us for kf in src.keyframes()])
    assert np.all(np.abs(before - _mid_truth(session) - LIVE_ERROR_US) <= 1)  # the test has teeth

    assert main(["sync", str(path)]) == 0
    out = capsys.readouterr().out
    assert "correction" in out and "ms at the start" in out and "correlation" in out

    clock = json.loads((path / CLOCK_FILE).read_text())
    assert clock["method"] == "software"
    assert clock["live"] == session["live"]
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["clock_correction"] == clock["correction"]
    assert manifest["clock"] == session["live"]  # the live section is left as recorded
    fix = ClockMapping.from_dict(clock["correction"]["mapping"])
    err = fix.to_rig(session["stored"]) - session["truth"]
    assert np.abs(err).max() <= TOLERANCE_US, f"errors {err.min()}..{err.max()} µs"

    assert main(["info", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "corrected by `slomo-rig sync`" in shown and "ms at the start" in shown

    # Again: estimated from the stored times, so the same correction, not a second one.
    assert main(["sync", str(path)]) == 0
    again = json.loads((path / CLOCK_FILE).read_text())
    assert again["live"] == session["live"]
    assert again["correction"] == clock["correction"]
    assert json.loads((path / MANIFEST).read_text())["clock_correction"] == clock["correction"]

    with SessionSource.open(path) as src:
        kfs = list(src.keyframes())
        info = src.describe()
        fingerprint = src.fingerprint()
    after = np.array([kf.t_us for kf in kfs])
    assert len(after) == len(session["truth"])
    assert np.abs(after - _mid_truth(session)).max() <= TOLERANCE_US
    assert "applied" in info["clock"]
    assert any("clock correction" in n for n in src.notes)
    assert len(fingerprint) == 2  # a replay started before `sync` does not resume


def test_static_scene_fails_with_advice_and_leaves_the_session(tmp_path, capsys):
    s = record_session(tmp_path, "static", n_objects=0, pan_speed=(0.0, 0.0))
    before = _state(s["path"])
    assert main(["sync", str(s["path"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slomo-rig sync: error:") and err.count("\n") == 1
    assert "move" in err or "motion" in err
    assert _state(s["path"]) == before


def test_not_a_session(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["sync", str(tmp_path)]) == 2
    assert "not a slomo-rig session" in capsys.readouterr().err
    assert main(["sync", str(tmp_path / "missing")]) == 2
    assert "check the path" in capsys.readouterr().err


def test_session_without_raw_file(tmp_path, capsys):
    s = Session.create(tmp_path, {"backend": "sim"}, name="empty")
    before = _state(s.path)
    assert main(["sync", str(s.path)]) == 2
    assert "raw.aedat4 is missing" in capsys.readouterr().err
    assert _state(s.path) == before


def test_unreadable_correction_is_a_clear_replay_error(tmp_path):
    from pipeline.inputs import InputError

    s = record_session(tmp_path, "short", n_objects=0, pan_speed=(0.0, 0.0))
    Session(s["path"]).update(clock_correction={"mapping": {"scale": "x"}})
    with pytest.raises(InputError, match="slomo-rig sync"):
        SessionSource.open(s["path"])


@pytest.mark.slow
def test_long_session_is_read_in_windows(session):
    """Past max_span_s only a few windows are read (bounded memory); their offsets are
    fitted with a line."""
    times = np.arange(0, 200_000_000, 20_000)
    spans = choose_spans(times, window_s=10, max_span_s=60)
    assert spans is not None and len(spans) == MAX_WINDOWS
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(times[-1])
    assert choose_spans(times[:1000], window_s=10, max_span_s=60) is None

    result = refine_session_clock(session["path"], window_s=0.9, max_span_s=1.0)
    report = result["report"]
    assert report.mapping.method == "software-windows" and report.windows >= 2
    assert any("windows of 0.9 s" in n for n in result["notes"])
    err = report.mapping.to_rig(session["stored"]) - session["truth"]
    assert np.abs(err).max() <= TOLERANCE_US, f"errors {err.min()}..{err.max()} µs"
