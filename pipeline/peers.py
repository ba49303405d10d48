"""Peers are untrusted: what the recorder accepts from whom, and how bad messages are
counted.

The recorder listens on two sockets. The capture socket (a private unix socket of the
capture process) carries keyframes, interval notices and the end; the results socket
(where workers, local or remote, connect) carries only results, worker status and
"interval failed" notices. A worker therefore cannot cut a video short or insert
keyframes, whatever it sends.

Results are tied to the job they answer by two HMACs the dispatcher adds to each job
(`stamp_job`) with a secret only the capture process and the recorder hold:

- `ticket` = HMAC(index, worker): this worker was handed this interval;
- `seal` = HMAC(index, frame size, timestamps): the frames must be exactly these.

A worker echoes both; a result for an interval it was not given, or with other
timestamps or another frame size, is refused, and nothing a worker sends can make the
recorder hold more than the intervals actually dispatched. Without a secret (unit
tests, single-process use) the guard falls back to the intervals capture announced.

Every refusal is a WireError: counted, logged once per peer, dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator

import numpy as np
import zmq

from pipeline import wire
from pipeline.messages import (
    MAX_INDEX,
    interval_meta,
    keyframe_meta,
    result_from_message,
    status_meta,
    ticket_of,
)

log = logging.getLogger(__name__)

CAPTURE = "capture"
WORKERS = "workers"
CAPTURE_TYPES = frozenset({"keyframe", "interval", "end"})
WORKER_TYPES = frozenset({"result", "status", "interval"})
MAX_WORKERS = 64  # worker names the pool lists
MAX_UNVERIFIED = 16  # names known only from status messages (no answered job yet)
MAX_LOGGED_PEERS = 256
WINDOW = 4096  # keyframes back that interval bookkeeping remembers


# -- tickets -----------------------------------------------------------------------------
def _mac(secret: bytes, *parts: bytes) -> str:
    return hmac.new(secret, b"|".join(parts), hashlib.sha256).hexdigest()[:32]


def make_ticket(secret: bytes, index: int, worker: str) -> str:
    return _mac(secret, b"ticket", str(index).encode(), worker.encode())


def make_seal(secret: bytes, index: int, height: int, width: int, timestamps: np.ndarray) -> str:
    ts = np.ascontiguousarray(timestamps, dtype="<i8").tobytes()
    return _mac(secret, b"seal", f"{index}:{height}x{width}".encode(), ts)


def stamp_job(secret: bytes, msg: wire.Message, worker: str) -> wire.Message:
    """The job as sent to one worker: its meta gains that worker's ticket and the seal."""
    index = int(msg.meta["index"])
    frame0 = msg.arrays["frame0"]
    meta = {
        **msg.meta,
        "ticket": make_ticket(secret, index, worker),
        "seal": make_seal(
            secret, index, frame0.shape[0], frame0.shape[1], msg.arrays["timestamps"]
        ),
    }
    return wire.Message(msg.type, meta, msg.arrays)


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a, b)


# -- counting bad messages ---------------------------------------------------------------
class PeerLog:
    """Counts bad messages; logs the first one from each peer (a flood is one line)."""

    def __init__(self, receiver: str) -> None:
        self.receiver = receiver
        self.total = 0
        self.peers: dict[str, int] = {}

    def bad(self, peer: str, exc: Exception) -> None:
        self.total += 1
        if peer in self.peers:
            self.peers[peer] += 1
            return
        if len(self.peers) < MAX_LOGGED_PEERS:
            self.peers[peer] = 1
            log.warning(
                "%s dropped a bad message from %s: %s (further ones from it are only counted)",
                self.receiver,
                peer,
                str(exc)[:300],
            )


def peer_of(frame: zmq.Frame) -> str:
    """Who sent a frame: the CurveZMQ key when authenticated, else the address."""
    for prop in ("User-Id", "Peer-Address"):
        try:
            value = frame.get(prop)
        except (zmq.ZMQError, ValueError, TypeError):
            continue
        if value:
            return str(value)[:64]
    return "?"


