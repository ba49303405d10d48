"""The one interval path of live and replay: the cutter (pipeline/intervals.py), the
flow and dispatchers with their policies (pipeline/dispatch.py) and the ordered writer
(pipeline/writer.py), each against real outputs, models and worker processes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from pipeline.dispatch import InProcessDispatcher, IntervalFlow, Outcome, PoolDispatcher
from pipeline.intervals import EventWindow, IntervalCutter, Key, MissingEvents, inserted_for
from pipeline.outputs import TimestampsOutput, read_timestamps
from pipeline.pool import WorkerPool
from pipeline.writer import OrderedWriter, WriterCounts
from rig.types import EventBatch

H, W = 24, 32


def _image(v: int) -> np.ndarray:
    return np.full((H, W, 3), v, np.uint8)


def _events(t0: int, t1: int, n: int = 50) -> EventBatch:
    t = np.linspace(t0, t1 - 1, n).astype(np.int64)
    rng = np.random.default_rng(t0)
    xy = rng.integers(0, min(H, W), (2, n)).astype(np.int16)
    return EventBatch(t, xy[0], xy[1], (rng.random(n) > 0.5).astype(np.int8))


class _Sink:
    """Records what the flow tells (the role of the recorder link or the writer)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def keyframe(self, key: Key) -> None:
        self.calls.append(("keyframe", key.index))

    def interval(self, index: int, status: str, reason: str = "") -> None:
        self.calls.append(("interval", index, status, reason))

    def result(self, outcome: Outcome) -> None:
        self.calls.append(("result", outcome.index, len(outcome.frames)))

    def end(self, last_keyframe: int) -> None:
        self.calls.append(("end", last_keyframe))


def test_cutter_cuts_by_watermark_drops_backward_keyframes_and_notes_gaps():
    window = EventWindow()
    cutter = IntervalCutter(
        events=lambda a, b: window.slice(a.t_us, b.t_us),
        instants=lambda t0, t1: inserted_for(t0, t1, 4, None),
    )
    times = [0, 20_000, 40_000, 30_000, 60_000, 140_000, 160_000]  # 30 ms goes back
    keys = [cutter.add_keyframe(i, _image(i), t) for i, t in enumerate(times)]
    assert keys[3] is None and cutter.dropped[0]["frame"] == 3
    assert [k.index for k in keys if k] == [0, 1, 2, 3, 4, 5]
    window.add(_events(0, 50_000))
    cuts = list(cutter.cuts(watermark=50_000))
    assert [c.index for c in cuts] == [0, 1]  # interval 2 ends at 60 ms: not yet
    ev = cuts[0].job.events
    assert len(ev) > 0 and ev.t.min() >= 0 and ev.t.max() < 20_000 and ev.x.dtype == np.float32
    np.testing.assert_array_equal(cuts[0].job.timestamps_us, [5_000, 10_000, 15_000])
    window.add(_events(50_000, 100_000))
    rest = list(cutter.cuts(watermark=100_000, final=True))  # the events end at 100 ms
    assert [c.index for c in rest] == [2, 3, 4]
    assert rest[0].job is not None
    assert rest[1].job is None and "no events after 100000 us" in rest[1].reason
    # 60 -> 140 ms after 20 ms steps: frames are missing there.
    assert [g["frames"] for g in cutter.gaps] == [[4, 5]]


def test_cutter_lists_missing_events_and_skips_resumed_intervals():
    def events(a: Key, b: Key) -> EventBatch:
        if a.index == 2:
            raise MissingEvents("damaged data at byte 1234")
        return _events(a.t_us, b.t_us)

    cutter = IntervalCutter(events, lambda t0, t1: inserted_for(t0, t1, 2, None), resume_from=1)
    for i in range(5):
        cutter.add_keyframe(i, _image(i), 10_000 * i)
    cuts = list(cutter.cuts())
    assert [c.resumed for c in cuts] == [True, False, False, False]
    assert cuts[0].job is None and cuts[1].job is not None
    assert cuts[2].job is None and cuts[2].reason == "damaged data at byte 1234"


