"""The recorder: puts keyframes and interpolated frames back in time order and writes
the slow-motion output (video + timestamps.csv), listing every interval that got no
interpolated frames and why.

It never blocks capture: capture only sends to it, and an interval whose result does
not come within `job_timeout_s` is written as keyframes only and listed as skipped
(replay fills it in later from the raw recording).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from pipeline import wire
from pipeline.messages import result_from_message
from pipeline.outputs import FanOut, Output, TimestampsOutput, VideoOutput
from pipeline.security import configure_server
from pipeline.session import Session

log = logging.getLogger(__name__)


@dataclass
class IntervalState:
    status: str  # "pending", "done", "skipped"
    since: float
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    reason: str = ""
    model: str = ""


@dataclass
class RecorderState:
    keyframes: dict[int, tuple[np.ndarray, int]] = field(default_factory=dict)
    intervals: dict[int, IntervalState] = field(default_factory=dict)
    next_keyframe: int = 0
    last_keyframe: int | None = None  # known once capture says "end"
    original: int = 0
    interpolated: int = 0
    intervals_done: int = 0
    skipped: list[dict] = field(default_factory=list)
    bad_messages: int = 0
    late_results: int = 0
    workers: dict[str, dict] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"latency_p50_ms": None, "latency_p99_ms": None}
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"latency_p50_ms": round(1000 * p50, 1), "latency_p99_ms": round(1000 * p99, 1)}


class Recorder:
    def __init__(self, session: Session, output: Output, job_timeout_s: float = 30.0) -> None:
        self.session = session
        self.output = output
        self.job_timeout_s = job_timeout_s
        self.state = RecorderState()

    def handle(self, msg: wire.Message) -> None:
        st = self.state
        now = time.monotonic()
        if msg.type == "keyframe":
            index = wire.require(msg.meta, "index", int)
            image = msg.arrays.get("image")
            if image is None or image.ndim != 3 or image.dtype != np.uint8:
                raise wire.WireError("keyframe without a uint8 HxWx3 'image'")
            st.keyframes[index] = (np.array(image), wire.require(msg.meta, "t_us", int))
        elif msg.type == "interval":
            index = wire.require(msg.meta, "index", int)
            status = msg.meta.get("status")
            if status == "dispatched":
                st.intervals.setdefault(index, IntervalState("pending", now))
            elif status in ("skipped", "failed"):
                prev = st.intervals.get(index)
                if prev is None or prev.status == "pending":
                    st.intervals[index] = IntervalState(
                        "skipped", now, reason=str(msg.meta.get("reason", status))
                    )
            else:
                raise wire.WireError(f"interval message with unknown status {status!r}")
        elif msg.type == "result":
            result = result_from_message(msg)
            worker = str(msg.meta.get("worker", "?"))
            w = st.workers.setdefault(worker, {})
            w["results_received"] = w.get("results_received", 0) + 1
            latency = msg.meta.get("latency_s")
            if isinstance(latency, int | float) and len(st.latencies) < 1_000_000:
                st.latencies.append(float(latency))
            prev = st.intervals.get(result.index)
            if result.index < st.next_keyframe or (prev is not None and prev.status != "pending"):
                st.late_results += 1  # already written without it
                return
            st.intervals[result.index] = IntervalState(
                "done",
                now,
                np.array(result.frames),
                np.array(result.timestamps_us),
                model=result.model,
            )
            st.models.add(result.model)
        elif msg.type == "status":
            worker = str(msg.meta.get("worker", "?"))
            received = st.workers.get(worker, {}).get("results_received", 0)
            st.workers[worker] = {**msg.meta, "results_received": received}
        elif msg.type == "end":
            st.last_keyframe = wire.require(msg.meta, "last_keyframe", int)
        else:
            raise wire.WireError(f"recorder does not take {msg.type!r} messages")

    def expire(self) -> None:
        now = time.monotonic()
        for iv in self.state.intervals.values():
            if iv.status == "pending" and now - iv.since > self.job_timeout_s:
                iv.status = "skipped"
                iv.reason = f"no result within {self.job_timeout_s:g} s (worker lost or too slow)"

    def write_ready(self, force: bool = False) -> None:
        """Write keyframe k and interval k as soon as both are settled, in order.
        force: the recording is over and the drain time spent: whatever is still
        unsettled is written as skipped."""
        st = self.state
        while True:
            k = st.next_keyframe
            if k not in st.keyframes:
                return
            is_last = st.last_keyframe is not None and k >= st.last_keyframe
            iv = st.intervals.get(k)
            if not is_last and k + 1 not in st.keyframes and not force:
                return
            if not is_last and (iv is None or iv.status == "pending"):
                if not force:
                    return
                iv = IntervalState("skipped", 0.0, reason="recording ended before its result")
            if not is_last and k + 1 not in st.keyframes:
                is_last = True  # the next keyframe never arrived (capture cut off)
            image, t_us = st.keyframes.pop(k)
            self.output.write(image, t_us, "original")
            st.original += 1
            if not is_last and iv is not None:
                t1 = st.keyframes[k + 1][1]
                if iv.status == "done":
                    for frame, ts in zip(iv.frames, iv.timestamps, strict=True):
                        self.output.write(frame, int(ts), "interpolated")
                    st.interpolated += len(iv.frames)
                    st.intervals_done += 1
                else:
                    st.skipped.append({"index": k, "t0_us": t_us, "t1_us": t1, "reason": iv.reason})
                st.intervals.pop(k, None)
            st.next_keyframe = k + 1
            if is_last:
                return

    @property
    def finished(self) -> bool:
        st = self.state
        return st.last_keyframe is not None and st.next_keyframe > st.last_keyframe

    def summary(self) -> dict:
        st = self.state
        return {
            "frames_written": st.original + st.interpolated,
            "original_frames": st.original,
            "interpolated_frames": st.interpolated,
            "intervals_interpolated": st.intervals_done,
            "intervals_skipped": len(st.skipped),
            "skipped_intervals": st.skipped,
            "bad_messages": st.bad_messages,
            "late_results": st.late_results,
            "models": sorted(st.models),
            **latency_summary(st.latencies),
        }

    def save(self, status: str) -> None:
        self.session.update(output={**self.summary(), "status": status}, workers=self.state.workers)


def run_recorder(
    session_path: Path,
    ready_conn,  # multiprocessing Connection: receives the bound endpoint
    playback_fps: float = 30.0,
    job_timeout_s: float = 30.0,
    drain_timeout_s: float = 120.0,
    bind_host: str = "127.0.0.1",
    port: int = 0,
    keys: str | None = None,
) -> int:
    """Recorder process entry point: bind a PULL socket (loopback unless told
    otherwise, with CurveZMQ keys then), report its endpoint, then record until
    capture's "end" and every interval is settled."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when to stop
    session = Session(Path(session_path))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_MAX_MESSAGE_BYTES)
    auth = configure_server(sock, ctx, bind_host, Path(keys) if keys else None)
    if port:
        sock.bind(f"tcp://{bind_host}:{port}")
    else:
        port = sock.bind_to_random_port(f"tcp://{bind_host}")
    connect_host = "127.0.0.1" if bind_host in ("0.0.0.0", "*") else bind_host
    ready_conn.send(f"tcp://{connect_host}:{port}")
    ready_conn.close()
    output = FanOut(
        [
            VideoOutput(session.video_path, fps=playback_fps),
            TimestampsOutput(session.timestamps_path),
        ]
    )
    rec = Recorder(session, output, job_timeout_s)
    stopping = False

    def _term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _term)
    last_save = time.monotonic()
    end_seen_at: float | None = None
    status = "complete"
    try:
        while not rec.finished and not stopping:
            if sock.poll(100):
                try:
                    rec.handle(wire.recv(sock))
                except wire.WireError as exc:
                    rec.state.bad_messages += 1
                    log.warning("recorder dropped a bad message: %s", exc)
            rec.expire()
            rec.write_ready()
            if rec.state.last_keyframe is not None:
                end_seen_at = end_seen_at or time.monotonic()
                if time.monotonic() - end_seen_at > drain_timeout_s:
                    rec.write_ready(force=True)
                    break
            if time.monotonic() - last_save > 1.0:
                rec.save("recording")
                last_save = time.monotonic()
        if stopping and not rec.finished:
            status = "interrupted"
    finally:
        output.close()
        rec.save(status)
        sock.close(linger=0)
        if auth is not None:
            auth.stop()
        ctx.term()
    return 0
