"""Live orchestration: the capture node in this process, the recorder and the
inference workers as separate processes on loopback ZeroMQ.

Order of teardown is what keeps recordings safe: capture stops and closes the raw
file first, then the recorder drains and closes the video, then workers are stopped.
A crashed worker or recorder never reaches into the capture process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from calibration.mapping import EventToFrameMap
from models.registry import DEFAULT_MODEL
from pipeline.capture import CaptureCounters, CaptureNode
from pipeline.pool import WorkerPool
from pipeline.rawfile import RawRecorder
from pipeline.recorder import run_recorder
from pipeline.security import check_bind
from pipeline.session import CALIBRATION_FILE, CLOCK_FILE, Session
from rig.base import EventSource, FrameSource
from rig.sync import HostClockSync, TriggerSync

log = logging.getLogger(__name__)


class LiveError(RuntimeError):
    """The live pipeline could not start or stopped with an error."""


@dataclass
class LiveOptions:
    out: Path
    factor: int = 8
    model: str = DEFAULT_MODEL
    workers: int = 1
    playback_fps: float = 30.0
    seconds: float | None = None
    job_timeout_s: float = 30.0
    drain_timeout_s: float = 120.0
    worker_start_timeout_s: float = 180.0
    progress: bool = True
    session_name: str | None = None
    wiring: str = "trigger"  # "trigger": edges in the event stream; "software": host clock
    calibration: Path | None = None  # copied into the session, so replay uses the same
    bind_host: str = "127.0.0.1"  # anything else needs keys (CurveZMQ)
    job_port: int = 0  # fixed ports let workers on other machines connect
    result_port: int = 0
    keys: Path | None = None
    heartbeat_timeout_s: float = 5.0
    # Lossy preview for the operator console (pipeline/console): a ZeroMQ endpoint the
    # capture node and the recorder publish previews to; never slows capture.
    preview_endpoint: str | None = None


@dataclass
class LiveResult:
    session: Session
    manifest: dict[str, Any]
    processes: dict[str, list[mp.Process]] = field(default_factory=dict)


def _copy_calibration(src: Path, session: Session) -> None:
    """The session keeps the calibration it was recorded with (and its lookup table)."""
    import shutil

    shutil.copyfile(src, session.path / CALIBRATION_FILE)
    for sibling in (src.with_suffix(".lut.npz"), src.with_suffix(".yaml")):
        if sibling.exists():
            shutil.copyfile(sibling, session.path / ("calibration" + "".join(sibling.suffixes)))
    session.update(calibration={"file": CALIBRATION_FILE, "source": str(src)})


def _progress_line(c: CaptureCounters, t_start: float) -> None:
    span = 0.0
    if c.first_event_us is not None and c.last_event_us is not None:
        span = (c.last_event_us - c.first_event_us) / 1e6
    # A terminal gets one line rewritten in place; a log file gets one line per update.
    start = "\r" if sys.stderr.isatty() else ""
    line = (
        f"{start}[{time.monotonic() - t_start:6.1f} s] rig time {span:6.2f} s  events {c.events / 1e6:7.2f} M"
        f"  frames {c.frames:5d}  intervals sent {c.intervals_dispatched:5d}"
        f"  skipped {c.intervals_skipped:4d}"
    )
    sys.stderr.write(line if sys.stderr.isatty() else line + "\n")
    sys.stderr.flush()


def run_live(
    event_source: EventSource,
    frame_source: FrameSource,
    mapper: EventToFrameMap | Callable[[EventSource, FrameSource], EventToFrameMap],
    rig_info: dict[str, Any],
    opts: LiveOptions,
    on_started: Callable[[dict[str, list[mp.Process]]], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveResult:
    check_bind(opts.bind_host, opts.keys)  # before anything is created
    session = Session.create(opts.out, rig_info, name=opts.session_name)
    session.update(live={"factor": opts.factor, "model": opts.model, "workers": opts.workers})
    if opts.calibration is not None:
        _copy_calibration(Path(opts.calibration), session)
    ctx = mp.get_context("spawn")
    stop = stop or threading.Event()
    processes: dict[str, list[mp.Process]] = {"recorder": [], "workers": []}
    zctx = zmq.Context()
    rec_sock = zctx.socket(zmq.PUSH)
    rec_sock.setsockopt(zmq.SNDHWM, 100_000)
    rec_sock.setsockopt(zmq.LINGER, 5000)
    # Capture talks to its recorder over a unix socket in a private folder (no worker
    # can pose as capture); the secret lets the recorder check that a result answers a
    # job dispatched to that worker (pipeline/peers.py).
    ipc_dir = tempfile.mkdtemp(prefix="slomo-")
    capture_ep = f"ipc://{ipc_dir}/capture"
    ticket_secret = secrets.token_bytes(32)
    status, error = "complete", None
    capture: CaptureNode | None = None
    raw: RawRecorder | None = None
    pool: WorkerPool | None = None
    tap = None
    try:
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        recorder = ctx.Process(
            target=run_recorder,
            args=(
                session.path,
                child_conn,
                opts.playback_fps,
                opts.job_timeout_s,
                opts.drain_timeout_s,
                opts.bind_host,
                opts.result_port,
                str(opts.keys) if opts.keys else None,
                opts.preview_endpoint,
                capture_ep,
                ticket_secret.hex(),
            ),
            name="slomo-recorder",
        )
        recorder.start()
        processes["recorder"].append(recorder)
        child_conn.close()
        if not parent_conn.poll(30):
            raise LiveError("the recorder process did not start within 30 s")
        try:
            rec_ep = parent_conn.recv()
        except EOFError:
            raise LiveError(
                f"the recorder process exited while starting (code {recorder.exitcode}); "
                "is the result port free?"
            ) from None
        rec_sock.connect(capture_ep)
        pool = WorkerPool(
            opts.model,
            rec_ep,
            local_workers=opts.workers,
            bind_host=opts.bind_host,
            port=opts.job_port,
            keys=opts.keys,
            heartbeat_timeout_s=opts.heartbeat_timeout_s,
            ticket_secret=ticket_secret,
        )
        pool.start(timeout_s=opts.worker_start_timeout_s)
        processes["workers"] = pool.started  # grows as dead workers are restarted
        session.update(endpoints={"jobs": pool.endpoint, "results": rec_ep})
        if on_started:
            on_started(processes)

        with event_source, frame_source:
            # Some sources learn their resolution only once connected (DV streams).
            if not isinstance(mapper, EventToFrameMap):
                mapper = mapper(event_source, frame_source)
            raw = RawRecorder(session.raw_path, event_source.resolution, frame_source.resolution)
            sync = TriggerSync() if opts.wiring == "trigger" else HostClockSync()
            if opts.preview_endpoint:
                from pipeline.console.tap import PreviewTap

                tap = PreviewTap(
                    opts.preview_endpoint, event_source.resolution, disk_path=session.path
                ).start()
            capture = CaptureNode(
                event_source, frame_source, mapper, raw, pool, rec_sock, opts.factor, sync, tap=tap
            )
            timer = None
            if opts.seconds is not None:
                timer = threading.Timer(opts.seconds, stop.set)
                timer.daemon = True
                timer.start()
            t_start = time.monotonic()
            prev_handler = signal.signal(signal.SIGINT, lambda s, f: stop.set())
            try:
                capture.run(
                    stop,
                    progress=(lambda c: _progress_line(c, t_start)) if opts.progress else None,
                )
            finally:
                signal.signal(signal.SIGINT, prev_handler)
                if timer:
                    timer.cancel()
                if opts.progress and sys.stderr.isatty():
                    sys.stderr.write("\n")
                raw.close()
                if raw.error is not None and error is None:
                    error = raw.error
                mapping = sync.mapping().to_dict()
                (session.path / CLOCK_FILE).write_text(json.dumps(mapping, indent=2))
                session.update(
                    capture=capture.summary(),
                    raw={"file": session.raw_path.name, **raw.counts()},
                    clock=mapping,
                    sync=sync.to_dict(),
                    wall_seconds=round(time.monotonic() - t_start, 3),
                )
    except BaseException as exc:
        status, error = ("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"), exc
        if not isinstance(exc, KeyboardInterrupt):
            log.debug("live pipeline failed", exc_info=True)
    finally:
        recorder_ok = True
        for p in processes["recorder"]:
            p.join(opts.drain_timeout_s + 30 if capture is not None else 5)
            if p.is_alive():
                p.terminate()
                p.join(5)
            recorder_ok = p.exitcode == 0
        if tap is not None:
            tap.close()
        if pool is not None:
            session.update(pool=pool.stats.to_dict())
            pool.close()
        rec_sock.close()
        zctx.term()
        shutil.rmtree(ipc_dir, ignore_errors=True)
        if error is not None and status == "complete":
            status = "failed"
        final: dict[str, Any] = {"status": status}
        if error is not None:
            final["error"] = str(error)
        if not recorder_ok:
            final["recorder_error"] = "the recorder process died; the video ends where it stopped"
        manifest = session.update(**final)
    if isinstance(error, KeyboardInterrupt):
        raise KeyboardInterrupt(f"interrupted; session so far: {session.path}")
    if error is not None:
        raise LiveError(f"{error}\nSession so far: {session.path}") from error
    return LiveResult(session, manifest, processes)
