"""Aedat4Writer files must open in dv-processing's own readers with exactly the data
written, including files cut off mid-write (what a crash leaves behind)."""

from __future__ import annotations

import datetime
import struct
from pathlib import Path

import dv_processing as dv  # noqa: E402
import numpy as np
import pytest

from pipeline.aedat4 import (
    DATA_TABLE_POSITION_OFFSET,
    Aedat4Writer,
    reset_data_table,
)
from pipeline.aedat4_bench import bench_writer
from rig.types import EventBatch, Frame

COMPRESSIONS = ["none", "lz4"]
EV_SIZE = (640, 480)
FR_SIZE = (36, 20)


def _events(n: int, seed: int = 0, t0: int = 1_000) -> EventBatch:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 5 * n, n)).astype(np.int64)
    return EventBatch(
        t,
        rng.integers(0, EV_SIZE[0], n, dtype=np.int16),
        rng.integers(0, EV_SIZE[1], n, dtype=np.int16),
        rng.integers(0, 2, n, dtype=np.int8),
    )


def _frames(n: int, t0: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(
            rng.integers(0, 256, (FR_SIZE[1], FR_SIZE[0], 3), dtype=np.uint8),
            i,
            t0 + 10_000 * i,
            100 + 7 * i,
        )
        for i in range(n)
    ]


def _read_all(path: Path) -> tuple[EventBatch, list, np.ndarray]:
    """Everything dv's MonoCameraRecording gives back, sequentially."""
    rec = dv.io.MonoCameraRecording(str(path))
    evs = []
    if rec.isEventStreamAvailable():
        while (b := rec.getNextEventBatch()) is not None:
            a = b.numpy()
            evs.append(
                EventBatch(
                    a["timestamp"].astype(np.int64),
                    a["x"].astype(np.int16),
                    a["y"].astype(np.int16),
                    a["polarity"].astype(np.int8),
                )
            )
    frames = []
    if rec.isFrameStreamAvailable():
        while (f := rec.getNextFrame()) is not None:
            frames.append(f)
    trig = []
    if rec.isTriggerStreamAvailable():
        while (tb := rec.getNextTriggerBatch()) is not None:
            trig += [tr.timestamp for tr in tb]
    return EventBatch.concat(evs), frames, np.array(trig, np.int64)


def _assert_events_equal(got: EventBatch, want: EventBatch) -> None:
    assert len(got) == len(want)
    for col in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(getattr(got, col), getattr(want, col), err_msg=col)


