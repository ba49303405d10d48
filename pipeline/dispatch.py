"""The dispatcher: one interface for every way an interval gets interpolated, with the
policy that is the only difference between live and replay.

- policy "skip" (live): ``offer`` hands the job to a free worker now or returns False;
  capture never waits for inference, the interval is listed as skipped instead.
- policy "queue" (replay): every job offered is computed; the caller bounds how many it
  offers by ``capacity()``.

Backends: ``InProcessDispatcher`` (the interpolator in this process) and
``PoolDispatcher`` (pipeline.pool.WorkerPool: local or remote worker processes over
ZeroMQ). Where results go is the backend's business: live workers push them straight
to the recorder, so ``poll`` only reports intervals lost with their worker; replay's
pool sends them back here and ``poll`` returns them.
"""

from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from contracts.jobs import IntervalJob
from pipeline.intervals import Cut, Key

log = logging.getLogger(__name__)

POLICIES = ("skip", "queue")
LOST = "its worker died, none free"


class DispatchError(RuntimeError):
    """The workers cannot go on (they do not start, or keep dying); the message says
    what to do."""


@dataclass
class Outcome:
    """What became of one interval: frames and their times, or the reason for none."""

    index: int
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    model: str = ""
    reason: str = ""


class Dispatcher(abc.ABC):
    name: str = "?"

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.policy = policy

    @abc.abstractmethod
    def offer(self, job: IntervalJob, keyframe_arrival: float | None = None) -> bool:
        """Send job off; False when the policy is "skip" and nothing is free."""

    @abc.abstractmethod
    def poll(self, timeout_s: float = 0.0) -> list[Outcome]:
        """Intervals settled since the last poll (results that come back here, and
        intervals that were lost)."""

    def in_flight(self) -> int:
        return 0

    def capacity(self) -> int:
        """How many intervals may be in flight at once."""
        return 1

    def close(self) -> None:  # noqa: B027 - optional hook
        return None

    def stats(self) -> dict[str, Any]:
        return {}


class InProcessDispatcher(Dispatcher):
    """The interpolator runs in this process, in ``offer`` (replay: reading and
    writing run on their own threads meanwhile). A failing interval is an outcome
    with the reason, never the end of the run."""

    def __init__(self, model: str, policy: str = "queue") -> None:
        from models.registry import make_interpolator

        super().__init__(policy)
        self.interp = make_interpolator(model)
        self.name = self.interp.name
        self.compute_s = 0.0
        self._done: list[Outcome] = []

    def offer(self, job: IntervalJob, keyframe_arrival: float | None = None) -> bool:
        t = time.perf_counter()
        try:
            frames = self.interp.interpolate(job)
            self._done.append(Outcome(job.index, frames, job.timestamps_us, self.name))
        except Exception as exc:  # one bad interval must not end the run
            log.exception("interval %d failed", job.index)
            self._done.append(
                Outcome(job.index, reason=f"the model failed: {type(exc).__name__}: {exc}")
            )
        self.compute_s += time.perf_counter() - t
        return True

    def poll(self, timeout_s: float = 0.0) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def stats(self) -> dict[str, Any]:
        return {"compute_s": round(self.compute_s, 3)}


