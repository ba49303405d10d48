"""The demo's fill-in: after the live capture, the intervals the live path skipped are
interpolated offline (replay of the session) and the session's video becomes complete,
with the live output kept beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from pipeline.fillin import LIVE_TIMESTAMPS, LIVE_VIDEO, fill_in_session, summary_line
from pipeline.info import describe, format_text
from pipeline.outputs import read_timestamps
from tests.test_holdout import _sim_session


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _check_complete(session: Path, factor: int) -> dict:
    """Every interval between the session's keyframes has its factor-1 frames, in the
    video as in timestamps.csv, and info says nothing is skipped."""
    info = describe(session)
    files = {k: Path(v["path"]) for k, v in info["file_status"].items()}
    rows = read_timestamps(files["timestamps"])
    originals = [r for r in rows if r[2] == "original"]
    assert len(originals) >= 2
    assert len(rows) == len(originals) + (factor - 1) * (len(originals) - 1)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert _video_frames(files["video"]) == len(rows)
    assert info["output"]["intervals_skipped"] == 0
    assert info["output"]["frames_written"] == len(rows)
    return info


def test_fill_in_completes_a_session_whose_live_path_skipped_everything(tmp_path):
    path, mids = _sim_session(tmp_path, frames=8)
    from pipeline.session import Session

    Session.open(path).update(
        output={
            "frames_written": 0,
            "original_frames": 0,
            "interpolated_frames": 0,
            "intervals_skipped": len(mids) - 1,
            "skipped_intervals": [],
            "models": [],
        }
    )
    res = fill_in_session(path, "blend", factor=4, progress=False)
    assert res.status == "complete"
    assert (res.live_skipped, res.filled, res.skipped_after) == (len(mids) - 1,) * 2 + (0,)
    info = _check_complete(path, 4)
    rows = read_timestamps(path / "timestamps.csv")
    assert [r[1] for r in rows if r[2] == "original"] == mids
    data = json.loads((path / "session.json").read_text())
    assert data["fill_in"]["intervals_filled"] == len(mids) - 1
    assert data["live_output"]["intervals_skipped"] == len(mids) - 1
    assert info["output"]["models"] == ["blend"]
    n = len(mids) - 1
    assert f"fill-in  {n} of {n} intervals skipped live were filled in" in format_text(info)
    assert "filled in afterwards with blend" in summary_line(res, "flow")
    # Nothing left behind, and a second run has nothing to do.
    assert not (path / ".fill-in").exists()
    assert fill_in_session(path, "blend", factor=4, progress=False).status == "not needed"


@pytest.mark.slow
def test_demo_ends_with_every_interval_in_the_video(tmp_path):
    """End to end through the real processes. A job timeout far below any model's time
    makes the live path skip (nearly) every interval, as the default model does on a
    CPU; whatever it skipped, the final video must be complete."""
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--out", str(tmp_path), "--seconds"]
        + ["1", "--factor", "4", "--model", "integration", "--job-timeout", "0.001"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (session,) = tmp_path.glob("session-*")
    _check_complete(session, 4)
    data = json.loads((session / "session.json").read_text())
    live = data.get("live_output", data["output"])
    if live["intervals_skipped"]:
        assert data["fill_in"]["intervals_filled"] == live["intervals_skipped"]
        assert (session / LIVE_VIDEO).is_file() and (session / LIVE_TIMESTAMPS).is_file()
        assert "integration live, then" in r.stdout and "filled in afterwards" in r.stdout
    else:
        assert "nothing to fill in" in r.stdout
