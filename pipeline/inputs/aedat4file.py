"""A damage-tolerant AEDAT4 reader for replay.

dv-processing's ``MonoCameraRecording`` refuses a closed file that was truncated
afterwards ("FileDataTable set but not present") and does not get past a corrupt
packet, so replay reads the packets itself: header, stream table (the XML info node),
then one packet after another (int32 stream id, int32 size, payload, LZ4-compressed
or not), each payload a size-prefixed flatbuffer (EVTS event packet, FRME frame,
TRIG trigger packet). A packet that cannot be decompressed or parsed is skipped and
reported (byte offset, stream, why); a corrupt packet header makes the reader look
for the next plausible header; a file cut off mid-packet is read up to the cut.

The layout is the one documented in ``pipeline/aedat4.py`` and written by
dv-processing's own writers; tests check this reader against files they write.
"""

from __future__ import annotations

import mmap
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
COMPRESSION_NAMES = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}
# dv::Event: int64 timestamp, int16 x, int16 y, bool polarity, 3 padding bytes.
EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)
# dv::FrameFormat values (OpenCV type codes): 8-bit grey, BGR, BGRA.
_FRAME_CHANNELS = {0: 1, 16: 3, 24: 4}
MAX_PACKET_BYTES = 1 << 30


class Aedat4FormatError(ValueError):
    """Not an AEDAT4 file, or a header that cannot be read."""


@dataclass(frozen=True)
class StreamInfo:
    id: int
    name: str
    type: str  # EVTS, FRME, TRIG, IMUS, ...
    source: str  # camera name
    size: tuple[int, int] | None  # (width, height) for events and frames


@dataclass
class Damage:
    """One thing the reader had to skip."""

    kind: str  # "corrupt_packet", "corrupt_header", "truncated", "missing_table", ...
    offset: int  # byte offset in the file
    detail: str
    stream: int | None = None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "byte_offset": self.offset,
            "stream": self.stream,
            "detail": self.detail,
        }


@dataclass
class FramePacket:
    timestamp_us: int
    exposure_start_us: int
    exposure_end_us: int
    image: np.ndarray  # HxWx3 uint8 RGB

    @property
    def mid_exposure_us(self) -> int:
        if self.exposure_end_us > self.exposure_start_us:
            return (self.exposure_start_us + self.exposure_end_us) // 2
        return self.timestamp_us


@dataclass
class Aedat4Header:
    compression: str
    data_table_position: int
    streams: list[StreamInfo] = field(default_factory=list)
    packets_start: int = 0


def _table(buf: memoryview, pos: int) -> tuple[int, int, memoryview]:
    """(table position, vtable position, buf) of the flatbuffer table at pos."""
    (soff,) = struct.unpack_from("<i", buf, pos)
    return pos, pos - soff, buf


def _field_pos(buf: memoryview, table: int, vtable: int, index: int) -> int | None:
    vt_size, _ = struct.unpack_from("<HH", buf, vtable)
    slot = 4 + 2 * index
    if slot + 2 > vt_size:
        return None
    (off,) = struct.unpack_from("<H", buf, vtable + slot)
    return table + off if off else None


def _scalar(buf: memoryview, table: int, vtable: int, index: int, fmt: str, default=0):
    p = _field_pos(buf, table, vtable, index)
    return default if p is None else struct.unpack_from(fmt, buf, p)[0]


def _vector(buf: memoryview, table: int, vtable: int, index: int) -> tuple[int, int]:
    """(start of elements, length) of a vector field; (0, 0) if absent."""
    p = _field_pos(buf, table, vtable, index)
    if p is None:
        return 0, 0
    (rel,) = struct.unpack_from("<I", buf, p)
    vec = p + rel
    (n,) = struct.unpack_from("<I", buf, vec)
    return vec + 4, n


def _root(payload: bytes, ident: bytes) -> tuple[memoryview, int, int]:
    """Root table of a size-prefixed flatbuffer, checking its identifier."""
    buf = memoryview(payload)
    if len(buf) < 12:
        raise ValueError("payload too short")
    (size,) = struct.unpack_from("<I", buf, 0)
    if size + 4 > len(buf):
        raise ValueError(f"flatbuffer claims {size} bytes, payload has {len(buf) - 4}")
    if bytes(buf[8:12]) != ident:
        raise ValueError(f"identifier {bytes(buf[8:12])!r}, expected {ident!r}")
    (root,) = struct.unpack_from("<I", buf, 4)
    table, vtable, _ = _table(buf, 4 + root)
    if not (0 <= vtable < len(buf) and 0 <= table < len(buf)):
        raise ValueError("table offsets outside the payload")
    return buf, table, vtable