def test_writer_puts_late_and_out_of_order_answers_in_time_order_and_resumes(tmp_path):
    path = tmp_path / "ts.csv"
    out = TimestampsOutput(path)
    w = OrderedWriter(out)
    for k in range(4):
        w.keyframe(k, _image(k), 10_000 * k)
    w.result(2, np.stack([_image(9)]), np.array([25_000]))  # before interval 0 and 1
    w.skip(1, "all workers busy")
    assert w.write_ready() == 0  # interval 0 is not settled: nothing goes out
    w.pending(0)
    w.result(0, np.stack([_image(8)]), np.array([5_000]))
    w.skip(0, "late skip")  # a result that came is kept
    assert w.write_ready() == 5  # k0, 5 ms, k1, k2, 25 ms; k3 waits for keyframe 4
    assert not w.result(1, np.stack([_image(7)]), np.array([15_000]))  # written already
    saved = WriterCounts.from_dict(w.counts.to_dict())
    out.close()
    # A resumed writer goes on from the saved counts: earlier keyframes are ignored.
    out = TimestampsOutput(path, append=True)
    w2 = OrderedWriter(out, saved)
    w2.keyframe(2, _image(2), 20_000)
    w2.keyframe(3, _image(3), 30_000)
    w2.keyframe(4, _image(4), 40_000)
    w2.result(3, np.stack([_image(6)]), np.array([35_000]))
    w2.end(4)
    w2.write_ready()
    out.close()
    assert w2.finished and w2.intervals_written == 4
    rows = read_timestamps(path)
    assert [t for _, t, _ in rows] == [0, 5_000, 10_000, 20_000, 25_000, 30_000, 35_000, 40_000]
    assert [s["index"] for s in w2.counts.skipped] == [1]


def test_replay_policy_queues_every_interval_in_process():
    sink = _Sink()
    flow = IntervalFlow(InProcessDispatcher("blend", policy="queue"), sink)
    cutter = IntervalCutter(
        lambda a, b: _events(a.t_us, b.t_us), lambda t0, t1: inserted_for(t0, t1, 4, None)
    )
    for i in range(4):
        flow.keyframe(cutter.add_keyframe(i, _image(10 * i), 20_000 * i))
        for cut in cutter.cuts():
            flow.cut(cut)
    flow.poll()
    flow.end(3)
    assert [c for c in sink.calls if c[0] == "result"] == [("result", k, 3) for k in range(3)]
    assert flow.dispatched == 3 and flow.skipped == 0 and sink.calls[-1] == ("end", 3)


@pytest.mark.slow
def test_live_policy_skips_an_interval_when_the_worker_is_busy():
    ctx = zmq.Context()
    results = ctx.socket(zmq.PULL)
    endpoint = f"tcp://127.0.0.1:{results.bind_to_random_port('tcp://127.0.0.1')}"
    sink = _Sink()
    with WorkerPool("flow", endpoint, local_workers=1) as pool:
        pool.start()
        flow = IntervalFlow(PoolDispatcher(pool, "skip", results, job_timeout_s=300.0), sink)
        big = np.zeros((240, 320, 3), np.uint8)
        cutter = IntervalCutter(
            lambda a, b: _events(a.t_us, b.t_us), lambda t0, t1: inserted_for(t0, t1, 30, None)
        )
        for i in range(3):
            flow.keyframe(cutter.add_keyframe(i, big, 100_000 * i))
        for cut in cutter.cuts():
            flow.cut(cut)
        assert ("interval", 0, "dispatched", "") in sink.calls
        assert ("interval", 1, "skipped", "all workers busy") in sink.calls
        deadline = time.monotonic() + 120
        while not any(c[0] == "result" for c in sink.calls) and time.monotonic() < deadline:
            flow.poll(0.2)
        assert ("result", 0, 29) in sink.calls
    results.close(0)
    ctx.term()
