"""The inference worker: pulls interval jobs, interpolates, pushes results.

Any number of workers can connect to one capture node (ZeroMQ load-balances PUSH to
PULL). A bad message is counted and dropped; a failing interval is reported as
failed; neither stops the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import zmq

from pipeline import wire
from pipeline.jobs import IntervalResult
from pipeline.messages import job_from_message, result_message

log = logging.getLogger(__name__)


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
) -> int:
    """Serve jobs until SIGTERM/SIGINT. Returns an exit code."""
    from models.registry import make_interpolator

    name = name or default_worker_name()
    interpolator = make_interpolator(model)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    ctx = zmq.Context()
    jobs = ctx.socket(zmq.PULL)
    jobs.setsockopt(zmq.RCVHWM, 2)
    jobs.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    jobs.setsockopt(zmq.LINGER, 0)
    jobs.connect(job_endpoint)
    results = ctx.socket(zmq.PUSH)
    results.setsockopt(zmq.LINGER, 2000)
    results.connect(result_endpoint)
    counters = WorkerCounters()

    def status(final: bool = False) -> None:
        meta = {"worker": name, "model": interpolator.name, "final": final, **asdict(counters)}
        wire.send(results, wire.Message("status", meta))

    status()
    if on_ready is not None:
        on_ready()
    last_status = time.monotonic()
    poller = zmq.Poller()
    poller.register(jobs, zmq.POLLIN)
    try:
        while not stop:
            if time.monotonic() - last_status > status_every_s:
                status()
                last_status = time.monotonic()
            if not poller.poll(200):
                continue
            try:
                job = job_from_message(wire.recv(jobs, max_bytes=max_message_bytes))
            except wire.WireError as exc:
                counters.bad_messages += 1
                counters.last_error = f"bad message: {exc}"
                log.warning("worker %s dropped a bad message: %s", name, exc)
                status()
                continue
            t = time.perf_counter()
            try:
                frames = interpolator.interpolate(job)
            except Exception as exc:  # one bad interval must not take the worker down
                counters.failed_jobs += 1
                counters.last_error = f"interval {job.index}: {type(exc).__name__}: {exc}"
                log.exception("interval %d failed", job.index)
                wire.send(
                    results,
                    wire.Message(
                        "interval",
                        {"index": job.index, "status": "failed", "reason": counters.last_error},
                    ),
                )
                continue
            dt = time.perf_counter() - t
            counters.jobs += 1
            counters.frames += len(frames)
            counters.compute_s += dt
            result = IntervalResult(job.index, job.timestamps_us, frames, interpolator.name, dt)
            wire.send(results, result_message(result, name))
    finally:
        status(final=True)
        jobs.close()
        results.close()
        ctx.term()
    return 0