def parse_events(payload: bytes) -> np.ndarray:
    """EVTS payload -> structured array (t, x, y, p) (a copy)."""
    buf, table, vtable = _root(payload, b"EVTS")
    start, n = _vector(buf, table, vtable, 0)
    if start + 16 * n > len(buf):
        raise ValueError(f"event vector of {n} runs past the payload")
    return (
        np.frombuffer(buf, EVENT_DTYPE, count=n, offset=start).copy()
        if n
        else np.zeros(0, EVENT_DTYPE)
    )


def parse_frame(payload: bytes) -> FramePacket:
    """FRME payload -> RGB frame (grey frames are replicated to three channels)."""
    buf, table, vtable = _root(payload, b"FRME")
    ts = _scalar(buf, table, vtable, 0, "<q")
    exp_start = _scalar(buf, table, vtable, 3, "<q")
    exp_end = _scalar(buf, table, vtable, 4, "<q")
    fmt = _scalar(buf, table, vtable, 5, "<b")
    w = _scalar(buf, table, vtable, 6, "<h")
    h = _scalar(buf, table, vtable, 7, "<h")
    start, n = _vector(buf, table, vtable, 10)
    ch = _FRAME_CHANNELS.get(fmt)
    if ch is None:
        raise ValueError(f"unsupported frame format {fmt} (only 8-bit grey, BGR and BGRA)")
    if w <= 0 or h <= 0 or n != w * h * ch or start + n > len(buf):
        raise ValueError(f"frame {w}x{h}x{ch} does not match its {n} pixel bytes")
    px = np.frombuffer(buf, np.uint8, count=n, offset=start).reshape(h, w, ch)
    if ch == 1:
        img = np.repeat(px, 3, axis=2)
    else:
        img = np.ascontiguousarray(px[:, :, 2::-1])
    return FramePacket(int(ts), int(exp_start), int(exp_end), img)


def parse_triggers(payload: bytes) -> np.ndarray:
    """TRIG payload -> structured array (t int64, type int8)."""
    buf, table, vtable = _root(payload, b"TRIG")
    start, n = _vector(buf, table, vtable, 0)
    out = np.zeros(n, [("t", "<i8"), ("type", "i1")])
    for i in range(n):
        (rel,) = struct.unpack_from("<I", buf, start + 4 * i)
        t, vt, _ = _table(buf, start + 4 * i + rel)
        out["t"][i] = _scalar(buf, t, vt, 0, "<q")
        out["type"][i] = _scalar(buf, t, vt, 1, "<b")
    return out


def _parse_info(xml_text: str) -> list[StreamInfo]:
    root = ET.fromstring(xml_text)
    out = []
    # The stream nodes are the children of the node named outInfo, wherever it sits:
    # "/outInfo/" in files written by dv-processing, "/mainloop/Recorder/outInfo/" in
    # files recorded by DV's Recorder module.
    outinfo = [n for n in root.iter("node") if n.get("name") == "outInfo"]
    for node in outinfo[0].findall("node") if outinfo else []:
        try:
            sid = int(node.get("name", ""))
        except ValueError:
            continue
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        info = node.find("node[@name='info']")
        iattrs = (
            {a.get("key"): (a.text or "") for a in info.findall("attr")} if info is not None else {}
        )
        size = None
        if "sizeX" in iattrs and "sizeY" in iattrs:
            size = (int(iattrs["sizeX"]), int(iattrs["sizeY"]))
        out.append(
            StreamInfo(
                sid,
                attrs.get("originalOutputName", str(sid)),
                attrs.get("typeIdentifier", "?"),
                iattrs.get("source", ""),
                size,
            )
        )
    return sorted(out, key=lambda s: s.id)


