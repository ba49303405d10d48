"""AEDAT4 writer built from numpy arrays, for raw recording at event-camera rates.

Why this exists: dv-processing's own writer (``dv.io.MonoCameraWriter``) can only be fed
``dv.EventStore`` objects, and filling one from numpy costs a Python call per event
(about 1-2 M events/s). The raw recording must still be a file that dv-processing's
readers (``MonoCameraRecording`` / ``StereoCameraRecording``) and the DV software open, so
this module writes the same on-disk layout directly: the records are laid out with
numpy in the exact flatbuffer layout dv uses, so packing an event is a strided copy.

On-disk layout (reverse-engineered from files written by dv-processing 2.0.4 and the
public AEDAT4 schemas; every number is little-endian):

* ``#!AER-DAT4.0\\r\\n``, then an int32 header size and an ``IOHE`` flatbuffer (compression,
  data-table position, XML "info node" describing each stream: id, type identifier
  EVTS/FRME/TRIG, source camera, resolution).
* packets: int32 stream id, int32 payload size, payload = size-prefixed flatbuffer
  (``EVTS`` EventPacket, ``FRME`` Frame, ``TRIG`` TriggerPacket), the whole payload
  compressed as one LZ4 frame when compression is LZ4.
* at close, an ``FTAB`` file data table (byte offset, stream, size, element count, first
  and last timestamp of every packet), compressed like the packets, running to the end
  of the file; the header's table position is then patched in place.

Event and frame payloads are byte-identical to dv's own (tests/test_aedat4.py checks it);
trigger packets and the file table are laid out differently but are valid flatbuffers of
the same schemas. Frame.index is not stored (dv's Frame has no such field).

Crash safety: while recording, the header's table position is -1. dv's reader then scans
the packets from the start and stops at the first incomplete one, so a file cut at any
byte after the header opens and yields every complete packet before the cut. A file
whose table position is set (a closed file) but which was truncated afterwards does NOT
open in dv ("FileDataTable set but not present"); ``reset_data_table`` turns such a file
back into a scannable one.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from xml.sax.saxutils import escape

import numpy as np

from rig.types import EventBatch, Frame

MAGIC = b"#!AER-DAT4.0\r\n"
# File offset of the IOHeader's int64 dataTablePosition in the header layout below:
# magic (14) + header size (4) + root offset/identifier/vtable (24) + field offset (12).
DATA_TABLE_POSITION_OFFSET = 54

Compression = Literal["lz4", "none"]
_COMPRESSION_CODE = {"none": 0, "lz4": 1}  # dv::CompressionType values
_COMPRESSION_NAME = {"none": "NONE", "lz4": "LZ4"}

TRIGGER_EXTERNAL_SIGNAL_RISING_EDGE = 1  # dv::TriggerType
FRAME_FORMAT_BGR = 16  # dv::FrameFormat, OpenCV CV_8UC3 layout

# One dv::Event struct: int64 timestamp, int16 x, int16 y, bool polarity, 3 padding bytes.
EVENT_RECORD = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "?"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)
_PACKET_HEADER = struct.Struct("<ii")  # stream id, payload size
# EventPacket payload up to the first event: size prefix, root offset, "EVTS", 2 padding
# bytes, vtable (6 bytes, one field at +4), root table (vtable soffset, vector offset),
# vector length. Events then start 32 bytes into the payload, 8-byte aligned.
_EVTS_HEAD = struct.Struct("<II4s2xHHHiII")
_EVTS_HEAD_SIZE = 32
# Frame payload up to the end of the table's fields (88 bytes): size prefix, root offset
# (-> 40), "FRME", vtable (28 bytes, 12 fields), table: soffset, 3 padding bytes, format
# int8 @+7, sizeX/sizeY int16 @+8/+10, pixels offset @+12, timestamp, start and end of
# exposure and exposure int64 @+16..+40. Start/end of frame and position stay absent (0).
# Then padding, the pixel vector length and the pixels, placed where dv's flatbuffers
# builder puts them so that the payload is byte-identical to dv's.
_FRME_HEAD = struct.Struct("<II4s14HixxxbhhIqqqq")
_FRME_TABLE_END = 88


def _frame_layout(npix: int) -> tuple[int, int]:
    """(padding after the table's fields, total payload size) for npix pixel bytes."""
    pad_vec = -npix % 4
    pad_table = -(pad_vec + npix + 4) % 8
    return pad_table, _FRME_TABLE_END + pad_table + 4 + npix + pad_vec


_LZ4_BLOCK_SIZE_NAME = "BLOCKSIZE_MAX64KB"  # what dv writes (LZ4 frame BD byte 0x40)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _load_lz4() -> Any:
    try:
        import lz4.frame
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "compression='lz4' needs the 'lz4' package (pip install lz4); or use compression='none'"
        ) from exc
    return lz4.frame


