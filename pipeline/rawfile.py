"""The lossless raw recording, written on its own thread so that file I/O never
stalls sensor reading, and fed through a blocking ring so nothing is ever dropped.

A write error (disk full, device gone) stops the writer cleanly: the file is cut back
to its last whole packet so that everything already written stays readable (dv's
reader scans a file whose packet table was never written), `error` tells the capture
node, and `counts()` says how many events the file holds.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from contracts.errors import RawWriteError
from pipeline.aedat4 import Aedat4Writer
from pipeline.ring import RingBuffer, RingClosed
from rig.types import EventBatch, Frame

log = logging.getLogger(__name__)

__all__ = ["RawRecorder", "RawWriteError"]


class RawRecorder:
    def __init__(
        self,
        path: Path,
        event_size: tuple[int, int],
        frame_size: tuple[int, int],
        camera_name: str = "slomo-rig",
        compression: str = "lz4",
        queue_items: int = 100_000,
        stall_timeout_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self._writer = Aedat4Writer(
            self.path,
            camera_name,
            event_size=event_size,
            frame_size=frame_size,
            triggers=True,
            compression=compression,
        )
        self._ring: RingBuffer = RingBuffer(queue_items, "block")
        self._stall_timeout_s = stall_timeout_s
        self.error: RawWriteError | None = None
        self.events_written = 0
        self.frames_written = 0
        self.triggers_written = 0
        self._on_disk: dict[str, int] | None = None
        self._thread = threading.Thread(target=self._run, name="raw-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> tuple[int, int]:
        """(items waiting for the disk, the queue's capacity): a queue that fills means
        the disk cannot keep up, and capture will block on it (never drop)."""
        return len(self._ring), self._ring.capacity

    def _put(self, item: tuple) -> None:
        if self.error is not None:
            raise self.error
        self._ring.put(item, timeout_s=self._stall_timeout_s)

    def write_events(self, events: EventBatch) -> None:
        self._put(("events", events))

    def write_triggers(self, t: np.ndarray) -> None:
        self._put(("triggers", t))

    def write_frame(self, frame: Frame) -> None:
        self._put(("frame", frame))

    def _run(self) -> None:
        failed = False
        try:
            while True:
                try:
                    item = self._ring.get(timeout_s=None)
                except RingClosed:
                    break
                kind, data = item
                if kind == "events":
                    self._writer.write_events(data)
                    self.events_written += len(data)
                elif kind == "triggers":
                    self._writer.write_triggers(data)
                    self.triggers_written += len(data)
                else:
                    self._writer.write_frame(data)
                    self.frames_written += 1
        except OSError as exc:
            failed = True
            self._cut_to_whole_packets()
            ev = self.counts()
            self.error = RawWriteError(
                f"writing the raw recording {self.path} failed: {exc.strerror or exc}. "
                f"Recording stopped; the {ev['events']} events and {ev['frames']} frames "
                "written before are kept and readable. Free disk space or choose another "
                "--out folder."
            )
            self._ring.close()
        except Exception as exc:  # ValueError (data out of order) or a bug: never silent
            log.debug("raw writer failed", exc_info=True)
            self.error = RawWriteError(
                f"raw recording {self.path} stopped: {type(exc).__name__}: {exc}; what was "
                "written before is kept"
            )
            self._ring.close()
        finally:
            if not failed:
                try:
                    self._writer.close()
                except OSError as exc:
                    log.error("closing %s failed: %s", self.path, exc)
                    self._cut_to_whole_packets()

    def _cut_to_whole_packets(self) -> None:
        """After a failed write: close without the packet table (dv scans the packets)
        and drop the packet that was cut in two, so the file ends on a whole packet."""
        try:
            self._writer.close()
            self._on_disk = None  # it closed after all: the table is complete
            return
        except OSError:
            pass
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        whole = [p for p in self._writer.packet_index if p[0] + p[2] <= size]
        end = max((p[0] + p[2] for p in whole), default=None)
        if end is None:
            end = min((p[0] - 8 for p in self._writer.packet_index), default=size)
        try:
            os.truncate(self.path, min(end, size))
        except OSError as exc:
            log.error("cutting %s back to its last whole packet failed: %s", self.path, exc)
        sids = self._writer.stream_ids
        self._on_disk = {
            kind: sum(p[3] for p in whole if p[1] == sids.get(kind, -1))
            for kind in ("events", "frames", "triggers")
        }

    def close(self) -> None:
        """Write everything queued, then close the file."""
        self._ring.close()
        self._thread.join()

    def counts(self) -> dict[str, int]:
        """What the file holds: after a write error, only the whole packets on disk."""
        if self._on_disk is not None:
            return dict(self._on_disk)
        return {
            "events": self.events_written,
            "frames": self.frames_written,
            "triggers": self.triggers_written,
        }