class Aedat4File:
    """Open an AEDAT4 file and iterate its packets, skipping what is damaged.

    ``damage`` collects everything skipped. Iterating twice (e.g. one pass for frames,
    one for events) is fine: each pass reads the file independently; damage found in
    several passes is reported once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist: check the path")
        if not self.path.is_file():
            raise Aedat4FormatError(f"{self.path} is not a file")
        self.size = self.path.stat().st_size
        self.damage: list[Damage] = []
        self._damage_keys: set[tuple[str, int]] = set()
        with open(self.path, "rb") as f:
            head = f.read(18)
            if not head.startswith(MAGIC):
                raise Aedat4FormatError(
                    f"{self.path} is not an AEDAT4 file (no '#!AER-DAT4.0' header); "
                    "AEDAT2/3 files must be converted with DV first"
                )
            if len(head) < 18:
                raise Aedat4FormatError(f"{self.path} is cut off inside its header")
            (hsize,) = struct.unpack_from("<i", head, 14)
            body = f.read(hsize) if 0 < hsize < 64 << 20 else b""
        if len(body) != hsize or hsize <= 0:
            raise Aedat4FormatError(f"{self.path}: the AEDAT4 header is cut off or corrupt")
        self.header = self._parse_header(body, 18 + hsize)
        self.streams = {s.id: s for s in self.header.streams}
        if self.header.compression not in ("none", "lz4"):
            raise Aedat4FormatError(
                f"{self.path} is compressed with {self.header.compression.upper()}, which "
                "replay cannot read; re-export it from DV with LZ4 or no compression"
            )
        self._end = self.size
        pos = self.header.data_table_position
        if pos >= 0:
            if pos <= self.size:
                self._end = pos
            else:
                self._note(
                    Damage(
                        "missing_table",
                        pos,
                        f"the file was closed and then cut off: its packet table at byte {pos} "
                        f"is past the end ({self.size} bytes); packets up to the cut are read",
                    )
                )

    def _parse_header(self, body: bytes, start: int) -> Aedat4Header:
        try:
            buf = memoryview(body)
            (root,) = struct.unpack_from("<I", buf, 0)
            table, vtable, _ = _table(buf, root)
            comp = _scalar(buf, table, vtable, 0, "<i")
            table_pos = _scalar(buf, table, vtable, 1, "<q", -1)
            p = _field_pos(buf, table, vtable, 2)
            if p is None:
                raise ValueError("no stream description")
            (rel,) = struct.unpack_from("<I", buf, p)
            (n,) = struct.unpack_from("<I", buf, p + rel)
            text = bytes(buf[p + rel + 4 : p + rel + 4 + n]).decode("utf-8")
            streams = _parse_info(text)
        except (struct.error, ValueError, ET.ParseError, UnicodeDecodeError) as exc:
            raise Aedat4FormatError(f"{self.path}: the AEDAT4 header is corrupt ({exc})") from None
        return Aedat4Header(
            COMPRESSION_NAMES.get(comp, f"unknown({comp})"), table_pos, streams, start
        )

    def _note(self, d: Damage) -> None:
        key = (d.kind, d.offset)
        if key not in self._damage_keys:
            self._damage_keys.add(key)
            self.damage.append(d)

    def cameras(self) -> dict[str, dict[str, StreamInfo]]:
        """camera name -> {type: stream}: the first stream of each type per camera."""
        out: dict[str, dict[str, StreamInfo]] = {}
        for s in self.header.streams:
            out.setdefault(s.source, {}).setdefault(s.type, s)
        return out

    def _plausible(self, mm: mmap.mmap, pos: int) -> bool:
        if pos + 8 > self._end:
            return False
        sid, size = struct.unpack_from("<ii", mm, pos)
        if sid not in self.streams or size <= 0 or pos + 8 + size > self._end:
            return False
        if self.header.compression == "lz4":
            return mm[pos + 8 : pos + 12] == _LZ4_MAGIC
        ident = mm[pos + 16 : pos + 20]
        return ident in (b"EVTS", b"FRME", b"TRIG", b"IMUS")

    def _resync(self, mm: mmap.mmap, pos: int) -> int | None:
        """Next offset after pos that looks like a packet header, or None."""
        probe = _LZ4_MAGIC if self.header.compression == "lz4" else None
        p = pos + 1
        while p < self._end:
            if probe is not None:
                q = mm.find(probe, p + 8, self._end)
                if q < 0:
                    return None
                cand = q - 8
                if cand >= p and self._plausible(mm, cand):
                    return cand
                p = max(p, q - 7)
            else:
                if self._plausible(mm, p):
                    return p
                p += 1
        return None

    def packets(self, stream_ids: set[int]) -> Iterator[tuple[int, int, bytes | None]]:
        """(stream id, byte offset, decompressed payload) for packets of the given
        streams, in file order; other packets are skipped without decompressing.
        Damage this pass runs into (and that may hide packets of these streams) comes
        as (stream id or -1, offset, None), after it was added to ``damage``."""
        if self._end <= self.header.packets_start:
            return
        lz4 = None
        if self.header.compression == "lz4":
            import lz4.frame as lz4  # type: ignore[no-redef]
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = self.header.packets_start
            while pos < self._end:
                if pos + 8 > self._end:
                    self._note(
                        Damage(
                            "truncated", pos, f"the file ends inside a packet header at byte {pos}"
                        )
                    )
                    yield -1, pos, None
                    return
                sid, size = struct.unpack_from("<ii", mm, pos)
                if sid not in self.streams or size <= 0 or size > MAX_PACKET_BYTES:
                    nxt = self._resync(mm, pos)
                    end = nxt if nxt is not None else self._end
                    self._note(
                        Damage(
                            "corrupt_header",
                            pos,
                            f"bytes {pos}..{end} do not hold a valid packet (stream id {sid}, "
                            f"size {size}); skipped to the next packet",
                        )
                    )
                    yield -1, pos, None
                    if nxt is None:
                        return
                    pos = nxt
                    continue
                if pos + 8 + size > self._end:
                    self._note(
                        Damage(
                            "truncated",
                            pos,
                            f"the file is cut off inside a {self.streams[sid].type} packet at "
                            f"byte {pos} ({pos + 8 + size - self._end} bytes missing)",
                            sid,
                        )
                    )
                    yield -1, pos, None
                    return
                if sid in stream_ids:
                    raw = mm[pos + 8 : pos + 8 + size]
                    try:
                        payload = lz4.decompress(raw) if lz4 is not None else raw
                    except Exception as exc:  # lz4 raises RuntimeError on bad data
                        self._note(
                            Damage(
                                "corrupt_packet",
                                pos,
                                f"{self.streams[sid].type} packet at byte {pos} does not "
                                f"decompress ({exc})",
                                sid,
                            )
                        )
                        yield sid, pos, None
                    else:
                        yield sid, pos, payload
                pos += 8 + size

    def bad_packet(self, sid: int, pos: int, exc: Exception) -> None:
        """Report a packet whose payload could not be parsed."""
        self._note(
            Damage(
                "corrupt_packet",
                pos,
                f"{self.streams[sid].type} packet at byte {pos} is corrupt ({exc})",
                sid,
            )
        )

    def count_packets(self, sid: int) -> int:
        """How many packets a stream has (headers only: cheap)."""
        n = 0
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = self.header.packets_start
            while pos + 8 <= self._end:
                s, size = struct.unpack_from("<ii", mm, pos)
                if s not in self.streams or size <= 0 or pos + 8 + size > self._end:
                    nxt = self._resync(mm, pos)
                    if nxt is None:
                        break
                    pos = nxt
                    continue
                n += s == sid
                pos += 8 + size
        return n

    def frames(self, sid: int) -> Iterator[FramePacket]:
        for s, pos, payload in self.packets({sid}):
            if payload is None:
                continue
            try:
                yield parse_frame(payload)
            except (ValueError, struct.error) as exc:
                self.bad_packet(s, pos, exc)

    def event_packets(self, sid: int) -> Iterator[tuple[int, np.ndarray | None]]:
        """(byte offset, events) per packet; (byte offset, None) where damage was
        skipped (reported in ``damage``): events may be missing there."""
        for s, pos, payload in self.packets({sid}):
            if payload is None:
                yield pos, None
                continue
            try:
                yield pos, parse_events(payload)
            except (ValueError, struct.error) as exc:
                self.bad_packet(s, pos, exc)
                yield pos, None

    def triggers(self, sid: int) -> np.ndarray:
        out = []
        for s, pos, payload in self.packets({sid}):
            if payload is None:
                continue
            try:
                out.append(parse_triggers(payload))
            except (ValueError, struct.error) as exc:
                self.bad_packet(s, pos, exc)
        return np.concatenate(out) if out else np.zeros(0, [("t", "<i8"), ("type", "i1")])
