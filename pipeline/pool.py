"""The worker pool: any number of inference workers, local or on other machines, take
interval jobs from one dispatcher.

Load balancing is by credit: a worker says "ready" when it is idle and only then gets
a job, so a slow or busy worker is never handed work that a free one could do, and
the dispatcher always knows which interval each worker holds. Workers send a
heartbeat while they compute; one that goes silent is declared dead and its interval
is re-dispatched (replay) or re-dispatched if a worker is free right now, else
reported lost (live, where capture must never wait). Local worker processes that die
are restarted.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from pipeline import wire
from pipeline.messages import MAX_INDEX
from pipeline.peers import MAX_WORKERS, PeerLog, peer_of, stamp_job
from pipeline.procs import run_child, start_shielded
from pipeline.security import configure_server

log = logging.getLogger(__name__)


CONTROL_MAX_BYTES = 1 << 20
MAX_PEERS = 256  # peers the pool keeps track of at once


def _control_name(msg: wire.Message, identity: bytes) -> str:
    """The worker name of a valid control message ("ready" or "heartbeat"); WireError
    for anything else a peer sends to the job socket."""
    if msg.type not in ("ready", "heartbeat") or msg.arrays:
        raise wire.WireError(f"the job socket takes ready and heartbeat, not {msg.type!r}")
    if "done" in msg.meta:
        wire.require_int(msg.meta, "done", 0, MAX_INDEX)
    if "busy" in msg.meta and not isinstance(msg.meta["busy"], bool):
        raise wire.WireError("meta field 'busy' must be true or false")
    if "worker" not in msg.meta:
        return identity[:32].hex()
    return wire.require_str(msg.meta, "worker")


class PoolError(RuntimeError):
    """The worker pool could not start; the message says why."""


@dataclass
class _InFlight:
    index: int
    msg: wire.Message
    since: float
    attempts: int


@dataclass
class PoolStats:
    dispatched: int = 0
    redispatched: int = 0
    lost: int = 0
    workers_lost: int = 0
    restarts: int = 0
    bad_messages: int = 0
    workers_seen: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dispatched": self.dispatched,
            "redispatched": self.redispatched,
            "lost": self.lost,
            "workers_lost": self.workers_lost,
            "restarts": self.restarts,
            "bad_messages": self.bad_messages,
            "workers_seen": sorted(self.workers_seen),
        }


def _worker_entry(
    job_ep: str, result_ep: str, model: str, name: str, ready: Any, keys: str | None
) -> None:
    from pipeline.worker import run_worker

    # An error ends the worker with one line (the pool reports the exit), no traceback.
    code = run_child(
        f"worker {name}",
        run_worker,
        job_ep,
        result_ep,
        model,
        name=name,
        on_ready=ready.set,
        keys=keys,
    )
    sys.exit(code)


class WorkerPool:
    def __init__(
        self,
        model: str,
        result_endpoint: str,
        local_workers: int = 1,
        bind_host: str = "127.0.0.1",
        port: int = 0,
        keys: Path | None = None,
        heartbeat_timeout_s: float = 5.0,
        restart: bool = True,
        name_prefix: str = "worker",
        ticket_secret: bytes | None = None,
    ) -> None:
        """ticket_secret: shared with the recorder; each job then carries a ticket and a
        seal so that only its worker can answer it, with exactly its frames
        (pipeline.peers)."""
        self.model = model
        self.result_endpoint = result_endpoint
        self.local_workers = local_workers
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.restart = restart
        self.keys = keys
        self.name_prefix = name_prefix
        self.ticket_secret = ticket_secret
        self.stats = PoolStats()
        self._bad = PeerLog("worker pool")
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)  # workers send small messages
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._auth = configure_server(self._sock, self._ctx, bind_host, keys)
        if port:
            self._sock.bind(f"tcp://{bind_host}:{port}")
        else:
            port = self._sock.bind_to_random_port(f"tcp://{bind_host}")
        connect_host = "127.0.0.1" if bind_host in ("0.0.0.0", "*") else bind_host
        self.endpoint = f"tcp://{connect_host}:{port}"
        self._idle: deque[bytes] = deque()
        self._inflight: dict[bytes, _InFlight] = {}
        self._last_seen: dict[bytes, float] = {}
        self._names: dict[bytes, str] = {}
        self._backlog: deque[_InFlight] = deque()
        self._procs: dict[str, mp.Process] = {}
        self.started: list[mp.Process] = []  # every local process ever started, in order
        self._ready_events: dict[str, Any] = {}
        self._mp = mp.get_context("spawn")
        self._next_check = 0.0
        self._closing = False

    # -- local processes -----------------------------------------------------------
    def _spawn(self, name: str) -> tuple[mp.Process, Any]:
        ready = self._mp.Event()
        p = self._mp.Process(
            target=_worker_entry,
            args=(
                self.endpoint,
                self.result_endpoint,
                self.model,
                name,
                ready,
                str(self.keys) if self.keys else None,
            ),
            name=f"slomo-{name}",
            daemon=True,
        )
        start_shielded(p)  # Ctrl-C reaches only the parent, which stops workers
        self._procs[name] = p
        self.started.append(p)
        self._ready_events[name] = ready  # the child unpickles it: keep it alive
        return p, ready

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the local workers and wait until each has loaded its model."""
        pending = [self._spawn(f"{self.name_prefix}-{i}") for i in range(self.local_workers)]
        deadline = time.monotonic() + timeout_s
        for p, ready in pending:
            while not ready.wait(0.2):
                if not p.is_alive():
                    raise PoolError(
                        f"{p.name} exited with code {p.exitcode} while starting (model "
                        f"{self.model!r}); run 'slomo-rig worker --model {self.model}' to see why"
                    )
                if time.monotonic() > deadline:
                    raise PoolError(f"{p.name} did not become ready within {timeout_s:g} s")
        # Let every worker's "ready" arrive so the first jobs are not skipped.
        deadline = time.monotonic() + 5.0
        while len(self._idle) < self.local_workers and time.monotonic() < deadline:
            self.poll(timeout_ms=50)

    def _supervise(self) -> None:
        if not self.restart or self._closing:
            return
        for name, p in list(self._procs.items()):
            if not p.is_alive():
                log.warning("%s exited with code %s; restarting it", name, p.exitcode)
                self.stats.restarts += 1
                self._spawn(name)

    @property
    def processes(self) -> list[mp.Process]:
        return list(self._procs.values())

    # -- dispatching -----------------------------------------------------------------
    def _send(self, identity: bytes, item: _InFlight) -> bool:
        msg = item.msg
        if self.ticket_secret is not None:
            msg = stamp_job(self.ticket_secret, msg, self._names.get(identity, ""))
        try:
            wire.send_to(self._sock, identity, msg, flags=zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            self._forget(identity)  # gone between "ready" and now
            return False
        item.since = time.monotonic()
        item.attempts += 1
        self._inflight[identity] = item
        self.stats.dispatched += 1
        return True

    def try_submit(self, index: int, msg: wire.Message) -> bool:
        """Live: hand the job to an idle worker now, or return False (never waits)."""
        item = _InFlight(index, msg, 0.0, 0)
        while self._idle:
            if self._send(self._idle.popleft(), item):
                return True
        return False

    def submit(self, index: int, msg: wire.Message) -> None:
        """Replay: queue the job; it goes out as soon as a worker is free."""
        self._backlog.append(_InFlight(index, msg, 0.0, 0))
        self._drain_backlog()

    def _drain_backlog(self) -> None:
        while self._backlog and self._idle:
            item = self._backlog[0]
            if self._send(self._idle.popleft(), item):
                self._backlog.popleft()

    @property
    def idle_workers(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        return len(self._inflight) + len(self._backlog)

    def _forget(self, identity: bytes) -> None:
        self._last_seen.pop(identity, None)
        self._names.pop(identity, None)
        if identity in self._idle:
            self._idle.remove(identity)

    def poll(self, timeout_ms: int = 0, live: bool = True) -> list[int]:
        """Handle worker messages, detect dead workers, restart local ones. Returns the
        indices of jobs that were lost with their worker and could not be re-sent
        (live only; replay re-queues them)."""
        lost: list[int] = []
        wait = timeout_ms
        while self._sock.poll(wait):
            wait = 0
            frames = self._sock.recv_multipart(copy=False)
            identity = bytes(frames[0].buffer)[:256]
            try:
                msg = wire.decode(frames[1:], max_bytes=CONTROL_MAX_BYTES)
                name = _control_name(msg, identity)
                if identity not in self._last_seen and len(self._last_seen) >= MAX_PEERS:
                    raise wire.WireError(f"more than {MAX_PEERS} peers at once")
            except wire.WireError as exc:
                self._bad.bad(f"peer {peer_of(frames[0])} id {identity[:32].hex()}", exc)
                self.stats.bad_messages = self._bad.total
                continue
            now = time.monotonic()
            self._last_seen[identity] = now
            self._names[identity] = name
            if len(self.stats.workers_seen) < MAX_WORKERS:
                self.stats.workers_seen.add(name)
            if msg.type == "ready":
                self._inflight.pop(identity, None)
                if identity not in self._idle:
                    self._idle.append(identity)
        now = time.monotonic()
        for identity, seen in list(self._last_seen.items()):
            if now - seen > self.heartbeat_timeout_s:
                name = self._names.get(identity, identity[:32].hex())
                self._forget(identity)
                self.stats.workers_lost += 1
                item = self._inflight.pop(identity, None)
                if self.stats.workers_lost <= MAX_PEERS:  # a flood of fake peers is not logged
                    log.warning("worker %s went silent", name)
                if item is None:
                    continue
                if live:
                    if self.try_submit(item.index, item.msg):
                        self.stats.redispatched += 1
                    else:
                        self.stats.lost += 1
                        lost.append(item.index)
                else:
                    self.stats.redispatched += 1
                    self._backlog.appendleft(item)
        self._drain_backlog()
        if now > self._next_check:
            self._supervise()
            self._next_check = now + 0.5
        return lost

    def close(self) -> None:
        self._closing = True
        for p in self._procs.values():
            if p.is_alive():
                p.terminate()
        for p in self._procs.values():
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        self._sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
