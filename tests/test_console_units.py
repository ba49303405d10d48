"""The console's parts without a browser: names that must stay in the sessions folder,
the token rules, form validation, and the preview path from tap to hub over real
ZeroMQ sockets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.console.calib import CalibForm
from pipeline.console.hub import OFF_RGB, ON_RGB, PreviewHub, event_image
from pipeline.console.rig import CameraSettings, FormError
from pipeline.console.security import Access, ConsoleSecurityError, is_loopback, read_token
from pipeline.console.sessions import PathRefused, session_dir, session_file
from pipeline.console.tap import PreviewOutput, PreviewTap, subsample
from rig.types import EventBatch, Frame


def _session(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "session.json").write_text(json.dumps({"format": "slomo-rig-session"}))
    (path / "slowmo.mp4").write_bytes(b"video")
    return path


def test_names_stay_inside_the_sessions_folder(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    s1 = _session(root, "s1")
    outside = _session(tmp_path, "outside")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "linked").symlink_to(outside)  # a session folder that is a link out
    (s1 / "link.txt").symlink_to(tmp_path / "secret.txt")  # a file that is a link out
    assert session_dir(root, "s1") == s1.resolve()
    assert session_file(root, "s1", "slowmo.mp4") == (s1 / "slowmo.mp4").resolve()
    for name in ("..", ".", "../outside", "/etc", "s1/..", "linked", "nope", "", ".hidden"):
        with pytest.raises(PathRefused):
            session_dir(root, name)
    for rel in ("../outside/slowmo.mp4", "/etc/passwd", "link.txt", "", "a/../../x", "."):
        with pytest.raises(PathRefused):
            session_file(root, "s1", rel)


def test_token_rules(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    made = Access.make("127.0.0.1", None)
    assert made.open_reads and len(made.token) >= 24
    assert made.check(made.token) and not made.check(made.token + "x") and not made.check(None)
    f = tmp_path / "token"
    f.write_text("  a-good-token-of-20-chars \n")
    assert read_token(f) == "a-good-token-of-20-chars"
    wide = Access.make("0.0.0.0", f)
    assert not wide.open_reads and wide.token == "a-good-token-of-20-chars"
    for text in ("short", "has a space in the token"):
        f.write_text(text)
        with pytest.raises(ConsoleSecurityError, match="16 or more characters"):
            read_token(f)
    with pytest.raises(ConsoleSecurityError, match="cannot read"):
        read_token(tmp_path / "missing")


def test_forms_refuse_bad_values_with_a_message() -> None:
    for kwargs, words in (
        ({"exposure_us": 0}, "exposure"),
        ({"frame_rate": 5000}, "frame rate"),
        ({"gain_db": -1}, "gain"),
    ):
        with pytest.raises(FormError, match=words):
            CameraSettings(**kwargs)
    for kwargs, words in (
        ({"name": "../x"}, "file name"),
        ({"board": "nine"}, "board|COLSxROWS|corners"),
        ({"views": 0}, "views"),
        ({"rig_type": "mirror"}, "rig type"),
        ({"blink_ms": 1}, "blink period"),
    ):
        with pytest.raises(FormError, match=words):
            CalibForm(**kwargs)


def test_event_image_colours_by_polarity() -> None:
    x = np.array([1, 2, 50], np.int16)
    y = np.array([1, 2, 50], np.int16)  # the last one is outside and ignored
    p = np.array([1, 0, 1], np.int8)
    img = event_image(x, y, p, (10, 8), None)
    assert img.shape == (8, 10, 3)
    assert (img[1, 1] == ON_RGB).all() and (img[2, 2] == OFF_RGB).all()
    assert (
        len(
            subsample(
                EventBatch(
                    np.arange(1000, dtype=np.int64), x[[0] * 1000], y[[0] * 1000], p[[0] * 1000]
                ),
                10,
            )
        )
        == 10
    )


def test_tap_to_hub_over_zeromq() -> None:
    """Frames, events, health and interpolated frames reach the hub; the hub keeps the
    newest and renders JPEGs."""
    hub = PreviewHub()
    tap = PreviewTap(hub.endpoint, (40, 30), max_hz=50).start()
    out = PreviewOutput(hub.endpoint, hz=100)
    try:
        image = np.zeros((30, 40, 3), np.uint8)
        image[:, :20] = 200
        n = 500
        rng = np.random.default_rng(0)
        t = np.arange(n, dtype=np.int64) * 10
        raw = EventBatch(
            t,
            rng.integers(0, 40, n).astype(np.int16),
            rng.integers(0, 30, n).astype(np.int16),
            rng.integers(0, 2, n).astype(np.int8),
        )
        mapped = EventBatch(t, raw.x.astype(np.float32), raw.y.astype(np.float32), raw.p)
        # PUB/SUB drops what is sent before the connection is up: offer until seen.
        deadline = time.monotonic() + 60
        while not (hub.seq("rgb") and hub.seq("events") and hub.seq("interpolated") and hub.health):
            assert time.monotonic() < deadline, "nothing reached the hub"
            tap.frame(Frame(image, 0, 0, 100))
            tap.events(raw, mapped)
            tap.health({"wall": 1.0, "events": n, "frames": 1})
            out.write(image, 0, "interpolated")
            hub.wait_newer("events", hub.seq("events"), 0.05)
        assert hub.wait_newer("rgb", 0, 5) >= 1
        seq, _, data = hub.frame_jpeg("rgb")
        assert seq >= 1 and data[:2] == b"\xff\xd8"  # a JPEG
        assert hub.frame_jpeg("interpolated") is not None
        assert hub.event_size == (40, 30)
        assert hub.events_jpeg("events", 30.0, hub.event_size) is not None
        assert hub.events_jpeg("overlay", 30.0, hub.event_size) is not None
        assert hub.health.get("events") == n
    finally:
        out.close()
        tap.close()
        hub.close()