class PoolDispatcher(Dispatcher):
    """A WorkerPool. Live: the pool exists already (its workers push results to the
    recorder). Replay: ``PoolDispatcher.local`` starts n local workers that push
    results back to this dispatcher; an interval whose worker dies is sent again, one
    with no result after job_timeout_s is given up (listed with the reason)."""

    def __init__(
        self,
        pool: Any,
        policy: str = "skip",
        results: Any = None,
        job_timeout_s: float = 600.0,
    ) -> None:
        super().__init__(policy)
        self.pool = pool
        self.name = pool.model
        self.results = results  # a bound zmq PULL socket, or None (results go elsewhere)
        self.job_timeout_s = job_timeout_s
        self.pending: dict[int, float] = {}  # index -> when sent (results come back here)
        self.workers: dict[str, dict] = {}
        self.bad_results = 0
        self._ctx: Any = None

    @classmethod
    def local(
        cls, model: str, n: int, job_timeout_s: float = 600.0, start_timeout_s: float = 180.0
    ) -> PoolDispatcher:
        """n local worker processes (the live ones, pipeline.worker) on loopback."""
        import zmq

        from pipeline import wire
        from pipeline.pool import PoolError, WorkerPool

        ctx = zmq.Context()
        results = ctx.socket(zmq.PULL)
        results.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_MAX_MESSAGE_BYTES)
        endpoint = f"tcp://127.0.0.1:{results.bind_to_random_port('tcp://127.0.0.1')}"
        pool = WorkerPool(model, endpoint, local_workers=n, name_prefix="replay-worker")
        disp = cls(pool, "queue", results, job_timeout_s)
        disp._ctx = ctx
        try:
            pool.start(timeout_s=start_timeout_s)
        except PoolError as exc:
            disp.close()
            raise DispatchError(f"{exc}; run with --workers 1 to see the model's error") from None
        return disp

    def capacity(self) -> int:
        return 2 * max(1, self.pool.local_workers)

    def in_flight(self) -> int:
        return len(self.pending)

    def offer(self, job: IntervalJob, keyframe_arrival: float | None = None) -> bool:
        from pipeline.messages import job_message

        msg = job_message(job, keyframe_arrival=keyframe_arrival)
        if self.policy == "skip":
            if not self.pool.try_submit(job.index, msg):
                return False
        else:
            self.pool.submit(job.index, msg)
        if self.results is not None:
            self.pending[job.index] = time.monotonic()
        return True

    def poll(self, timeout_s: float = 0.0) -> list[Outcome]:
        done: list[Outcome] = []
        live = self.policy == "skip"
        for index in self.pool.poll(live=live):  # live: lost with its worker, none free
            self.pending.pop(index, None)
            done.append(Outcome(index, reason=LOST))
        if self.results is None:
            return done
        done += self._receive(timeout_s)
        self.pool.poll(live=live)
        now = time.monotonic()
        for index, since in list(self.pending.items()):
            if now - since > self.job_timeout_s:
                del self.pending[index]
                reason = f"no result within {self.job_timeout_s:g} s (worker lost or too slow)"
                done.append(Outcome(index, reason=reason))
        if self.pending and self.pool.stats.restarts > 10 * max(1, self.pool.local_workers):
            raise DispatchError("the workers keep dying; run with --workers 1 to see why")
        return done

    def _receive(self, timeout_s: float) -> list[Outcome]:
        from pipeline import wire
        from pipeline.messages import result_from_message

        done: list[Outcome] = []
        wait_ms = int(timeout_s * 1000)
        while self.results.poll(wait_ms):
            wait_ms = 0
            try:
                msg = wire.recv(self.results)
                if msg.type == "result":
                    res = result_from_message(msg)
                    if self.pending.pop(res.index, None) is None:
                        raise wire.WireError(f"a result for interval {res.index}, not in flight")
                    done.append(Outcome(res.index, res.frames, res.timestamps_us, res.model))
                    self.name = res.model
                elif msg.type == "interval" and msg.meta.get("status") == "failed":
                    index = wire.require(msg.meta, "index", int)
                    if self.pending.pop(index, None) is not None:
                        reason = f"the model failed: {msg.meta.get('reason', '?')}"
                        done.append(Outcome(index, reason=reason))
                elif msg.type == "status":
                    self.workers[str(msg.meta.get("worker", "?"))[:64]] = dict(msg.meta)
            except wire.WireError as exc:
                self.bad_results += 1
                log.warning("dropped a bad message from a worker: %s", exc)
        return done

    def close(self) -> None:
        try:
            self.pool.close()
        finally:
            if self.results is not None and self._ctx is not None:
                self.results.close(0)
                self._ctx.term()

    def stats(self) -> dict[str, Any]:
        fields = ("jobs", "frames", "failed_jobs", "compute_s")
        return {
            "workers": {k: {f: v.get(f) for f in fields} for k, v in self.workers.items()},
        }


class IntervalSink(Protocol):
    """Where keyframes and the fate of every interval are told: live, the recorder
    process (wire messages); replay, the ordered writer in this process."""

    def keyframe(self, key: Key) -> None: ...

    def interval(self, index: int, status: str, reason: str = "") -> None:
        """status: "dispatched", "skipped" or "failed" (with the reason)."""

    def result(self, outcome: Outcome) -> None:
        """Frames that came back to this process (replay; live results go from the
        workers straight to the recorder)."""

    def end(self, last_keyframe: int) -> None: ...


class IntervalFlow:
    """Cut intervals -> the dispatcher (its policy decides: skip or queue) -> the sink.
    The one place that decides what becomes of an interval, live and replay alike."""

    def __init__(self, dispatcher: Dispatcher, sink: IntervalSink) -> None:
        self.dispatcher = dispatcher
        self.sink = sink
        self.intervals = 0
        self.dispatched = 0
        self.skipped = 0
        self.lost = 0  # sent, then lost with its worker
        self.settled = 0  # outcomes that came back here
        self.inserted = 0

    def keyframe(self, key: Key) -> None:
        self.sink.keyframe(key)

    def cut(self, cut: Cut) -> None:
        self.intervals += 1
        # Latency is measured from the moment the interval's closing keyframe arrived.
        arrival = cut.k1.arrival or None
        if cut.job is not None and self.dispatcher.offer(cut.job, arrival):
            self.dispatched += 1
            self.sink.interval(cut.index, "dispatched")
        elif cut.job is None and not cut.reason:  # too short: nothing to insert
            self.sink.result(Outcome(cut.index, np.empty(0), np.empty(0, np.int64)))
        else:
            self.skipped += 1
            self.sink.interval(cut.index, "skipped", cut.reason or "all workers busy")

    def poll(self, timeout_s: float = 0.0) -> list[Outcome]:
        outcomes = self.dispatcher.poll(timeout_s)
        for o in outcomes:
            if o.frames is not None and o.timestamps is not None:
                self.settled += 1
                self.inserted += len(o.frames)
                self.sink.result(o)
            else:
                self.lost += o.reason == LOST
                self.settled += 1
                self.sink.interval(o.index, "failed", o.reason)
        return outcomes

    def end(self, last_keyframe: int) -> None:
        self.sink.end(last_keyframe)
