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
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from contracts.jobs import IntervalJob, inserted_timestamps
from models.registry import DEFAULT_MODEL
from pipeline.inputs import Keyframe, MissingEvents, ReplaySource
from pipeline.outputs import OutputError, TimestampsOutput, VideoOutput

log = logging.getLogger(__name__)

STATE_FILE = "replay_state.json"
SUMMARY_FILE = "replay.json"
FRAMES_DIR = "frames"
PARTS_DIR = ".parts"
TIMESTAMPS_FILE = "timestamps.csv"
FORMATS = ("mp4", "mkv", "png")
STATE_VERSION = 1
GAP_FACTOR = 1.8  # an interval this many times the usual one means frames are missing


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


def inserted_for(t0_us: int, t1_us: int, factor: int | None, fps: float | None) -> np.ndarray:
    """Instants to synthesise inside (t0, t1): factor-1 evenly spaced ones, or for an
    output rate of fps frames per second of capture time, round(duration * fps) - 1."""
    if factor is None:
        assert fps is not None
        factor = max(1, int(round((t1_us - t0_us) * fps / 1e6)))
    ts = inserted_timestamps(t0_us, t1_us, factor)
    # Very short intervals can round two instants together: keep them strictly inside.
    ts = np.unique(ts[(ts > t0_us) & (ts < t1_us)])
    return ts


# -- items flowing from prefetch to compute to writer ------------------------------------
@dataclass
class _Item:
    ordinal: int  # interval number (0-based) among usable keyframe pairs
    k0: Keyframe
    k1: Keyframe | None  # None: the last keyframe, nothing after it
    job: IntervalJob | None = None
    reason: str = ""  # why no frames (skipped)
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    resumed: bool = False  # committed by an earlier run: not written again


_END = object()


class _Prefetch(threading.Thread):
    """Reads the source ahead of the compute: usable keyframe pairs with their events."""

    def __init__(self, source: ReplaySource, opts: ReplayOptions, resume_from: int) -> None:
        super().__init__(name="replay-prefetch", daemon=True)
        self.source = source
        self.opts = opts
        self.resume_from = resume_from
        self.q: queue.Queue = queue.Queue(maxsize=max(4, 2 * opts.workers + 2))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.dropped: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.first_t: int | None = None
        self.last_t: int | None = None

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
        prev: Keyframe | None = None
        ordinal = 0
        recent: list[int] = []
        for kf in self.source.keyframes():
            if self.stop.is_set():
                return
            if prev is not None and kf.t_us <= prev.t_us:
                self.dropped.append(
                    {
                        "frame": kf.index,
                        "t_us": kf.t_us,
                        "reason": f"time {kf.t_us} µs is not after the previous keyframe "
                        f"(frame {prev.index}, {prev.t_us} µs)",
                    }
                )
                continue
            if self.first_t is None:
                self.first_t = kf.t_us
            self.last_t = kf.t_us
            if prev is None:
                prev = kf
                continue
            dt = kf.t_us - prev.t_us
            typical = float(np.median(recent)) if recent else None
            if typical and dt > GAP_FACTOR * typical:
                self.gaps.append(
                    {
                        "interval": ordinal,
                        "frames": [prev.index, kf.index],
                        "t0_us": prev.t_us,
                        "t1_us": kf.t_us,
                        "detail": f"{dt / typical - 1:.1f} frame periods missing "
                        f"(frames {prev.index + 1}..{kf.index - 1} absent or unusable); "
                        "interpolated across the gap",
                    }
                )
            else:
                recent = (recent + [dt])[-50:]
            item = _Item(ordinal, prev, kf)
            if ordinal < self.resume_from:
                self.source.skip(prev, kf)
                item.resumed = True
            else:
                ts = inserted_for(prev.t_us, kf.t_us, self.opts.factor, self.opts.fps)
                try:
                    ev = self.source.events(prev, kf)
                except MissingEvents as exc:
                    item.reason = str(exc)
                else:
                    if len(ts):
                        item.job = IntervalJob(
                            ordinal, prev.image, kf.image, prev.t_us, kf.t_us, ev, ts
                        )
            if not self._put(item):
                return
            prev = kf
            ordinal += 1
        if prev is not None:
            self._put(_Item(ordinal, prev, None, resumed=False))


