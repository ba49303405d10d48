"""Where slow-motion frames go: one interface, several outputs (video file, PNG
sequence, timestamps file), in the spirit of picamera2's Output.

Every frame comes with its true capture time on the rig clock and its source
("original" keyframe or "interpolated"), whatever the playback rate of the video.

Presentation times are exact: frame i of a video plays at i / playback fps, also
across joined segments and resumed runs, so row i of timestamps.csv is frame i.
"""

from __future__ import annotations

import abc
import csv
from fractions import Fraction
from pathlib import Path

import numpy as np

SOURCES = ("original", "interpolated")


class OutputError(RuntimeError):
    """An output could not be written (disk full, bad path, missing codec)."""


class Output(abc.ABC):
    frames_written: int = 0

    @abc.abstractmethod
    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        """image: HxWx3 uint8 RGB."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def commit(self) -> int:
        """Make everything written so far durable; returns how many frames are."""
        return self.frames_written

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoOutput(Output):
    """H.264 MP4 (for sharing) or FFV1 MKV (lossless), through PyAV.

    MP4 is written fragmented, one fragment per frame, so a file cut off by a crash
    plays up to the cut. H.264 is encoded without B-frames or look-ahead
    ("zerolatency"): a packet comes out for every frame that goes in, and frame i has
    presentation time i / fps from the first frame on (with B-frames the first one
    would start two frames late, and a join would add those two frames again).

    hold: packets are kept in memory until ``commit`` (the live recorder commits the
    video, timestamps.csv and session.json together, so a killed recording's three
    agree on the frame count).
    """

    def __init__(
        self, path: Path, fps: float = 30.0, codec: str | None = None, hold: bool = False
    ) -> None:
        import av  # PyAV is a core dependency; imported here to keep CLI start-up fast

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        self.codec = codec or {".mp4": "h264", ".mkv": "ffv1"}.get(suffix)
        if self.codec is None:
            raise OutputError(f"{self.path}: unknown video format {suffix!r}; use .mp4 or .mkv")
        self.fps = fps
        # Fragmented MP4 with a keyframe every second of playback, each packet flushed
        # to the file: a recorder killed mid-way leaves a video that plays up to the
        # last fragment.
        options = {"flush_packets": "1"}
        if suffix == ".mp4":
            options["movflags"] = "frag_every_frame+empty_moov+default_base_moof"
        try:
            self._container = av.open(str(self.path), mode="w", options=options)
        except OSError as exc:
            raise OutputError(f"cannot create video {self.path}: {exc}") from None
        self._stream = None
        self._av = av
        self.frames_written = 0
        self.hold = hold
        self._held: list = []
        self._muxed = 0

    def _open_stream(self, width: int, height: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1000)
        self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.width = width + (width % 2)
        self._stream.height = height + (height % 2)
        self._stream.codec_context.gop_size = max(1, round(self.fps))
        if self.codec == "h264":
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "18", "preset": "veryfast", "tune": "zerolatency"}
        else:
            self._stream.pix_fmt = "bgr0"

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        if self._stream is None:
            self._open_stream(image.shape[1], image.shape[0])
        h, w = self._stream.height, self._stream.width
        if image.shape[0] != h or image.shape[1] != w:
            # x264 needs even sizes: pad by edge replication rather than scaling.
            image = np.pad(
                image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)), mode="edge"
            )
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames_written
        try:
            packets = self._stream.encode(frame)
            if self.hold:
                self._held += packets
            else:
                self._mux(packets)
        except OSError as exc:
            raise OutputError(f"writing {self.path} failed: {exc}") from None
        self.frames_written += 1

    def _mux(self, packets: list) -> None:
        try:
            for packet in packets:
                self._container.mux(packet)
                self._muxed += 1
        except OSError as exc:
            raise OutputError(f"writing {self.path} failed: {exc}") from None

    def commit(self) -> int:
        """Mux the held packets; returns how many frames the file holds now. The MP4
        muxer writes a frame's fragment when the next frame comes, so while the file
        is open it holds one frame less than was muxed."""
        held, self._held = self._held, []
        self._mux(held)
        return self.frames_in_file

    @property
    def frames_in_file(self) -> int:
        if self._container is None or self.path.suffix.lower() != ".mp4":
            return self._muxed
        return max(0, self._muxed - 1)

    def close(self) -> None:
        if self._container is None:
            return
        try:
            held, self._held = self._held, []
            self._mux(held)
            if self._stream is not None:
                self._mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None


class PngSequenceOutput(Output):
    """DIR/%06d.png, numbered in time order."""

    def __init__(self, folder: Path, start_index: int = 0) -> None:
        import cv2

        self._cv2 = cv2
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frames_written = start_index

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        path = self.folder / f"{self.frames_written:06d}.png"
        if not self._cv2.imwrite(str(path), image[..., ::-1]):
            raise OutputError(f"cannot write {path}: is the disk full or read-only?")
        self.frames_written += 1

    def close(self) -> None:
        pass


class TimestampsOutput(Output):
    """timestamps.csv: index,timestamp_us,source — one row per output frame, flushed
    as written so it always matches what reached the video."""

    HEADER = ("index", "timestamp_us", "source")

    def __init__(self, path: Path, append: bool = False, hold: bool = False) -> None:
        self.path = Path(path)
        exists = append and self.path.exists()
        self.frames_written = len(read_timestamps(self.path)) if exists else 0
        self.rows_in_file = self.frames_written
        self.hold = hold  # rows wait for commit(upto) (see VideoOutput.hold)
        self._held: list[tuple[int, int, str]] = []
        try:
            self._file = open(self.path, "a" if exists else "w", newline="")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"cannot create {self.path}: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        if not exists:
            self._writer.writerow(self.HEADER)
            self._file.flush()

    def write(self, image: np.ndarray | None, timestamp_us: int, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        row = (self.frames_written, int(timestamp_us), source)
        self.frames_written += 1
        if self.hold:
            self._held.append(row)
        else:
            self._write_rows([row])

    def _write_rows(self, rows: list[tuple[int, int, str]]) -> None:
        if not rows:
            return
        try:
            self._writer.writerows(rows)
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"writing {self.path} failed: {exc.strerror}") from None
        self.rows_in_file += len(rows)

    def commit(self, upto: int | None = None) -> int:
        """Write the held rows (those with index < upto); returns the rows in the file."""
        n = len(self._held) if upto is None else max(0, upto - self.rows_in_file)
        rows, self._held = self._held[:n], self._held[n:]
        self._write_rows(rows)
        return self.rows_in_file

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.commit()
            finally:
                self._file.close()


class CommittedVideo(Output):
    """The live recording's video + timestamps.csv, made durable together: between
    commits nothing reaches either file; a commit writes the frames to the video, then
    exactly the rows of the frames the video holds. A recording killed at any moment
    outside a commit leaves a video and a timestamps.csv of one length, the length the
    last commit reported (the recorder writes it into session.json)."""

    def __init__(self, video: Path, timestamps: Path, fps: float = 30.0) -> None:
        self.video = VideoOutput(video, fps=fps, hold=True)
        try:
            self.timestamps = TimestampsOutput(timestamps, hold=True)
        except OutputError:
            self.video.close()
            raise
        self.committed = 0

    @property
    def frames_written(self) -> int:  # type: ignore[override]
        return self.timestamps.frames_written

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        self.video.write(image, timestamp_us, source)
        self.timestamps.write(None, timestamp_us, source)

    def commit(self) -> int:
        self.committed = self.timestamps.commit(upto=self.video.commit())
        return self.committed

    def close(self) -> None:
        try:
            self.video.close()
        finally:
            self.timestamps.close()
            self.committed = self.timestamps.rows_in_file


class FanOut(Output):
    """Several outputs fed the same frames (e.g. video + timestamps)."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs

    @property
    def frames_written(self) -> int:  # type: ignore[override]
        return min((o.frames_written for o in self.outputs), default=0)

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        for out in self.outputs:
            out.write(image, timestamp_us, source)

    def commit(self) -> int:
        """Commit every output; returns what the first (the main one) holds."""
        held = [o.commit() for o in self.outputs]
        return held[0] if held else 0

    def close(self) -> None:
        errors = []
        for out in self.outputs:
            try:
                out.close()
            except Exception as exc:  # close every output even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]


def read_timestamps(path: Path) -> list[tuple[int, int, str]]:
    """Rows of a timestamps.csv (index, timestamp_us, source)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != TimestampsOutput.HEADER:
        raise ValueError(f"{path} is not a slomo-rig timestamps file")
    return [(int(i), int(t), s) for i, t, s in rows[1:] if i]
