"""An event file (AEDAT4 or Prophesee RAW) plus the RGB camera's recording (a video
file read with PyAV, or a folder of images) with one timestamp per frame.

Frame times come from a timestamps file (one per frame, in frame order): by default
they are mid-exposure times on the event camera's clock. With ``sync="triggers"`` they
are the frame camera's own clock (or the video's presentation times when no file is
given) and are matched to the trigger edges the event file holds (the frame camera's
exposure-active line wired to the event camera), with rig.sync.match_triggers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.aedat4file import MAGIC, Aedat4File
from pipeline.inputs.base import (
    EventCursor,
    FileEventSource,
    Gap,
    InputError,
    Keyframe,
    ReplaySource,
    file_fingerprint,
)
from pipeline.inputs.davis import aedat4_event_chunks
from pipeline.inputs.mapping import load_mapper
from rig.types import EventBatch, Frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
_UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6, "ns": 1e-3}


def natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def list_images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key
    )


def read_timestamps_file(path: Path, unit: str = "auto") -> tuple[np.ndarray, str]:
    """Frame times in µs (int64) from a text file: one number per line (TimeLens'
    timestamp.txt), or a CSV with a header naming a timestamp column (timestamp_us,
    timestamp, t_us, t, time). Blank and '#' lines are ignored. unit: us, ms, s, ns or
    auto (seconds when the numbers are fractional and less than 1 apart)."""
    if not path.is_file():
        raise InputError(f"timestamps file {path} does not exist: check the path")
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise InputError(f"timestamps file {path} is empty")
    col = 0
    first = re.split(r"[,\s;]+", lines[0])
    try:
        float(first[0])
    except ValueError:
        names = [c.strip().lower() for c in first]
        for cand in ("timestamp_us", "t_us", "timestamp", "t", "time", "time_us"):
            if cand in names:
                col = names.index(cand)
                break
        else:
            raise InputError(
                f"timestamps file {path}: no timestamp column in header {lines[0]!r} "
                "(name it timestamp_us, or give one number per line)"
            ) from None
        lines = lines[1:]
    vals = []
    for i, ln in enumerate(lines):
        fields = next(csv.reader([ln])) if "," in ln else ln.split()
        try:
            vals.append(float(fields[col]))
        except (ValueError, IndexError):
            raise InputError(
                f"timestamps file {path}, line {i + 1}: {ln!r} is not a time"
            ) from None
    arr = np.array(vals, np.float64)
    if unit == "auto":
        d = np.diff(arr)
        fractional = np.any(arr != np.round(arr))
        unit = "s" if fractional and len(d) and np.median(np.abs(d)) < 1.0 else "us"
    if unit not in _UNIT:
        raise InputError(f"unknown time unit {unit!r}; use us, ms, s or ns")
    return np.round(arr * _UNIT[unit]).astype(np.int64), unit


class _FramesReader:
    """Images in order from a video (PyAV) or an image folder; (index, image or None,
    pts in µs or None); None images are unreadable frames."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.files = list_images(path)
            if not self.files:
                raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.kind = "images"
        elif path.is_file():
            self.kind = "video"
            import av

            try:
                with av.open(str(path)) as c:
                    if not c.streams.video:
                        raise InputError(f"{path} has no video stream")
                    st = c.streams.video[0]
                    self.count = int(st.frames or 0) or None
                    self.size = (st.codec_context.width, st.codec_context.height)
            except av.error.FFmpegError as exc:
                raise InputError(f"{path} is not a video PyAV can read ({exc})") from None
        else:
            raise InputError(f"frames {path} do not exist: give a video file or an image folder")

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else (self.count or 0)

    def first_size(self) -> tuple[int, int]:
        if self.kind == "video":
            return self.size
        import cv2

        for f in self.files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is not None:
                return img.shape[1], img.shape[0]
        raise InputError(f"none of the images in {self.path} can be read")

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None, int | None, str]]:
        if self.kind == "images":
            import cv2

            for i, f in enumerate(self.files):
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                yield i, (None if img is None else img[:, :, ::-1].copy()), None, f.name
            return
        import av

        i = 0
        with av.open(str(self.path)) as c:
            st = c.streams.video[0]
            tb = st.time_base
            try:
                for packet in c.demux(st):
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:
                        if packet.size:
                            yield i, None, None, f"packet at pts {packet.pts}: {exc}"
                            i += 1
                        continue
                    for fr in frames:
                        pts = None if fr.pts is None else int(round(float(fr.pts * tb) * 1e6))
                        yield i, fr.to_ndarray(format="rgb24"), pts, f"frame {i}"
                        i += 1
            except av.error.FFmpegError as exc:
                yield i, None, None, f"the video cannot be read past frame {i}: {exc}"


