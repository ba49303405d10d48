"""AEDAT4 recordings with frames and events: an iniVation DAVIS file (one sensor, frames
and events already aligned), and the shared reader the stereo and session inputs use.

Frames are keyframes at mid-exposure (exposure start/end from the file; the frame's
timestamp when the file has no exposure). Events are read packet by packet, mapped
into the frame grid, and sliced per interval; damaged packets become gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.aedat4file import Aedat4File, StreamInfo
from pipeline.inputs.base import (
    EventCursor,
    FileEventSource,
    Gap,
    InputError,
    Keyframe,
    MissingEvents,
    ReplaySource,
)
from rig.types import EventBatch


class Aedat4Source(ReplaySource):
    """Frames from one stream and events from another stream of one AEDAT4 file."""

    kind = "aedat4"

    def __init__(
        self,
        path: Path,
        frame_stream: StreamInfo,
        event_stream: StreamInfo,
        mapper: Callable[[EventBatch], EventBatch] | None,
        file: Aedat4File | None = None,
    ) -> None:
        super().__init__(path)
        self.file = file or Aedat4File(path)
        self.frame_stream = frame_stream
        self.event_stream = event_stream
        if frame_stream.size is None:
            raise InputError(f"{path}: frame stream {frame_stream.name!r} declares no size")
        self.frame_size = frame_stream.size
        self._cursor = EventCursor(self._event_chunks(), mapper, self._clean_end, self._end_reason)
        self._expected: int | None = None

    def _clean_end(self) -> bool:
        return not any(d.kind in ("truncated", "missing_table") for d in self.file.damage)

    def _end_reason(self) -> str:
        return f"{self.path.name} is cut off"

    def _event_chunks(self) -> Iterator[EventBatch | Gap]:
        return aedat4_event_chunks(self.file, self.event_stream)

    def keyframes(self) -> Iterator[Keyframe]:
        w, h = self.frame_size
        for i, fp in enumerate(self.file.frames(self.frame_stream.id)):
            if fp.image.shape[:2] != (h, w):
                self.problem(
                    "frame_size",
                    f"frame {i} is {fp.image.shape[1]}x{fp.image.shape[0]}, not {w}x{h}: dropped",
                    frame=i,
                )
                continue
            yield Keyframe(i, fp.image, fp.mid_exposure_us)

    def events(self, k0: Keyframe, k1: Keyframe) -> EventBatch:
        return self._cursor.take(k0.t_us, k1.t_us)

    def event_source(self) -> tuple[FileEventSource, Callable[[EventBatch], EventBatch]]:
        return self._cursor.source, self._cursor.to_grid

    def expected_keyframes(self) -> int | None:
        if self._expected is None:
            self._expected = self.file.count_packets(self.frame_stream.id)
        return self._expected

    def finish_report(self) -> None:
        """Move the reader's damage list into problems (call when done)."""
        for d in self.file.damage:
            self.problem(d.kind, d.detail, byte_offset=d.offset, file=str(self.path))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "frame_stream": f"{self.frame_stream.source}/{self.frame_stream.name}",
            "event_stream": f"{self.event_stream.source}/{self.event_stream.name}",
            "event_size": list(self.event_stream.size or (0, 0)),
            "compression": self.file.header.compression,
            **self._cursor.report(),
        }

    @property
    def cursor(self) -> EventCursor:
        return self._cursor


def aedat4_event_chunks(file: Aedat4File, stream: StreamInfo) -> Iterator[EventBatch | Gap]:
    """Event packets of one stream as EventBatch, with a Gap wherever damage was skipped."""
    sid = stream.id
    w, h = stream.size or (2**15, 2**15)
    name = file.path.name
    for pos, arr in file.event_packets(sid):
        if arr is None:
            yield Gap(f"damaged data at byte {pos} of {name}")
            continue
        ok = (arr["x"] >= 0) & (arr["x"] < w) & (arr["y"] >= 0) & (arr["y"] < h)
        if not ok.all():
            # Out-of-sensor coordinates mean the packet is garbage, not just one event.
            bad = int((~ok).sum())
            file.bad_packet(sid, pos, ValueError(f"{bad} events outside the sensor"))
            yield Gap(f"corrupt events at byte {pos} of {name}")
            continue
        yield EventBatch(
            arr["t"].astype(np.int64),
            arr["x"].astype(np.int16),
            arr["y"].astype(np.int16),
            arr["p"].astype(np.int8),
        )


def pick_streams(file: Aedat4File) -> tuple[StreamInfo | None, StreamInfo | None, int]:
    """(frame stream, event stream, number of cameras) of a file: the first of each."""
    frames = [s for s in file.header.streams if s.type == "FRME"]
    events = [s for s in file.header.streams if s.type == "EVTS"]
    cams = {s.source for s in file.header.streams if s.type in ("FRME", "EVTS")}
    return (frames[0] if frames else None), (events[0] if events else None), len(cams)


class DavisSource(Aedat4Source):
    """iniVation DAVIS: one AEDAT4 file, frames and events from the same sensor."""

    kind = "davis"

    @classmethod
    def open(
        cls, path: Path, mapper: Callable[[EventBatch], EventBatch] | None = None
    ) -> DavisSource:
        file = Aedat4File(path)
        fr, ev, _ = pick_streams(file)
        if fr is None or ev is None:
            raise InputError(
                f"{path} has no {'frame' if fr is None else 'event'} stream; a DAVIS replay "
                "needs both (for an event-only file, give the RGB video with --frames)"
            )
        if mapper is None and fr.size != ev.size:
            raise InputError(
                f"{path}: frames are {fr.size} but events {ev.size}: not one sensor; "
                "give --calibration to map the events into the frames"
            )
        src = cls(path, fr, ev, mapper, file)
        src.notes.append(
            "DAVIS: frames and events from one sensor (no calibration)"
            if mapper is None
            else "events mapped with the given calibration"
        )
        return src


__all__ = ["Aedat4Source", "DavisSource", "MissingEvents", "pick_streams"]