def _assert_frames_equal(got: list, want: list[Frame]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.timestamp == w.timestamp_us
        assert g.exposure == datetime.timedelta(microseconds=w.exposure_us)
        # dv frames are BGR (OpenCV order); ours are RGB.
        np.testing.assert_array_equal(g.image, w.image[:, :, ::-1])


def _write_session(w: Aedat4Writer, ev: EventBatch, frames: list[Frame], trig: np.ndarray) -> None:
    """Interleave events, frames and triggers as a recorder would, in uneven batches."""
    cuts = np.linspace(0, len(ev), len(frames) + 1).astype(int)
    tcuts = np.linspace(0, len(trig), len(frames) + 1).astype(int)
    for i, fr in enumerate(frames):
        a, b = cuts[i], cuts[i + 1]
        mid = a + (b - a) // 3
        w.write_events(ev[a:mid])
        w.write_events(ev[mid:b])
        w.write_frame(fr)
        w.write_triggers(trig[tcuts[i] : tcuts[i + 1]])


@pytest.mark.parametrize("compression,threads", [("none", 0), ("lz4", 0), ("lz4", 2)])
def test_roundtrip_all_streams(tmp_path: Path, compression: str, threads: int) -> None:
    ev = _events(50_000)
    frames = _frames(6, t0=2_000)
    trig = np.sort(np.random.default_rng(3).integers(0, 250_000, 40)).astype(np.int64)
    path = tmp_path / "rec.aedat4"
    with Aedat4Writer(
        path,
        "DVXplorer_DXA000",
        event_size=EV_SIZE,
        frame_size=FR_SIZE,
        triggers=True,
        compression=compression,  # type: ignore[arg-type]
        max_packet_events=4_000,
        compress_threads=threads,
        max_packet_triggers=8,
    ) as w:
        _write_session(w, ev, frames, trig)
        assert w.stream_ids == {"events": 0, "frames": 1, "triggers": 2}
    assert w.packets_written > 20  # many packets per stream

    rec = dv.io.MonoCameraRecording(str(path), "DVXplorer_DXA000")
    assert rec.getCameraName() == "DVXplorer_DXA000"
    assert tuple(rec.getEventResolution()) == EV_SIZE
    assert tuple(rec.getFrameResolution()) == FR_SIZE
    assert set(rec.getStreamNames()) == {"events", "frames", "triggers"}
    got_ev, got_fr, got_tr = _read_all(path)
    _assert_events_equal(got_ev, ev)
    _assert_frames_equal(got_fr, frames)
    np.testing.assert_array_equal(got_tr, trig)

    # Time-range queries go through the file data table written at close.
    lo, hi = int(ev.t[12_345]), int(ev.t[37_000])
    part = rec.getEventsTimeRange(lo, hi).numpy()
    want = ev.time_slice(lo, hi)
    np.testing.assert_array_equal(part["timestamp"], want.t)
    np.testing.assert_array_equal(part["x"], want.x)
    frs = rec.getFramesTimeRange(frames[2].timestamp_us, frames[4].timestamp_us)
    assert [f.timestamp for f in frs] == [frames[2].timestamp_us, frames[3].timestamp_us]
    (table_pos,) = struct.unpack_from("<q", path.read_bytes(), DATA_TABLE_POSITION_OFFSET)
    assert 0 < table_pos < path.stat().st_size


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_payloads_match_dv_writer(tmp_path: Path, compression: str) -> None:
    """Event and frame packets are byte-identical to what dv's MonoCameraWriter writes."""
    ev = _events(300)
    frames = _frames(2, t0=10_000) + [
        Frame(np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3), 9, 99_999, 5)
    ]
    ref, mine = tmp_path / "dv.aedat4", tmp_path / "mine.aedat4"
    comp = dv.CompressionType.NONE  # compare uncompressed payloads
    for size in (FR_SIZE, (7, 5)):
        fr = [f for f in frames if f.image.shape[:2] == size[::-1]]
        cfg = dv.io.MonoCameraWriter.Config("CAM", comp)
        cfg.addEventStream(EV_SIZE)
        cfg.addFrameStream(size)
        w = dv.io.MonoCameraWriter(str(ref), cfg)
        store = dv.EventStore()
        for i in range(len(ev)):
            store.push_back(int(ev.t[i]), int(ev.x[i]), int(ev.y[i]), bool(ev.p[i]))
        w.writeEvents(store)
        for f in fr:
            d = dv.Frame(f.timestamp_us, np.ascontiguousarray(f.image[:, :, ::-1]))
            d.exposure = datetime.timedelta(microseconds=f.exposure_us)
            w.writeFrame(d)
        del w
        with Aedat4Writer(
            mine, "CAM", event_size=EV_SIZE, frame_size=size, compression=compression
        ) as m:  # type: ignore[arg-type]
            m.write_events(ev)
            for f in fr:
                m.write_frame(f)
        # Our events are gathered into packets, so compare each stream's packets in order.
        want, got = _payloads(ref), _payloads(mine, decompress=compression == "lz4")
        for sid in (0, 1):
            assert [p for s, p in got if s == sid] == [p for s, p in want if s == sid]
        assert len(got) == len(want) == 1 + len(fr)


def _payloads(path: Path, decompress: bool = False) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    (hsize,) = struct.unpack_from("<i", data, 14)
    (table,) = struct.unpack_from("<q", data, DATA_TABLE_POSITION_OFFSET)
    pos, out = 18 + hsize, []
    while pos < table:
        sid, size = struct.unpack_from("<ii", data, pos)
        payload = data[pos + 8 : pos + 8 + size]
        if decompress:
            import lz4.frame

            payload = lz4.frame.decompress(payload)
        out.append((sid, payload))
        pos += 8 + size
    return out


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_empty_streams(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "empty.aedat4"
    with Aedat4Writer(
        path,
        "CAM",
        event_size=EV_SIZE,
        frame_size=FR_SIZE,
        triggers=True,
        compression=compression,  # type: ignore[arg-type]
    ) as w:
        w.write_events(EventBatch.empty())
        w.write_triggers(np.empty(0, np.int64))
    rec = dv.io.MonoCameraRecording(str(path))
    assert rec.getNextEventBatch() is None
    assert rec.getNextFrame() is None
    assert rec.getNextTriggerBatch() is None
    # Only some streams, then only events written: the others stay empty.
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE, triggers=True) as w:
        w.write_events(_events(10))
    got, frames, trig = _read_all(path)
    assert len(got) == 10 and frames == [] and trig.size == 0
    assert not dv.io.MonoCameraRecording(str(path)).isFrameStreamAvailable()


