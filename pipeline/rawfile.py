"""The lossless raw recording, written on its own thread so that file I/O never
stalls sensor reading, and fed through a blocking ring so nothing is ever dropped.

A write error (disk full, device gone) stops the writer cleanly: the file is closed
so everything already written stays readable, and `error` tells the capture node.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from pipeline.aedat4 import Aedat4Writer
from pipeline.ring import RingBuffer, RingClosed
from rig.types import EventBatch, Frame

log = logging.getLogger(__name__)


class RawWriteError(RuntimeError):
    """The raw recording could not be written; the message says what happened and
    what was kept."""


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
        self._thread = threading.Thread(target=self._run, name="raw-writer", daemon=True)
        self._thread.start()

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
            self.error = RawWriteError(
                f"writing the raw recording {self.path} failed: {exc.strerror or exc}. "
                f"Recording stopped; the {self.events_written} events and "
                f"{self.frames_written} frames written before are kept and readable. "
                "Free disk space or choose another --out folder."
            )
            self._ring.close()
        except ValueError as exc:
            self.error = RawWriteError(f"raw recording {self.path}: {exc}")
            self._ring.close()
        finally:
            try:
                self._writer.close()
            except OSError as exc:
                log.error("closing %s failed: %s", self.path, exc)

    def close(self) -> None:
        """Write everything queued, then close the file."""
        self._ring.close()
        self._thread.join()

    def counts(self) -> dict[str, int]:
        return {
            "events": self.events_written,
            "frames": self.frames_written,
            "triggers": self.triggers_written,
        }
