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
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import DEFAULT_MODEL
from pipeline.dispatch import (
    Dispatcher,
    DispatchError,
    InProcessDispatcher,
    Outcome,
    PoolDispatcher,
)
from pipeline.inputs import Keyframe, ReplaySource
from pipeline.inputs.frames import FileFrameSource
from pipeline.intervals import Cut, IntervalCutter, Key, inserted_for
from pipeline.segments import FRAMES_DIR, PARTS_DIR, TIMESTAMPS_FILE, SegmentedOutput, join_videos
from pipeline.writer import OrderedWriter, WriterCounts, WriterThread

log = logging.getLogger(__name__)

STATE_FILE = "replay_state.json"
SUMMARY_FILE = "replay.json"
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

    @property
    def video_path(self) -> Path:
        return self.out / f"slowmo.{self.format}"


# -- reading: the recording through the frame-source interface and the one cutter ------
class _Last:
    """The last keyframe: nothing follows it."""

    def __init__(self, key: Key) -> None:
        self.key = key


_END = object()


def _keyframe(k: Key) -> Keyframe:
    return Keyframe(k.label, k.image, k.t_us)


class _Prefetch(threading.Thread):
    """Reads the recording ahead of the compute, as capture reads its cameras: frames
    from a FrameSource into the interval cutter (pipeline/intervals.py), which takes
    each interval's events from the input."""

    def __init__(self, source: ReplaySource, opts: ReplayOptions, resume_from: int) -> None:
        super().__init__(name="replay-prefetch", daemon=True)
        self.source = source
        self.q: queue.Queue = queue.Queue(maxsize=max(4, 2 * opts.workers + 2))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.cutter = IntervalCutter(
            events=lambda a, b: source.events(_keyframe(a), _keyframe(b)),
            instants=lambda t0, t1: inserted_for(t0, t1, opts.factor, opts.fps),
            skip=lambda a, b: source.skip(_keyframe(a), _keyframe(b)),
            resume_from=resume_from,
        )

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

    def _run(self) -> None:
        cutter = self.cutter
        with FileFrameSource(self.source) as frames:
            while not self.stop.is_set():
                try:
                    frame = frames.read()
                except EOFError:
                    break
                if (
                    frame is None
                    or cutter.add_keyframe(frame.index, frame.image, frame.mid_exposure_us) is None
                ):
                    continue
                for cut in cutter.cuts():
                    if not cut.resumed and not self._put(cut):
                        return
        if cutter.last is not None and not self.stop.is_set():
            self._put(_Last(cutter.last))


# -- output and state --------------------------------------------------------------------
def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


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


# -- progress ----------------------------------------------------------------------------
class _Progress:
    def __init__(self, enabled: bool, total: int | None, done0: int) -> None:
        self.enabled = enabled
        self.total = total
        self.done0 = done0
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int, frames: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        el = max(now - self.t0, 1e-9)
        rate = (done - self.done0) / el
        if self.total:
            frac = min(done / self.total, 1.0)
            width = 24
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            eta_s = _hms(eta) if np.isfinite(eta) else "--:--"
            line = (
                f"\rreplay [{bar}] {done}/{self.total} intervals {100 * frac:5.1f}%  "
                f"{rate:6.1f} int/s  {frames / el:7.1f} frames/s  ETA {eta_s}  "
            )
        else:
            line = f"\rreplay {done} intervals  {rate:6.1f} int/s  {frames / el:7.1f} frames/s  "
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _hms(s: float) -> str:
    s = int(s)
    return (
        f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        if s >= 3600
        else f"{s // 60:02d}:{s % 60:02d}"
    )


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


def _merge_skipped(skipped: list[dict[str, Any]]) -> list[str]:
    """Human-readable lines, runs of consecutive intervals with one reason merged."""
    lines: list[str] = []
    i = 0
    while i < len(skipped):
        j = i
        while (
            j + 1 < len(skipped)
            and skipped[j + 1]["interval"] == skipped[j]["interval"] + 1
            and skipped[j + 1]["reason"] == skipped[i]["reason"]
        ):
            j += 1
        a, b = skipped[i], skipped[j]
        which = (
            f"interval {a['interval']}" if i == j else f"intervals {a['interval']}-{b['interval']}"
        )
        lines.append(
            f"{which} (frames {a['frames'][0]}..{b['frames'][1]}, {a['t0_us']}..{b['t1_us']} µs): "
            f"{a['reason']}"
        )
        i = j + 1
    return lines


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
    progress = _Progress(opts.progress, (expected - 1) if expected else None, resume_from)
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
    status = "complete"
    computed = 0
    inserted = 0

    def settle(o: Outcome) -> None:
        if o.frames is not None and o.timestamps is not None:
            writer.call("result", o.index, o.frames, o.timestamps, o.model)
        else:
            writer.call("skip", o.index, o.reason)

    writer.start()
    try:
        prefetch.start()
        ended = False
        while not ended or compute.in_flight():
            if prefetch.error is not None:
                raise prefetch.error
            if opts.stop_after is not None and computed >= opts.stop_after:
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
                elif isinstance(item, _Last):
                    k = item.key
                    writer.call("keyframe", k.index, k.image, k.t_us, k.label)
                    writer.call("end", k.index)
                elif isinstance(item, Cut):
                    k0, k1 = item.k0, item.k1
                    writer.call("keyframe", k0.index, k0.image, k0.t_us, k0.label)
                    writer.call("keyframe", k1.index, k1.image, k1.t_us, k1.label)
                    if item.job is not None:
                        compute.offer(item.job)
                    elif item.reason:
                        settle(Outcome(item.index, reason=item.reason))
                    else:  # nothing to insert (a very short interval)
                        settle(Outcome(item.index, np.empty(0), np.empty(0, np.int64)))
            busy = compute.in_flight() >= compute.capacity()
            for outcome in compute.poll(0.05 if busy else 0.0):
                settle(outcome)
                computed += 1
                if outcome.frames is not None:
                    inserted += len(outcome.frames)
            progress.update(writer.writer.next_keyframe, inserted)
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
                progress.close()
    if writer.error is not None:
        raise writer.error
    wall = time.monotonic() - t_start
    source.finish_report()
    if status == "complete":
        seg_out.finish(opts.video_path)
        state["finished"] = True
        _atomic_json(state_path, state)
    summary = _summary(
        source, opts, state, status, prefetch, compute, wall, computed, inserted, resume_from
    )
    _atomic_json(out / SUMMARY_FILE, summary)
    return summary