def test_packets_follow_time_span(tmp_path: Path) -> None:
    """A slow stream still gets packets every max_packet_us, not only every N events."""
    t = np.arange(0, 1_000_000, 1_000, dtype=np.int64)  # 1 s at 1 kev/s
    z = np.zeros(len(t), np.int16)
    path = tmp_path / "slow.aedat4"
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE, max_packet_us=100_000) as w:
        for i in range(0, len(t), 10):
            w.write_events(
                EventBatch(
                    t[i : i + 10], z[i : i + 10], z[i : i + 10], z[i : i + 10].astype(np.int8)
                )
            )
    rec = dv.io.MonoCameraRecording(str(path))
    sizes = []
    while (b := rec.getNextEventBatch()) is not None:
        sizes.append(len(b))
    assert sum(sizes) == len(t) and len(sizes) == 10


@pytest.mark.parametrize("compression,threads", [("none", 0), ("lz4", 0), ("lz4", 2)])
def test_cut_file_opens_up_to_the_cut(tmp_path: Path, compression: str, threads: int) -> None:
    """A crash leaves no data table: dv scans packets and stops at the first incomplete one."""
    ev = _events(30_000, seed=5)
    frames = _frames(5, t0=3_000, seed=5)
    trig = np.arange(1_000, 150_000, 7_000, dtype=np.int64)
    path = tmp_path / "live.aedat4"
    w = Aedat4Writer(
        path,
        "CAM",
        event_size=EV_SIZE,
        frame_size=FR_SIZE,
        triggers=True,
        compression=compression,  # type: ignore[arg-type]
        max_packet_events=2_500,
        compress_threads=threads,
        max_packet_triggers=4,
    )
    _write_session(w, ev, frames, trig)
    w.flush()
    live = path.read_bytes()  # the file as a crash would leave it: still no table
    index = w.packet_index
    w.close()
    (hsize,) = struct.unpack_from("<i", live, 14)
    header_end = 18 + hsize
    assert struct.unpack_from("<q", live, DATA_TABLE_POSITION_OFFSET)[0] == -1

    rng = np.random.default_rng(11)
    ends = [off + size for off, _, size, _, _, _ in index]
    cuts = {header_end, len(live), ends[3], ends[3] + 1, ends[3] - 1, ends[-1] - 5}
    cuts |= set(int(c) for c in rng.integers(header_end, len(live), 14))
    ids = w.stream_ids
    for cut in sorted(cuts):
        cut_path = tmp_path / f"cut_{cut}.aedat4"
        cut_path.write_bytes(live[:cut])
        got_ev, got_fr, got_tr = _read_all(cut_path)
        done = [p for p, e in zip(index, ends, strict=True) if e <= cut]
        n_ev = sum(p[3] for p in done if p[1] == ids["events"])
        n_fr = sum(p[3] for p in done if p[1] == ids["frames"])
        n_tr = sum(p[3] for p in done if p[1] == ids["triggers"])
        _assert_events_equal(got_ev, ev[:n_ev])
        _assert_frames_equal(got_fr, frames[:n_fr])
        np.testing.assert_array_equal(got_tr, trig[:n_tr])
    assert n_ev == len(ev)  # the last cut is the whole file

    # Cut inside the IOHeader: nothing to open.
    bad = tmp_path / "in_header.aedat4"
    bad.write_bytes(live[: header_end - 10])
    with pytest.raises(RuntimeError):
        dv.io.MonoCameraRecording(str(bad))


def test_closed_then_truncated_needs_reset(tmp_path: Path) -> None:
    """A closed file points at its table; cut afterwards, dv refuses it until the
    pointer is reset, then it scans like a crashed recording."""
    ev = _events(20_000, seed=8)
    path = tmp_path / "closed.aedat4"
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE, max_packet_events=3_000) as w:
        w.write_events(ev)
    index = w.packet_index
    data = path.read_bytes()
    cut = index[4][0] + index[4][2] + 100  # inside the 6th packet
    path.write_bytes(data[:cut])
    with pytest.raises(RuntimeError):
        dv.io.MonoCameraRecording(str(path))
    assert reset_data_table(path) is True
    assert reset_data_table(path) is False
    got, _, _ = _read_all(path)
    _assert_events_equal(got, ev[:15_000])


