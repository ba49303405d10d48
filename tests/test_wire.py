"""Wire format: round trips, and every kind of bad message rejected with WireError."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.jobs import IntervalJob, inserted_timestamps
from pipeline import wire
from pipeline.messages import job_from_message, job_message, result_from_message
from rig.types import EventBatch


def make_job(index: int = 3, h: int = 24, w: int = 32, n: int = 500) -> IntervalJob:
    rng = np.random.default_rng(index)
    t = np.sort(rng.integers(1000, 21000, n)).astype(np.int64)
    ev = EventBatch(
        t,
        rng.uniform(0, w - 1, n).astype(np.float32),
        rng.uniform(0, h - 1, n).astype(np.float32),
        rng.integers(0, 2, n).astype(np.int8),
    )
    f0 = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    f1 = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return IntervalJob(index, f0, f1, 1000, 21000, ev, inserted_timestamps(1000, 21000, 4))


def test_job_round_trip_is_exact():
    job = make_job()
    back = job_from_message(wire.decode(wire.encode(job_message(job))))
    assert back.index == job.index and (back.t0_us, back.t1_us) == (job.t0_us, job.t1_us)
    np.testing.assert_array_equal(back.frame0, job.frame0)
    np.testing.assert_array_equal(back.frame1, job.frame1)
    np.testing.assert_array_equal(back.events.t, job.events.t)
    np.testing.assert_array_equal(back.events.p, job.events.p)
    # positions travel as 1/8-pixel fixed point
    assert np.abs(back.events.x - job.events.x).max() <= 1 / 16 + 1e-6
    assert np.abs(back.events.y - job.events.y).max() <= 1 / 16 + 1e-6
    assert back.events.x.dtype == np.float32 and back.events.t.dtype == np.int64
    np.testing.assert_array_equal(back.timestamps_us, job.timestamps_us)


def test_round_trip_over_zmq_is_zero_copy_for_large_arrays():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    big = np.arange(1 << 20, dtype=np.int64)
    wire.send(a, wire.Message("events", {"k": 1}, {"t": big}))
    msg = wire.recv(b)
    np.testing.assert_array_equal(msg.arrays["t"], big)
    assert not msg.arrays["t"].flags.owndata  # a view of the received buffer, not a copy
    a.close(0), b.close(0)


def good_frames() -> list[bytes]:
    return [bytes(f) for f in wire.encode(job_message(make_job(n=10)))]


def _header(frames: list[bytes]) -> dict:
    return json.loads(frames[0])


BAD_CASES = {
    "empty": lambda f: [],
    "not json": lambda f: [b"\xff\x00garbage", *f[1:]],
    "json list": lambda f: [b"[1,2]", *f[1:]],
    "wrong version": lambda f: [json.dumps({**_header(f), "v": 99}).encode(), *f[1:]],
    "unknown type": lambda f: [json.dumps({**_header(f), "type": "pickle"}).encode(), *f[1:]],
    "missing buffer": lambda f: f[:-1],
    "extra buffer": lambda f: [*f, b"x"],
    "truncated buffer": lambda f: [f[0], f[1][:-7], *f[2:]],
    "bad dtype": lambda f: [
        json.dumps(
            {
                **_header(f),
                "arrays": [{**_header(f)["arrays"][0], "dtype": "object"}]
                + _header(f)["arrays"][1:],
            }
        ).encode(),
        *f[1:],
    ],
    "negative shape": lambda f: [
        json.dumps(
            {
                **_header(f),
                "arrays": [{**_header(f)["arrays"][0], "shape": [-1]}] + _header(f)["arrays"][1:],
            }
        ).encode(),
        *f[1:],
    ],
    "huge header": lambda f: [b"{" + b" " * (wire.MAX_HEADER_BYTES + 1) + b"}", *f[1:]],
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_messages_raise_wire_error(case):
    frames = BAD_CASES[case](good_frames())
    with pytest.raises(wire.WireError):
        job_from_message(wire.decode(frames))


def test_oversized_message_is_rejected_by_cap():
    frames = good_frames()
    with pytest.raises(wire.WireError, match="size cap"):
        wire.decode(frames, max_bytes=100)


def test_job_with_wrong_meta_types_is_rejected():
    frames = good_frames()
    h = _header(frames)
    h["meta"]["t0_us"] = "soon"
    with pytest.raises(wire.WireError, match="t0_us"):
        job_from_message(wire.decode([json.dumps(h).encode(), *frames[1:]]))
    h["meta"]["t0_us"] = 10**9  # after t1
    with pytest.raises(wire.WireError):
        job_from_message(wire.decode([json.dumps(h).encode(), *frames[1:]]))


def test_result_with_mismatched_timestamps_is_rejected():
    msg = wire.Message(
        "result",
        {"index": 1, "compute_s": 0.1},
        {"frames": np.zeros((2, 4, 4, 3), np.uint8), "timestamps": np.zeros(3, np.int64)},
    )
    with pytest.raises(wire.WireError):
        result_from_message(wire.decode(wire.encode(msg)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_fuzzed_bytes_never_crash_the_decoder(frames):
    try:
        job_from_message(wire.decode(frames))
    except wire.WireError:
        pass


# -- hostile input: the decoder and every parser raise nothing but WireError ----------------
_guard_secret = b"s" * 32


def _parse_everything(frames) -> None:
    """decode and then every parser and the recorder's guard, as receivers use them."""
    from pipeline.messages import interval_meta, keyframe_meta, status_meta
    from pipeline.peers import CAPTURE, WORKERS, RecorderGuard

    msg = wire.decode(frames)
    for parse in (job_from_message, result_from_message, status_meta, interval_meta, keyframe_meta):
        try:
            parse(msg)
        except wire.WireError:
            pass
    for secret in (None, _guard_secret):
        for side in (CAPTURE, WORKERS):
            guard = RecorderGuard(secret)
            guard.admit(
                wire.decode(
                    wire.encode(
                        wire.Message(
                            "keyframe",
                            {"index": 0, "t_us": 0},
                            {"image": np.zeros((24, 32, 3), np.uint8)},
                        )
                    )
                ),
                CAPTURE,
            )
            try:
                guard.admit(msg, side)
            except wire.WireError:
                pass