def _summary(
    source: ReplaySource,
    opts: ReplayOptions,
    state: dict[str, Any],
    status: str,
    prefetch: _Prefetch,
    compute: Any,
    wall: float,
    computed: int,
    inserted: int,
    resumed_from: int,
) -> dict[str, Any]:
    span_s = None
    span_s = prefetch.cutter.span_s
    out_info: dict[str, Any] = {
        "format": opts.format,
        "timestamps": str(opts.out / TIMESTAMPS_FILE),
    }
    if opts.format == "png":
        out_info["frames_dir"] = str(opts.out / FRAMES_DIR)
    else:
        out_info["video"] = str(opts.video_path) if status == "complete" else None
        out_info["playback_fps"] = opts.playback_fps
    total_intervals = state["next_interval"] - (1 if state["last_keyframe_written"] else 0)
    return {
        "status": status,
        "input": source.describe(),
        "notes": source.notes,
        "settings": {
            "factor": opts.factor,
            "fps": opts.fps,
            "model": opts.model,
            "model_name": getattr(compute, "name", opts.model),
            "workers": opts.workers,
        },
        "output": {
            **out_info,
            "frames_written": state["frames"],
            "original_frames": state["original"],
            "interpolated_frames": state["interpolated"],
        },
        "intervals": {
            "replayed": total_intervals,
            "interpolated": state["intervals_interpolated"],
            "skipped": len(state["skipped"]),
            "resumed_from": resumed_from,
            "runs": state.get("runs", 1),
        },
        "skipped_intervals": state["skipped"],
        "dropped_keyframes": prefetch.cutter.dropped,
        "frame_gaps": prefetch.cutter.gaps,
        "problems": source.problems,
        "timing": {
            "wall_s": round(wall, 3),
            "intervals_computed": computed,
            "inserted_frames": inserted,
            "intervals_per_s": round(computed / wall, 2) if wall > 0 else None,
            "inserted_frames_per_s": round(inserted / wall, 1) if wall > 0 else None,
            "capture_span_s": span_s,
            "realtime_factor": round(span_s / wall, 3)
            if span_s and wall > 0 and resumed_from == 0
            else None,
            **compute.stats(),
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """What `slomo-rig replay` prints on stdout."""
    inp, o, iv, tm = summary["input"], summary["output"], summary["intervals"], summary["timing"]
    lines = [
        f"replay {summary['status']}: {inp['kind']} {inp['path']}",
        f"  output      {o.get('video') or o.get('frames_dir') or '(video joined when complete)'}",
        f"  timestamps  {o['timestamps']}",
        f"  frames      {o['frames_written']} ({o['original_frames']} original + "
        f"{o['interpolated_frames']} interpolated, model {summary['settings']['model_name']})",
        f"  intervals   {iv['replayed']} replayed, {iv['interpolated']} interpolated, "
        f"{iv['skipped']} skipped"
        + (f" (resumed at {iv['resumed_from']})" if iv["resumed_from"] else ""),
    ]
    if tm.get("intervals_per_s") is not None:
        rt = f", {tm['realtime_factor']:.2f}x real time" if tm.get("realtime_factor") else ""
        lines.append(
            f"  speed       {tm['intervals_per_s']} intervals/s, {tm['inserted_frames_per_s']} "
            f"inserted frames/s in {tm['wall_s']} s{rt}"
        )
    for n in summary.get("notes", []):
        lines.append(f"  note        {n}")
    skipped = _merge_skipped(summary["skipped_intervals"])
    if skipped:
        lines.append(
            f"  SKIPPED (keyframes kept, no frames inserted): {len(summary['skipped_intervals'])} intervals"
        )
        lines += [f"    {s}" for s in skipped]
    for d in summary["dropped_keyframes"]:
        lines.append(f"  DROPPED frame {d['frame']}: {d['reason']}")
    for g in summary["frame_gaps"]:
        lines.append(
            f"  GAP after frame {g['frames'][0]} ({g['t0_us']}..{g['t1_us']} µs): {g['detail']}"
        )
    for p in summary["problems"]:
        lines.append(f"  DAMAGE {p['what']}: {p['detail']}")
    if summary["status"] != "complete":
        lines.append("  interrupted: run the same command again to resume where it stopped")
    lines.append(f"  summary     {Path(o['timestamps']).parent / SUMMARY_FILE}")
    return "\n".join(lines)


# -- simulated recordings and the benchmark -----------------------------------------------
def write_sim_davis(
    path: Path,
    seconds: float,
    config: Any = None,
    writer: str = "aedat4",
    chunk_us: int = 10_000,
) -> Any:
    """Record the simulated rig as a DAVIS-style AEDAT4 file (frames and events of one
    sensor, frames on the event clock, exposure stored) and return the SimulatedRig
    (its ground_truth(t) gives the true in-between frames). writer: "aedat4" (this
    project's fast numpy writer) or "dv" (dv-processing's MonoCameraWriter)."""
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig

    cfg = config or SimConfig(event_view="same_sensor")
    if cfg.event_view != "same_sensor":
        raise ValueError("a DAVIS recording needs SimConfig(event_view='same_sensor')")
    rig = SimulatedRig(cfg)
    gt_rig = SimulatedRig(cfg)  # untouched copy for ground truth
    end_us = int(seconds * 1e6)
    if writer == "dv":
        import datetime

        import dv_processing as dv

        w = dv.io.MonoCameraWriter(
            str(path), dv.io.MonoCameraWriter.DAVISConfig("DAVIS-sim", cfg.frame_size)
        )
        for t in range(chunk_us, end_us + chunk_us, chunk_us):
            step = rig.advance(t)
            ev = step.events
            if len(ev):
                store = dv.EventStore()
                for tt, x, y, p in zip(
                    ev.t.tolist(), ev.x.tolist(), ev.y.tolist(), ev.p.tolist(), strict=True
                ):
                    store.push_back(tt, x, y, bool(p))
                w.writeEvents(store)
            for f in step.frames:
                start = rig.frame_device_to_rig(f.timestamp_us)
                fr = dv.Frame(start, np.ascontiguousarray(f.image[:, :, ::-1]))
                fr.exposure = datetime.timedelta(microseconds=f.exposure_us)
                w.writeFrame(fr)
        del w
    elif writer == "aedat4":
        from pipeline.aedat4 import Aedat4Writer
        from rig.types import Frame

        with Aedat4Writer(
            path, "DAVIS-sim", event_size=cfg.frame_size, frame_size=cfg.frame_size
        ) as w:
            for t in range(chunk_us, end_us + chunk_us, chunk_us):
                step = rig.advance(t)
                if len(step.events):
                    w.write_events(step.events)
                for f in step.frames:
                    start = rig.frame_device_to_rig(f.timestamp_us)
                    w.write_frame(Frame(f.image, f.index, start, f.exposure_us))
    else:
        raise ValueError(f"writer must be 'aedat4' or 'dv', got {writer!r}")
    return gt_rig


def bench_replay(
    models: tuple[str, ...] = ("integration", "blend", "flow"),
    seconds: float = 2.0,
    factor: int = 8,
    format: str = "mp4",
    workers: int = 1,
    frame_size: tuple[int, int] = (320, 240),
    directory: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Replay speed per model on a simulated DAVIS recording (50 fps, frame_size):
    intervals/s and inserted frames/s, end to end (reading, events, model, encoding).
    A model that cannot be built (e.g. timelens without weights) is listed with its error."""
    import tempfile

    from models.registry import ModelError
    from pipeline.inputs import open_input
    from rig.sim.config import SimConfig

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        rec = Path(tmp) / "sim.aedat4"
        write_sim_davis(rec, seconds, SimConfig(frame_size=frame_size, event_view="same_sensor"))
        for model in models:
            out = Path(tmp) / f"out-{model.replace(':', '_')}"
            try:
                with open_input(rec) as src:
                    s = run_replay(
                        src,
                        ReplayOptions(
                            out,
                            factor=factor,
                            format=format,
                            model=model,
                            workers=workers,
                            progress=False,
                        ),
                    )
            except (ModelError, ReplayError) as exc:
                rows.append({"model": model, "error": str(exc)})
                continue
            tm = s["timing"]
            rows.append(
                {
                    "model": model,
                    "format": format,
                    "workers": workers,
                    "frame_size": list(frame_size),
                    "factor": factor,
                    "intervals": tm["intervals_computed"],
                    "inserted_frames": tm["inserted_frames"],
                    "wall_s": tm["wall_s"],
                    "intervals_per_s": tm["intervals_per_s"],
                    "inserted_frames_per_s": tm["inserted_frames_per_s"],
                    "realtime_factor": tm["realtime_factor"],
                }
            )
            shutil.rmtree(out, ignore_errors=True)
    return rows


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
