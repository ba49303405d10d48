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
from pipeline.outputs import CommittedVideo, FanOut, Output
from pipeline.peers import RecorderGuard, RecorderIntake
from pipeline.security import configure_server
from pipeline.session import Session
from pipeline.writer import CommitTally, OrderedWriter

log = logging.getLogger(__name__)


@dataclass
class RecorderState:
    """What the recorder knows besides the order of frames (that is the writer's)."""

    last_keyframe: int | None = None  # known once capture says "end"
    bad_messages: int = 0
    workers: dict[str, dict] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"latency_p50_ms": None, "latency_p99_ms": None}
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"latency_p50_ms": round(1000 * p50, 1), "latency_p99_ms": round(1000 * p99, 1)}


class Recorder:
    """Turns capture's and the workers' messages into calls of the shared ordered
    writer (pipeline/writer.py); ``save`` commits the output and then writes the same
    counts into session.json, so a recording cut off at any moment has a video, a
    timestamps.csv and an `info` that agree."""

    def __init__(self, session: Session, output: Output, job_timeout_s: float = 30.0) -> None:
        self.session = session
        self.output = CommitTally(output)
        self.writer = OrderedWriter(self.output, job_timeout_s=job_timeout_s)
        self.state = RecorderState()

    def handle(self, msg: wire.Message) -> None:
        st, w = self.state, self.writer
        if msg.type == "keyframe":
            index = wire.require(msg.meta, "index", int)
            image = msg.arrays.get("image")
            if image is None or image.ndim != 3 or image.dtype != np.uint8:
                raise wire.WireError("keyframe without a uint8 HxWx3 'image'")
            w.keyframe(index, np.array(image), wire.require(msg.meta, "t_us", int))
        elif msg.type == "interval":
            index = wire.require(msg.meta, "index", int)
            status = msg.meta.get("status")
            if status == "dispatched":
                w.pending(index)
            elif status in ("skipped", "failed"):
                w.skip(index, str(msg.meta.get("reason", status)))
            else:
                raise wire.WireError(f"interval message with unknown status {status!r}")
        elif msg.type == "result":
            result = result_from_message(msg)
            worker = str(msg.meta.get("worker", "?"))
            ws = st.workers.setdefault(worker, {})
            ws["results_received"] = ws.get("results_received", 0) + 1
            latency = msg.meta.get("latency_s")
            if isinstance(latency, int | float) and len(st.latencies) < 1_000_000:
                st.latencies.append(float(latency))
            w.result(
                result.index,
                np.array(result.frames),
                np.array(result.timestamps_us),
                result.model,
            )
        elif msg.type == "status":
            worker = str(msg.meta.get("worker", "?"))
            received = st.workers.get(worker, {}).get("results_received", 0)
            st.workers[worker] = {**msg.meta, "results_received": received}
        elif msg.type == "end":
            st.last_keyframe = wire.require(msg.meta, "last_keyframe", int)
            w.end(st.last_keyframe)
        else:
            raise wire.WireError(f"recorder does not take {msg.type!r} messages")

    def expire(self) -> None:
        self.writer.expire()

    def write_ready(self, force: bool = False) -> None:
        """Write keyframe k and interval k as soon as both are settled, in order.
        force: the recording is over and the drain time spent: whatever is still
        unsettled is written as skipped."""
        self.writer.write_ready(force)

    @property
    def finished(self) -> bool:
        return self.writer.finished

    def summary(self) -> dict:
        """Counts of what is committed (on disk in the video and timestamps.csv)."""
        c, tally = self.writer.counts, self.output
        return {
            "frames_written": tally.committed["original"] + tally.committed["interpolated"],
            "original_frames": tally.committed["original"],
            "interpolated_frames": tally.committed["interpolated"],
            "intervals_interpolated": c.intervals_done,
            "intervals_skipped": len(c.skipped),
            "skipped_intervals": [
                {k: s[k] for k in ("index", "t0_us", "t1_us", "reason")} for s in c.skipped
            ],
            "bad_messages": self.state.bad_messages,
            "late_results": self.writer.late_results,
            "models": sorted(self.writer.models),
            **latency_summary(self.state.latencies),
        }

    def save(self, status: str) -> None:
        self.output.commit()
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
    preview_endpoint: str | None = None,
    capture_endpoint: str | None = None,
    ticket_secret: str | None = None,
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
    # Peers are untrusted (pipeline/peers.py): capture gets its own private socket,
    # workers' messages are checked against what was dispatched to whom.
    cap_sock = None
    if capture_endpoint:
        cap_sock = ctx.socket(zmq.PULL)
        cap_sock.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_MAX_MESSAGE_BYTES)
        cap_sock.bind(capture_endpoint)
    guard = RecorderGuard(bytes.fromhex(ticket_secret) if ticket_secret else None)
    intake = RecorderIntake(sock, cap_sock, guard)
    connect_host = "127.0.0.1" if bind_host in ("0.0.0.0", "*") else bind_host
    ready_conn.send(f"tcp://{connect_host}:{port}")
    ready_conn.close()
    # The video and timestamps.csv first: FanOut.commit reports what they hold.
    outputs: list[Output] = [
        CommittedVideo(session.video_path, session.timestamps_path, fps=playback_fps)
    ]
    if preview_endpoint:  # the console's lossy view of the newest interpolated frames
        from pipeline.console.tap import PreviewOutput

        outputs.append(PreviewOutput(preview_endpoint))
    output = FanOut(outputs)
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
            for peer, msg in intake.poll(100):
                try:
                    rec.handle(msg)
                except wire.WireError as exc:
                    intake.reject(peer, exc)
            rec.state.bad_messages = intake.bad_messages
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
            rec.write_ready(force=True)  # what is unsettled is listed as skipped
    finally:
        try:
            output.close()
        finally:
            rec.save(status)
        sock.close(linger=0)
        if cap_sock is not None:
            cap_sock.close(linger=0)
        if auth is not None:
            auth.stop()
        ctx.term()
    return 0
