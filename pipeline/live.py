"""Live orchestration: the capture node in this process, the recorder and the
inference workers as separate processes on loopback ZeroMQ.

Order of teardown is what keeps recordings safe: capture stops and closes the raw
file first, then the recorder drains and closes the video, then workers are stopped.
A crashed worker or recorder never reaches into the capture process.

Failures are never success: a source, thread or process that dies makes the session
"failed" (first error kept, in session.json and on screen, exit code 1); Ctrl-C makes
it "interrupted" (exit 130). Ctrl-C reaches only this process (pipeline/procs.py):
the interval in flight gets `stop_grace_s` to finish, then the recorder lists the
rest as skipped and closes the video.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import secrets
import shutil
import socket
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
from contracts.errors import LiveError, ProcessDied
from models.registry import DEFAULT_MODEL
from pipeline import wire
from pipeline.capture import CaptureCounters, CaptureNode
from pipeline.pool import WorkerPool
from pipeline.procs import Interrupts, recorder_entry, say, start_shielded
from pipeline.rawfile import RawRecorder
from pipeline.security import check_bind
from pipeline.session import CALIBRATION_FILE, CLOCK_FILE, Session, write_json_atomic
from rig.base import EventSource, FrameSource
from rig.sync import HostClockSync, TriggerSync

log = logging.getLogger(__name__)


__all__ = ["LiveError", "LiveOptions", "LiveResult", "run_live"]


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
    stop_grace_s: float = 2.0  # after Ctrl-C: time the intervals in flight get to finish
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


def _check_ports(opts: LiveOptions) -> None:
    """Fixed ports are tried before anything starts: a port in use is a user error
    found in a second, not a recorder that dies while starting."""
    for option, port in (("--job-port", opts.job_port), ("--result-port", opts.result_port)):
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((opts.bind_host, port))
            except OSError as exc:
                raise LiveError(
                    f"{option} {port}: cannot listen on {opts.bind_host}:{port} "
                    f"({exc.strerror or exc}); choose another port or stop what uses it"
                ) from None


def _update(session: Session, **sections: Any) -> None:
    """A session update that a full disk must not turn into a crash: the manifest
    stays as it was (atomic write) and the final status write tries again later."""
    try:
        session.update(**sections)
    except OSError as exc:
        log.warning("could not update %s: %s", session.manifest_path, exc)


def _death(p: mp.Process) -> str:
    code = p.exitcode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
    return f"the {p.name.removeprefix('slomo-')} process {how}"


def _settle_recorder(
    recorder: mp.Process, pool: WorkerPool | None, rec_sock: zmq.Socket, wait_s: float
) -> None:
    """Wait up to wait_s for the recorder to write every interval in flight, polling
    the pool meanwhile so that an interval whose worker died is reported lost as soon
    as the pool notices (heartbeat), not after the recorder's job timeout. Then the
    recorder is told to stop (SIGTERM: it lists what is unsettled as skipped)."""
    deadline = time.monotonic() + wait_s
    while recorder.is_alive() and time.monotonic() < deadline:
        recorder.join(0.1)
        if pool is None:
            continue
        for index in pool.poll(live=True):
            reason = "its worker died while the recording was closing"
            msg = wire.Message("interval", {"index": index, "status": "failed", "reason": reason})
            with contextlib.suppress(zmq.ZMQError):
                wire.send(rec_sock, msg, flags=zmq.NOBLOCK)
    if recorder.is_alive():
        recorder.terminate()
        recorder.join(10)
    if recorder.is_alive():
        recorder.kill()
        recorder.join(5)


def _stop_workers(pool: WorkerPool, wait_s: float = 0.5) -> None:
    """Once the recorder is done nothing a worker still sends matters: ask them all to
    stop at once, and kill any that lingers (a worker's last status message to a gone
    recorder would otherwise hold it for seconds)."""
    procs = [p for p in pool.processes if p.is_alive()]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(5)


def run_live(
    event_source: EventSource,
    frame_source: FrameSource,
    mapper: EventToFrameMap | Callable[[EventSource, FrameSource], EventToFrameMap],
    rig_info: dict[str, Any],
    opts: LiveOptions,
    on_started: Callable[[dict[str, list[mp.Process]]], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveResult:
    """Record until `stop`, --seconds, a source ends, or Ctrl-C. Returns the result of
    any run that recorded something, whatever its status ("complete", "interrupted",
    "failed"; see the manifest's "error"). Raises a user error for what is wrong before
    anything is recorded (then no session folder is left), and KeyboardInterrupt for a
    Ctrl-C before capture started."""
    check_bind(opts.bind_host, opts.keys)  # before anything is created
    _check_ports(opts)
    stop = stop or threading.Event()
    with Interrupts(stop) as interrupts:
        return _run(
            event_source, frame_source, mapper, rig_info, opts, on_started, stop, interrupts
        )


def _run(
    event_source: EventSource,
    frame_source: FrameSource,
    mapper: EventToFrameMap | Callable[[EventSource, FrameSource], EventToFrameMap],
    rig_info: dict[str, Any],
    opts: LiveOptions,
    on_started: Callable[[dict[str, list[mp.Process]]], None] | None,
    stop: threading.Event,
    interrupts: Interrupts,
) -> LiveResult:
    session = Session.create(opts.out, rig_info, name=opts.session_name)  # (holding)
    if interrupts.count:
        shutil.rmtree(session.path, ignore_errors=True)
        raise KeyboardInterrupt("interrupted before recording started")
    interrupts.phase = "starting"
    ctx = mp.get_context("spawn")
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
    error: BaseException | None = None
    sections: dict[str, Any] = {}  # what capture learnt, written again with the final status
    captured = False  # capture ran: there is a raw recording to keep
    raw: RawRecorder | None = None
    pool: WorkerPool | None = None
    tap = None
    try:
        session.update(live={"factor": opts.factor, "model": opts.model, "workers": opts.workers})
        if opts.calibration is not None:
            _copy_calibration(Path(opts.calibration), session)
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        recorder = ctx.Process(
            target=recorder_entry,
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
        processes["recorder"].append(recorder)
        start_shielded(recorder)
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
            captured = True
            interrupts.phase = "running" if interrupts.phase == "starting" else interrupts.phase
            if interrupts.count:
                stop.set()
            try:
                capture.run(
                    stop,
                    progress=(lambda c: _progress_line(c, t_start)) if opts.progress else None,
                )
            except Exception as exc:
                error = exc
                log.debug("capture failed", exc_info=True)
            finally:
                interrupts.phase = "stopping"
                if timer:
                    timer.cancel()
                if opts.progress and sys.stderr.isatty():
                    sys.stderr.write("\n")
                raw.close()
                if raw.error is not None:  # the root cause (disk full) beats its effects
                    error = raw.error
                mapping = sync.mapping().to_dict()
                try:
                    write_json_atomic(session.path / CLOCK_FILE, mapping, use_reserve=True)
                except OSError as exc:
                    log.warning("could not write %s: %s", CLOCK_FILE, exc)
                sections = {
                    "capture": capture.summary(),
                    "raw": {"file": session.raw_path.name, **raw.counts()},
                    "clock": mapping,
                    "sync": sync.to_dict(),
                    "wall_seconds": round(time.monotonic() - t_start, 3),
                }
                if error is not None:  # said at once: a full disk may not allow it later
                    sections.update(status="failed", error=str(error))
                _update(session, **sections)
                if interrupts.count:
                    say(
                        f"slomo-rig: stopping: raw recording closed ({raw.counts()['events']:,} events)"
                    )
    except KeyboardInterrupt as exc:
        error = error or exc
    except Exception as exc:  # e.g. a source failing to close: the first error is kept
        error = error or exc
        log.debug("live pipeline failed", exc_info=True)
    finally:
        interrupts.phase = "stopping"
        if interrupts.count and pool is not None:
            say(
                f"slomo-rig: stopping: waiting up to {opts.stop_grace_s:g} s for the intervals in flight"
            )
        recorder_died = None
        for p in processes["recorder"]:
            if p.pid is None:
                continue  # never started
            if not captured:
                wait_s = 0.0
            elif interrupts.count:
                wait_s = opts.stop_grace_s
            else:
                wait_s = opts.drain_timeout_s + 30
            _settle_recorder(p, pool, rec_sock, wait_s)
            if p.exitcode != 0:
                recorder_died = _death(p)
        if tap is not None:
            tap.close()
        if pool is not None:
            if interrupts.count:
                say("slomo-rig: stopping: stopping the workers")
            _update(session, pool=pool.stats.to_dict())
            _stop_workers(pool)
            pool.close()
        rec_sock.close(linger=0 if interrupts.count else 5000)
        zctx.term()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    return _finish(
        session, captured, error, recorder_died, interrupts.count > 0, processes, sections
    )


def _finish(
    session: Session,
    captured: bool,
    error: BaseException | None,
    recorder_died: str | None,
    interrupted: bool,
    processes: dict[str, list[mp.Process]],
    sections: dict[str, Any],
) -> LiveResult:
    """The final status, written once everything has stopped; the first error is kept.
    Capture's sections go again with it: on a full disk the earlier write may have
    failed, and this one may use the session's reserve."""
    if not captured:
        # Nothing was recorded: leave no folder behind, say why it did not start.
        shutil.rmtree(session.path, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt) or interrupted:
            # (a Ctrl-C during an import may surface as an ImportError: still a Ctrl-C)
            raise KeyboardInterrupt("interrupted before recording started")
        if error is not None:
            raise error
    final: dict[str, Any] = dict(sections)
    if recorder_died is not None:
        final["recorder_error"] = (
            f"{recorder_died}: the video ends where it stopped; the raw recording is kept "
            "('slomo-rig replay' makes the video again)"
        )
        if error is None:
            error = ProcessDied(final["recorder_error"])
    if isinstance(error, KeyboardInterrupt):
        error = None
    if error is not None:
        final.update(status="failed", error=str(error))
    elif interrupted:
        final["status"] = "interrupted"
    else:
        output = session.read().get("output", {}).get("status")
        final["status"] = "complete" if output == "complete" else "incomplete"
        if output != "complete":  # the recorder had to be stopped before it was done
            final["error"] = (
                f"the slow-motion output is {output or 'missing'}: the video ends early; "
                "'slomo-rig replay' makes it again from the raw recording"
            )
    try:
        manifest = session.finish(**final)
    except OSError as exc:
        log.error("could not write the final status to %s: %s", session.manifest_path, exc)
        manifest = {**session.read(), **final}
    return LiveResult(session, manifest, processes)
