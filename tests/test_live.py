"""The whole live path on the simulated rig, as separate processes on loopback ZeroMQ."""

from __future__ import annotations

import os
import signal
import threading

import dv_processing as dv
import pytest

from calibration.mapping import EventToFrameMap
from pipeline.cli import main
from pipeline.info import describe, format_text
from pipeline.live import LiveOptions, run_live
from pipeline.outputs import read_timestamps
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

pytestmark = pytest.mark.slow


def read_raw(path):
    rec = dv.io.MonoCameraRecording(str(path))
    n_events = n_frames = n_triggers = 0
    while (b := rec.getNextEventBatch()) is not None:
        n_events += b.size()
    while rec.getNextFrame() is not None:
        n_frames += 1
    while (t := rec.getNextTriggerBatch()) is not None:
        n_triggers += len(t)
    return n_events, n_frames, n_triggers


def count_video_frames(path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_demo_command_writes_a_complete_session(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    (session,) = tmp_path.iterdir()
    assert str(session) in printed and "fps achieved" in printed
    n_events, n_frames, n_triggers = read_raw(session / "raw.aedat4")
    assert n_events > 0 and n_frames > 0 and n_triggers > 0
    rows = read_timestamps(session / "timestamps.csv")
    assert len(rows) == count_video_frames(session / "slowmo.mp4") > n_frames
    assert {r[2] for r in rows} == {"original", "interpolated"}
    times = [r[1] for r in rows]
    assert times == sorted(times)
    info = describe(session)
    assert info["status"] == "complete"
    assert info["capture"]["events"] == n_events  # raw keeps every event captured
    assert main(["info", str(session), "--json"]) == 0


def test_killed_worker_leaves_raw_complete_and_session_readable(tmp_path):
    cfg = SimConfig(realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources(duration_s=2.0)
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)

    def kill_worker_soon(processes):
        pid = processes["workers"][0].pid
        threading.Timer(0.6, lambda: os.kill(pid, signal.SIGKILL)).start()

    result = run_live(
        events,
        frames,
        mapper,
        {"backend": "sim"},
        LiveOptions(out=tmp_path, progress=False, job_timeout_s=2.0, drain_timeout_s=5.0),
        on_started=kill_worker_soon,
    )
    manifest = result.manifest
    assert result.processes["workers"][0].exitcode == -signal.SIGKILL
    n_events, n_frames, n_triggers = read_raw(result.session.raw_path)
    cap = manifest["capture"]
    assert (n_events, n_frames, n_triggers) == (cap["events"], cap["keyframes"], cap["triggers"])
    assert n_events == rig.events_emitted  # every simulated event reached the raw file
    assert n_frames == rig.frames_emitted
    out = manifest["output"]
    assert out["intervals_skipped"] >= 1
    assert out["original_frames"] == cap["keyframes"]
    text = format_text(describe(result.session.path))
    assert "skipped" in text and "replay" in text


def test_bad_model_fails_cleanly_before_recording(tmp_path, capsys):
    code = main(
        ["demo", "--out", str(tmp_path), "--seconds", "1", "--quiet", "--model", "nonsense"]
    )
    assert code == 2
    assert "nonsense" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any folder or process


def test_a_model_that_fails_to_load_leaves_no_session_behind(tmp_path, capfd):
    """Found only when the worker loads it: still a user error (exit 2), one line from
    the worker process and none of its traceback, and the session folder made for it
    is removed, since nothing was recorded."""
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    out = tmp_path / "sessions"
    code = main(
        ["demo", "--out", str(out), "--seconds", "1", "--quiet", "--model", f"timelens:{broken}"]
    )
    err = capfd.readouterr().err  # fd level: the worker process's stderr too
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    assert "worker worker-0: error: ModelError" in err
    assert list(out.iterdir()) == []


def test_info_on_a_wrong_path_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no session" in capsys.readouterr().err
