"""Offline replay: interpolate a whole recording, faster than real time where the
hardware allows, resumably, reporting exactly what could not be interpolated.

    source (pipeline.inputs) --> prefetch thread: keyframe pairs + their events -> jobs
        --> compute: in this process (1 worker) or the live pipeline's ZeroMQ workers
        --> writer thread: keyframes and results in time order -> PNGs or video + timestamps

Resuming: DIR/replay_state.json records, at each commit point, how many intervals and
frames are final. PNG output commits after every interval; video output is written in
segments (DIR/.parts/) that are committed when closed and joined into one file (packets
copied, no re-encoding) at the end. A re-run with the same input and settings skips what
is committed: it reads past those intervals without computing them, truncates the
timestamps file to the committed rows and goes on from there.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import DEFAULT_MODEL
from pipeline.dispatch import (
    Dispatcher,
    DispatchError,
    InProcessDispatcher,
    IntervalFlow,
    Outcome,
    PoolDispatcher,
)
from pipeline.inputs import ReplaySource
from pipeline.inputs.frames import FileFrameSource
from pipeline.intervals import Cut, IntervalStream, Key, inserted_for
from pipeline.replay_report import SUMMARY_FILE, build_summary, format_summary
from pipeline.replay_report import Progress as _Progress
from pipeline.segments import FRAMES_DIR, PARTS_DIR, TIMESTAMPS_FILE, SegmentedOutput, join_videos
from pipeline.session import write_atomic
from pipeline.writer import OrderedWriter, WriterCounts, WriterThread

log = logging.getLogger(__name__)

STATE_FILE = "replay_state.json"
FORMATS = ("mp4", "mkv", "png")
STATE_VERSION = 1


class ReplayError(RuntimeError):
    """Replay cannot go on; the message says what to do."""


@dataclass
class ReplayOptions:
    out: Path
    factor: int | None = None  # factor-1 inserted frames per interval
    fps: float | None = None  # or: output frame rate in capture time
    format: str = "mp4"
    model: str = DEFAULT_MODEL
    workers: int = 1
    playback_fps: float = 30.0
    progress: bool = True
    restart: bool = False
    segment_frames: int = 600  # video: frames per committed segment
    job_timeout_s: float = 600.0  # workers: an interval with no result by then is skipped
    worker_start_timeout_s: float = 180.0
    stop_after: int | None = None  # testing: behave as if interrupted after this many intervals
    # Called from the replaying thread with {"done", "total", "frames", "intervals_per_s",
    # "eta_s", "final"} at most four times a second and once at the end (the console).
    on_progress: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if (self.factor is None) == (self.fps is None):
            raise ValueError("give exactly one of factor (--factor) and fps (--fps)")
        if self.factor is not None and self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.fps is not None and not (self.fps > 0 and np.isfinite(self.fps)):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {self.segment_frames}")
        if self.on_progress is not None and not callable(self.on_progress):
            raise ValueError("on_progress must be a function taking a dict")

    @property
    def video_path(self) -> Path:
        return self.out / f"slowmo.{self.format}"


# -- reading: the recording through the frame-source interface and the one cutter ------
class _Last:
    """The last keyframe: nothing follows it."""

    def __init__(self, key: Key) -> None:
        self.key = key


_END = object()


class _WriterLink:
    """The interval flow's sink in replay: the ordered writer on its thread."""

    def __init__(self, writer: WriterThread) -> None:
        self.writer = writer

    def keyframe(self, key: Key) -> None:
        self.writer.call("keyframe", key.index, key.image, key.t_us, key.label)

    def interval(self, index: int, status: str, reason: str = "") -> None:
        if status != "dispatched":
            self.writer.call("skip", index, reason)

    def result(self, outcome: Outcome) -> None:
        o = outcome
        self.writer.call("result", o.index, o.frames, o.timestamps, o.model)

    def end(self, last_keyframe: int) -> None:
        self.writer.call("end", last_keyframe)


