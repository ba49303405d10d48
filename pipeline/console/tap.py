"""The preview tap: what the console sees of a running capture, without ever slowing it.

Capture's thread only drops references into a latest-only slot (frames) and a bounded
deque (event batches); both are O(1) and never wait. A publisher thread of its own
sends what is there on a ZeroMQ PUB socket, which drops messages when the console is
slow (PUB never blocks), so a stalled or absent console costs the capture thread
nothing. How often it sends is paced by capture itself (`PreviewPace`): while capture
falls behind real time the previews slow down, down to one a second, so that on a
busy machine the CPU goes to capture rather than to previews and the browsers drawing
them. And previews are built and sent only while someone watches: the console's hub
subscribes to `VIEWERS_TOPIC` while a browser has asked for a preview recently, and the
tap's XPUB socket hears that subscription come and go (health goes out regardless).
The recorder gets the same treatment for interpolated frames (`PreviewOutput`).
Messages use the pipeline's wire format (pipeline/wire.py): JSON header plus raw
arrays, never pickle.
"""

from __future__ import annotations

import collections
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from pipeline import wire
from pipeline.outputs import Output
from rig.types import EventBatch, Frame

MAX_PREVIEW_EVENTS = 80_000  # per events message: enough for an image, bounded cost
# The hub subscribes to this while someone watches; no message starts with it (a wire
# header is JSON), so it filters nothing: it only tells the publishers.
VIEWERS_TOPIC = b"\x00slomo-viewers"


