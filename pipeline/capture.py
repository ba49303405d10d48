"""The capture node: reads both sensors, puts frames on the rig clock, writes the raw
recording losslessly, and cuts the live stream into interval jobs for the workers.

Raw first: sensor data goes to the raw writer through a blocking ring (never
dropped); the inference path only ever gets what is left over. A job that no
worker can take right now is skipped (counted and listed), never queued behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq

from calibration.mapping import EventToFrameMap
from pipeline import wire
from pipeline.dispatch import Dispatcher, IntervalFlow, Outcome, PoolDispatcher
from pipeline.intervals import IntervalStream, Key, inserted_for
from pipeline.pool import WorkerPool
from pipeline.rawfile import RawRecorder
from pipeline.ring import RingBuffer, RingClosed, RingFull
from rig.base import EventSource, FrameSource, SourceError
from rig.sync import HostClockSync, TriggerSync
from rig.types import EventSlice, Frame

log = logging.getLogger(__name__)

_END = object()
DRAIN_S = 0.5  # after a stop, how long to keep reading what sources already buffered


@dataclass
class CaptureCounters:
    events: int = 0
    triggers: int = 0
    frames: int = 0
    keyframes: int = 0
    keyframes_dropped: int = 0  # frame times not after the previous one's
    camera_skipped_frames: int = 0
    intervals: int = 0
    intervals_dispatched: int = 0
    intervals_skipped: int = 0
    intervals_lost: int = 0
    live_events_dropped: int = 0
    recorder_messages_dropped: int = 0
    first_event_us: int | None = None
    last_event_us: int | None = None


class RecorderLink:
    """The interval flow's sink live: the recorder process, told over its socket (never
    blocking capture). Results go from the workers to the recorder directly."""

    def __init__(
        self, send: Callable[[wire.Message], None], totals: Callable[[], dict[str, Any]]
    ) -> None:
        self.send = send
        self.totals = totals

    def keyframe(self, key: Key) -> None:
        meta = {"index": key.index, "t_us": key.t_us}
        self.send(wire.Message("keyframe", meta, {"image": key.image}))

    def interval(self, index: int, status: str, reason: str = "") -> None:
        meta: dict[str, Any] = {"index": index, "status": status}
        if reason:
            meta["reason"] = reason
        self.send(wire.Message("interval", meta))

    def result(self, outcome: Outcome) -> None:
        # Only an interval too short to insert anything comes here: nothing to record.
        self.interval(outcome.index, "skipped", "too short to insert frames")

    def end(self, last_keyframe: int) -> None:
        self.send(wire.Message("end", {"last_keyframe": last_keyframe, **self.totals()}))


@dataclass
class _SourcePump:
    """A thread that moves everything a source delivers into a lossless ring."""

    source: EventSource | FrameSource
    ring: RingBuffer
    error: BaseException | None = None
    ended: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), daemon=True)
        self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    item = self.source.read(timeout_s=0.2)
                except EOFError:
                    break
                if item is not None:
                    self.ring.put(item, timeout_s=30.0)
            else:
                # Stopped by the operator: keep what the driver already buffered.
                drain_until = time.monotonic() + DRAIN_S
                while time.monotonic() < drain_until:
                    try:
                        item = self.source.read(timeout_s=0)
                    except EOFError:
                        break
                    if item is None:
                        break
                    self.ring.put(item, timeout_s=30.0)
        except (SourceError, RingFull) as exc:
            self.error = exc
        except RingClosed:
            pass
        except Exception as exc:  # a driver bug (dv's RuntimeError...) fails the session
            log.debug("%s reader failed", type(self.source).__name__, exc_info=True)
            self.error = SourceError(
                f"{type(self.source).__name__} stopped with an unexpected "
                f"{type(exc).__name__}: {exc}; the recording so far is kept"
            )
        finally:
            self.ended = True
            try:
                self.ring.put(_END, timeout_s=30.0)
            except (RingFull, RingClosed):
                pass


class CaptureNode:
    def __init__(
        self,
        event_source: EventSource,
        frame_source: FrameSource,
        mapper: EventToFrameMap,
        raw: RawRecorder,
        pool: WorkerPool | Dispatcher,
        recorder_socket: zmq.Socket,
        factor: int,
        sync: TriggerSync | HostClockSync | None = None,
        max_live_events: int = 50_000_000,
        tap: Any = None,
    ) -> None:
        if factor < 2:
            raise ValueError(f"slow-motion factor must be >= 2, got {factor}")
        self.events = event_source
        self.frames = frame_source
        self.mapper = mapper
        self.raw = raw
        self.pool = pool
        # Live policy: an interval no worker can take right now is skipped, not queued.
        self.dispatch = pool if isinstance(pool, Dispatcher) else PoolDispatcher(pool, "skip")
        self.recorder_socket = recorder_socket
        self.factor = factor
        self.sync = sync or TriggerSync()
        self.max_live_events = max_live_events
        # Optional lossy preview (pipeline/console/tap.py): only references are handed over.
        self.tap = tap
        self.counters = CaptureCounters()
        self.error: BaseException | None = None
        # The interval path shared with replay: events in the RGB grid in a bounded
        # window (drop-oldest, counted), interval k cut once the events reach keyframe k+1.
        self.intervals = IntervalStream(
            lambda t0, t1: inserted_for(t0, t1, factor, None), max_events=max_live_events
        )
        self.flow = IntervalFlow(self.dispatch, RecorderLink(self._to_recorder, self.summary))

    # -- inference path ---------------------------------------------------------------
    def _to_recorder(self, msg: wire.Message) -> None:
        try:
            wire.send(self.recorder_socket, msg, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.counters.recorder_messages_dropped += 1

    def _poll_pool(self) -> None:
        self.flow.poll()  # intervals lost with their worker are reported failed
        self.counters.intervals_lost = self.flow.lost

    def _on_keyframe(self, frame: Frame) -> None:
        t_mid = frame.mid_exposure_us
        key = self.intervals.add_keyframe(frame.index, frame.image, t_mid, time.time())
        if key is None:  # not after the previous keyframe: in the raw file, not the output
            self.counters.keyframes_dropped += 1
            return
        self.counters.keyframes += 1
        self.flow.keyframe(key)

    def _dispatch_ready(self, final: bool = False) -> None:
        for cut in self.intervals.cuts(final):
            self.flow.cut(cut)
        c, f = self.counters, self.flow
        c.intervals, c.intervals_dispatched, c.intervals_skipped = (
            f.intervals,
            f.dispatched,
            f.skipped,
        )
        c.live_events_dropped = self.intervals.dropped_events

    # -- main loop --------------------------------------------------------------------
    def _handle_events(self, item: EventSlice) -> None:
        ev, trig = item.events, item.triggers
        if len(ev):
            self.raw.write_events(ev)
            c = self.counters
            c.events += len(ev)
            c.first_event_us = int(ev.t[0]) if c.first_event_us is None else c.first_event_us
            c.last_event_us = int(ev.t[-1])
            self.sync.observe_events(int(ev.t[-1]))
            mapped = self.mapper(ev)
            self.intervals.add_events(mapped)
            self.intervals.advance(int(ev.t[-1]))  # mapping may drop the last ones
            if self.tap is not None:
                self.tap.events(ev, mapped)
        if len(trig):
            self.raw.write_triggers(trig)
            self.counters.triggers += len(trig)
            self.sync.add_triggers(trig)
            self.intervals.advance(int(trig[-1]))

    def _consume(self, i: int, item: object) -> None:
        if i == 0:
            self._handle_events(item)  # type: ignore[arg-type]
        else:
            self.counters.frames += 1
            self.sync.add_frame(item)  # type: ignore[arg-type]
            if self.tap is not None:
                self.tap.frame(item)

    def _drain(
        self, pumps: list[_SourcePump], ev_ring: RingBuffer, fr_ring: RingBuffer, ended: list[bool]
    ) -> None:
        """After a stop: everything the readers still deliver goes to the raw file."""
        for i, ring in enumerate((ev_ring, fr_ring)):
            while not ended[i]:
                item = ring.get(timeout_s=DRAIN_S + 5)
                if item is None or item is _END:
                    ended[i] = True
                else:
                    self._consume(i, item)
        for frame in self.sync.flush():
            self.raw.write_frame(frame)
            self._on_keyframe(frame)

    def run(
        self,
        stop: threading.Event,
        progress: Callable[[CaptureCounters], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> CaptureCounters:
        ev_ring: RingBuffer = RingBuffer(4096, "block")
        fr_ring: RingBuffer = RingBuffer(1024, "block")
        pumps = [_SourcePump(self.events, ev_ring), _SourcePump(self.frames, fr_ring)]
        reader_stop = threading.Event()
        for p in pumps:
            p.start(reader_stop)
        ended = [False, False]
        last_progress = 0.0
        try:
            # Either camera ending or failing ends the recording: one stream alone
            # cannot be interpolated, and what both gave so far is kept.
            while not any(ended) and not stop.is_set():
                if any(p.error is not None for p in pumps):
                    break  # drain what arrived, then report the error
                got = False
                for i, ring in enumerate((ev_ring, fr_ring)):
                    while not ended[i] and (item := ring.get(timeout_s=0)) is not None:
                        got = True
                        if item is _END:
                            ended[i] = True
                        else:
                            self._consume(i, item)
                for frame in self.sync.pop_matched():
                    self.raw.write_frame(frame)
                    self._on_keyframe(frame)
                self._poll_pool()
                self._dispatch_ready()
                if self.raw.error is not None:
                    raise self.raw.error
                if progress and time.monotonic() - last_progress > progress_every_s:
                    self.counters.camera_skipped_frames = self.frames.skipped_frames
                    progress(self.counters)
                    last_progress = time.monotonic()
                if self.tap is not None:
                    self.tap.tick(self)
                if not got:
                    time.sleep(0.002)
            reader_stop.set()
            self._drain(pumps, ev_ring, fr_ring, ended)
            self._dispatch_ready(final=True)
            for p in pumps:
                if p.error is not None:
                    raise p.error
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            reader_stop.set()
            for ring in (ev_ring, fr_ring):
                ring.close()
            for p in pumps:
                if p.thread is not None:
                    p.thread.join(timeout=5)
            self.counters.camera_skipped_frames = self.frames.skipped_frames
            self.flow.end(self.counters.keyframes - 1)
        return self.counters

    def summary(self) -> dict:
        return asdict(self.counters)