def _only_wire_errors(frames) -> None:
    try:
        _parse_everything(frames)
    except wire.WireError:
        pass


@pytest.mark.parametrize(
    "frames",
    [
        [b"[" * 50_000],
        [b'{"v":1,"type":"job","meta":{"index":' + b"9" * 4301 + b"}}"],
        [
            json.dumps(
                {
                    "v": 1,
                    "type": "result",
                    "arrays": [{"name": "f", "dtype": "uint8", "shape": [2**30, 2**30, 2**30, 8]}],
                }
            ).encode(),
            b"",
        ],
        [
            json.dumps(
                {"v": 1, "type": "job", "arrays": [{"name": "a", "dtype": ["u1"], "shape": [1]}]}
            ).encode(),
            b"x",
        ],
        [json.dumps({"v": 1, "type": ["ready"]}).encode()],
        [json.dumps({"v": 1, "type": "job", "meta": {"t0_us": 2**70}}).encode()],
        [b'{"v":1,"type":"\xff"}'],
        [b'{"v":1,"type":"status","meta":{"compute_s":NaN}}'],
        [json.dumps({"v": True, "type": "status"}).encode()],
    ],
    ids=[
        "deep",
        "4301 digits",
        "shape overflow",
        "dtype list",
        "type list",
        "2**70",
        "not utf8",
        "nan",
        "v true",
    ],
)
def test_the_messages_that_once_escaped_are_wire_errors(frames):
    with pytest.raises(wire.WireError):
        _parse_everything(frames)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["jobs", "results", "worker"]))