def _info_xml(
    camera: str, streams: list[tuple[int, str, str, tuple[int, int] | None]], comp: str
) -> str:
    """The IOHeader's infoNode: dv's readers find streams, types and resolutions here."""
    cam = escape(camera)
    out = ['<dv version="2.0">', '    <node name="outInfo" path="/outInfo/">']
    for sid, name, type_id, size in streams:
        out += [
            f'        <node name="{sid}" path="/outInfo/{sid}/">',
            f'            <attr key="compression" type="string">{comp}</attr>',
            '            <attr key="originalModuleName" type="string">slomo-rig</attr>',
            f'            <attr key="originalOutputName" type="string">{escape(name)}</attr>',
            '            <attr key="typeDescription" type="string">Custom data type output.</attr>',
            f'            <attr key="typeIdentifier" type="string">{type_id}</attr>',
            f'            <node name="info" path="/outInfo/{sid}/info/">',
        ]
        if size is not None:
            out += [
                f'                <attr key="sizeX" type="int">{int(size[0])}</attr>',
                f'                <attr key="sizeY" type="int">{int(size[1])}</attr>',
            ]
        out += [
            f'                <attr key="source" type="string">{cam}</attr>',
            "            </node>",
            "        </node>",
        ]
    out += ["    </node>", "</dv>", ""]
    return "\n".join(out)


def _io_header(compression_code: int, info: str) -> bytes:
    """Magic + header size + IOHeader flatbuffer with dataTablePosition forced to -1.

    The int64 is always stored (never elided as a default) so that close() can patch it
    in place without changing the header size.
    """
    text = info.encode("utf-8")
    # root offset 24 | "IOHE" | 6 pad | vtable (10 bytes: 3 fields) | table (24 bytes):
    # soffset 10, compression int32 @+4, infoNode offset @+8 (-> 48), position int64 @+12
    head = struct.pack(
        "<I4s6x5HiiIq4x", 24, b"IOHE", 10, 24, 4, 12, 8, 10, compression_code, 16, -1
    )
    string = struct.pack("<I", len(text)) + text + b"\0"
    body = head + string + b"\0" * (_align(len(string), 4) - len(string))
    return MAGIC + struct.pack("<i", len(body)) + body


def _table_vector_layout(n: int, vtable_size: int) -> tuple[int, int]:
    """Offsets for a root table holding one vector of n tables (triggers, file table).

    Returns (vtable position, first table position) inside the payload: root vtable at 14,
    root table at 20, vector at 28, n offsets at 32, then the element vtable and the
    8-byte aligned element tables (offsets in a vector of tables must point forward).
    """
    first = _align(32 + 4 * n + vtable_size, 8)
    return first - vtable_size, first


