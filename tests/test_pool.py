"""The worker pool: credit-based load balancing, dead workers, restarts, and CurveZMQ."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import zmq

from contracts.jobs import IntervalJob, inserted_timestamps
from pipeline import wire
from pipeline.cli import main
from pipeline.messages import job_message, result_from_message
from pipeline.pool import WorkerPool
from pipeline.security import (
    SecurityError,
    check_handshake,
    configure_client,
    configure_server,
    generate_keys,
)
from rig.types import EventBatch

pytestmark = pytest.mark.slow


def _job(index: int, h: int = 48, w: int = 64, n_frames: int = 3) -> IntervalJob:
    rng = np.random.default_rng(index)
    f0 = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    f1 = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return IntervalJob(
        index,
        f0,
        f1,
        0,
        100_000,
        EventBatch.empty(np.float32),
        inserted_timestamps(0, 100_000, n_frames + 1),
    )


class _Results:
    def __init__(self, keys=None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.auth = configure_server(self.sock, self.ctx, "127.0.0.1", keys)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"

    def collect(self, pool: WorkerPool, want: int, timeout_s: float = 90) -> dict[int, str]:
        got: dict[int, str] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            pool.poll(live=False)
            if self.sock.poll(100):
                msg = wire.recv(self.sock)
                if msg.type == "result":
                    r = result_from_message(msg)
                    got[r.index] = msg.meta["worker"]
        return got

    def close(self):
        self.sock.close(0)
        if self.auth:
            self.auth.stop()
        self.ctx.term()


def test_jobs_spread_over_workers_and_all_come_back():
    res = _Results()
    with WorkerPool("blend", res.endpoint, local_workers=2) as pool:
        pool.start()
        assert pool.idle_workers == 2
        for i in range(12):
            pool.submit(i, job_message(_job(i)))
        got = res.collect(pool, 12)
    res.close()
    assert sorted(got) == list(range(12))
    assert len(set(got.values())) == 2  # both workers took work


def test_live_submit_never_waits():
    res = _Results()
    with WorkerPool("flow", res.endpoint, local_workers=1) as pool:
        pool.start()
        assert pool.try_submit(0, job_message(_job(0, 240, 320, 30)))
        assert not pool.try_submit(1, job_message(_job(1)))  # the only worker is busy
    res.close()


def test_interval_of_a_killed_worker_is_redispatched_and_worker_restarted():
    res = _Results()
    with WorkerPool("flow", res.endpoint, local_workers=2, heartbeat_timeout_s=1.0) as pool:
        pool.start()
        slow = job_message(_job(0, 240, 320, 40))  # seconds of work
        pool.submit(0, slow)
        victim_identity = next(iter(pool._inflight))
        victim_name = victim_identity.decode().split("/")[0]
        victim = next(p for p in pool.processes if p.name == f"slomo-{victim_name}")
        os.kill(victim.pid, signal.SIGKILL)
        got = res.collect(pool, 1, timeout_s=120)
        assert list(got) == [0] and got[0] != victim_name
        assert pool.stats.redispatched == 1 and pool.stats.workers_lost >= 1
        deadline = time.monotonic() + 30
        while pool.stats.restarts < 1 and time.monotonic() < deadline:
            pool.poll(live=False)
            time.sleep(0.1)
        assert pool.stats.restarts >= 1
        assert all(p.is_alive() for p in pool.processes)
    res.close()


def test_curve_keys_let_the_right_worker_in(tmp_path):
    keys = tmp_path / "keys"
    generate_keys(keys)
    res = _Results(keys)
    with WorkerPool("blend", res.endpoint, local_workers=1, keys=keys) as pool:
        pool.start()
        pool.submit(0, job_message(_job(0)))
        assert list(res.collect(pool, 1)) == [0]
    res.close()


def test_unauthenticated_peer_is_refused(tmp_path):
    keys = tmp_path / "keys"
    generate_keys(keys)
    ctx = zmq.Context()
    server = ctx.socket(zmq.PULL)
    auth = configure_server(server, ctx, "127.0.0.1", keys)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    plain = ctx.socket(zmq.PUSH)  # no keys at all
    plain.connect(f"tcp://127.0.0.1:{port}")
    plain.send(b"let me in", flags=zmq.NOBLOCK) if plain.poll(100, zmq.POLLOUT) else None
    stranger_keys = tmp_path / "other"
    generate_keys(stranger_keys)
    import shutil

    shutil.copyfile(keys / "server.key", stranger_keys / "server.key")  # knows the server
    stranger = ctx.socket(zmq.PUSH)
    configure_client(stranger, stranger_keys)  # but its own key is not authorised
    stranger.connect(f"tcp://127.0.0.1:{port}")
    stranger.send(b"me too", flags=zmq.NOBLOCK) if stranger.poll(100, zmq.POLLOUT) else None
    friend = ctx.socket(zmq.PUSH)
    configure_client(friend, keys)
    friend.connect(f"tcp://127.0.0.1:{port}")
    friend.send(b"hello")
    received = []
    while server.poll(1500):
        received.append(server.recv())
    assert received == [b"hello"]
    for s in (plain, stranger, friend, server):
        s.close(0)
    auth.stop()
    ctx.term()


def test_binding_beyond_loopback_needs_keys(tmp_path, capsys):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    with pytest.raises(SecurityError, match="slomo-rig keys"):
        configure_server(sock, ctx, "0.0.0.0", None)
    with pytest.raises(SecurityError, match="missing"):
        configure_server(sock, ctx, "0.0.0.0", tmp_path / "nokeys")
    sock.close(0)
    ctx.term()
    code = main(
        ["demo", "--out", str(tmp_path / "s"), "--seconds", "1", "--bind", "0.0.0.0", "--quiet"]
    )
    assert code == 2 and "keys" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before anything was created


def test_keys_command(tmp_path, capsys):
    assert main(["keys", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "authorized" / "client.key").exists()
    assert oct((tmp_path / "k" / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    assert main(["keys", str(tmp_path / "k")]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err


def _keyed_server(keys, kind=zmq.ROUTER):
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    auth = configure_server(sock, ctx, "127.0.0.1", keys)
    endpoint = f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"
    return ctx, sock, auth, endpoint


def test_each_worker_has_its_own_key_and_removing_it_revokes_it(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", str(keys), "--worker", "gpu-box-1"]) == 0  # makes the rig keys too
    assert main(["keys", str(keys), "--worker", "gpu-box-2"]) == 0
    printed = capsys.readouterr().out
    mine = keys / "workers" / "gpu-box-1"
    assert f"--keys {mine}" in printed and "revoke" in printed
    assert oct((mine / "client.key_secret").stat().st_mode & 0o777) == "0o600"
    assert not (mine / "server.key_secret").exists()  # a worker never holds the server's secret
    ctx, server, auth, endpoint = _keyed_server(keys)
    try:
        assert check_handshake(ctx, endpoint, zmq.DEALER, mine)
        assert check_handshake(ctx, endpoint, zmq.DEALER, keys / "workers" / "gpu-box-2")
        (keys / "authorized" / "gpu-box-1.key").unlink()  # revoked: no restart needed
        with pytest.raises(SecurityError, match="refused this worker's key"):
            check_handshake(ctx, endpoint, zmq.DEALER, mine)
        assert check_handshake(ctx, endpoint, zmq.DEALER, keys / "workers" / "gpu-box-2")
    finally:
        server.close(0)
        auth.stop()
        ctx.term()


def test_keys_for_a_worker_refuse_bad_names_and_overwrites(tmp_path, capsys):
    keys = str(tmp_path / "keys")
    assert main(["keys", keys, "--worker", "../evil"]) == 2
    assert "worker name" in capsys.readouterr().err
    assert main(["keys", keys, "--worker", "w"]) == 0
    assert main(["keys", keys, "--worker", "w"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["keys", keys, "--worker", "w", "--force"]) == 0


def test_a_worker_with_wrong_keys_says_so_and_exits_2(tmp_path, capsys):
    keys, other = tmp_path / "keys", tmp_path / "other"
    generate_keys(keys)
    generate_keys(other)  # another rig's keys: wrong server key, unknown client key
    ctx, server, auth, endpoint = _keyed_server(keys)
    res_ctx, results, res_auth, res_endpoint = _keyed_server(keys, zmq.PULL)
    try:
        args = ["worker", "--jobs", endpoint, "--results", res_endpoint, "--model", "blend"]
        assert main([*args, "--keys", str(other)]) == 2
        assert "the capture side's server key" in capsys.readouterr().err
        import shutil

        shutil.copyfile(keys / "server.key", other / "server.key")  # right server, own key
        assert main([*args, "--keys", str(other)]) == 2
        assert "refused this worker's key" in capsys.readouterr().err
        assert main(args) == 2  # no keys at all against a keyed pool
        assert "another security mechanism" in capsys.readouterr().err
    finally:
        for s in (server, results):
            s.close(0)
        auth.stop()
        res_auth.stop()
        ctx.term()
        res_ctx.term()