def test_hostile_messages_raise_only_wire_errors(seed, target):
    from pipeline.hostile import hostile_frames

    _only_wire_errors(hostile_frames(np.random.default_rng(seed), target))


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field = st.sampled_from(["v", "type", "meta", "arrays"])
_meta_key = st.sampled_from(
    [
        "index",
        "t0_us",
        "t1_us",
        "t_us",
        "status",
        "worker",
        "compute_s",
        "last_keyframe",
        "ticket",
        "seal",
        "model",
        "reason",
        "keyframe_arrival",
    ]
)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(["job", "result", "status", "keyframe", "interval", "end"]),
    st.lists(st.tuples(st.booleans(), _field, _meta_key, _json), max_size=3),
    st.lists(st.binary(max_size=32), max_size=3),
)
def test_well_formed_headers_with_any_field_values_raise_only_wire_errors(kind, edits, extra):
    """A real message of each kind with header fields and meta values replaced by any
    JSON value, and buffers added or dropped."""
    frames = (
        good_frames()
        if kind == "job"
        else [bytes(memoryview(f)) for f in wire.encode(_sample(kind))]
    )
    header = _header(frames)
    for in_meta, field, key, value in edits:
        if in_meta and isinstance(header.get("meta"), dict):
            header["meta"][key] = value
        else:
            header[field] = value
    _only_wire_errors(
        [json.dumps(header).encode(), *frames[1:], *extra][: 1 + len(frames) - 1 + len(extra)]
    )


def _sample(kind: str) -> wire.Message:
    img = np.zeros((24, 32, 3), np.uint8)
    return {
        "result": wire.Message(
            "result",
            {"index": 0, "compute_s": 0.1, "worker": "w"},
            {
                "frames": np.zeros((3, 24, 32, 3), np.uint8),
                "timestamps": np.array([1, 2, 3], np.int64),
            },
        ),
        "status": wire.Message("status", {"worker": "w", "jobs": 1, "last_error": ""}),
        "keyframe": wire.Message("keyframe", {"index": 1, "t_us": 5}, {"image": img}),
        "interval": wire.Message("interval", {"index": 0, "status": "failed", "worker": "w"}),
        "end": wire.Message("end", {"last_keyframe": 3}),
    }[kind]


def _serve_worker(job_ep: str, res_ep: str) -> None:
    from pipeline.worker import run_worker

    run_worker(job_ep, res_ep, "blend", name="w-test", status_every_s=0.2)


def test_worker_counts_bad_messages_and_keeps_serving():
    ctx = zmq.Context.instance()
    jobs = ctx.socket(zmq.ROUTER)  # stands where the worker pool's dispatcher stands
    jport = jobs.bind_to_random_port("tcp://127.0.0.1")
    results = ctx.socket(zmq.PULL)
    rport = results.bind_to_random_port("tcp://127.0.0.1")
    proc = mp.get_context("spawn").Process(
        target=_serve_worker, args=(f"tcp://127.0.0.1:{jport}", f"tcp://127.0.0.1:{rport}")
    )
    proc.start()
    try:
        assert jobs.poll(60_000), "worker did not start"
        identity, hello = wire.recv_from(jobs)
        assert hello.type == "ready"
        bad = [
            [b"not a header"],
            [json.dumps({"v": 1, "type": "job", "meta": {}, "arrays": []}).encode()],
            good_frames()[:-2],
            [
                json.dumps(
                    {
                        "v": 1,
                        "type": "job",
                        "meta": {},
                        "arrays": [{"name": "a", "dtype": "uint8", "shape": [10**6]}],
                    }
                ).encode(),
                b"short",
            ],
        ]
        for frames in bad:
            jobs.send_multipart([identity, *frames])
        job = make_job(index=7)
        wire.send_to(jobs, identity, job_message(job))
        got_result, bad_count = None, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (got_result is None or bad_count < len(bad)):
            if results.poll(1000):
                msg = wire.recv(results)
                if msg.type == "result":
                    got_result = result_from_message(msg)
                elif msg.type == "status":
                    bad_count = msg.meta["bad_messages"]
        assert bad_count == len(bad)
        assert got_result is not None and got_result.index == 7
        assert got_result.frames.shape == (3, 24, 32, 3)
        assert proc.is_alive()
    finally:
        proc.terminate()
        proc.join(10)
        jobs.close(0)
        results.close(0)
