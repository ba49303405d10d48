"""Prophesee: RAW files written by faery (events) plus trigger words spliced in from
the EVT2/EVT3 specifications (faery 0.7.1's encoder rejects trigger arrays), and the
missing-SDK path of the live driver."""

from __future__ import annotations

import struct
import sys

import faery  # noqa: E402
import numpy as np
import pytest

from rig.base import SdkMissingError, SourceError  # noqa: E402
from rig.prophesee import (  # noqa: E402
    PropheseeConfig,
    PropheseeEventSource,
    RawFileEventSource,
)

DIMS = (640, 480)


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    i = 0
    while data.startswith(b"% ", i):  # a binary word may start with a bare "%"
        i = data.index(b"\n", i) + 1
    return data[:i], data[i:]


def _trigger_words(version: str, t: int, channel: int, rising: bool) -> bytes:
    """One external-trigger word preceded by the time words it needs (Prophesee EVT
    format documentation: EVT2 EXT_TRIGGER type 0xA, EVT3 EXT_TRIGGER type 0xA)."""
    v = int(rising)
    if version == "evt2":
        high = (0x8 << 28) | ((t >> 6) & 0x0FFFFFFF)
        word = (0xA << 28) | ((t & 0x3F) << 22) | (channel << 8) | v
        return struct.pack("<II", high, word)
    return struct.pack(
        "<HHH", 0x8000 | ((t >> 12) & 0xFFF), 0x6000 | (t & 0xFFF), 0xA000 | (channel << 8) | v
    )


def write_raw(path, version: str, events: np.ndarray, triggers: list[tuple[int, int, bool]]):
    """Events by faery's encoder, chunked at the trigger times, trigger words between."""
    header = None
    body = b""
    cuts = [0, *np.searchsorted(events["t"], [t for t, _, _ in triggers]).tolist(), len(events)]
    for k in range(len(cuts) - 1):
        with faery.evt.Encoder(path, version, False, DIMS, True) as enc:
            if cuts[k + 1] > cuts[k]:
                enc.write({"events": events[cuts[k] : cuts[k + 1]]})
        h, b = _split_header(path.read_bytes())
        header = header or h
        body += b
        if k < len(triggers):
            body += _trigger_words(version, *triggers[k])
    path.write_bytes(header + body)


def _events(n: int = 5000, t0: int = 1_000_001) -> np.ndarray:
    rng = np.random.default_rng(3)
    ev = np.zeros(n, faery.EVENTS_DTYPE)
    ev["t"] = t0 + np.sort(rng.integers(0, 500_000, n)) | 1  # odd: never a bare 0 low word
    ev["t"] = np.maximum.accumulate(ev["t"])
    ev["x"] = rng.integers(0, DIMS[0], n)
    ev["y"] = rng.integers(0, DIMS[1], n)
    ev["on"] = rng.random(n) < 0.5
    return ev


def _read_all(src):
    ev, tr = [], []
    while True:
        try:
            s = src.read()
        except EOFError:
            break
        ev.append(s.events)
        tr.append(s.triggers)
    from rig.types import EventBatch

    return EventBatch.concat(ev), np.concatenate(tr) if tr else np.empty(0, np.int64)


@pytest.mark.parametrize("version", ["evt2", "evt3"])
def test_raw_events_and_triggers(tmp_path, version):
    ev = _events()
    trig = [(1_100_003, 0, True), (1_100_503, 0, False), (1_200_007, 0, True), (1_300_011, 1, True)]
    path = tmp_path / f"rec_{version}.raw"
    write_raw(path, version, ev, trig)
    with RawFileEventSource(path) as src:
        assert src.resolution == DIMS
        assert src.version == version
        got, triggers = _read_all(src)
    assert np.array_equal(got.t, ev["t"].astype(np.int64))
    assert np.array_equal(got.x, ev["x"].astype(np.int16))
    assert np.array_equal(got.y, ev["y"].astype(np.int16))
    assert np.array_equal(got.p, ev["on"].astype(np.int8))
    assert triggers.tolist() == [1_100_003, 1_200_007, 1_300_011]  # rising only
    with RawFileEventSource(path, trigger_id=0) as src:
        assert _read_all(src)[1].tolist() == [1_100_003, 1_200_007]


@pytest.mark.parametrize("version", ["evt2", "evt3"])
def test_raw_written_by_faery_high_level(tmp_path, version):
    ev = _events(2000)
    path = tmp_path / "hl.raw"
    faery.events_stream_from_array(ev, DIMS).to_file(str(path), version=version)
    with RawFileEventSource(path) as src:
        got, triggers = _read_all(src)
    assert np.array_equal(got.t, ev["t"].astype(np.int64)) and len(triggers) == 0


def test_truncated_file_reads_up_to_the_cut(tmp_path):
    ev = _events(20_000)
    path = tmp_path / "cut.raw"
    faery.events_stream_from_array(ev, DIMS).to_file(str(path), version="evt3")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])
    with RawFileEventSource(path) as src:
        got, _ = _read_all(src)
    assert 0 < len(got) < len(ev)
    assert np.array_equal(got.t, ev["t"][: len(got)].astype(np.int64))


def test_corrupt_words_give_source_error(tmp_path):
    ev = _events(2000)
    path = tmp_path / "bad.raw"
    faery.events_stream_from_array(ev, DIMS).to_file(str(path), version="evt3")
    header, _ = _split_header(path.read_bytes())
    rng = np.random.default_rng(0)
    path.write_bytes(header + rng.integers(0, 256, 20_000, np.uint8).tobytes())
    with RawFileEventSource(path) as src, pytest.raises(SourceError, match="damaged"):
        _read_all(src)
    assert src.damaged


def test_not_a_raw_file(tmp_path):
    p = tmp_path / "x.raw"
    p.write_bytes(b"\x00\x01garbage")
    with pytest.raises(SourceError, match="not a Prophesee RAW"):
        RawFileEventSource(p).open()
    with pytest.raises(SourceError, match="does not exist"):
        RawFileEventSource(tmp_path / "missing.raw").open()


def test_live_needs_metavision(monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", None)  # import fails even if present
    with pytest.raises(SdkMissingError, match="metavision_hal.*OpenEB"):
        PropheseeEventSource().open()
    with pytest.raises(SdkMissingError):
        PropheseeEventSource.find()


def test_prophesee_config_validation():
    with pytest.raises(ValueError, match="trigger_channel"):
        PropheseeConfig(trigger_channel="x")
    with pytest.raises(ValueError, match="erc_rate"):
        PropheseeConfig(erc_rate=-1)
