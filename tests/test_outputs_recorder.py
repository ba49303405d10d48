"""Outputs and the recorder's in-order reassembly, with real files (PyAV decodes them back)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from pipeline import wire
from pipeline.outputs import (
    CommittedVideo,
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


def _snapshot(session: Session, dest) -> tuple[int, int, int]:
    """What a SIGKILL at this moment leaves: the files as they are on disk now (the
    outputs flush every packet and row they write; only held data is in memory).
    Returns the frames in the video, the rows in timestamps.csv, `info`'s count."""
    import shutil

    dest.mkdir()
    stamps = shutil.copy(session.timestamps_path, dest / "timestamps.csv")
    output = Session.open(session.path).read().get("output", {"frames_written": 0})
    if not session.video_path.exists():  # PyAV creates the file with the first packet
        return 0, len(read_timestamps(stamps)), output["frames_written"]
    video = shutil.copy(session.video_path, dest / "slowmo.mp4")
    return count_video_frames(video), len(read_timestamps(stamps)), output["frames_written"]


def test_a_recording_cut_off_at_any_moment_agrees_on_counts(tmp_path):
    """Video, timestamps.csv and session.json are committed together: whenever the
    recorder dies (between commits), all three give the same number of frames, and
    times in the video follow the rows (frame i at i / fps)."""
    session = Session.create(tmp_path / "s", {"backend": "test"})
    out = CommittedVideo(session.video_path, session.timestamps_path, fps=30)
    rec = Recorder(session, out, job_timeout_s=60.0)
    seen = []
    for k in range(12):
        rec.handle(_keyframe(k))
        if k:
            rec.handle(wire.Message("interval", {"index": k - 1, "status": "dispatched"}))
            rec.handle(_result(k - 1))
        rec.write_ready()
        if k % 4 == 3:
            seen.append(_snapshot(session, tmp_path / f"before-{k}"))  # written, not committed
            rec.save("recording")
            seen.append(_snapshot(session, tmp_path / f"after-{k}"))
    for video, rows, info in seen:
        assert video == rows == info
    # 12, 28, 44 frames written; the MP4 muxer holds the last one until the next.
    assert [s[0] for s in seen] == [0, 11, 11, 27, 27, 43]
    rec.handle(wire.Message("end", {"last_keyframe": 11}))
    rec.write_ready()
    out.close()
    rec.save("complete")
    assert rec.finished and rec.summary()["frames_written"] == 12 + 11 * 3
    assert count_video_frames(session.video_path) == len(read_timestamps(session.timestamps_path))
    with av.open(str(session.video_path)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    assert np.allclose(times, np.arange(45) / 30, atol=1 / 15360)


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