def _vector_of_tables(
    ident: bytes, n: int, vtable: tuple[int, ...], table_size: int
) -> tuple[np.ndarray, int]:
    """A zeroed payload with everything but the element fields filled in."""
    vt_size = 2 * len(vtable)
    vt_pos, first = _table_vector_layout(n, vt_size)
    total = first + table_size * n
    buf = np.zeros(total, np.uint8)
    struct.pack_into("<II4s2xHHHiII", buf, 0, total - 4, 16, ident, 6, 8, 4, 6, 4, n)
    struct.pack_into(f"<{len(vtable)}H", buf, vt_pos, *vtable)
    j = np.arange(n, dtype=np.int64)
    buf[32 : 32 + 4 * n].view("<u4")[:] = first + table_size * j - (32 + 4 * j)
    soff = buf[first:].view("<i4")[:: table_size // 4]
    soff[:] = first + table_size * j - vt_pos
    return buf, first


def _trigger_payload(ts: np.ndarray) -> np.ndarray:
    """TriggerPacket: vector of Trigger tables (int64 timestamp @+8, int8 type @+7)."""
    n = len(ts)
    buf, first = _vector_of_tables(b"TRIG", n, (8, 16, 8, 7), 16)
    rec = buf[first:].view(
        np.dtype(
            {"names": ["k", "t"], "formats": ["<i1", "<i8"], "offsets": [7, 8], "itemsize": 16}
        )
    )
    rec["k"] = TRIGGER_EXTERNAL_SIGNAL_RISING_EDGE
    rec["t"] = ts
    return buf


_FTAB_ENTRY = np.dtype(
    {
        "names": ["sid", "size", "offset", "n", "t0", "t1"],
        "formats": ["<i4", "<i4", "<i8", "<i8", "<i8", "<i8"],
        "offsets": [4, 8, 16, 24, 32, 40],
        "itemsize": 48,
    }
)


def _ftab_payload(entries: np.ndarray) -> np.ndarray:
    """FileDataTable: FileDataDefinition tables with fields ByteOffset @16,
    PacketInfo struct (stream id, size) @4, NumElements @24, TimestampStart @32,
    TimestampEnd @40."""
    buf, first = _vector_of_tables(b"FTAB", len(entries), (14, 48, 16, 4, 24, 32, 40), 48)
    rec = buf[first:].view(_FTAB_ENTRY)
    for name in _FTAB_ENTRY.names:
        rec[name] = entries[name]
    return buf


def reset_data_table(path: str | os.PathLike[str]) -> bool:
    """Make a closed AEDAT4 file that was truncated afterwards readable again.

    dv's reader refuses a file whose header points at a data table past the end of the
    file; with the position reset to -1 it scans the packets instead (and ignores any
    table bytes left at the end). Returns True if the header was changed.
    """
    with open(path, "r+b") as f:
        head = f.read(DATA_TABLE_POSITION_OFFSET + 8)
        if not head.startswith(MAGIC) or len(head) < DATA_TABLE_POSITION_OFFSET + 8:
            raise ValueError(f"{path}: not an AEDAT4 file with a full header")
        (pos,) = struct.unpack_from("<q", head, DATA_TABLE_POSITION_OFFSET)
        if pos < 0:
            return False
        f.seek(DATA_TABLE_POSITION_OFFSET)
        f.write(struct.pack("<q", -1))
        return True


class Aedat4Writer:
    """Write one camera's events, frames and trigger edges as an AEDAT4 file.

    Streams exist only if asked for: ``event_size=(w, h)`` adds "events" (EVTS),
    ``frame_size=(w, h)`` adds "frames" (FRME), ``triggers=True`` adds "triggers" (TRIG),
    with stream ids 0, 1, 2... in that order, all with ``camera_name`` as their source,
    so ``dv.io.MonoCameraRecording(path)`` opens the file as that camera.

    Events are gathered into packets of up to ``max_packet_events`` events or
    ``max_packet_us`` of time (checked when a batch arrives); each frame is one packet;
    triggers are gathered like events. ``flush()`` writes whatever is gathered, so the
    events lost on a crash are at most one unflushed packet (plus, with compression
    threads, the packets still being compressed). Every stream must be written
    in non-decreasing time order (ValueError otherwise), as dv's readers assume.

    ``compress_threads > 0`` (LZ4 only) compresses packets on that many threads (the lz4
    library releases the GIL) while the caller goes on packing; packets are still written
    in order, by the caller's thread, at most ``2 * compress_threads`` packets behind.
    Not thread-safe: call it from one thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        camera_name: str,
        event_size: tuple[int, int] | None = None,
        frame_size: tuple[int, int] | None = None,
        triggers: bool = False,
        compression: Compression = "lz4",
        max_packet_events: int = 1 << 18,
        max_packet_us: int = 20_000,
        max_packet_triggers: int = 4096,
        compress_threads: int = 0,
    ) -> None:
        if compression not in _COMPRESSION_CODE:
            raise ValueError(f"compression must be 'lz4' or 'none', got {compression!r}")
        if max_packet_events < 1 or max_packet_triggers < 1:
            raise ValueError("packet sizes must be >= 1")
        self._lz4 = _load_lz4() if compression == "lz4" else None
        if self._lz4 is not None:
            self._lz4_block = getattr(self._lz4, _LZ4_BLOCK_SIZE_NAME)
        self.path = Path(path)
        self.camera_name = camera_name
        self.compression = compression
        self.event_size = event_size
        self.frame_size = frame_size
        self.max_packet_events = int(max_packet_events)
        self.max_packet_us = int(max_packet_us)
        self.max_packet_triggers = int(max_packet_triggers)

        streams: list[tuple[int, str, str, tuple[int, int] | None]] = []
        self._sid_events = self._sid_frames = self._sid_triggers = -1
        if event_size is not None:
            self._sid_events = len(streams)
            streams.append((self._sid_events, "events", "EVTS", tuple(event_size)))
        if frame_size is not None:
            self._sid_frames = len(streams)
            streams.append((self._sid_frames, "frames", "FRME", tuple(frame_size)))
        if triggers:
            self._sid_triggers = len(streams)
            streams.append((self._sid_triggers, "triggers", "TRIG", None))

        # Packet table rows: payload offset, stream id, payload size, count, first/last t.
        self._table: list[tuple[int, int, int, int, int, int]] = []
        self._last_t = {s[0]: np.iinfo(np.int64).min for s in streams}
        # Events are packed straight into the final record layout, behind room for the
        # packet header, so an uncompressed packet goes to disk without another copy.
        self._ev_buf = np.zeros(0, np.uint8)
        self._ev_rec = np.zeros(0, EVENT_RECORD)
        self._ev_n = 0
        if event_size is not None:
            self._ev_buf = np.zeros(8 + _EVTS_HEAD_SIZE + 16 * self.max_packet_events, np.uint8)
            self._ev_rec = self._ev_buf[8 + _EVTS_HEAD_SIZE :].view(EVENT_RECORD)
        self._trig_pending: list[np.ndarray] = []
        self._trig_n = 0
        self._pool: ThreadPoolExecutor | None = None
        # Packets being compressed: future, stream id, count, first t, last t, and the
        # event buffer to reuse once the future is done (None for other packets).
        self._inflight: deque[tuple[Future[bytes], int, int, int, int, np.ndarray | None]]
        self._inflight = deque()
        self._spare_ev_bufs: list[np.ndarray] = []
        self._max_inflight = 2 * max(int(compress_threads), 0)
        if compress_threads > 0 and self._lz4 is not None:
            self._pool = ThreadPoolExecutor(int(compress_threads), thread_name_prefix="aedat4-lz4")

        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._closed = False
        header = _io_header(
            _COMPRESSION_CODE[compression],
            _info_xml(camera_name, streams, _COMPRESSION_NAME[compression]),
        )
        self._pos = 0
        self._write_all([header])

    # -- public API ---------------------------------------------------------------

    def write_events(self, batch: EventBatch) -> None:
        """Queue events (t non-decreasing, also across calls); full packets are written."""
        self._check_open()
        if self._sid_events < 0:
            raise ValueError("this writer has no event stream (event_size=None)")
        n = len(batch)
        if n == 0:
            return
        for name in ("x", "y", "p"):
            if getattr(batch, name).dtype.kind not in "iub":
                raise ValueError(
                    f"EventBatch.{name} must be integer for AEDAT4, got {getattr(batch, name).dtype}"
                )
        t = batch.t
        self._check_order(self._sid_events, t, "events")
        i = 0
        while i < n:
            rec = self._ev_rec  # a new buffer after each packet when compressing on threads
            k = min(n - i, self.max_packet_events - self._ev_n)
            a, b = self._ev_n, self._ev_n + k
            rec["t"][a:b] = t[i : i + k]
            rec["x"][a:b] = batch.x[i : i + k]
            rec["y"][a:b] = batch.y[i : i + k]
            np.not_equal(batch.p[i : i + k], 0, out=rec["p"][a:b])
            self._ev_n = b
            i += k
            if (
                b == self.max_packet_events
                or int(rec["t"][b - 1]) - int(rec["t"][0]) >= self.max_packet_us
            ):
                self._emit_events()
        self._last_t[self._sid_events] = int(t[-1])

    def write_frame(self, frame: Frame) -> None:
        """Write one RGB frame as dv does for dv.Frame(ts, bgr): BGR pixels,
        timestamp = exposure start, start/end of exposure and exposure (µs) stored."""
        self._check_open()
        if self._sid_frames < 0:
            raise ValueError("this writer has no frame stream (frame_size=None)")
        img = frame.image
        w, h = self.frame_size  # type: ignore[misc]
        if img.shape != (h, w, 3) or img.dtype != np.uint8:
            raise ValueError(f"frame must be {h}x{w}x3 uint8 RGB, got {img.shape} {img.dtype}")
        ts = int(frame.timestamp_us)
        self._check_order(self._sid_frames, np.array([ts], np.int64), "frames")
        npix = h * w * 3
        pad, total = _frame_layout(npix)
        exposure = int(frame.exposure_us)
        vtable = (28, 48 + pad, 16, 0, 0, 24, 32, 7, 8, 10, 0, 0, 12, 40)
        buf = np.zeros(8 + total, np.uint8)
        _FRME_HEAD.pack_into(
            buf, 8, total - 4, 36, b"FRME", *vtable, 28, FRAME_FORMAT_BGR, w, h,
            36 + pad, ts, ts, ts + exposure, exposure,
        )  # fmt: skip
        start = 8 + _FRME_TABLE_END + pad + 4
        struct.pack_into("<I", buf, start - 4, npix)
        buf[start : start + npix].reshape(h, w, 3)[...] = img[:, :, ::-1]
        self._emit(self._sid_frames, buf, 1, ts, ts)
        self._last_t[self._sid_frames] = ts

    def write_triggers(self, timestamps: np.ndarray) -> None:
        """Queue external-signal rising edges (int64 µs, non-decreasing)."""
        self._check_open()
        if self._sid_triggers < 0:
            raise ValueError("this writer has no trigger stream (triggers=False)")
        ts = np.asarray(timestamps)
        if ts.ndim != 1 or (ts.size and ts.dtype != np.int64):
            raise ValueError(
                f"trigger timestamps must be a 1-D int64 array, got {ts.dtype} {ts.shape}"
            )
        if ts.size == 0:
            return
        self._check_order(self._sid_triggers, ts, "triggers")
        self._trig_pending.append(ts.copy())
        self._trig_n += ts.size
        self._last_t[self._sid_triggers] = int(ts[-1])
        first = int(self._trig_pending[0][0])
        if self._trig_n >= self.max_packet_triggers or int(ts[-1]) - first >= self.max_packet_us:
            self._emit_triggers()

    def flush(self) -> None:
        """Write the gathered event and trigger packets (the file stays scannable)."""
        self._check_open()
        self._emit_events()
        self._emit_triggers()
        self._drain(0)

    def close(self) -> None:
        """Flush, append the packet table and point the header at it."""
        if self._closed:
            return
        try:
            self.flush()
            table_pos = self._pos
            entries = np.zeros(len(self._table), _FTAB_ENTRY)
            if self._table:
                cols = np.array(self._table, np.int64)
                entries["offset"], entries["sid"], entries["size"] = (
                    cols[:, 0],
                    cols[:, 1],
                    cols[:, 2],
                )
                entries["n"], entries["t0"], entries["t1"] = cols[:, 3], cols[:, 4], cols[:, 5]
            payload = _ftab_payload(entries)
            self._write_all([self._compress(payload)])
            # Only now that the whole table is on disk may the header point at it: a
            # crash before this line leaves position -1, which dv's reader scans.
            os.pwrite(self._fd, struct.pack("<q", table_pos), DATA_TABLE_POSITION_OFFSET)
        finally:
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            os.close(self._fd)

    def __enter__(self) -> Aedat4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def bytes_written(self) -> int:
        return self._pos

    @property
    def packets_written(self) -> int:
        return len(self._table)

    @property
    def packet_index(self) -> list[tuple[int, int, int, int, int, int]]:
        """Packets on disk so far: (payload byte offset, stream id, payload size, element
        count, first t, last t) - what the file data table will hold. Tells which packets
        a file cut at a given byte still contains."""
        return list(self._table)

    @property
    def stream_ids(self) -> dict[str, int]:
        """Stream name -> AEDAT4 stream id for the streams this file has."""
        ids = {"events": self._sid_events, "frames": self._sid_frames}
        ids["triggers"] = self._sid_triggers
        return {k: v for k, v in ids.items() if v >= 0}

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")

    def _check_order(self, sid: int, t: np.ndarray, what: str) -> None:
        if int(t[0]) < self._last_t[sid]:
            raise ValueError(
                f"{what} out of time order: first timestamp {int(t[0])} us is before the "
                f"last one written, {self._last_t[sid]} us (AEDAT4 streams must be non-decreasing)"
            )
        if len(t) > 1:
            bad = np.flatnonzero(t[1:] < t[:-1])
            if bad.size:
                j = int(bad[0])
                raise ValueError(
                    f"{what} out of time order at index {j + 1}: {int(t[j + 1])} us after "
                    f"{int(t[j])} us (AEDAT4 streams must be non-decreasing)"
                )

    def _emit_events(self) -> None:
        n = self._ev_n
        if n == 0:
            return
        total = _EVTS_HEAD_SIZE + 16 * n
        _EVTS_HEAD.pack_into(self._ev_buf, 8, total - 4, 16, b"EVTS", 6, 8, 4, 6, 4, n)
        t = self._ev_rec["t"]
        buf = self._ev_buf
        self._ev_n = 0
        if self._pool is None:
            self._emit(self._sid_events, buf[: 8 + total], n, int(t[0]), int(t[n - 1]))
            return
        # The full buffer is being compressed elsewhere: pack into another one meanwhile.
        self._ev_buf = self._spare_ev_bufs.pop() if self._spare_ev_bufs else np.zeros_like(buf)
        self._ev_rec = self._ev_buf[8 + _EVTS_HEAD_SIZE :].view(EVENT_RECORD)
        self._emit(self._sid_events, buf[: 8 + total], n, int(t[0]), int(t[n - 1]), buf)

    def _emit_triggers(self) -> None:
        if not self._trig_pending:
            return
        ts = np.concatenate(self._trig_pending)
        self._trig_pending, self._trig_n = [], 0
        payload = _trigger_payload(ts)
        buf = np.empty(8 + len(payload), np.uint8)
        buf[8:] = payload
        self._emit(self._sid_triggers, buf, len(ts), int(ts[0]), int(ts[-1]))

    def _compress(self, payload: np.ndarray) -> bytes | memoryview:
        if self._lz4 is None:
            return memoryview(payload)
        return self._lz4.compress(
            memoryview(payload),
            compression_level=0,
            block_size=self._lz4_block,
            block_linked=True,
            content_checksum=False,
            store_size=False,
        )

    def _emit(
        self, sid: int, buf: np.ndarray, n: int, t0: int, t1: int, reuse: np.ndarray | None = None
    ) -> None:
        """buf = 8 free bytes + uncompressed payload; writes header + (compressed) payload,
        or with compression threads queues it (``reuse``: event buffer to recycle after)."""
        if self._pool is not None:
            fut = self._pool.submit(self._compress, buf[8:])
            self._inflight.append((fut, sid, n, t0, t1, reuse))  # type: ignore[arg-type]
            self._drain(self._max_inflight)
            return
        if self._lz4 is None:
            size = len(buf) - 8
            _PACKET_HEADER.pack_into(buf, 0, sid, size)
            parts: list[bytes | memoryview] = [memoryview(buf)]
        else:
            data = self._compress(buf[8:])
            size = len(data)
            parts = [_PACKET_HEADER.pack(sid, size), data]
        self._table.append((self._pos + 8, sid, size, n, t0, t1))
        self._write_all(parts)

    def _drain(self, keep: int) -> None:
        """Write compressed packets in order: all done ones, and wait until <= keep remain."""
        while self._inflight and (len(self._inflight) > keep or self._inflight[0][0].done()):
            fut, sid, n, t0, t1, reuse = self._inflight.popleft()
            data = fut.result()
            self._table.append((self._pos + 8, sid, len(data), n, t0, t1))
            self._write_all([_PACKET_HEADER.pack(sid, len(data)), data])
            if reuse is not None:
                self._spare_ev_bufs.append(reuse)

    def _write_all(self, parts: list[bytes | memoryview]) -> None:
        views = [memoryview(p).cast("B") for p in parts]
        total = sum(len(v) for v in views)
        self._pos += total
        done = os.writev(self._fd, views)
        while done < total:  # short writes are rare on files, but legal
            rest: list[memoryview] = []
            skip = done
            for v in views:
                if skip >= len(v):
                    skip -= len(v)
                    continue
                rest.append(v[skip:])
                skip = 0
            views = rest
            total = sum(len(v) for v in views)
            done = os.writev(self._fd, views)
