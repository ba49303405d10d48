"""Output that a later run can resume: a video written in segments that are final once
closed (``DIR/.parts/``, joined into one file at the end by copying packets), or a PNG
sequence written on a few threads, plus timestamps.csv.

What is final is what ``commit`` reported; the caller records it (replay_state.json),
and a resumed run truncates timestamps.csv to it and discards an unfinished segment.
Presentation times are exact across the joins: frame i of the joined video plays at
i / playback fps, as in a video that was never cut into segments.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.outputs import Output, OutputError, TimestampsOutput, VideoOutput
from pipeline.session import write_atomic

FRAMES_DIR = "frames"
PARTS_DIR = ".parts"
TIMESTAMPS_FILE = "timestamps.csv"
PNG_COMMIT_S = 0.5  # PNG output: how often what is on disk becomes final


class PngPool(Output):
    """DIR/%06d.png written on a few threads (PNG encoding releases the GIL); ``wait``
    returns once every PNG handed over is on disk."""

    def __init__(self, folder: Path, start_index: int, threads: int = 2) -> None:
        import cv2

        self._cv2 = cv2
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.folder}: {exc.strerror}") from None
        self.frames_written = start_index
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="png")
        self._pending: deque[Future] = deque()

    def _write(self, path: Path, image: np.ndarray) -> None:
        if not self._cv2.imwrite(str(path), image[..., ::-1]):
            raise OutputError(f"cannot write {path}: is the disk full or read-only?")

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        path = self.folder / f"{self.frames_written:06d}.png"
        self._pending.append(self._pool.submit(self._write, path, image))
        self.frames_written += 1
        while len(self._pending) > 64 or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()

    def commit(self) -> int:
        while self._pending:
            self._pending.popleft().result()
        return self.frames_written

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._pool.shutdown(wait=True)


class SegmentedOutput(Output):
    """Frames to PNGs or to video segments, and timestamps.csv.

    parts: the segments committed by earlier runs ({"file", "frames", ...}); frames:
    how many frames they (or the PNGs) hold; timestamps.csv is cut back to that many
    rows. ``ready_to_commit`` says when a commit makes sense (a full segment, or PNGs
    every half second); ``commit`` makes everything written final.
    """

    def __init__(
        self,
        out: Path,
        format: str,
        playback_fps: float,
        segment_frames: int,
        parts: list[dict[str, Any]],
        frames: int,
    ) -> None:
        self.out = Path(out)
        self.format = format
        self.playback_fps = playback_fps
        self.segment_frames = segment_frames
        self.parts = parts
        ts_path = self.out / TIMESTAMPS_FILE
        truncate_timestamps(ts_path, frames)
        self.timestamps = TimestampsOutput(ts_path, append=True)
        self.png: PngPool | None = None
        self.video: VideoOutput | None = None
        self.part_path: Path | None = None
        self.part_frames = 0
        self.last_commit = time.monotonic()
        if format == "png":
            self.png = PngPool(self.out / FRAMES_DIR, frames)
        else:
            parts_dir = self.out / PARTS_DIR
            parts_dir.mkdir(exist_ok=True)
            kept = {p["file"] for p in parts}
            for p in parts_dir.glob("part-*"):  # left by a run killed mid-segment
                if p.name not in kept:
                    p.unlink()

    @property
    def frames_written(self) -> int:  # type: ignore[override]
        return self.timestamps.frames_written

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        if self.png is not None:
            self.png.write(image, timestamp_us, source)
        else:
            if self.video is None:
                n = len(self.parts)
                self.part_path = self.out / PARTS_DIR / f"part-{n:05d}.{self.format}"
                self.video = VideoOutput(self.part_path, fps=self.playback_fps)
                self.part_frames = 0
            self.video.write(image, timestamp_us, source)
            self.part_frames += 1
        self.timestamps.write(None, timestamp_us, source)

    def ready_to_commit(self) -> bool:
        if self.video is not None:
            return self.part_frames >= self.segment_frames
        return self.png is not None and time.monotonic() - self.last_commit >= PNG_COMMIT_S

    def commit(self, **part_info: Any) -> int:
        """Close the open segment (recorded with part_info) or wait for the PNGs."""
        if self.video is not None:
            self.video.close()
            self.video = None
            name = self.part_path.name if self.part_path else ""
            self.parts.append({"file": name, "frames": self.part_frames, **part_info})
        if self.png is not None:
            self.png.commit()  # only PNGs that are on disk become final
        self.last_commit = time.monotonic()
        return self.timestamps.frames_written

    def close(self) -> None:
        try:
            if self.video is not None:
                self.video.close()  # unfinished: not in parts, discarded by the next run
                self.video = None
        finally:
            self.timestamps.close()
            if self.png is not None:
                self.png.close()

    def finish(self, video_path: Path) -> None:
        """Join the committed segments into video_path and remove them."""
        import shutil

        if self.png is None:
            paths = [self.out / PARTS_DIR / p["file"] for p in self.parts]
            frames = [int(p["frames"]) for p in self.parts]
            if paths:
                join_videos(paths, video_path, self.playback_fps, frames)
            shutil.rmtree(self.out / PARTS_DIR, ignore_errors=True)


def truncate_timestamps(path: Path, rows: int) -> None:
    """Keep the header and the first `rows` rows (what the state file says is final)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    write_atomic(path, "".join(lines[: 1 + rows]))


def _ticks(frame: int, fps: Fraction, tb: Fraction) -> int:
    """Presentation time of frame `frame` at fps, in units of tb, rounded half up
    (as FFmpeg rescales a frame's time into the container's time base)."""
    x = Fraction(frame) / fps / tb
    return (2 * x.numerator + x.denominator) // (2 * x.denominator)


def join_videos(
    parts: list[Path], out: Path, fps: float = 30.0, frames: list[int] | None = None
) -> None:
    """Concatenate video segments of one codec and size into one file, copying the
    packets (no re-encoding). Frame j of the segment that follows n frames gets the
    time of frame n + j at fps, exactly what one uninterrupted file gives it."""
    import av

    if len(parts) == 1:
        os.replace(parts[0], out)
        return
    rate = Fraction(fps).limit_denominator(1000)
    suffix = out.suffix.lower()
    opts = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if suffix == ".mp4" else {}
    tmp = out.with_name(out.stem + ".joining" + out.suffix)
    oc = av.open(str(tmp), mode="w", format="mp4" if suffix == ".mp4" else "matroska", options=opts)
    try:
        ost = None
        before = 0  # frames of the segments already copied
        for i, part in enumerate(parts):
            with av.open(str(part)) as ic:
                ist = ic.streams.video[0]
                if ost is None:
                    ost = oc.add_stream_from_template(ist)
                tb = Fraction(ist.time_base)
                packets = [p for p in ic.demux(ist) if p.dts is not None and p.pts is not None]
                # Rank of each packet's presentation time: its frame number in the part.
                rank = {pts: j for j, pts in enumerate(sorted({p.pts for p in packets}))}
                for pkt in packets:
                    shift = _ticks(before + rank[pkt.pts], rate, tb) - pkt.pts
                    pkt.pts += shift
                    pkt.dts += shift
                    pkt.stream = ost
                    oc.mux(pkt)
                n = len(rank)
                if frames is not None and frames[i] != n:
                    raise OutputError(f"{part} holds {n} frames, {frames[i]} were committed")
                before += n
    finally:
        oc.close()
    os.replace(tmp, out)
    for p in parts:
        p.unlink(missing_ok=True)