def _pub(endpoint: str) -> tuple[zmq.Context, zmq.Socket]:
    """An XPUB socket: a PUB that also hears its subscribers' (un)subscriptions."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 4)  # a slow console loses previews, never stalls us
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return ctx, sock


def viewers_changed(sock: zmq.Socket, watched: bool) -> bool:
    """Whether someone watches, after the (un)subscriptions that arrived on an XPUB
    socket since the last call (never waits)."""
    while sock.poll(0, zmq.POLLIN):
        msg = sock.recv(zmq.NOBLOCK)
        if msg[1:] == VIEWERS_TOPIC:
            watched = msg[:1] == b"\x01"
    return watched


def _send(sock: zmq.Socket, msg: wire.Message) -> None:
    try:
        wire.send(sock, msg, flags=zmq.NOBLOCK)
    except zmq.Again:
        pass


def subsample(batch: EventBatch, limit: int) -> EventBatch:
    """At most `limit` events, evenly strided (keeps the spatial picture)."""
    n = len(batch)
    if n <= limit:
        return batch
    idx = np.linspace(0, n - 1, limit).astype(np.int64)
    return EventBatch(batch.t[idx], batch.x[idx], batch.y[idx], batch.p[idx])


@dataclass
class PreviewPace:
    """How many previews a second the tap sends, so that capture keeps priority.

    Capture's lag behind real time is the wall clock minus the data's own clock at the
    moment capture handed a batch over, relative to the smallest such difference seen
    (a camera's clock has an unknown offset; its drift, ppm, is far below what counts
    here). Once per `every_s`: while the lag exceeds `lag_budget_s` or grew faster than
    `growth_per_s` (seconds per second), the rate halves (down to `min_hz`); otherwise
    it climbs by `step_hz` back to `max_hz`. Halving quickly and climbing slowly keeps
    the lag bounded near the budget on a machine with no CPU to spare.
    """

    max_hz: float = 25.0
    min_hz: float = 1.0
    lag_budget_s: float = 0.1
    growth_per_s: float = 0.02
    step_hz: float = 2.0
    every_s: float = 1.0
    hz: float = field(init=False)
    lag_s: float = field(init=False, default=0.0)
    slowdowns: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        for name in ("max_hz", "min_hz", "lag_budget_s", "growth_per_s", "step_hz", "every_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"PreviewPace.{name} must be a positive number, got {v}")
        if self.min_hz > self.max_hz:
            raise ValueError(f"PreviewPace.min_hz {self.min_hz} is above max_hz {self.max_hz}")
        self.hz = self.max_hz
        self._offset: float | None = None
        self._checked: tuple[float, float] | None = None  # (when, lag then)

    def observe(self, data_us: int, wall_s: float) -> None:
        """Newest data time (µs, the camera's clock) and the wall (monotonic) time
        capture handed it over."""
        d = wall_s - data_us * 1e-6
        if self._offset is None or d < self._offset:
            self._offset = d
        self.lag_s = d - self._offset

    def update(self, now: float) -> float:
        """The rate to use from now on (called by the publisher thread each send)."""
        if self._checked is None:
            self._checked = (now, self.lag_s)
            return self.hz
        since, lag_then = self._checked
        if now - since < self.every_s:
            return self.hz
        growth = (self.lag_s - lag_then) / (now - since)
        if self.lag_s > self.lag_budget_s or growth > self.growth_per_s:
            self.hz = max(self.min_hz, self.hz / 2)
            self.slowdowns += 1
        else:
            self.hz = min(self.max_hz, self.hz + self.step_hz)
        self._checked = (now, self.lag_s)
        return self.hz

    def to_dict(self) -> dict[str, Any]:
        return {
            "hz": round(self.hz, 2),
            "max_hz": self.max_hz,
            "lag_s": round(self.lag_s, 3),
            "slowdowns": self.slowdowns,
        }


class PreviewTap:
    """Capture-side end of the preview. `events`, `frame` and `tick` are called from the
    capture thread and only store references."""

    def __init__(
        self,
        endpoint: str,
        event_size: tuple[int, int],
        max_hz: float = 25.0,
        health_every_s: float = 0.5,
        disk_path: Path | None = None,
        pace: PreviewPace | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.event_size = [int(v) for v in event_size]
        self.pace = pace or PreviewPace(max_hz=max_hz)
        self.health_every_s = health_every_s
        self.disk_path = disk_path
        self._frame: Frame | None = None
        self._frame_wall = 0.0
        # (raw, mapped, monotonic time handed over); bounded: a slow publisher loses
        # the oldest, never blocks capture.
        self._events: collections.deque[tuple[EventBatch, EventBatch | None, float]] = (
            collections.deque(maxlen=1024)
        )
        self._health: dict[str, Any] | None = None
        self._next_health = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.watched = False  # someone asked the hub for a preview recently
        self.rounds = 0  # preview rounds (at the pace), watched or not
        self.sent = 0  # RGB previews sent
        self.events_sent = 0  # event previews sent

    # -- capture thread: references only ---------------------------------------------
    def events(self, raw: EventBatch, mapped: EventBatch | None = None) -> None:
        self._events.append((raw, mapped, time.monotonic()))

    def frame(self, frame: Frame) -> None:
        self._frame = frame
        self._frame_wall = time.time()

    def tick(self, node: Any) -> None:
        """Once per health period, a snapshot of the node's counters (cheap dicts)."""
        now = time.monotonic()
        if now < self._next_health:
            return
        self._next_health = now + self.health_every_s
        self._health = capture_health(node)

    def health(self, values: dict[str, Any]) -> None:
        self._health = values

    # -- publisher thread --------------------------------------------------------------
    def start(self) -> PreviewTap:
        self._thread = threading.Thread(target=self._run, name="preview-tap", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PreviewTap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        """Previews at the pace's rate while someone watches; health as it comes (twice
        a second), whatever the pace and whoever watches, so the page's health stays
        fresh. Nobody watching: the events handed over are only looked at for the
        pace's lag (what capture's lag is does not depend on watching), never copied,
        subsampled or sent."""
        ctx, sock = _pub(self.endpoint)
        last_frame: Frame | None = None
        next_preview = 0.0
        try:
            while not self._stop.is_set():
                self.watched = viewers_changed(sock, self.watched)
                now = time.monotonic()
                if now >= next_preview:
                    next_preview = now + 1.0 / self.pace.update(now)
                    self.rounds += 1
                    frame = self._frame
                    if self.watched and frame is not None and frame is not last_frame:
                        last_frame = frame
                        meta = {"kind": "rgb", "wall": self._frame_wall, "index": int(frame.index)}
                        _send(sock, wire.Message("frame", meta, {"image": frame.image}))
                        self.sent += 1
                    self._publish_events(sock, self.watched)
                health = self._health
                if health is not None:
                    self._health = None
                    if self.disk_path is not None:
                        health["disk_free_bytes"] = _disk_free(self.disk_path)
                    health["preview"] = {**self.pace.to_dict(), "watched": self.watched}
                    _send(sock, wire.Message("status", {"kind": "health", **health}))
                wake = min(next_preview, time.monotonic() + self.health_every_s / 2)
                # Wakes early when a subscription arrives: a new viewer waits no longer.
                sock.poll(max(0, int(1000 * (wake - time.monotonic()))), zmq.POLLIN)
        finally:
            sock.close(linger=0)
            ctx.term()

    def _publish_events(self, sock: zmq.Socket, watched: bool) -> None:
        raws, mapped = [], []
        n = 0
        while self._events:
            r, m, handed = self._events.popleft()
            if len(r):
                self.pace.observe(int(r.t[-1]), handed)
            if not watched:
                continue
            raws.append(r)
            n += len(r)
            if m is not None:
                mapped.append(m)
        if not n:
            return
        raw = subsample(EventBatch.concat(raws), MAX_PREVIEW_EVENTS)
        arrays = {"t": raw.t, "x": raw.x, "y": raw.y, "p": raw.p}
        if mapped:
            m = subsample(EventBatch.concat(mapped), MAX_PREVIEW_EVENTS)
            arrays |= {
                "mt": m.t,
                "mx": np.round(m.x).astype(np.int16),
                "my": np.round(m.y).astype(np.int16),
                "mp": m.p,
            }
        meta = {"kind": "events", "wall": time.time(), "count": n, "size": self.event_size}
        _send(sock, wire.Message("events", meta, arrays))
        self.events_sent += 1


def _disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def capture_health(node: Any) -> dict[str, Any]:
    """Counters, clock-sync quality and worker load of a CaptureNode, JSON-ready."""
    c = node.counters
    health: dict[str, Any] = {
        "wall": time.time(),
        "events": c.events,
        "frames": c.frames,
        "triggers": c.triggers,
        "camera_skipped_frames": int(node.frames.skipped_frames),
        "live_events_dropped": c.live_events_dropped,
        "recorder_messages_dropped": c.recorder_messages_dropped,
        "intervals": c.intervals,
        "intervals_dispatched": c.intervals_dispatched,
        "intervals_skipped": c.intervals_skipped,
        "intervals_lost": c.intervals_lost,
    }
    queued = getattr(getattr(node, "raw", None), "queued", None)
    if queued is not None:
        health["raw_queue"] = {"items": queued[0], "capacity": queued[1]}
    sync = node.sync.to_dict()
    health["sync"] = {
        k: sync.get(k)
        for k in ("method", "jitter_rms_us", "jitter_max_us", "matched", "missing_edges")
    }
    health["sync"]["drift_ppm"] = sync.get("drift_ppm")
    pool = getattr(node, "pool", None)
    if pool is not None:
        busy = len(getattr(pool, "_inflight", {}))
        alive = len(getattr(pool, "_last_seen", {})) or getattr(pool, "local_workers", 0)
        health["workers"] = {"busy": busy, "alive": alive, **pool.stats.to_dict()}
    return health


class PreviewOutput(Output):
    """Recorder-side tap: the newest interpolated frame, published lossy at <= hz while
    someone watches (as for `PreviewTap`)."""

    def __init__(self, endpoint: str, hz: float = 8.0) -> None:
        self._ctx, self._sock = _pub(endpoint)
        self._period = 1.0 / hz
        self._next = 0.0
        self.frames_written = 0
        self.watched = False
        self.sent = 0

    def write(self, image: np.ndarray, timestamp_us: int, source: str) -> None:
        self.frames_written += 1
        now = time.monotonic()
        if source != "interpolated" or now < self._next:
            return
        self._next = now + self._period
        self.watched = viewers_changed(self._sock, self.watched)
        if not self.watched:
            return
        meta = {"kind": "interpolated", "wall": time.time(), "t_us": int(timestamp_us)}
        _send(self._sock, wire.Message("frame", meta, {"image": np.ascontiguousarray(image)}))
        self.sent += 1

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()
