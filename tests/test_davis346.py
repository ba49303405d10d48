"""A real DAVIS346 recording made by DV's Recorder module (tests/data/davis346.aedat4,
grey APS frames and events of one sensor; see tests/data/README.md) reaches the models
exactly as recorded. dv-processing, which reads the same file, is the reference."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.inputs import open_input
from pipeline.inputs.aedat4file import Aedat4File
from pipeline.outputs import read_timestamps
from pipeline.replay_commands import main as replay_main

DAVIS346 = Path(__file__).with_name("data") / "davis346.aedat4"


def _dv_frames() -> list:
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(DAVIS346))
    out = []
    while (f := rec.getNextFrame()) is not None:
        out.append(f)
    return out


def test_dv_recorder_stream_table_is_read():
    """DV's Recorder nests the stream table under /mainloop/Recorder/outInfo/ (not
    /outInfo/ as dv-processing's writers do); both are found."""
    file = Aedat4File(DAVIS346)
    types = {s.id: s.type for s in file.header.streams}
    assert types == {0: "EVTS", 1: "FRME", 2: "IMUS", 3: "TRIG"}
    assert file.streams[1].size == (346, 260) and file.streams[1].source == "DAVIS346_00000002"
    n_events = sum(len(a) for _, a in file.event_packets(0) if a is not None)
    assert n_events == 78_830 and not file.damage


def test_grey_davis_recording_replays_with_keyframes_bit_exact(tmp_path, capsys):
    """Every grey frame comes out of replay, at its mid-exposure time, as the same grey
    values in all three channels (PNG output is lossless)."""
    dv_frames = _dv_frames()
    assert len(dv_frames) == 59 and dv_frames[0].image.ndim == 2  # one grey channel
    out = tmp_path / "out"
    rc = replay_main(
        ["replay", str(DAVIS346), "--out", str(out), "--factor", "3", "--format", "png"]
        + ["--model", "blend", "--quiet"]
    )
    assert rc == 0, capsys.readouterr().err
    rows = read_timestamps(out / "timestamps.csv")
    originals = [r for r in rows if r[2] == "original"]
    assert len(originals) == 59 and len(rows) == 59 + 58 * 2
    for (index, t_us, _), fr in zip(originals, dv_frames, strict=True):
        mid = fr.timestamp + int(fr.exposure.total_seconds() * 1e6) // 2
        assert t_us == mid
        png = cv2.imread(str(out / "frames" / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert png.shape == (260, 346, 3) and png.dtype == np.uint8
        expected = np.repeat(fr.image[:, :, None], 3, axis=2)
        assert np.array_equal(png, expected)


def test_events_reach_the_frame_grid_unchanged():
    """Same sensor: event pixels are frame pixels (no mapping, no flip), polarity kept."""
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(DAVIS346))
    ref = []
    while (b := rec.getNextEventBatch()) is not None:
        ref.append(b.numpy())
    ref = np.concatenate(ref)
    with open_input(DAVIS346) as src:
        kfs = list(src.keyframes())
        got = [src.events(a, b) for a, b in zip(kfs, kfs[1:], strict=False)]
    sel = ref[(ref["timestamp"] >= kfs[0].t_us) & (ref["timestamp"] < kfs[-1].t_us)]
    t = np.concatenate([g.t for g in got])
    assert np.array_equal(t, sel["timestamp"])
    assert np.array_equal(np.concatenate([g.x for g in got]), sel["x"].astype(np.float32))
    assert np.array_equal(np.concatenate([g.y for g in got]), sel["y"].astype(np.float32))
    assert np.array_equal(np.concatenate([g.p for g in got]) > 0, sel["polarity"] > 0)