# -- the recorder's guard ----------------------------------------------------------------
class RecorderGuard:
    """Checks each message against what the recorder knows before it is handled, and
    returns it with only the fields the recorder uses (bounded). Raises WireError."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.next_keyframe = 0
        self.frame_size: tuple[int, int] | None = None
        self.key_times: dict[int, int] = {}
        self.dispatched: set[int] = set()
        self.end_seen = False
        self.workers: set[str] = set()  # names that answered a job they were given
        self.unverified: set[str] = set()  # names only heard of in status messages

    def admit(self, msg: wire.Message, source: str) -> wire.Message:
        if source == CAPTURE:
            if msg.type not in CAPTURE_TYPES:
                raise wire.WireError(f"capture socket does not take {msg.type!r} messages")
            return getattr(self, f"_capture_{msg.type}")(msg)
        if msg.type not in WORKER_TYPES:
            raise wire.WireError(
                f"workers may send result, status and interval messages, not {msg.type!r}"
            )
        return getattr(self, f"_worker_{msg.type}")(msg)

    # capture side
    def _capture_keyframe(self, msg: wire.Message) -> wire.Message:
        index, t_us, image = keyframe_meta(msg)
        if self.end_seen:
            raise wire.WireError(f"keyframe {index} after the end")
        if index != self.next_keyframe:
            raise wire.WireError(f"keyframe {index} out of order (expected {self.next_keyframe})")
        previous = self.key_times.get(index - 1)
        if previous is not None and t_us <= previous:
            raise wire.WireError(f"keyframe {index} at {t_us} us is not after the previous one")
        size = (image.shape[0], image.shape[1])
        if self.frame_size is None:
            self.frame_size = size
        elif size != self.frame_size:
            raise wire.WireError(f"keyframe {index} is {size}, earlier ones {self.frame_size}")
        self.key_times[index] = t_us
        self.next_keyframe += 1
        self.key_times.pop(index - WINDOW, None)
        return wire.Message("keyframe", {"index": index, "t_us": t_us}, {"image": image})

    def _capture_interval(self, msg: wire.Message) -> wire.Message:
        meta = interval_meta(msg)
        index = meta["index"]
        if index + 1 >= self.next_keyframe:
            raise wire.WireError(f"interval {index} announced before its closing keyframe")
        if meta["status"] == "dispatched":
            self.dispatched.add(index)
            self.dispatched.discard(index - WINDOW)
        return wire.Message("interval", meta)

    def _capture_end(self, msg: wire.Message) -> wire.Message:
        last = wire.require_int(msg.meta, "last_keyframe", -1, MAX_INDEX)
        if self.end_seen:
            raise wire.WireError("a second end")
        if last < self.next_keyframe - 1:
            raise wire.WireError(
                f"end says the last keyframe is {last}, but {self.next_keyframe - 1} came"
            )
        self.end_seen = True
        return wire.Message("end", {"last_keyframe": last})

    # worker side
    def _verified(self, name: str) -> str:
        """A worker name proven by an answered job (its ticket): always kept."""
        self.unverified.discard(name)
        self.workers.add(name)
        return name

    def _authorise(self, index: int, worker: str, meta: dict) -> None:
        if self.secret is None:
            if index not in self.dispatched:
                raise wire.WireError(f"interval {index} was not dispatched")
            return
        if not _same(ticket_of(meta), make_ticket(self.secret, index, worker)):
            raise wire.WireError(f"interval {index} was not dispatched to worker {worker!r}")

    def _worker_result(self, msg: wire.Message) -> wire.Message:
        result = result_from_message(msg)
        index, ts = result.index, result.timestamps_us
        worker = wire.require_str(msg.meta, "worker")
        self._authorise(index, worker, msg.meta)
        n, h, w = result.frames.shape[:3]
        if self.frame_size is not None and (h, w) != self.frame_size:
            raise wire.WireError(f"result {index}: frames are {h}x{w}, keyframes {self.frame_size}")
        if self.secret is not None:
            seal = msg.meta.get("seal")
            if not isinstance(seal, str) or not _same(
                seal, make_seal(self.secret, index, h, w, ts)
            ):
                raise wire.WireError(f"result {index}: frame size or timestamps not as dispatched")
        t0, t1 = self.key_times.get(index), self.key_times.get(index + 1)
        if t0 is not None and t1 is not None and n:
            if ts[0] <= t0 or ts[-1] >= t1 or np.any(np.diff(ts) <= 0):
                raise wire.WireError(f"result {index}: timestamps not sorted inside (t0, t1)")
        if self.secret is None:
            self.dispatched.discard(index)  # one answer per announced interval
        meta = {
            "index": index,
            "model": result.model,
            "compute_s": result.compute_s,
            "worker": self._verified(worker),
            "latency_s": wire.optional_number(msg.meta, "latency_s", -1e6, 1e6),
        }
        return wire.Message("result", meta, {"frames": result.frames, "timestamps": ts})

    def _worker_status(self, msg: wire.Message) -> wire.Message:
        meta = status_meta(msg)
        name = meta["worker"]
        if name not in self.workers and name not in self.unverified:
            if len(self.unverified) >= MAX_UNVERIFIED:
                raise wire.WireError(f"status from more than {MAX_UNVERIFIED} unknown workers")
            self.unverified.add(name)
        return wire.Message("status", meta)

    def _worker_interval(self, msg: wire.Message) -> wire.Message:
        meta = interval_meta(msg)
        if meta["status"] != "failed":
            raise wire.WireError("workers may only report an interval as failed")
        worker = wire.require_str(msg.meta, "worker")
        self._authorise(meta["index"], worker, msg.meta)
        self._verified(worker)
        meta.pop("ticket", None)
        return wire.Message("interval", meta)


class RecorderIntake:
    """The recorder's sockets behind the guard: yields admitted messages, the capture
    socket drained first (its keyframes precede the results that need them).

    capture None: one socket for everything, each message checked as coming from the
    side its type belongs to (no protection against a worker posing as capture)."""

    def __init__(
        self, workers: zmq.Socket, capture: zmq.Socket | None, guard: RecorderGuard
    ) -> None:
        self.sockets: list[tuple[str | None, zmq.Socket]] = (
            [(CAPTURE, capture), (WORKERS, workers)] if capture is not None else [(None, workers)]
        )
        self.guard = guard
        self.log = PeerLog("recorder")
        self.poller = zmq.Poller()
        for _, sock in self.sockets:
            self.poller.register(sock, zmq.POLLIN)

    @property
    def bad_messages(self) -> int:
        return self.log.total

    def reject(self, peer: str, exc: Exception) -> None:
        self.log.bad(peer, exc)

    def poll(self, timeout_ms: int, batch: int = 256) -> Iterator[tuple[str, wire.Message]]:
        """(peer, message) for each admitted message that arrived within timeout_ms."""
        if not self.poller.poll(timeout_ms):
            return
        for source, sock in self.sockets:
            for _ in range(batch):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                peer = f"{source or 'peer'} {peer_of(frames[0])}"
                try:
                    msg = wire.decode(frames)
                    side = source or (CAPTURE if msg.type in CAPTURE_TYPES else WORKERS)
                    msg = self.guard.admit(msg, side)
                except wire.WireError as exc:
                    self.reject(peer, exc)
                    continue
                yield peer, msg
