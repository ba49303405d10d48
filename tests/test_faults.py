"""Faults on the live path: a full disk, a dead recorder, Ctrl-C at any moment.
Each leaves a session that opens, with nothing recorded before the fault lost."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import dv_processing as dv
import pytest

from calibration.mapping import EventToFrameMap
from pipeline.info import describe, format_text
from pipeline.live import LiveOptions, run_live
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

pytestmark = pytest.mark.slow


def raw_events(path: Path) -> int:
    rec = dv.io.MonoCameraRecording(str(path))
    n = 0
    while (b := rec.getNextEventBatch()) is not None:
        n += b.size()
    return n


def demo(out: Path, *extra: str, preexec=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "demo", "--out", str(out), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )


def test_disk_full_stops_the_raw_writer_cleanly(tmp_path):
    limit = 3 * 1024 * 1024  # every file of the process may grow to 3 MB: the raw file hits it

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = demo(tmp_path, "--seconds", "20", preexec=small_disk)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 2
    assert "raw recording" in err and "Free disk space" in err
    (session,) = tmp_path.iterdir()
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["status"] == "failed" and "Free disk space" in manifest["error"]
    written = manifest["raw"]["events"]
    assert written > 0
    assert raw_events(session / "raw.aedat4") >= written * 0.9  # all but the packet cut in two
    assert "failed" in format_text(describe(session))


def test_recorder_crash_keeps_raw_and_says_so(tmp_path):
    cfg = SimConfig(realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources(duration_s=3.0)
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)

    def kill_recorder(processes):
        pid = processes["recorder"][0].pid
        threading.Timer(1.5, lambda: os.kill(pid, signal.SIGKILL)).start()

    result = run_live(
        events,
        frames,
        mapper,
        {"backend": "sim"},
        LiveOptions(out=tmp_path, progress=False, model="integration"),  # frames before the kill
        on_started=kill_recorder,
    )
    m = result.manifest
    assert "recorder_error" in m
    assert raw_events(result.session.raw_path) == rig.events_emitted == m["capture"]["events"]
    info = describe(result.session.path)
    assert any("video ends where it stopped" in n for n in info["notes"] + [m["recorder_error"]])
    with av.open(str(result.session.video_path)) as c:  # fragmented MP4: plays up to the cut
        assert sum(1 for _ in c.decode(video=0)) > 0


@pytest.mark.parametrize("delay_s", [0.3, 4.0, 7.0])
def test_ctrl_c_at_any_moment(tmp_path, delay_s):
    proc = demo(tmp_path, "--seconds", "4")
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    for session in tmp_path.iterdir():
        info = describe(session)
        assert info["status"] in ("complete", "interrupted", "recording")
        if (session / "raw.aedat4").exists() and info.get("capture"):
            assert raw_events(session / "raw.aedat4") == info["capture"]["events"]
    # no process of the pipeline is left behind
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"{tmp_path}"], capture_output=True, text=True).stdout
    assert left.strip() == ""