class _Prefetch(threading.Thread):
    """Reads the recording ahead of the compute as capture reads its cameras: frames
    from a FrameSource and events from an EventSource into an event window and the
    interval cutter (pipeline/intervals.py); interval k is cut once the events have
    reached keyframe k+1."""

    def __init__(self, source: ReplaySource, opts: ReplayOptions, resume_from: int) -> None:
        super().__init__(name="replay-prefetch", daemon=True)
        self.source = source
        self.q: queue.Queue = queue.Queue(maxsize=max(8, 4 * opts.workers + 4))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.events, to_grid = source.event_source()
        self.intervals = IntervalStream(
            lambda t0, t1: inserted_for(t0, t1, opts.factor, opts.fps),
            to_grid=to_grid,
            lost=self.events.lost,
            resume_from=resume_from,
        )
        self.cutter = self.intervals.cutter

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self._put(_END)

    def _events_until(self, t_us: int) -> None:
        """Read events until they reach t_us (or the stream ends)."""
        events = self.events
        while not events.ended and events.last_t < t_us:
            try:
                item = events.read()
            except EOFError:
                break
            if item is not None:
                self.intervals.add_events(item.events)

    def _run(self) -> None:
        intervals = self.intervals
        with FileFrameSource(self.source) as frames, self.events:
            while not self.stop.is_set():
                try:
                    frame = frames.read()
                except EOFError:
                    break
                if frame is None:
                    continue
                key = intervals.add_keyframe(frame.index, frame.image, frame.mid_exposure_us)
                if key is None:
                    continue
                if key.index >= self.cutter.resume_from and not self._put(key):
                    return
                self._events_until(key.t_us)
                for cut in intervals.cuts(ended=self.events.ended):
                    if not cut.resumed and not self._put(cut):
                        return
        if self.cutter.last is not None and not self.stop.is_set():
            self._put(_Last(self.cutter.last))


# -- output and state --------------------------------------------------------------------
def _atomic_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _counts(state: dict[str, Any]) -> WriterCounts:
    return WriterCounts(
        next_keyframe=int(state["next_interval"]),
        original=int(state["original"]),
        interpolated=int(state["interpolated"]),
        intervals_done=int(state["intervals_interpolated"]),
        skipped=list(state["skipped"]),
        last_written=bool(state["last_keyframe_written"]),
    )


def _commit(state: dict[str, Any], out: SegmentedOutput, w: OrderedWriter, path: Path) -> None:
    """Make what is written final: the segment or PNGs, then the state file."""
    c = w.counts
    first = state["parts"][-1]["intervals"][1] if state["parts"] else 0
    frames = out.commit(intervals=[first, c.next_keyframe])
    state.update(
        next_interval=c.next_keyframe,
        frames=frames,
        original=c.original,
        interpolated=c.interpolated,
        intervals_interpolated=c.intervals_done,
        skipped=list(c.skipped),
        last_keyframe_written=c.last_written,
        parts=out.parts,
    )
    _atomic_json(path, state)


# -- the replay --------------------------------------------------------------------------
def _settings(source: ReplaySource, opts: ReplayOptions) -> dict[str, Any]:
    return {
        "input": source.fingerprint(),
        "kind": source.kind,
        "factor": opts.factor,
        "fps": opts.fps,
        "format": opts.format,
        "model": opts.model,
        "playback_fps": opts.playback_fps if opts.format != "png" else None,
        "mapping": source.describe().get("mapping"),
    }


def _fresh_state(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": STATE_VERSION,
        "settings": settings,
        "next_interval": 0,
        "frames": 0,
        "original": 0,
        "interpolated": 0,
        "intervals_interpolated": 0,
        "skipped": [],
        "parts": [],
        "last_keyframe_written": False,
        "finished": False,
        "runs": 0,
    }