def test_out_of_order_raises_and_keeps_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "order.aedat4"
    ev = _events(1_000)
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE, frame_size=FR_SIZE, triggers=True) as w:
        w.write_events(ev[:500])
        with pytest.raises(ValueError, match="out of time order"):
            w.write_events(ev[:10])  # earlier than what was written
        rest = ev[500:]
        t = rest.t.copy()
        t[10] = t[9] - 1
        with pytest.raises(ValueError, match="events out of time order at index 10"):
            w.write_events(EventBatch(t, rest.x, rest.y, rest.p))
        w.write_events(ev[500:])  # a rejected batch writes nothing
        fr = _frames(2, t0=5_000)
        w.write_frame(fr[1])
        with pytest.raises(ValueError, match="frames out of time order"):
            w.write_frame(fr[0])
        w.write_triggers(np.array([10, 20], np.int64))
        with pytest.raises(ValueError, match="triggers out of time order"):
            w.write_triggers(np.array([15], np.int64))
        with pytest.raises(ValueError, match="triggers out of time order"):
            w.write_triggers(np.array([30, 25], np.int64))
        w.write_triggers(np.array([20, 30], np.int64))  # equal timestamps are fine
    got, frames, trig = _read_all(path)
    _assert_events_equal(got, ev)
    _assert_frames_equal(frames, [fr[1]])
    np.testing.assert_array_equal(trig, [10, 20, 20, 30])


def test_input_validation(tmp_path: Path) -> None:
    path = tmp_path / "v.aedat4"
    with pytest.raises(ValueError, match="compression"):
        Aedat4Writer(path, "CAM", event_size=EV_SIZE, compression="zstd")  # type: ignore[arg-type]
    with Aedat4Writer(path, "CAM", frame_size=FR_SIZE) as w:
        with pytest.raises(ValueError, match="no event stream"):
            w.write_events(_events(3))
        with pytest.raises(ValueError, match="no trigger stream"):
            w.write_triggers(np.array([1], np.int64))
        with pytest.raises(ValueError, match="frame must be"):
            w.write_frame(Frame(np.zeros((FR_SIZE[0], FR_SIZE[1], 3), np.uint8), 0, 0, 1))
    with pytest.raises(ValueError, match="closed"):
        w.write_frame(_frames(1, 0)[0])
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE) as w:
        ev = _events(3)
        with pytest.raises(ValueError, match="integer"):
            w.write_events(EventBatch(ev.t, ev.x.astype(np.float32), ev.y, ev.p))
        with pytest.raises(ValueError, match="no frame stream"):
            w.write_frame(_frames(1, 0)[0])


def test_polarity_normalised_to_bool(tmp_path: Path) -> None:
    path = tmp_path / "p.aedat4"
    ev = _events(100)
    p = np.where(ev.p > 0, 1, 0).astype(np.int8)
    with Aedat4Writer(path, "CAM", event_size=EV_SIZE, compression="none") as w:
        w.write_events(EventBatch(ev.t, ev.x, ev.y, (p * 5).astype(np.int8)))
    got, _, _ = _read_all(path)
    np.testing.assert_array_equal(got.p, p)


def test_faery_reads_our_events(tmp_path: Path) -> None:
    import faery

    ev = _events(20_000, seed=2)
    for compression in COMPRESSIONS:
        path = tmp_path / f"faery_{compression}.aedat4"
        with Aedat4Writer(
            path,
            "CAM",
            event_size=EV_SIZE,
            frame_size=FR_SIZE,
            triggers=True,
            compression=compression,  # type: ignore[arg-type]
            max_packet_events=3_000,
        ) as w:
            _write_session(w, ev, _frames(3, t0=1_000), np.array([5, 6], np.int64))
        stream = faery.events_stream_from_file(path)
        assert tuple(stream.dimensions()) == EV_SIZE
        arr = np.concatenate(list(stream))
        np.testing.assert_array_equal(arr["t"].astype(np.int64), ev.t)
        np.testing.assert_array_equal(arr["x"], ev.x)
        np.testing.assert_array_equal(arr["y"], ev.y)
        np.testing.assert_array_equal(arr["p"].astype(np.int8), ev.p)


def test_bench_runs(tmp_path: Path) -> None:
    r = bench_writer(n_events=300_000, directory=tmp_path)
    assert set(r) == {"lz4", "none", "lz4_2threads"}
    assert 16.0 <= r["none"]["bytes_per_event"] < 16.1
    assert r["lz4"]["bytes_per_event"] < 16.0
    assert r["lz4_2threads"]["bytes_per_event"] == r["lz4"]["bytes_per_event"]
    assert all(v["events_per_s"] > 0 for v in r.values())
