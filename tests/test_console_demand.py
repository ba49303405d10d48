"""Previews only while someone watches: the capture tap and the recorder's preview output
build and send nothing but health until a browser asks the hub for a preview, and stop
again once nobody has asked for a while. Counted, never timed."""

from __future__ import annotations

import time

import numpy as np

from pipeline.console.hub import PreviewHub
from pipeline.console.tap import PreviewOutput, PreviewTap
from rig.types import EventBatch, Frame

IMAGE = np.zeros((30, 40, 3), np.uint8)


def _batch(t0: int) -> EventBatch:
    t = t0 + np.arange(50, dtype=np.int64)
    xy = (np.arange(50) % 30).astype(np.int16)
    return EventBatch(t, xy, xy, (np.arange(50) % 2).astype(np.int8))


def _offer(tap: PreviewTap, i: int) -> None:
    """What capture hands the tap each round: a frame, events, a health snapshot."""
    tap.frame(Frame(IMAGE, i, i * 1000, 100))
    b = _batch(i * 1000)
    tap.events(b, EventBatch(b.t, b.x.astype(np.float32), b.y.astype(np.float32), b.p))
    tap.health({"wall": float(i), "events": i, "frames": i})


def _until(cond, what: str, feed=None, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        if feed is not None:
            feed()
        time.sleep(0.01)


def test_tap_sends_previews_only_while_watched() -> None:
    hub = PreviewHub(viewer_hold_s=1.0)
    tap = PreviewTap(hub.endpoint, (40, 30), max_hz=50).start()
    n = [0]

    def feed() -> None:
        n[0] += 1
        _offer(tap, n[0])

    try:
        # Nobody watching: many preview rounds with new frames and events, health
        # reaches the hub, not one preview is built or sent.
        _until(lambda: tap.rounds >= 30 and hub.health.get("events", 0) >= 5, "health", feed)
        assert tap.sent == 0 and tap.events_sent == 0
        assert hub.seq("rgb") == 0 and hub.seq("events") == 0
        assert hub.health["preview"]["watched"] is False
        # A browser asks (every preview request goes through wait_newer).
        hub.wait_newer("live", -1, 0.0)
        _until(lambda: hub.seq("rgb") >= 1 and hub.seq("events") >= 1, "previews", feed)
        assert tap.watched and tap.sent >= 1 and tap.events_sent >= 1
        # Nobody asks any more: the tap hears so and stops sending.
        _until(lambda: not tap.watched, "the viewer to leave", feed)
        sent, events_sent, rounds = tap.sent, tap.events_sent, tap.rounds
        _until(lambda: tap.rounds >= rounds + 20, "more rounds", feed)
        assert (tap.sent, tap.events_sent) == (sent, events_sent)
    finally:
        tap.close()
        hub.close()


def test_recorder_previews_only_while_watched() -> None:
    hub = PreviewHub(viewer_hold_s=3600.0)
    out = PreviewOutput(hub.endpoint, hz=1000)
    try:
        for i in range(200):  # 200 interpolated frames, nobody watching
            out.write(IMAGE, i, "interpolated")
        assert out.sent == 0 and out.frames_written == 200
        hub.note_viewer()
        _until(
            lambda: hub.seq("interpolated") >= 1,
            "an interpolated preview",
            lambda: out.write(IMAGE, 0, "interpolated"),
        )
        assert out.watched and out.sent >= 1
    finally:
        out.close()
        hub.close()
