"""The console's end of the preview: one SUB socket that the capture tap, the recorder
and the idle monitor publish to; it keeps only the newest of everything (frames,
a couple of seconds of events, health) and renders JPEGs on demand, once per new
frame, only when a browser asks. While no browser has asked for a preview for
`VIEWER_HOLD_S`, it tells the publishers so (by dropping its subscription to
`tap.VIEWERS_TOPIC`) and they send health only.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import zmq

from pipeline import wire
from pipeline.console.tap import VIEWERS_TOPIC

EVENT_HISTORY_S = 2.0  # longest event window a browser may ask for
ON_RGB = np.array([40, 170, 255], np.uint8)  # ON (brighter): blue
OFF_RGB = np.array([255, 70, 50], np.uint8)  # OFF (darker): red
JPEG_QUALITY = 80
PREVIEW_NICE = 10  # preview work yields to capture and recording when the CPU is short
VIEWER_HOLD_S = 3.0  # previews flow this long after a browser's last request


def lower_thread_priority(nice: int = PREVIEW_NICE) -> None:
    """Make the calling thread yield to everything at normal priority. On Linux the
    niceness is per thread, so only the preview threads yield: the recording and
    monitor processes the server starts from its other threads keep normal priority.
    Elsewhere (or when the console already runs nicer than this) nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass


@dataclass
class _Slot:
    image: np.ndarray | None = None
    seq: int = 0
    wall: float = 0.0
    jpeg: bytes | None = None
    jpeg_seq: int = -1


@dataclass
class _Events:
    wall: float
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    mapped: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None


@dataclass
class HubStats:
    messages: int = 0
    bad_messages: int = 0
    rates: dict[str, float] = field(default_factory=dict)