# -- compute ---------------------------------------------------------------------------
class _InProcess:
    def __init__(self, model: str) -> None:
        from models.registry import make_interpolator

        self.interp = make_interpolator(model)
        self.name = self.interp.name
        self.compute_s = 0.0
        self._done: list[_Item] = []

    def capacity(self) -> int:
        return 1

    def submit(self, item: _Item) -> None:
        assert item.job is not None
        t = time.perf_counter()
        try:
            item.frames = self.interp.interpolate(item.job)
            item.timestamps = item.job.timestamps_us
        except Exception as exc:  # one bad interval must not end the replay
            log.exception("interval %d failed", item.ordinal)
            item.reason = f"the model failed: {type(exc).__name__}: {exc}"
        self.compute_s += time.perf_counter() - t
        self._done.append(item)

    def poll(self, timeout_s: float) -> list[_Item]:
        done, self._done = self._done, []
        return done

    def in_flight(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"compute_s": round(self.compute_s, 3)}


class _ZmqWorkers:
    """The live pipeline's worker pool (pipeline.pool.WorkerPool): local worker
    processes, restarted if they die, each given an interval whenever it is idle; an
    interval whose worker dies is sent again to another."""

    def __init__(self, model: str, n: int, job_timeout_s: float, start_timeout_s: float) -> None:
        import zmq

        from pipeline import wire
        from pipeline.pool import PoolError, WorkerPool

        self._zmq, self._wire = zmq, wire
        self.ctx = zmq.Context()
        self.results = self.ctx.socket(zmq.PULL)
        self.results.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_MAX_MESSAGE_BYTES)
        res_ep = f"tcp://127.0.0.1:{self.results.bind_to_random_port('tcp://127.0.0.1')}"
        self.n = n
        self.job_timeout_s = job_timeout_s
        self.pending: dict[int, tuple[_Item, float]] = {}
        self.workers: dict[str, dict] = {}
        self.name = model
        self.pool = WorkerPool(model, res_ep, local_workers=n, name_prefix="replay-worker")
        try:
            self.pool.start(timeout_s=start_timeout_s)
        except PoolError as exc:
            self.close()
            raise ReplayError(f"{exc}; run with --workers 1 to see the model's error") from None

    def capacity(self) -> int:
        return 2 * self.n

    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, item: _Item) -> None:
        from pipeline.messages import job_message

        assert item.job is not None
        self.pool.submit(item.ordinal, job_message(item.job))
        self.pending[item.ordinal] = (item, time.monotonic())

    def poll(self, timeout_s: float) -> list[_Item]:
        from pipeline.messages import result_from_message

        done: list[_Item] = []
        self.pool.poll(live=False)
        wait_ms = int(timeout_s * 1000)
        while self.results.poll(wait_ms):
            wait_ms = 0
            try:
                msg = self._wire.recv(self.results)
                if msg.type == "result":
                    res = result_from_message(msg)
                    entry = self.pending.pop(res.index, None)
                    if entry is not None:
                        item = entry[0]
                        item.frames, item.timestamps = res.frames, res.timestamps_us
                        self.name = res.model
                        done.append(item)
                elif msg.type == "interval" and msg.meta.get("status") == "failed":
                    entry = self.pending.pop(int(msg.meta.get("index", -1)), None)
                    if entry is not None:
                        entry[0].reason = f"the model failed: {msg.meta.get('reason', '?')}"
                        done.append(entry[0])
                elif msg.type == "status":
                    self.workers[str(msg.meta.get("worker", "?"))] = dict(msg.meta)
            except self._wire.WireError as exc:
                log.warning("replay dropped a bad message from a worker: %s", exc)
        self.pool.poll(live=False)
        now = time.monotonic()
        for ordinal, (item, since) in list(self.pending.items()):
            if now - since > self.job_timeout_s:
                del self.pending[ordinal]
                item.reason = f"no result within {self.job_timeout_s:g} s (worker lost or too slow)"
                done.append(item)
        if self.pending and self.pool.stats.restarts > 10 * self.n:
            raise ReplayError("replay workers keep dying; run with --workers 1 to see why")
        return done

    def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.close()
        self.results.close(0)
        self.ctx.term()

    def stats(self) -> dict[str, Any]:
        return {
            "workers": {
                k: {f: v.get(f) for f in ("jobs", "frames", "failed_jobs", "compute_s")}
                for k, v in self.workers.items()
            }
        }


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


