"""Outputs and the recorder's in-order reassembly, with real files (PyAV decodes them back)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline import wire
from pipeline.outputs import (
    FanOut,
    OutputError,
    PngSequenceOutput,
    TimestampsOutput,
    VideoOutput,
    read_timestamps,
)
from pipeline.recorder import Recorder
from pipeline.session import Session, SessionError


def count_video_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_video_and_timestamps_agree(tmp_path, suffix):
    out = FanOut(
        [VideoOutput(tmp_path / f"v{suffix}", fps=30), TimestampsOutput(tmp_path / "t.csv")]
    )
    rng = np.random.default_rng(0)
    for i in range(17):
        out.write(
            rng.integers(0, 255, (31, 45, 3), dtype=np.uint8),
            1000 * i,
            "original" if i % 4 == 0 else "interpolated",
        )
    out.close()
    rows = read_timestamps(tmp_path / "t.csv")
    assert len(rows) == 17 == count_video_frames(tmp_path / f"v{suffix}")
    assert rows[4] == (4, 4000, "original")


def test_ffv1_is_lossless(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    v = VideoOutput(tmp_path / "x.mkv")
    v.write(img, 0, "original")
    v.close()
    with av.open(str(tmp_path / "x.mkv")) as c:
        back = next(c.decode(video=0)).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(back, img)


def test_png_sequence(tmp_path):
    out = PngSequenceOutput(tmp_path / "frames")
    out.write(np.zeros((8, 8, 3), np.uint8), 0, "original")
    out.write(np.ones((8, 8, 3), np.uint8), 1, "interpolated")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000000.png", "000001.png"]


def test_unknown_video_suffix_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="unknown video format"):
        VideoOutput(tmp_path / "x.avi2")


def _keyframe(i: int) -> wire.Message:
    return wire.Message(
        "keyframe", {"index": i, "t_us": 10_000 * i}, {"image": np.full((8, 10, 3), i, np.uint8)}
    )


def _result(i: int, n: int = 3) -> wire.Message:
    ts = 10_000 * i + np.arange(1, n + 1, dtype=np.int64) * 2500
    return wire.Message(
        "result",
        {"index": i, "compute_s": 0.01, "model": "blend"},
        {"frames": np.full((n, 8, 10, 3), 100 + i, np.uint8), "timestamps": ts},
    )


def test_recorder_writes_in_order_and_lists_skips(tmp_path):
    session = Session.create(tmp_path, {"backend": "test"})
    out = TimestampsOutput(tmp_path / "ts.csv")
    rec = Recorder(session, out, job_timeout_s=0.0)
    msgs = [
        _keyframe(0),
        _keyframe(1),
        wire.Message("interval", {"index": 0, "status": "dispatched"}),
        _keyframe(2),
        wire.Message("interval", {"index": 1, "status": "skipped", "reason": "all workers busy"}),
        _keyframe(3),
        wire.Message("interval", {"index": 2, "status": "dispatched"}),
        _result(0),
        wire.Message("end", {"last_keyframe": 3}),
    ]
    # interval 2 is dispatched but its worker never answers: it times out (timeout 0 here)
    for m in msgs:
        rec.handle(wire.decode(wire.encode(m)))
        rec.write_ready()
    rec.expire()
    rec.write_ready()
    assert rec.finished
    out.close()
    rows = read_timestamps(tmp_path / "ts.csv")
    assert [r[2] for r in rows] == ["original"] + ["interpolated"] * 3 + ["original"] * 3
    times = [r[1] for r in rows]
    assert times == sorted(times)
    skipped = rec.summary()["skipped_intervals"]
    assert [s["index"] for s in skipped] == [1, 2]
    assert "busy" in skipped[0]["reason"] and "no result" in skipped[1]["reason"]
    rec.save("complete")
    assert Session.open(session.path).read()["output"]["intervals_skipped"] == 2


def test_recorder_rejects_bad_messages(tmp_path):
    session = Session.create(tmp_path, {})
    rec = Recorder(session, TimestampsOutput(tmp_path / "ts.csv"))
    with pytest.raises(wire.WireError):
        rec.handle(wire.Message("interval", {"index": 0, "status": "maybe"}))
    with pytest.raises(wire.WireError):
        rec.handle(
            wire.Message("keyframe", {"index": 0, "t_us": 1}, {"image": np.zeros(3, np.float32)})
        )
    with pytest.raises(wire.WireError):
        rec.handle(wire.Message("job", {}))


def test_session_errors(tmp_path):
    with pytest.raises(SessionError, match="no session"):
        Session.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match="not a slomo-rig session"):
        Session.open(tmp_path / "empty")
    s = Session.create(tmp_path, {})
    s.manifest_path.write_text("{ half a fi")
    with pytest.raises(SessionError, match="corrupt"):
        Session.open(s.path)
