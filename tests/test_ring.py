import threading
import time

import pytest

from pipeline.ring import RingBuffer, RingClosed, RingFull


def test_drop_oldest_keeps_newest_and_counts():
    r = RingBuffer(3, "drop_oldest")
    for i in range(5):
        assert r.put(i)
    assert [r.get(0), r.get(0), r.get(0)] == [2, 3, 4]
    assert r.counters.dropped == 2 and r.counters.pushed == 5 and r.counters.popped == 3
    assert r.get(0) is None


def test_drop_newest_refuses_and_counts():
    r = RingBuffer(2, "drop_newest")
    assert r.put("a") and r.put("b")
    assert not r.put("c")
    assert r.counters.dropped == 1
    assert [r.get(0), r.get(0)] == ["a", "b"]


def test_block_waits_for_consumer_and_loses_nothing():
    r = RingBuffer(2, "block")
    out = []

    def consume():
        while True:
            try:
                item = r.get(1)
            except RingClosed:
                return
            if item is not None:
                out.append(item)
                time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        r.put(i, timeout_s=5)
    r.close()
    t.join()
    assert out == list(range(200))
    assert r.counters.dropped == 0 and r.counters.high_water <= 2


def test_block_raises_when_consumer_stalls():
    r = RingBuffer(1, "block")
    r.put(1)
    with pytest.raises(RingFull, match="stalled"):
        r.put(2, timeout_s=0.05)


def test_closed_ring_drains_then_raises():
    r = RingBuffer(4, "block")
    r.put(1)
    r.close()
    assert r.get(0) == 1
    with pytest.raises(RingClosed):
        r.get(0)
    with pytest.raises(RingClosed):
        r.put(2)


def test_bad_construction():
    with pytest.raises(ValueError):
        RingBuffer(0, "block")
    with pytest.raises(ValueError):
        RingBuffer(1, "sometimes")
