"""`slomo-rig eval --recording`: hold frames out of a real recording (the DAVIS346 street
scene in tests/data, recorded by DV on a physical sensor) and of a simulated session,
score every method on them, and refuse bad input before any work."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.registry import DEFAULT_MODEL
from pipeline.cli import main
from pipeline.holdout import BASE_METHODS, HoldoutConfig, default_methods, evaluate_recording
from pipeline.inputs import open_input
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

DATA = Path(__file__).with_name("data")
DAVIS346 = DATA / "davis346.aedat4"


def test_default_methods_lead_with_the_default_model_and_hold_every_yardstick():
    methods = default_methods()
    assert methods[0] == DEFAULT_MODEL
    assert set(BASE_METHODS) <= set(methods)
    assert len(set(methods)) == len(methods)


@pytest.mark.slow
def test_eval_recording_on_the_real_davis346_file(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(
        [
            "eval",
            "--recording",
            str(DAVIS346),
            "--hold-out",
            "1",
            "--max-intervals",
            "3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    for m in default_methods():
        assert f"| {m} |" in printed
    data = json.loads((out / "holdout.json").read_text())
    assert data["kind"] == "davis"
    assert data["frame_size"] == [346, 260]
    assert data["intervals"] == 3 and data["held_out_frames"] == 3
    assert set(data["scores"]) == set(default_methods())
    blend = data["scores"]["blend"]
    assert math.isfinite(blend["psnr"]) and 20 < blend["psnr"] < 60
    assert blend["psnr_vs_blend"] == 0
    for s in data["scores"].values():
        assert s["frames"] == 3 and math.isfinite(s["psnr"]) and 0 < s["ssim"] <= 1
    # The held-out instants are the real frames' own mid-exposure times: frames 1, 3, 5.
    with open_input(DAVIS346) as src:
        times = [k.t_us for k in src.keyframes()]
    assert data["held_out_t_us"] == [times[1], times[3], times[5]]
    assert (out / "holdout.md").read_text().startswith("| method |")
    png = cv2.imread(str(out / "holdout.png"))
    assert png is not None and png.shape[0] > 200 and png.std() > 0


def _sim_session(root: Path, frames: int = 12) -> tuple[Path, list[int]]:
    """A session as the live recorder writes it (events on the event sensor's pixels,
    frames on the rig clock), from the side-by-side simulated rig."""
    from pipeline.rawfile import RawRecorder
    from pipeline.session import Session
    from rig.types import Frame

    cfg = SimConfig(
        frame_size=(160, 120),
        event_size=(128, 100),
        fps=50.0,
        exposure_us=1000,
        event_view="side_by_side",
    )
    rig = SimulatedRig(cfg)
    session = Session.create(root, {"backend": "sim", "sim": cfg.to_dict()}, name="s")
    raw = RawRecorder(session.raw_path, cfg.event_size, cfg.frame_size)
    mids: list[int] = []
    t = 0
    while len(mids) < frames:
        t += 10_000
        step = rig.advance(t)
        raw.write_events(step.events)
        raw.write_triggers(step.triggers)
        for f in step.frames:
            start = rig.frame_device_to_rig(f.timestamp_us)
            raw.write_frame(Frame(f.image, f.index, start, f.exposure_us))
            mids.append(start + f.exposure_us // 2)
    raw.close()
    session.update(status="complete")
    return session.path, mids


def test_eval_recording_on_a_simulated_session(tmp_path):
    path, mids = _sim_session(tmp_path)
    cfg = HoldoutConfig(path, hold_out=2, methods=("blend", "flow", "integration"))
    result = evaluate_recording(cfg)
    data = result.to_json()
    assert data["kind"] == "session"
    n = len(mids)
    assert data["intervals"] == (n - 1) // 3
    # Two held-out frames per interval, at the real frames' times (every frame but the
    # kept 0, 3, 6, ...).
    expected = [m for i, m in enumerate(mids[: 3 * data["intervals"] + 1]) if i % 3]
    assert data["held_out_t_us"] == expected
    for s in data["scores"].values():
        assert s["frames"] == len(expected) and math.isfinite(s["psnr"])
    assert abs(data["frame_period_ms"] - 20.0) < 0.5


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--recording", "no/such/file.aedat4", "--hold-out", "1"], "does not exist"),
        (["--recording", str(DAVIS346), "--hold-out", "0"], "--hold-out must be >= 1"),
        (["--recording", str(DAVIS346), "--hold-out", "100"], "has 59 usable frames"),
        (
            ["--recording", str(DAVIS346), "--hold-out", "1", "--methods", "blend", "nosuch"],
            "unknown model 'nosuch'",
        ),
        (["--recording", str(DAVIS346)], "needs --hold-out"),
        (["--hold-out", "1"], "--hold-out needs --recording"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    out = tmp_path / "report"
    r = _cli(*args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert needle in lines[0]
    assert not out.exists()


def test_a_folder_that_is_not_a_recording_exits_2(tmp_path):
    r = _cli("--recording", str(tmp_path), "--hold-out", "1")
    assert r.returncode == 2
    assert "neither a slomo-rig session" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_recording_too_short_for_the_hold_out_exits_2(tmp_path):
    """A session (no cheap frame count): the check comes after reading, before writing."""
    path, mids = _sim_session(tmp_path / "s", frames=3)
    out = tmp_path / "report"
    r = _cli("--recording", str(path), "--hold-out", "5", "--methods", "blend", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "--hold-out 5 needs at least 7" in r.stderr
    assert not out.exists()
    assert np.all(np.diff(mids) > 0)


def test_a_timelens_folder_scores_like_the_same_recording_as_a_davis_file(tmp_path):
    """The HS-ERGB/TimeLens folder layout (one events file per frame interval, so a kept
    interval spans several files) gives the scores of the same recording as AEDAT4."""
    from pipeline.replay import write_sim_davis
    from tests.test_replay import SECONDS, SimData, _timelens_folder, sim_config

    sim = SimData(sim_config(), SECONDS)
    seq = _timelens_folder(sim, tmp_path)
    davis = tmp_path / "same.aedat4"
    write_sim_davis(davis, SECONDS, sim.cfg)
    methods = ("blend", "integration")
    a = evaluate_recording(HoldoutConfig(seq, hold_out=3, methods=methods)).to_json()
    b = evaluate_recording(HoldoutConfig(davis, hold_out=3, methods=methods)).to_json()
    assert a["kind"] == "timelens-folder" and b["kind"] == "davis"
    assert a["intervals"] == b["intervals"] == (len(sim.images) - 1) // 4
    assert (
        a["held_out_t_us"]
        == b["held_out_t_us"]
        == [int(t) for i, t in enumerate(sim.mids[: 4 * a["intervals"] + 1]) if i % 4]
    )
    for m in methods:
        assert a["scores"][m]["psnr_per_frame"] == b["scores"][m]["psnr_per_frame"]
    # Events matter on this fast scene: integration beats the cross-fade.
    assert a["scores"]["integration"]["psnr"] > a["scores"]["blend"]["psnr"]