def _clear_output(out: Path) -> None:
    for name in (FRAMES_DIR, PARTS_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (STATE_FILE, SUMMARY_FILE, TIMESTAMPS_FILE, "slowmo.mp4", "slowmo.mkv"):
        (out / name).unlink(missing_ok=True)


def _load_state(source: ReplaySource, opts: ReplayOptions) -> dict[str, Any]:
    out = opts.out
    settings = json.loads(json.dumps(_settings(source, opts), default=_json_default))
    path = out / STATE_FILE
    if opts.restart:
        _clear_output(out)
    elif path.exists():
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise ReplayError(
                f"{path} is unreadable, so the earlier replay in {out} cannot be resumed: "
                "re-run with --restart (starts over) or choose another --out"
            ) from None
        if state.get("settings") != settings:
            old = state.get("settings", {})
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ReplayError(
                f"{out} holds a replay with other settings ({', '.join(diff)} differ): use "
                "another --out, or --restart to replace it"
            )
        return state
    elif (out / TIMESTAMPS_FILE).exists() or (out / FRAMES_DIR).exists():
        raise ReplayError(
            f"{out} already holds output but no {STATE_FILE}: choose an empty folder, or "
            "--restart to replace it"
        )
    return _fresh_state(settings)


def run_replay(source: ReplaySource, opts: ReplayOptions) -> dict[str, Any]:
    """Replay source into opts.out; returns the summary (also written to replay.json).
    summary["status"] is "complete" or "interrupted" (Ctrl-C or stop_after)."""
    out = opts.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReplayError(f"cannot create output folder {out}: {exc.strerror}") from None
    state = _load_state(source, opts)
    if state.get("finished"):
        summary_path = out / SUMMARY_FILE
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            summary["note"] = "already complete: nothing to do (--restart to redo it)"
            return summary
    state["runs"] = state.get("runs", 0) + 1
    resume_from = int(state["next_interval"])  # keyframes (and their intervals) written
    t_start = time.monotonic()
    expected = source.expected_keyframes()
    total = (expected - 1) if expected else None
    progress = _Progress(opts.progress, total, resume_from, opts.on_progress)
    # The model first: a model that cannot be built leaves no output behind.
    compute: Dispatcher
    try:
        if opts.workers > 1:
            compute = PoolDispatcher.local(
                opts.model, opts.workers, opts.job_timeout_s, opts.worker_start_timeout_s
            )
        else:
            compute = InProcessDispatcher(opts.model, policy="queue")
    except DispatchError as exc:
        raise ReplayError(str(exc)) from None
    try:
        seg_out = SegmentedOutput(
            out,
            opts.format,
            opts.playback_fps,
            opts.segment_frames,
            state["parts"],
            state["frames"],
        )
    except BaseException:
        compute.close()
        raise
    state_path = out / STATE_FILE

    def after_write(w: OrderedWriter) -> None:
        if seg_out.ready_to_commit():
            _commit(state, seg_out, w, state_path)

    writer = WriterThread(OrderedWriter(seg_out, _counts(state)), after_write)
    prefetch = _Prefetch(source, opts, resume_from)
    flow = IntervalFlow(compute, _WriterLink(writer))
    status = "complete"
    writer.start()
    try:
        prefetch.start()
        ended = False
        while not ended or compute.in_flight():
            if prefetch.error is not None:
                raise prefetch.error
            if opts.stop_after is not None and flow.settled >= opts.stop_after:
                raise KeyboardInterrupt
            if not ended and compute.in_flight() < compute.capacity():
                try:
                    item = prefetch.q.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if item is _END:
                    ended = True
                    if prefetch.error is not None:
                        raise prefetch.error
                elif isinstance(item, Key):
                    flow.keyframe(item)
                elif isinstance(item, Cut):
                    flow.cut(item)
                elif isinstance(item, _Last):
                    flow.end(item.key.index)
            flow.poll(0.05 if compute.in_flight() >= compute.capacity() else 0.0)
            progress.update(writer.writer.intervals_written, flow.inserted)
    except DispatchError as exc:
        raise ReplayError(str(exc)) from None
    except KeyboardInterrupt:
        status = "interrupted"  # what is computed and in order still gets written
    finally:
        prefetch.stop.set()
        try:
            compute.close()
        finally:
            writer.finish()
            try:
                if writer.error is None:
                    _commit(state, seg_out, writer.writer, state_path)
            finally:
                seg_out.close()
                progress.update(writer.writer.intervals_written, flow.inserted)
                progress.close()
    if writer.error is not None:
        raise writer.error
    wall = time.monotonic() - t_start
    source.finish_report()
    if status == "complete":
        seg_out.finish(opts.video_path)
        state["finished"] = True
        _atomic_json(state_path, state)
    summary = build_summary(
        source,
        opts,
        state,
        status,
        prefetch.cutter,
        compute,
        wall,
        flow.settled,
        flow.inserted,
        resume_from,
    )
    _atomic_json(out / SUMMARY_FILE, summary)
    return summary


__all__ = [
    "FORMATS",
    "ReplayError",
    "ReplayOptions",
    "bench_replay",
    "format_summary",
    "inserted_for",
    "join_videos",
    "run_replay",
    "write_sim_davis",
]

# Kept importable from here (the CLI, the console, the tests and the benchmark use them).
from pipeline.replay_bench import bench_replay, write_sim_davis  # noqa: E402