def event_image(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, size: tuple[int, int], base: np.ndarray | None
) -> np.ndarray:
    """Polarity image: ON blue, OFF red, on grey or on a dimmed RGB frame (the overlay)."""
    w, h = size
    img = np.full((h, w, 3), 30, np.uint8) if base is None else (base // 2).astype(np.uint8)
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    x, y, p = x[ok].astype(np.intp), y[ok].astype(np.intp), p[ok]
    on = p > 0
    img[y[~on], x[~on]] = OFF_RGB
    img[y[on], x[on]] = ON_RGB
    return img


def jpeg(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _newest(parts: list[_Events], mapped: bool, window_us: int) -> list[tuple]:
    """The newest messages' columns that cover the window, newest last: a render
    touches only what it shows, not the whole history."""
    cols: list[tuple] = []
    t_end: int | None = None
    for e in reversed(parts):
        c = e.mapped if mapped else (e.t, e.x, e.y, e.p)
        if c is None or not len(c[0]):
            continue
        t_end = int(c[0][-1]) if t_end is None else t_end
        cols.append(c)
        if int(c[0][0]) < t_end - window_us:
            break
    return cols[::-1]


class PreviewHub:
    """Receives previews on a loopback SUB socket; browsers read from it."""

    def __init__(self, viewer_hold_s: float = VIEWER_HOLD_S) -> None:
        self.viewer_hold_s = viewer_hold_s
        self._last_request = -float("inf")  # monotonic time a browser last asked
        self._viewers_subscribed = False
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.setsockopt(zmq.RCVHWM, 8)
        self._sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self._cond = threading.Condition()
        self._slots = {"rgb": _Slot(), "interpolated": _Slot()}
        self._events: collections.deque[_Events] = collections.deque()
        self._events_seq = 0
        self.event_size: tuple[int, int] | None = None
        self.health: dict[str, Any] = {}
        self.last_message_wall = 0.0
        self.stats = HubStats()
        self._prev_health: dict[str, Any] | None = None
        self._render_cache: dict[tuple, tuple[int, bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview-hub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close(linger=0)
        self._ctx.term()

    # -- receiving ---------------------------------------------------------------------
    def _run(self) -> None:
        lower_thread_priority()
        while not self._stop.is_set():
            self._tell_publishers()
            if not self._sock.poll(200):
                continue
            try:
                msg = wire.recv(self._sock, max_bytes=64 << 20)
                self._handle(msg)
            except (wire.WireError, ValueError, KeyError) as exc:
                self.stats.bad_messages += 1
                self.health["last_bad_message"] = str(exc)

    def note_viewer(self) -> None:
        """A browser asked for a preview: the publishers send previews for the next
        `viewer_hold_s` (any thread)."""
        self._last_request = time.monotonic()

    @property
    def watched(self) -> bool:
        return time.monotonic() - self._last_request < self.viewer_hold_s

    def _tell_publishers(self) -> None:
        """(Un)subscribe the viewers topic as watching starts or stops (the receiving
        thread owns the socket)."""
        watched = self.watched
        if watched != self._viewers_subscribed:
            option = zmq.SUBSCRIBE if watched else zmq.UNSUBSCRIBE
            self._sock.setsockopt(option, VIEWERS_TOPIC)
            self._viewers_subscribed = watched

    def _handle(self, msg: wire.Message) -> None:
        kind = msg.meta.get("kind")
        now = time.time()
        with self._cond:
            self.stats.messages += 1
            self.last_message_wall = now
            if msg.type == "frame" and kind in self._slots:
                slot = self._slots[kind]
                slot.image = np.array(msg.arrays["image"])
                slot.seq += 1
                slot.wall = float(msg.meta.get("wall", now))
            elif msg.type == "events":
                a = msg.arrays
                mapped = None
                if "mx" in a:
                    mapped = (a["mt"].copy(), a["mx"].copy(), a["my"].copy(), a["mp"].copy())
                size = msg.meta.get("size")
                if isinstance(size, list) and len(size) == 2:
                    self.event_size = (int(size[0]), int(size[1]))
                self._events.append(
                    _Events(now, a["t"].copy(), a["x"].copy(), a["y"].copy(), a["p"].copy(), mapped)
                )
                while self._events and self._events[0].wall < now - EVENT_HISTORY_S - 1:
                    self._events.popleft()
                self._events_seq += 1
            elif msg.type == "status" and kind == "health":
                self._rates(msg.meta)
                self.health = {**msg.meta, "received_wall": now}
            elif msg.type == "status" and kind == "camera":
                self.health = {**self.health, "camera_error": msg.meta.get("error")}
            self._cond.notify_all()

    def _rates(self, h: dict[str, Any]) -> None:
        prev = self._prev_health
        self._prev_health = h
        if prev is None:
            return
        dt = float(h.get("wall", 0)) - float(prev.get("wall", 0))
        if dt <= 0:
            return
        for key in ("events", "frames", "triggers", "intervals_skipped"):
            if isinstance(h.get(key), int) and isinstance(prev.get(key), int):
                self.stats.rates[key] = max(0.0, (h[key] - prev[key]) / dt)

    def reset(self) -> None:
        """A new source (monitor <-> recording): forget the old one's counters."""
        with self._cond:
            self._prev_health = None
            self.stats.rates = {}
            self.health = {}

    # -- serving -----------------------------------------------------------------------
    def _seq(self, name: str) -> int:
        if name == "live":
            return self._slots["rgb"].seq + self._events_seq
        return self._events_seq if name in ("events", "overlay") else self._slots[name].seq

    def seq(self, name: str) -> int:
        with self._cond:
            return self._seq(name)

    def wait_newer(self, name: str, after: int, timeout_s: float) -> int:
        """Block (a worker thread, never the event loop) until `name` has a frame newer
        than `after`; returns the current sequence number. Each call counts as a
        viewer's request (`note_viewer`)."""
        self.note_viewer()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                cur = self._seq(name)
                left = deadline - time.monotonic()
                if cur > after or left <= 0:
                    return cur
                self._cond.wait(left)

    def frame_jpeg(self, name: str) -> tuple[int, float, bytes] | None:
        with self._cond:
            slot = self._slots[name]
            if slot.image is None:
                return None
            if slot.jpeg_seq != slot.seq:
                slot.jpeg, slot.jpeg_seq = jpeg(slot.image), slot.seq
            assert slot.jpeg is not None
            return slot.seq, slot.wall, slot.jpeg

    def events_jpeg(
        self, name: str, window_ms: float, size: tuple[int, int]
    ) -> tuple[int, float, bytes] | None:
        """The event image ('events', sensor grid) or the overlay on the newest RGB
        frame ('overlay', events mapped through the calibration) over the last
        window_ms of rig time."""
        key = (name, round(window_ms, 1), size)
        with self._cond:
            cached = self._render_cache.get(key)
            if cached is not None and cached[0] == self._events_seq:
                return cached
        got = self._events_image(name, window_ms, size)
        if got is None:
            return None
        seq, wall, image = got
        out = (seq, wall, jpeg(image))
        with self._cond:
            self._render_cache[key] = out
        return out

    def _events_image(
        self, name: str, window_ms: float, size: tuple[int, int]
    ) -> tuple[int, float, np.ndarray] | None:
        with self._cond:
            if not self._events:
                return None
            seq, wall = self._events_seq, self._events[-1].wall
            parts = list(self._events)
            base = self._slots["rgb"].image
        if name == "overlay":
            if base is None:
                return None
            size = (base.shape[1], base.shape[0])
        else:
            base = None
        cols = _newest(parts, name == "overlay", int(window_ms * 1000))
        if not cols:
            return None
        t = np.concatenate([c[0] for c in cols])
        keep = t >= (t.max() if len(t) else 0) - int(window_ms * 1000)
        x = np.concatenate([c[1] for c in cols])[keep]
        y = np.concatenate([c[2] for c in cols])[keep]
        p = np.concatenate([c[3] for c in cols])[keep]
        return seq, wall, event_image(x, y, p, size, base)

    def live_jpeg(
        self, window_ms: float, size: tuple[int, int]
    ) -> tuple[int, float, bytes, list[dict[str, Any]]] | None:
        """The previews of the Live part (RGB, events, overlay and the newest
        interpolated frame) in one JPEG, stacked, with where each is and its own
        sequence number: a browser fetches and decodes one image per round instead of
        four, which is most of what a preview costs it. A round is a newer frame or
        newer events from the capture tap, so the interpolated preview follows the
        tap's pace too. Each part starts on a 16-pixel row so JPEG blocks never mix."""
        key = ("live", round(window_ms, 1), size)
        with self._cond:
            seq = self._seq("live")
            cached = self._render_cache.get(key)
            if cached is not None and cached[0] == seq:
                return cached
            frames = {
                k: (slot.seq, slot.wall, slot.image) if slot.image is not None else None
                for k, slot in self._slots.items()
            }
        parts = [
            ("rgb", frames["rgb"]),
            ("events", self._events_image("events", window_ms, size)),
            ("overlay", self._events_image("overlay", window_ms, size)),
            ("interpolated", frames["interpolated"]),
        ]
        present = [(n, got) for n, got in parts if got is not None]
        if not present:
            return None
        width = max(img.shape[1] for _, (_, _, img) in present)
        height = sum(-(-img.shape[0] // 16) * 16 for _, (_, _, img) in present)
        sheet = np.zeros((height, width, 3), np.uint8)
        layout: list[dict[str, Any]] = []
        y = 0
        for name, (part_seq, wall, img) in present:
            h, w = img.shape[:2]
            sheet[y : y + h, :w] = img
            layout.append(
                {
                    "name": name,
                    "seq": part_seq,
                    "wall": round(wall, 4),
                    "x": 0,
                    "y": y,
                    "w": w,
                    "h": h,
                }
            )
            y += -(-h // 16) * 16
        out = (seq, max(p["wall"] for p in layout), jpeg(sheet), layout)
        with self._cond:
            self._render_cache[key] = out
        return out
