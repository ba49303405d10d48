"""iniVation: live DV network streams against a real dv_processing NetworkWriter (in a
child process, so it can be killed like a DV instance that goes away), and the
no-camera paths of the USB driver."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import dv_processing  # noqa: F401  (a core dependency: a missing one fails, never skips)
import numpy as np
import pytest

from rig.base import SourceError  # noqa: E402
from rig.inivation import (  # noqa: E402
    DvNetworkEventSource,
    DvNetworkFrameSource,
    InivationConfig,
    InivationEventSource,
)

SERVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import dv_processing as dv
    pe, pt, pf = (int(a) for a in sys.argv[1:4])
    cam = "DVXplorer_sim"
    we = dv.io.NetworkWriter("127.0.0.1", pe, dv.io.Stream.EventStream(0, "events", cam, (640, 480)))
    wt = dv.io.NetworkWriter("127.0.0.1", pt, dv.io.Stream.TriggerStream(0, "triggers", cam))
    wf = dv.io.NetworkWriter("127.0.0.1", pf, dv.io.Stream.FrameStream(0, "frames", cam, (32, 24)))
    print("ready", flush=True)
    while we.getClientCount() < 1 or wt.getClientCount() < 1 or wf.getClientCount() < 1:
        time.sleep(0.01)
    t = 1_000_000
    k = 0
    while True:
        s = dv.EventStore()
        for i in range(50):
            ti = t + i * 100
            s.push_back(ti, ti % 640, ti % 480, bool(ti % 3 == 0))
        we.writeEvents(s)
        tp = dv.TriggerPacket()
        tp.elements.append(dv.Trigger(t, dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE))
        tp.elements.append(dv.Trigger(t + 500, dv.TriggerType.EXTERNAL_SIGNAL_FALLING_EDGE))
        wt.writeTriggers(tp.elements)
        img = np.zeros((24, 32, 3), np.uint8)
        img[:] = (k % 256, 10, 200)  # BGR
        wf.writeFrame(dv.Frame(t, img))
        t += 5000
        k += 1
        time.sleep(0.005)
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
def dv_server(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    ports = _free_ports(3)
    proc = subprocess.Popen(
        [sys.executable, str(script), *map(str, ports)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc, ports
    finally:
        proc.kill()
        proc.wait()


def test_events_triggers_and_frames_from_network(dv_server):
    proc, (pe, pt, pf) = dv_server
    ev_src = DvNetworkEventSource("127.0.0.1", pe, trigger_port=pt)
    fr_src = DvNetworkFrameSource("127.0.0.1", pf)
    with ev_src, fr_src:
        assert ev_src.resolution == (640, 480)
        assert ev_src.camera_name == "DVXplorer_sim"
        assert fr_src.resolution == (32, 24)
        events, triggers, frames = [], [], []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            sum(map(len, events)) < 500 or sum(map(len, triggers)) < 5 or len(frames) < 5
        ):
            s = ev_src.read(0.2)
            if s is not None:
                events.append(s.events)
                triggers.append(s.triggers)
            f = fr_src.read(0.01)
            if f is not None:
                frames.append(f)
    t = np.concatenate([e.t for e in events])
    x = np.concatenate([e.x for e in events])
    p = np.concatenate([e.p for e in events])
    assert len(t) >= 500 and np.all(np.diff(t) > 0)
    assert np.array_equal(x, (t % 640).astype(np.int16))
    assert np.array_equal(p, (t % 3 == 0).astype(np.int8))
    trig = np.concatenate(triggers)
    assert len(trig) >= 5 and np.all(trig % 5000 == 0)  # rising edges only
    assert len(frames) >= 5
    f = frames[-1]
    assert f.image.shape == (24, 32, 3)
    assert f.image[0, 0, 1] == 10 and f.image[0, 0, 0] == 200  # BGR on the wire -> RGB
    assert [fr.index for fr in frames] == list(range(len(frames)))


def test_server_going_away_is_a_source_error(dv_server):
    proc, (pe, pt, _) = dv_server
    with DvNetworkEventSource("127.0.0.1", pe) as src:
        deadline = time.monotonic() + 5
        while src.read(0.2) is None and time.monotonic() < deadline:
            pass
        proc.kill()
        proc.wait()
        with pytest.raises(SourceError, match="closed"):
            for _ in range(100):
                src.read(0.05)


def test_connection_refused():
    (port,) = _free_ports(1)
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}.*Is DV running"):
        DvNetworkEventSource("127.0.0.1", port).open()
    with pytest.raises(SourceError, match="frames"):
        DvNetworkFrameSource("127.0.0.1", port).open()


def test_wrong_stream_on_port(dv_server):
    _, (pe, pt, pf) = dv_server
    with pytest.raises(SourceError, match="carries no events"):
        DvNetworkEventSource("127.0.0.1", pf).open()
    with pytest.raises(SourceError, match="carries no frames"):
        DvNetworkFrameSource("127.0.0.1", pe).open()


def test_usb_no_camera():
    assert InivationEventSource.find() == []
    with pytest.raises(SourceError, match="No iniVation camera found"):
        InivationEventSource().open()
    with pytest.raises(SourceError, match="serial DVX_0000"):
        InivationEventSource(InivationConfig(serial="DVX_0000")).open()


def test_inivation_config_validation():
    with pytest.raises(ValueError, match="both"):
        InivationConfig(generator_high_us=100)
    with pytest.raises(ValueError, match=">= 1"):
        InivationConfig(generator_high_us=0, generator_low_us=5)