def _truncate_timestamps(path: Path, rows: int) -> None:
    """Keep the header and the first `rows` rows (what the state file says is final)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines[: 1 + rows]))
    os.replace(tmp, path)


def join_videos(parts: list[Path], out: Path) -> None:
    """Concatenate video segments of one codec and size into one file, copying the
    packets (no re-encoding); presentation times continue across segments."""
    import av

    if len(parts) == 1:
        os.replace(parts[0], out)
        return
    suffix = out.suffix.lower()
    opts = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if suffix == ".mp4" else {}
    tmp = out.with_name(out.stem + ".joining" + out.suffix)
    oc = av.open(str(tmp), mode="w", format="mp4" if suffix == ".mp4" else "matroska", options=opts)
    try:
        ost = None
        offset = Fraction(0)  # seconds already written
        for part in parts:
            with av.open(str(part)) as ic:
                ist = ic.streams.video[0]
                if ost is None:
                    ost = oc.add_stream_from_template(ist)
                tb = ist.time_base
                end = offset
                for pkt in ic.demux(ist):
                    if pkt.dts is None:
                        continue
                    dur = pkt.duration or 0
                    shift = int(round(offset / tb))
                    pkt.pts += shift
                    pkt.dts += shift
                    end = max(end, (pkt.pts + dur) * tb)
                    pkt.stream = ost
                    oc.mux(pkt)
                offset = end
    finally:
        oc.close()
    os.replace(tmp, out)
    for p in parts:
        p.unlink(missing_ok=True)


class _PngPool:
    """DIR/frames/%06d.png written on a few threads (PNG encoding releases the GIL);
    `wait` returns once every PNG handed over is on disk."""

    def __init__(self, folder: Path, start_index: int, threads: int = 2) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        import cv2

        self._cv2 = cv2
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.index = start_index
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="replay-png")
        self._pending: deque = deque()

    def _write(self, path: Path, image: np.ndarray) -> None:
        if not self._cv2.imwrite(str(path), image[..., ::-1]):
            raise OutputError(f"cannot write {path}: is the disk full or read-only?")

    def write(self, image: np.ndarray) -> None:
        path = self.folder / f"{self.index:06d}.png"
        self._pending.append(self._pool.submit(self._write, path, image))
        self.index += 1
        while len(self._pending) > 64 or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


class _Writer(threading.Thread):
    """Writes items in time order and commits the state file."""

    def __init__(self, opts: ReplayOptions, state: dict[str, Any]) -> None:
        super().__init__(name="replay-writer", daemon=True)
        self.opts = opts
        self.state = state
        self.q: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        out = opts.out
        self.ts_path = out / TIMESTAMPS_FILE
        _truncate_timestamps(self.ts_path, state["frames"])
        self.timestamps = TimestampsOutput(self.ts_path, append=True)
        self.png: _PngPool | None = None
        self.video: VideoOutput | None = None
        self.part_path: Path | None = None
        self.part_frames = 0
        self.part_first_interval = state["next_interval"]
        if opts.format == "png":
            self.png = _PngPool(out / FRAMES_DIR, state["frames"])
        else:
            (out / PARTS_DIR).mkdir(exist_ok=True)
        self.last_commit = 0.0

    # one frame
    def _frame(self, image: np.ndarray, t_us: int, source: str) -> None:
        if self.png is not None:
            self.png.write(image)
        else:
            if self.video is None:
                n = len(self.state["parts"])
                self.part_path = self.opts.out / PARTS_DIR / f"part-{n:05d}.{self.opts.format}"
                self.video = VideoOutput(self.part_path, fps=self.opts.playback_fps)
                self.part_frames = 0
            self.video.write(image, t_us, source)
            self.part_frames += 1
        self.timestamps.write(None, t_us, source)

    def _write_item(self, item: _Item) -> None:
        st = self.state
        self._frame(item.k0.image, item.k0.t_us, "original")
        st["original"] += 1
        if item.k1 is None:
            st["last_keyframe_written"] = True
            return
        if item.frames is not None and item.timestamps is not None:
            for img, ts in zip(item.frames, item.timestamps, strict=True):
                self._frame(img, int(ts), "interpolated")
            st["interpolated"] += len(item.frames)
            st["intervals_interpolated"] += 1
        elif item.reason:
            st["skipped"].append(
                {
                    "interval": item.ordinal,
                    "frames": [item.k0.index, item.k1.index],
                    "t0_us": item.k0.t_us,
                    "t1_us": item.k1.t_us,
                    "reason": item.reason,
                }
            )
        st["next_interval"] = item.ordinal + 1

    def _commit(self, force: bool = False) -> None:
        """Make what is written final in the state file (video: close the segment)."""
        st = self.state
        if self.video is not None:
            if not force and self.part_frames < self.opts.segment_frames:
                return
            self.video.close()
            self.video = None
            st["parts"].append(
                {
                    "file": self.part_path.name if self.part_path else "",
                    "frames": self.part_frames,
                    "intervals": [self.part_first_interval, st["next_interval"]],
                }
            )
            self.part_first_interval = st["next_interval"]
        elif self.png is None and not force:
            return
        elif not force and time.monotonic() - self.last_commit < 0.5:
            return
        if self.png is not None:
            self.png.wait()  # only PNGs that are on disk become final
        st["frames"] = self.timestamps.frames_written
        _atomic_json(self.opts.out / STATE_FILE, st)
        self.last_commit = time.monotonic()

    def run(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is _END:
                    break
                self._write_item(item)
                self._commit()
        except BaseException as exc:
            self.error = exc
            while True:  # keep the producer from blocking forever
                if self.q.get() is _END:
                    break
        finally:
            try:
                self._commit(force=True)
            finally:
                self.timestamps.close()
                if self.png is not None:
                    self.png.close()


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
    resume_from = int(state["next_interval"])
    if state["last_keyframe_written"]:
        resume_from += 1
    # Leftovers of an interrupted run past the last commit.
    if opts.format != "png":
        kept = {p["file"] for p in state["parts"]}
        for p in (out / PARTS_DIR).glob("part-*") if (out / PARTS_DIR).exists() else []:
            if p.name not in kept:
                p.unlink()
    t_start = time.monotonic()
    expected = source.expected_keyframes()
    progress = _Progress(opts.progress, (expected - 1) if expected else None, resume_from)
    compute: _InProcess | _ZmqWorkers
    if opts.workers > 1:
        compute = _ZmqWorkers(
            opts.model, opts.workers, opts.job_timeout_s, opts.worker_start_timeout_s
        )
    else:
        compute = _InProcess(opts.model)
    prefetch = _Prefetch(source, opts, resume_from)
    writer = _Writer(opts, state)
    status = "complete"
    computed = 0
    inserted = 0
    ready: dict[int, _Item] = {}
    next_write = resume_from
    done_intervals = resume_from

    def flush_ready() -> None:
        nonlocal next_write, done_intervals
        while next_write in ready:
            item = ready.pop(next_write)
            writer.q.put(item)
            if writer.error is not None:
                raise writer.error
            next_write += 1
            if item.k1 is not None:
                done_intervals += 1
        progress.update(done_intervals, inserted)

    prefetch.start()
    writer.start()
    try:
        ended = False
        while not ended or compute.in_flight():
            if prefetch.error is not None:
                raise prefetch.error
            if writer.error is not None:
                raise writer.error
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
                elif item is not None:
                    if item.resumed:
                        next_write = max(next_write, item.ordinal + 1)
                    elif item.job is None:
                        ready[item.ordinal] = item
                    else:
                        compute.submit(item)
            for item in compute.poll(0.0 if compute.in_flight() < compute.capacity() else 0.05):
                ready[item.ordinal] = item
                computed += 1
                if item.frames is not None:
                    inserted += len(item.frames)
            flush_ready()
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        prefetch.stop.set()
        try:
            compute.close()
        finally:
            if status == "interrupted" and writer.error is None:
                flush_ready()  # what is computed and in order still gets written
            writer.q.put(_END)
            writer.join()
            progress.close()
    if writer.error is not None:
        raise writer.error
    wall = time.monotonic() - t_start
    source.finish_report()
    if status == "complete":
        if opts.format != "png":
            parts = [out / PARTS_DIR / p["file"] for p in state["parts"]]
            if parts:
                join_videos(parts, opts.video_path)
            shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
        state["finished"] = True
        _atomic_json(out / STATE_FILE, state)
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
    if prefetch.first_t is not None and prefetch.last_t is not None:
        span_s = (prefetch.last_t - prefetch.first_t) / 1e6
    out_info: dict[str, Any] = {
        "format": opts.format,
        "timestamps": str(opts.out / TIMESTAMPS_FILE),
    }
    if opts.format == "png":
        out_info["frames_dir"] = str(opts.out / FRAMES_DIR)
    else:
        out_info["video"] = str(opts.video_path) if status == "complete" else None
        out_info["playback_fps"] = opts.playback_fps
    total_intervals = state["next_interval"]
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
        "dropped_keyframes": prefetch.dropped,
        "frame_gaps": prefetch.gaps,
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
