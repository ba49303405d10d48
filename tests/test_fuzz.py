"""Peers are untrusted: what the recorder, the pool and a worker do with hostile
messages (pipeline/peers.py, pipeline/hostile.py), sizes that stay bounded, and a live
recording that stays intact while its sockets are flooded."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import tracemalloc
from pathlib import Path

import dv_processing as dv
import numpy as np
import pytest
import zmq

from calibration.mapping import EventToFrameMap
from contracts.jobs import IntervalJob, IntervalResult, inserted_timestamps
from pipeline import wire
from pipeline.hostile import HostilePeers, hostile_frames
from pipeline.live import LiveOptions, run_live
from pipeline.messages import (
    MAX_FRAMES_PER_JOB,
    job_from_message,
    job_message,
    result_from_message,
    result_message,
)
from pipeline.outputs import TimestampsOutput, read_timestamps
from pipeline.peers import CAPTURE, WORKERS, RecorderGuard, stamp_job
from pipeline.recorder import Recorder
from pipeline.session import Session
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig
from rig.types import EventBatch

SECRET = b"k" * 32
H, W = 24, 32


def _keyframe(i: int, h: int = H, w: int = W, t_us: int | None = None) -> wire.Message:
    image = np.full((h, w, 3), i % 250, np.uint8)
    t = 10_000 * i if t_us is None else t_us
    return wire.Message("keyframe", {"index": i, "t_us": t}, {"image": image})


def _job(i: int, factor: int = 4) -> wire.Message:
    t0, t1 = 10_000 * i, 10_000 * (i + 1)
    frame = np.zeros((H, W, 3), np.uint8)
    job = IntervalJob(
        i, frame, frame, t0, t1, EventBatch.empty(np.float32), inserted_timestamps(t0, t1, factor)
    )
    return job_message(job)


def _answer(job: wire.Message, worker: str, frames: np.ndarray | None = None) -> wire.Message:
    """What an honest worker sends back for a (stamped) job."""
    ts = job.arrays["timestamps"]
    if frames is None:
        frames = np.full((len(ts), H, W, 3), 7, np.uint8)
    result = IntervalResult(int(job.meta["index"]), ts, frames, "blend", 0.01)
    tokens = {k: job.meta[k] for k in ("ticket", "seal") if k in job.meta}
    return result_message(result, worker, 0.1, tokens)


def _guard_with_keyframes(n: int = 4) -> RecorderGuard:
    g = RecorderGuard(SECRET)
    for i in range(n):
        g.admit(wire.decode(wire.encode(_keyframe(i))), CAPTURE)
    return g


def _roundtrip(msg: wire.Message) -> wire.Message:
    return wire.decode(wire.encode(msg))


# -- the recorder's guard ----------------------------------------------------------------
def test_a_result_is_taken_only_from_the_worker_it_was_dispatched_to():
    g = _guard_with_keyframes()
    job = stamp_job(SECRET, _job(1), "w1")
    ok = g.admit(_roundtrip(_answer(job, "w1")), WORKERS)
    assert ok.meta["worker"] == "w1" and len(ok.arrays["frames"]) == 3
    with pytest.raises(wire.WireError, match="not dispatched to worker 'w2'"):
        g.admit(_roundtrip(_answer(job, "w2")), WORKERS)  # another worker's ticket
    unstamped = _job(2)  # never dispatched: no ticket
    with pytest.raises(wire.WireError, match="not dispatched"):
        g.admit(_roundtrip(_answer(unstamped, "w1")), WORKERS)


def test_results_with_other_frames_or_times_than_dispatched_are_refused():
    g = _guard_with_keyframes()
    job = stamp_job(SECRET, _job(1), "w1")
    bigger = np.zeros((3, H + 8, W, 3), np.uint8)  # once crashed the recorder (np.pad)
    with pytest.raises(wire.WireError, match="frames are"):
        g.admit(_roundtrip(_answer(job, "w1", frames=bigger)), WORKERS)
    forged = _answer(job, "w1")
    forged.arrays["timestamps"] = np.array([1, 2, 3], np.int64)  # the 1, 2, 3 us white frames
    with pytest.raises(wire.WireError, match="not as dispatched"):
        g.admit(_roundtrip(forged), WORKERS)
    fewer = _answer(job, "w1")
    fewer.arrays["frames"], fewer.arrays["timestamps"] = (
        fewer.arrays["frames"][:1],
        fewer.arrays["timestamps"][:1],
    )
    with pytest.raises(wire.WireError, match="not as dispatched"):
        g.admit(_roundtrip(fewer), WORKERS)


def test_only_capture_may_end_insert_keyframes_or_announce_intervals():
    g = _guard_with_keyframes(6)
    for msg in (
        wire.Message("end", {"last_keyframe": 5}),
        _keyframe(6),
        wire.Message("interval", {"index": 1, "status": "dispatched"}),
        wire.Message("interval", {"index": 1, "status": "skipped"}),
    ):
        with pytest.raises(wire.WireError):
            g.admit(_roundtrip(msg), WORKERS)
    with pytest.raises(wire.WireError, match="last keyframe is 2"):
        g.admit(_roundtrip(wire.Message("end", {"last_keyframe": 2})), CAPTURE)  # cuts the video
    assert g.admit(_roundtrip(wire.Message("end", {"last_keyframe": 5})), CAPTURE).type == "end"
    with pytest.raises(wire.WireError, match="second end"):
        g.admit(_roundtrip(wire.Message("end", {"last_keyframe": 9})), CAPTURE)


def test_a_worker_reports_only_its_own_interval_as_failed():
    g = _guard_with_keyframes()
    job = stamp_job(SECRET, _job(1), "w1")
    failed = {"index": 1, "status": "failed", "reason": "boom", "worker": "w1"}
    ok = g.admit(
        _roundtrip(wire.Message("interval", failed | {"ticket": job.meta["ticket"]})), WORKERS
    )
    assert ok.meta == {"index": 1, "status": "failed", "reason": "boom"}
    with pytest.raises(wire.WireError, match="not dispatched"):
        g.admit(_roundtrip(wire.Message("interval", failed | {"index": 2})), WORKERS)


def test_without_a_secret_results_need_an_announced_interval(tmp_path):
    g = RecorderGuard(None)
    for i in range(3):
        g.admit(_roundtrip(_keyframe(i)), CAPTURE)
    with pytest.raises(wire.WireError, match="not dispatched"):
        g.admit(_roundtrip(_answer(_job(0), "w")), WORKERS)
    g.admit(_roundtrip(wire.Message("interval", {"index": 0, "status": "dispatched"})), CAPTURE)
    assert g.admit(_roundtrip(_answer(_job(0), "w")), WORKERS).type == "result"
    with pytest.raises(wire.WireError, match="not dispatched"):  # one answer per interval
        g.admit(_roundtrip(_answer(_job(0), "w")), WORKERS)


# -- bounded sizes -------------------------------------------------------------------------
def test_a_20000_frame_job_is_refused_without_allocating():
    job = _job(1)
    job.arrays["timestamps"] = 10_000 + np.arange(1, 20_001, dtype=np.int64)
    frames = [bytes(memoryview(f)) for f in wire.encode(job)]
    assert sum(map(len, frames)) < 200_000  # a small message...
    tracemalloc.start()
    try:
        with pytest.raises(
            wire.WireError, match=f"20000 frames, over the limit of {MAX_FRAMES_PER_JOB}"
        ):
            job_from_message(wire.decode(frames))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # ...that once asked a worker for 2.9 GB


def test_keyframes_at_unreachable_indices_do_not_grow_the_recorder(tmp_path):
    session = Session.create(tmp_path, {})
    rec = Recorder(session, TimestampsOutput(tmp_path / "ts.csv"))
    guard = RecorderGuard(SECRET)
    rec.handle(guard.admit(_roundtrip(_keyframe(0, 480, 640)), CAPTURE))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for k in range(150):
            frames = wire.encode(_keyframe(10_000 + 37 * k, 480, 640))
            for side in (WORKERS, CAPTURE):  # a worker's spoof, and a gap on capture's side
                with pytest.raises(wire.WireError):
                    rec.handle(guard.admit(wire.decode(frames), side))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 2_000_000  # 150 held keyframes would be 138 MB
    assert rec.writer.held() <= 1


def test_50kb_worker_names_do_not_bloat_session_json(tmp_path):
    session = Session.create(tmp_path, {})
    rec = Recorder(session, TimestampsOutput(tmp_path / "ts.csv"))
    guard = RecorderGuard(SECRET)
    refused = 0
    for i in range(400):
        name = ("w" * 50_000) if i % 2 else f"worker-{i}"
        meta = {"worker": name, "model": "m" * 5000, "jobs": i, "last_error": "e" * 10_000}
        try:
            rec.handle(guard.admit(_roundtrip(wire.Message("status", meta)), WORKERS))
        except wire.WireError:
            refused += 1
    rec.save("recording")
    assert refused > 300
    assert session.manifest_path.stat().st_size < 50_000  # was 40 MB, rewritten each second
    workers = json.loads(session.manifest_path.read_text())["workers"]
    assert all(len(name) <= 64 and len(w["last_error"]) <= 300 for name, w in workers.items())


def test_recorder_survives_thousands_of_hostile_messages(tmp_path):
    """Every hostile kind, through guard and recorder as run_recorder does it: only
    WireError, and the honest recording around it is written whole and in order."""
    session = Session.create(tmp_path, {})
    out = TimestampsOutput(tmp_path / "ts.csv")
    rec = Recorder(session, out)
    guard = RecorderGuard(SECRET)
    rng = np.random.default_rng(15)

    def feed(frames, side):
        try:
            rec.handle(guard.admit(wire.decode(frames), side))
        except wire.WireError:
            return False
        return True

    honest = []
    for i in range(6):
        honest.append((wire.encode(_keyframe(i)), CAPTURE))
        if i:
            job = stamp_job(SECRET, _job(i - 1), "w1")
            honest.append(
                (
                    wire.encode(wire.Message("interval", {"index": i - 1, "status": "dispatched"})),
                    CAPTURE,
                )
            )
            honest.append((wire.encode(_answer(job, "w1")), WORKERS))
    honest.append((wire.encode(wire.Message("end", {"last_keyframe": 5})), CAPTURE))
    for frames, side in honest:
        for _ in range(500):
            feed(hostile_frames(rng, "results"), WORKERS)
        assert feed(frames, side)
        rec.write_ready()
    assert rec.finished
    out.close()
    rows = read_timestamps(tmp_path / "ts.csv")
    assert [r[2] for r in rows].count("original") == 6
    assert [r[2] for r in rows].count("interpolated") == 5 * 3
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


# -- a worker under fire -------------------------------------------------------------------
def _serve_worker(job_ep: str, res_ep: str) -> None:
    from pipeline.worker import run_worker

    run_worker(job_ep, res_ep, "blend", name="w-fuzz", status_every_s=0.2)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_worker_survives_2000_hostile_jobs_and_still_answers():
    ctx = zmq.Context.instance()
    jobs = ctx.socket(zmq.ROUTER)  # where the pool's dispatcher stands
    jport = jobs.bind_to_random_port("tcp://127.0.0.1")
    results = ctx.socket(zmq.PULL)
    rport = results.bind_to_random_port("tcp://127.0.0.1")
    proc = mp.get_context("spawn").Process(
        target=_serve_worker, args=(f"tcp://127.0.0.1:{jport}", f"tcp://127.0.0.1:{rport}")
    )
    proc.start()
    try:
        assert jobs.poll(120_000), "worker did not start"
        identity, hello = wire.recv_from(jobs)
        assert hello.type == "ready"
        rng = np.random.default_rng(61)
        peak, expected_bad = 0.0, 0
        for i in range(2000):
            frames = hostile_frames(rng, "worker")
            try:
                job_from_message(wire.decode(frames))
            except wire.WireError:
                expected_bad += 1
            jobs.send_multipart([identity, *frames])
            if i % 100 == 0:
                peak = max(peak, _rss_mb(proc.pid))
            while results.poll(0):
                results.recv_multipart()
        assert expected_bad == 2000
        wire.send_to(jobs, identity, _job(7))
        got, bad = None, 0
        deadline = time.monotonic() + 120
        while (got is None or bad < expected_bad) and time.monotonic() < deadline:
            if results.poll(1000):
                msg = wire.recv(results)
                if msg.type == "result":
                    got = result_from_message(msg)
                elif msg.type == "status":
                    bad = msg.meta["bad_messages"]
        assert got is not None and got.index == 7 and got.frames.shape == (3, H, W, 3)
        assert bad == expected_bad  # every one counted, none fatal
        assert proc.is_alive()
        assert peak < 1500  # the 20,000-frame job once pushed a worker to 2.9 GB
    finally:
        proc.terminate()
        proc.join(10)
        jobs.close(0)
        results.close(0)


# -- a live recording under fire -------------------------------------------------------------
def _raw_counts(path: Path) -> tuple[int, int]:
    rec = dv.io.MonoCameraRecording(str(path))
    n_ev = n_fr = 0
    while (b := rec.getNextEventBatch()) is not None:
        n_ev += b.size()
    while rec.getNextFrame() is not None:
        n_fr += 1
    return n_ev, n_fr


@pytest.mark.slow
def test_live_recording_survives_hostile_peers_on_every_socket(tmp_path):
    cfg = SimConfig(realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources(duration_s=3.0)
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)
    attacker = HostilePeers(tmp_path, per_socket=1500)
    opts = LiveOptions(
        out=tmp_path, model="blend", progress=False, job_timeout_s=10.0, drain_timeout_s=30.0
    )
    result = run_live(events, frames, mapper, {"backend": "sim"}, opts, on_started=attacker.start)
    attacker.join()
    m = result.manifest
    assert m["status"] == "complete"
    assert attacker.sent == {"jobs": 1500, "results": 1500}
    # What a clean run of the same seed records: every simulated event and frame.
    n_ev, n_fr = _raw_counts(result.session.raw_path)
    assert n_ev == rig.events_emitted == m["capture"]["events"]
    assert n_fr == rig.frames_emitted == m["capture"]["keyframes"]
    out = m["output"]
    assert out["original_frames"] == m["capture"]["keyframes"]
    assert out["intervals_interpolated"] >= 1 and "evil" not in out["models"]
    assert out["bad_messages"] > 0 and m["pool"]["bad_messages"] > 0
    rows = read_timestamps(result.session.timestamps_path)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert len(json.dumps(m)) < 100_000
    assert attacker.rss_mb["recorder"] < 1000 and attacker.rss_mb["worker"] < 1500


@pytest.mark.slow
def test_soak_fuzz_passes_and_reports_the_flood(tmp_path):
    from pipeline.soak import run_soak

    report = run_soak(
        tmp_path,
        minutes=0.05,
        kill_every_s=1e6,
        workers=1,
        replay=False,
        log=print,
        fuzz=True,
        fuzz_per_socket=500,
    )
    assert report["passed"], report["checks"]
    fuzz = report["fuzz"]
    assert fuzz["sent"] == {"jobs": 500, "results": 500}
    assert fuzz["recorder_bad_messages"] > 0 and fuzz["pool_bad_messages"] > 0
    assert set(fuzz["peak_rss_mb"]) == {"recorder", "worker"}
