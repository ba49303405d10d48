"""The raw writer's queue, as the console's health shows it: items waiting for the disk
out of the queue's capacity."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline.rawfile import RawRecorder
from rig.types import EventBatch


def _events(t0: int) -> EventBatch:
    n = 10
    return EventBatch(
        np.arange(n, dtype=np.int64) + t0,
        np.zeros(n, np.int16),
        np.zeros(n, np.int16),
        np.ones(n, np.int8),
    )


def test_queued_counts_what_waits_for_a_slow_disk(tmp_path: Path) -> None:
    raw = RawRecorder(tmp_path / "raw.aedat4", (32, 24), (32, 24), queue_items=50)
    assert raw.queued == (0, 50)
    disk = threading.Event()  # the "disk" holds the first write until released
    taken = threading.Event()
    write = raw._writer.write_events

    def slow_write(events: EventBatch) -> None:
        taken.set()
        disk.wait(120)
        write(events)

    raw._writer.write_events = slow_write
    for k in range(4):
        raw.write_events(_events(1000 * k))
    assert taken.wait(120), "the writer never took the first batch"
    assert raw.queued == (3, 50)  # one on its way to the disk, three waiting
    disk.set()
    raw.close()  # writes what is queued
    assert raw.queued == (0, 50)
    assert raw.events_written == 40
