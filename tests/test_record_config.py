"""`record --config` with real peers: pylon's camera emulator as the RGB camera and a
dv-processing NetworkWriter (what DV serves for a live camera) as the event camera."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import cv2
import dv_processing as dv
import pytest

from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

pytestmark = pytest.mark.slow

SERVER = textwrap.dedent(
    """
    import sys, time
    import dv_processing as dv
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig
    pe, pt = int(sys.argv[1]), int(sys.argv[2])
    cfg = SimConfig(event_view="same_sensor", frame_size=(320, 240), noise_rate_hz=0.05)
    rig = SimulatedRig(cfg)
    we = dv.io.NetworkWriter("127.0.0.1", pe, dv.io.Stream.EventStream(0, "events", "sim", (320, 240)))
    wt = dv.io.NetworkWriter("127.0.0.1", pt, dv.io.Stream.TriggerStream(0, "triggers", "sim"))
    print("ready", flush=True)
    while we.getClientCount() < 1 or wt.getClientCount() < 1:
        time.sleep(0.01)
    t0 = time.monotonic()
    now = 0
    while True:
        now += 10_000
        step = rig.advance(now)
        s = dv.EventStore()
        for t, x, y, p in zip(step.events.t.tolist(), step.events.x.tolist(), step.events.y.tolist(), step.events.p.tolist()):
            s.push_back(t, x, y, bool(p))
        we.writeEvents(s)
        if len(step.triggers):
            tp = dv.TriggerPacket()
            for t in step.triggers.tolist():
                tp.elements.append(dv.Trigger(t, dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE))
            wt.writeTriggers(tp.elements)
        lag = t0 + now / 1e6 - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    """
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def rig_files(tmp_path):
    rig = SimulatedRig(SimConfig(event_view="same_sensor", frame_size=(320, 240)))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(20):
        cv2.imwrite(str(images / f"{i:03d}.png"), rig.ground_truth(1000 + i * 20_000)[..., ::-1])
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    pe, pt = _free_ports(2)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    server = subprocess.Popen(
        [sys.executable, str(script), str(pe), str(pt)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert server.stdout.readline().strip() == "ready"
    config = tmp_path / "rig.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            wiring = "software"
            [events]
            backend = "dv-network"
            port = {pe}
            trigger_port = {pt}
            [frames]
            backend = "basler"
            serial = "0815-0000"
            [frames.settings]
            pixel_format = "RGB8"
            roi = [0, 0, 320, 240]
            exposure_us = 2000
            frame_rate = 50
            emulator_image_dir = "{images}"
            """
        )
    )
    try:
        yield server, config
    finally:
        server.kill()
        server.wait()


def _record(config, out, seconds: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYLON_CAMEMU": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "-v",
        "record",
        "--config",
        str(config),
        "--out",
        str(out),
        "--quiet",
        "--factor",
        "4",
    ]
    if seconds:
        cmd += ["--seconds", seconds]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _raw_counts(path):
    rec = dv.io.MonoCameraRecording(str(path))
    n_ev = n_fr = 0
    while (b := rec.getNextEventBatch()) is not None:
        n_ev += b.size()
    while rec.getNextFrame() is not None:
        n_fr += 1
    return n_ev, n_fr


def test_record_with_pylon_emulator_and_dv_stream(rig_files, tmp_path):
    _server, config = rig_files
    proc = _record(config, tmp_path / "out", "3")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    (session,) = (tmp_path / "out").iterdir()
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["status"] == "complete"
    n_ev, n_fr = _raw_counts(session / "raw.aedat4")
    assert n_ev == manifest["capture"]["events"] > 10_000
    assert n_fr == manifest["capture"]["keyframes"] > 20
    assert manifest["output"]["interpolated_frames"] > 0
    assert manifest["sync"]["method"] == "host-clock"
    assert "slomo-rig sync" in out  # the operator is told how to refine the clock


def test_event_camera_gone_mid_recording(rig_files, tmp_path):
    server, config = rig_files
    proc = _record(config, tmp_path / "out", None)

    def recording() -> bool:  # workers started and events on disk (not a fixed sleep)
        assert proc.poll() is None, proc.communicate()[1]
        return any(p.stat().st_size > 200_000 for p in (tmp_path / "out").glob("*/raw.aedat4"))

    deadline = time.monotonic() + 300
    while not recording():
        assert time.monotonic() < deadline, "no recording after 300 s"
        time.sleep(0.05)
    server.kill()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err  # a failed recording, not a user error
    assert "record: failed:" in err and "DV stream" in err  # (-v adds the debug traceback)
    (session,) = (tmp_path / "out").iterdir()
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"]
    n_ev, n_fr = _raw_counts(session / "raw.aedat4")
    assert n_ev == manifest["capture"]["events"] > 0  # everything received before is kept