def is_aedat4(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def is_raw(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"% "


class EventFile:
    """Events (and trigger edges) of an AEDAT4 or Prophesee RAW event file."""

    def __init__(self, path: Path, raw_resolution: tuple[int, int] | None = None) -> None:
        self.path = path
        self.damage: list[str] = []
        if is_aedat4(path):
            self.format = "aedat4"
            self.file = Aedat4File(path)
            evs = [s for s in self.file.header.streams if s.type == "EVTS"]
            if not evs:
                raise InputError(f"{path} holds no event stream")
            self.stream = evs[0]
            assert self.stream.size is not None
            self.size = self.stream.size
        elif is_raw(path):
            self.format = "prophesee-raw"
            from rig.base import SourceError
            from rig.prophesee import RawFileEventSource

            src = RawFileEventSource(path, resolution=raw_resolution)
            try:
                src.open()
            except SourceError as exc:
                raise InputError(str(exc)) from None
            self.size = tuple(src.resolution)  # type: ignore[assignment]
            self.version = src.version
            src.close()
        else:
            raise InputError(
                f"{path}: unknown event file format (expected AEDAT4 '#!AER-DAT4.0' or a "
                "Prophesee RAW file starting with a '% ' header)"
            )
        self._raw_resolution = raw_resolution

    def chunks(self) -> Iterator[EventBatch | Gap]:
        if self.format == "aedat4":
            yield from aedat4_event_chunks(self.file, self.stream)
            return
        from rig.base import SourceError
        from rig.prophesee import RawFileEventSource

        src = RawFileEventSource(self.path, resolution=self._raw_resolution)
        src.open()
        try:
            while True:
                try:
                    item = src.read()
                except EOFError:
                    return
                except SourceError:
                    self.damage.append(src.damaged or "undecodable data")
                    yield Gap(f"{self.path.name} cannot be decoded further")
                    return
                if item is not None and len(item.events):
                    yield item.events
        finally:
            src.close()

    def clean_end(self) -> bool:
        if self.format == "aedat4":
            return not any(d.kind in ("truncated", "missing_table") for d in self.file.damage)
        # A RAW file has no end marker or index: a cut cannot be told from the end, so
        # time after the last event counts as not covered.
        return False

    def triggers(self) -> np.ndarray:
        """Rising trigger edges (µs), whole file."""
        if self.format == "aedat4":
            trs = [s for s in self.file.header.streams if s.type == "TRIG"]
            if not trs:
                return np.empty(0, np.int64)
            a = self.file.triggers(trs[0].id)
            return np.sort(a["t"][np.isin(a["type"], (1, 3))].astype(np.int64))
        from rig.base import SourceError
        from rig.prophesee import RawFileEventSource

        out = []
        src = RawFileEventSource(self.path, resolution=self._raw_resolution)
        src.open()
        try:
            while True:
                try:
                    item = src.read()
                except (EOFError, SourceError):
                    break
                if item is not None and len(item.triggers):
                    out.append(item.triggers)
        finally:
            src.close()
        return np.sort(np.concatenate(out)) if out else np.empty(0, np.int64)


class PairSource(ReplaySource):
    kind = "events+frames"

    def __init__(
        self,
        events_path: Path,
        frames_path: Path,
        timestamps_path: Path | None,
        calibration: str | Path | None,
        sync: str = "timestamps",
        exposure_us: int = 0,
        timestamps_unit: str = "auto",
        raw_resolution: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(events_path)
        if sync not in ("timestamps", "triggers"):
            raise InputError(f"sync must be 'timestamps' or 'triggers', got {sync!r}")
        self.events_file = EventFile(events_path, raw_resolution)
        self.frames_path = frames_path
        self.frames = _FramesReader(frames_path)
        self.frame_size = self.frames.first_size()
        self.timestamps_path = timestamps_path
        self.sync = sync
        self.exposure_us = int(exposure_us)
        if calibration is None:
            raise InputError(
                f"events from {events_path.name} and frames from {frames_path.name} come from "
                "two cameras: give --calibration FILE to map the events into the frames "
                "('--calibration identity' if they already share one pixel grid)"
            )
        mapper, self.mapping_from = load_mapper(calibration, self.events_file.size, self.frame_size)
        self.times: np.ndarray | None = None
        self.unit = ""
        if timestamps_path is not None:
            self.times, self.unit = read_timestamps_file(timestamps_path, timestamps_unit)
        elif sync == "timestamps":
            raise InputError(
                f"frames from {frames_path} need their times: give --frame-timestamps FILE "
                "(one mid-exposure time per frame, µs on the event camera's clock), or "
                "--sync triggers when the event file holds the frame camera's trigger edges"
            )
        self.sync_report: dict[str, Any] | None = None
        self._cursor = EventCursor(
            self.events_file.chunks(),
            mapper,
            self.events_file.clean_end,
            lambda: f"the events in {self.path.name} end",
        )

    def _rig_times(self, device: np.ndarray) -> dict[int, int]:
        """Frame index -> mid-exposure on the event clock, by trigger matching."""
        from rig.sync import SyncError, match_triggers

        triggers = self.events_file.triggers()
        if len(triggers) < 3:
            raise InputError(
                f"--sync triggers: {self.path.name} holds {len(triggers)} trigger edges; "
                "give --frame-timestamps on the event clock instead"
            )
        dummy = np.zeros((1, 1, 3), np.uint8)
        frames = [Frame(dummy, i, int(t), self.exposure_us) for i, t in enumerate(device)]
        try:
            matched, report = match_triggers(frames, triggers)
        except SyncError as exc:
            raise InputError(f"--sync triggers: {exc}") from None
        self.sync_report = report.to_dict()
        return {f.index: f.timestamp_us + self.exposure_us // 2 for f in matched}

    def keyframes(self) -> Iterator[Keyframe]:
        times = self.times
        w, h = self.frame_size
        n_frames = len(self.frames)
        if times is not None and n_frames and len(times) != n_frames:
            self.problem(
                "timestamp_count",
                f"{len(times)} timestamps for {n_frames} frames: only the first "
                f"{min(len(times), n_frames)} frames are used",
            )
        rig: dict[int, int] | None = None
        if self.sync == "triggers":
            if times is None:
                # The video's own presentation times are the device clock.
                pts = [p for _, _, p, _ in self.frames]
                times = np.array([p if p is not None else -1 for p in pts], np.int64)
            rig = self._rig_times(times)
        for i, img, _pts, what in self.frames:
            if times is not None and i >= len(times):
                break
            if img is None:
                self.problem("unreadable_frame", f"{what} cannot be decoded: dropped", frame=i)
                continue
            if img.shape[:2] != (h, w):
                self.problem("frame_size", f"{what} is not {w}x{h}: dropped", frame=i)
                continue
            if rig is not None:
                if i not in rig:
                    self.problem(
                        "unsynced_frame", f"{what} matched no trigger edge: dropped", frame=i
                    )
                    continue
                t = rig[i]
            else:
                assert times is not None
                t = int(times[i])
            yield Keyframe(i, img, t)

    def events(self, k0: Keyframe, k1: Keyframe) -> EventBatch:
        return self._cursor.take(k0.t_us, k1.t_us)

    def event_source(self) -> tuple[FileEventSource, Callable[[EventBatch], EventBatch]]:
        return self._cursor.source, self._cursor.to_grid

    def expected_keyframes(self) -> int | None:
        n = len(self.frames) or None
        if self.times is not None:
            n = min(n or len(self.times), len(self.times))
        return n

    def fingerprint(self) -> list[dict[str, Any]]:
        out = [file_fingerprint(self.path), file_fingerprint(self.frames_path)]
        if self.timestamps_path is not None:
            out.append(file_fingerprint(self.timestamps_path))
        return out

    def finish_report(self) -> None:
        if self.events_file.format == "aedat4":
            for d in self.events_file.file.damage:
                self.problem(d.kind, d.detail, byte_offset=d.offset, file=str(self.path))
        for d in self.events_file.damage:
            self.problem("corrupt_events", d, file=str(self.path))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "event_format": self.events_file.format,
            "event_size": list(self.events_file.size),
            "frames": str(self.frames_path),
            "frames_kind": self.frames.kind,
            "timestamps": str(self.timestamps_path) if self.timestamps_path else None,
            "timestamps_unit": self.unit or None,
            "sync": self.sync,
            "sync_report": self.sync_report,
            "mapping": self.mapping_from,
            **self._cursor.report(),
        }
