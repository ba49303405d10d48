"""The inference worker: asks the pool for an interval when idle, interpolates it,
pushes the frames to the recorder (or replay), and asks again.

Computation runs on its own thread so the socket thread keeps sending heartbeats:
the pool tells a busy worker from a dead one. A bad message is counted and dropped;
a failing interval is reported as failed; neither stops the worker.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import zmq

from contracts.jobs import IntervalJob, IntervalResult
from pipeline import wire
from pipeline.messages import MAX_REASON_CHARS, job_from_message, job_tokens, result_message
from pipeline.peers import PeerLog
from pipeline.security import check_handshake, configure_client

log = logging.getLogger(__name__)
HEARTBEAT_S = 0.5


@dataclass
class WorkerCounters:
    jobs: int = 0
    frames: int = 0
    bad_messages: int = 0
    failed_jobs: int = 0
    compute_s: float = 0.0
    last_error: str = ""


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(
    job_endpoint: str,
    result_endpoint: str,
    model: str,
    name: str | None = None,
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
    status_every_s: float = 2.0,
    on_ready: Callable[[], object] | None = None,
    keys: str | Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Serve jobs until SIGTERM/SIGINT. Returns an exit code. announce (the stand-alone
    worker's console) hears when the job endpoint connects, refuses or drops."""
    from models.registry import make_interpolator

    # Peers refuse longer names (pipeline/wire.py): the same name everywhere, cut to fit.
    name = (name or default_worker_name())[: wire.MAX_NAME_CHARS]
    interpolator = make_interpolator(model)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    keys_path = Path(keys) if keys else None
    ctx = zmq.Context()
    # Wrong keys are an error within seconds, not a worker that silently never gets work.
    for endpoint, kind in ((job_endpoint, zmq.DEALER), (result_endpoint, zmq.PUSH)):
        if not check_handshake(ctx, endpoint, kind, keys_path, stop=stop, say=announce):
            ctx.term()
            return 0
    jobs = ctx.socket(zmq.DEALER)
    jobs.setsockopt(zmq.IDENTITY, f"{name}/{uuid.uuid4().hex[:8]}".encode())
    jobs.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    jobs.setsockopt(zmq.LINGER, 0)
    configure_client(jobs, keys_path)
    watch = _ConnectionWatch(jobs, job_endpoint, announce) if announce else None
    jobs.connect(job_endpoint)
    results = ctx.socket(zmq.PUSH)
    results.setsockopt(zmq.LINGER, 2000)
    configure_client(results, keys_path)
    results.connect(result_endpoint)
    counters = WorkerCounters()
    todo: queue.Queue[IntervalJob | None] = queue.Queue()
    done: queue.Queue[tuple[IntervalJob, IntervalResult | None, str]] = queue.Queue()

    def compute() -> None:
        while (job := todo.get()) is not None:
            t = time.perf_counter()
            try:
                frames = interpolator.interpolate(job)
            except Exception as exc:  # one bad interval must not take the worker down
                log.exception("interval %d failed", job.index)
                done.put((job, None, f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]))
                continue
            dt = time.perf_counter() - t
            done.put(
                (
                    job,
                    IntervalResult(job.index, job.timestamps_us, frames, interpolator.name, dt),
                    "",
                )
            )

    def status(final: bool = False) -> None:
        meta = {"worker": name, "model": interpolator.name, "final": final, **asdict(counters)}
        wire.send(results, wire.Message("status", meta))

    def control(kind: str, **meta: object) -> None:
        wire.send(jobs, wire.Message(kind, {"worker": name, **meta}))

    computer = threading.Thread(target=compute, name="compute", daemon=True)
    computer.start()
    status()
    control("ready")
    if on_ready is not None:
        on_ready()
    last_status = last_beat = time.monotonic()
    busy = False
    arrivals: dict[int, float | None] = {}
    tokens: dict[int, dict[str, str]] = {}
    bad = PeerLog(f"worker {name}")
    try:
        while not stop.is_set():
            now = time.monotonic()
            if watch is not None:
                watch.poll()
            if now - last_beat > HEARTBEAT_S:
                control("heartbeat", busy=busy)
                last_beat = now
            if now - last_status > status_every_s:
                status()
                last_status = now
            try:
                job, result, error = done.get_nowait()
            except queue.Empty:
                pass
            else:
                busy = False
                passes = tokens.pop(job.index, {})
                if result is None:
                    counters.failed_jobs += 1
                    counters.last_error = f"interval {job.index}: {error}"[:MAX_REASON_CHARS]
                    meta = {"index": job.index, "status": "failed", "worker": name}
                    meta |= {"reason": counters.last_error, **passes}
                    wire.send(results, wire.Message("interval", meta))
                else:
                    counters.jobs += 1
                    counters.frames += len(result.frames)
                    counters.compute_s += result.compute_s
                    arrival = arrivals.pop(job.index, None)
                    latency = None if arrival is None else time.time() - arrival
                    wire.send(results, result_message(result, name, latency, passes))
                control("ready", done=job.index)
            if not jobs.poll(20):
                continue
            try:
                msg = wire.recv(jobs, max_bytes=max_message_bytes)
                job = job_from_message(msg)  # checks every field, bounds every size
                arrival = msg.meta.get("keyframe_arrival")
                passes = job_tokens(msg.meta)
            except wire.WireError as exc:
                counters.last_error = f"bad message: {exc}"[:MAX_REASON_CHARS]
                bad.bad("the job endpoint", exc)  # logged once, then only counted
                counters.bad_messages = bad.total
                if bad.total == 1:
                    status()  # the recorder hears of it now; later ones with the next status
                if not busy:
                    control("ready")
                continue
            busy = True
            arrivals[job.index] = arrival
            tokens[job.index] = passes
            todo.put(job)
    finally:
        todo.put(None)
        status(final=True)
        if watch is not None:
            watch.close()
        jobs.close()
        results.close()
        ctx.term()
    return 0


class _ConnectionWatch:
    """Tells the operator whether the job endpoint answers: ZeroMQ retries a refused
    connection silently forever, which looks exactly like a worker with nothing to do."""

    def __init__(self, sock: zmq.Socket, endpoint: str, say: Callable[[str], None]) -> None:
        from zmq.utils.monitor import recv_monitor_message

        self._recv = recv_monitor_message
        self.endpoint, self.say = endpoint, say
        self.monitor = sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED
        )
        self.refused_said = False

    def poll(self) -> None:
        while self.monitor.poll(0):
            event = self._recv(self.monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self.say(f"connected to {self.endpoint}; waiting for intervals")
                self.refused_said = False
            elif event == zmq.EVENT_DISCONNECTED:
                self.say(f"lost the connection to {self.endpoint}; retrying")
            elif event == zmq.EVENT_CONNECT_RETRIED and not self.refused_said:
                self.refused_said = True
                self.say(
                    f"cannot reach {self.endpoint} (nothing listens there, or the host is "
                    "unknown); retrying: check the host and port, and that the capture node "
                    "runs with --bind and --job-port"
                )

    def close(self) -> None:
        self.monitor.close(linger=0)
