"""A hostile peer: malformed and adversarial messages for the pipeline's receiving
sockets, used by the fuzz tests and `slomo-rig soak --fuzz`.

Each kind is one way a message has broken or bloated a receiver (issue 15): nesting
that exhausts recursion, integers too long to parse or too large for 64 bits, shapes
whose byte count overflows, wrong types in header fields, non-UTF-8, and messages that
are well formed but lie (results nobody asked for, a spoofed end, keyframes at
unreachable indices, 50 kB worker names, 20,000-frame jobs). Deterministic for a seed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from pipeline import wire

Frames = list[bytes]


def _pick(rng: np.random.Generator, options: list) -> object:
    return options[int(rng.integers(len(options)))]


def _header(mtype: object, meta: object = None, arrays: object = None, v: object = 1) -> bytes:
    body = {"v": v, "type": mtype, "meta": {} if meta is None else meta}
    body["arrays"] = [] if arrays is None else arrays
    return json.dumps(body, separators=(",", ":")).encode()


def _msg(msg: wire.Message) -> Frames:
    return [bytes(memoryview(f)) for f in wire.encode(msg)]


def _random_bytes(rng: np.random.Generator) -> Frames:
    n = int(rng.integers(1, 4))
    return [rng.bytes(int(rng.integers(0, 200))) for _ in range(n)]


def _deep(rng: np.random.Generator) -> Frames:
    depth = int(_pick(rng, [100, 5000, 50_000]))
    return [b"[" * depth]


def _deep_meta(rng: np.random.Generator) -> Frames:
    return [b'{"v":1,"type":"status","meta":{"a":' + b"[" * 400 + b"]" * 400 + b"}}"]


def _long_int(rng: np.random.Generator) -> Frames:
    digits = int(_pick(rng, [20, 4301, 20_000]))
    return [b'{"v":1,"type":"result","meta":{"index":' + b"7" * digits + b'},"arrays":[]}']


def _absurd_shape(rng: np.random.Generator) -> Frames:
    shape = _pick(rng, [[2**30, 2**30, 2**30, 8], [2**31 - 1, 2**31 - 1], [0, 2**30], [-1]])
    spec = {"name": "frames", "dtype": "uint8", "shape": list(map(int, shape))}
    return [_header("result", {"index": 1}, [spec]), b""]


def _wrong_types(rng: np.random.Generator) -> Frames:
    choices = [
        _header(["ready"]),
        _header("job", arrays=[{"name": "a", "dtype": ["uint8"], "shape": [1]}]),
        _header("job", arrays=[{"name": ["a"], "dtype": "uint8", "shape": [1]}]),
        _header("job", arrays=[{"name": "a", "dtype": "uint8", "shape": "1"}]),
        _header("job", arrays=[{"name": "a", "dtype": "uint8", "shape": [True]}]),
        _header("status", v=True),
        _header("status", v=[1]),
        _header("status", meta=[1, 2]),
        _header("status", arrays={"a": 1}),
        _header("ready", {"worker": ["x"]}),
        _header("ready", {"worker": "w", "done": "all"}),
        _header("heartbeat", {"worker": "w", "busy": "very"}),
        _header("status", {"worker": {"a": 1}, "jobs": "many"}),
        _header("result", {"index": "1", "compute_s": "fast"}),
        _header("interval", {"index": 0.5, "status": "dispatched"}),
        _header("end", {"last_keyframe": "5"}),
        b'{"v":1,"type":"status","meta":{"compute_s":NaN}}',
        b'{"v":1,"type":"status","meta":{"compute_s":1e999}}',
        b"[1,2,3]",
        b'"just a string"',
    ]
    return [choices[int(rng.integers(len(choices)))]]


def _out_of_range(rng: np.random.Generator) -> Frames:
    big = int(_pick(rng, [2**63, 2**70, -(2**64)]))
    meta = {"index": 3, "t0_us": big, "t1_us": big + 1, "last_keyframe": big}
    return [_header(str(_pick(rng, ["job", "end", "keyframe", "result"])), meta)]


def _not_utf8(rng: np.random.Generator) -> Frames:
    return [b'{"v":1,"type":"\xff\xfe' + rng.bytes(8) + b'"}']


def _array_count(rng: np.random.Generator) -> Frames:
    specs = [{"name": f"a{i}", "dtype": "uint8", "shape": [1]} for i in range(20)]
    return [_header("result", {}, specs), *[b"x"] * 20]


def _lying_result(rng: np.random.Generator) -> Frames:
    """Well-formed results for intervals nobody asked for, white frames, odd sizes."""
    n, h, w = (int(x) for x in _pick(rng, [[100, 8, 8], [7, 120, 160], [1, 300, 400]]))
    ts = np.arange(1, n + 1, dtype=np.int64) * int(_pick(rng, [1, 1000]))
    meta = {"index": int(rng.integers(0, 400)), "compute_s": 0.01, "model": "evil"}
    meta |= {"worker": "intruder", "ticket": rng.bytes(16).hex(), "seal": rng.bytes(16).hex()}
    frames = np.full((n, h, w, 3), 255, np.uint8)
    return _msg(wire.Message("result", meta, {"frames": frames, "timestamps": ts}))


def _spoofed_capture(rng: np.random.Generator) -> Frames:
    """What only capture may say: an early end, keyframes far ahead, intervals."""
    kind = int(rng.integers(4))
    if kind == 0:
        return _msg(wire.Message("end", {"last_keyframe": int(rng.integers(0, 6))}))
    if kind == 1:
        index = int(rng.integers(10_000, 10**9))
        image = np.zeros((240, 320, 3), np.uint8)
        return _msg(wire.Message("keyframe", {"index": index, "t_us": 1}, {"image": image}))
    status = str(_pick(rng, ["dispatched", "skipped", "failed"]))
    meta = {"index": int(rng.integers(0, 300)), "status": status, "reason": "x" * 100}
    return _msg(wire.Message("interval", meta | {"worker": "intruder"}))


def _bloated_status(rng: np.random.Generator) -> Frames:
    name = "w" * int(_pick(rng, [65, 50_000]))
    if rng.random() < 0.5:
        name = f"worker-{int(rng.integers(10**9))}"  # many distinct names
    meta = {"worker": name, "model": "m" * 1000, "jobs": 1, "last_error": "e" * 10_000}
    return _msg(wire.Message("status", meta))


def _bad_control(rng: np.random.Generator) -> Frames:
    meta = {"worker": "n" * int(_pick(rng, [65, 50_000]))}
    return _msg(wire.Message(str(_pick(rng, ["ready", "heartbeat"])), meta))


def _huge_job(rng: np.random.Generator) -> Frames:
    """A 20,000-frame job (186 kB that once cost a worker 2.9 GB), and other lies."""
    n = int(_pick(rng, [20_000, 128, 3]))
    frame = np.zeros((int(_pick(rng, [8, 5000])), 8, 3), np.uint8)
    t0 = int(_pick(rng, [0, 2**62, -(2**62)]))
    arrays = {
        "frame0": frame,
        "frame1": frame,
        "t_rel": np.array([0, -5, 2**31 - 1], np.int32),
        "x_q": np.zeros(3, np.int16),
        "y_q": np.zeros(3, np.int16),
        "p": np.zeros(3, np.int8),
        "timestamps": t0 + np.arange(1, n + 1, dtype=np.int64),
    }
    meta = {"index": 1, "t0_us": t0, "t1_us": t0 + 10, "keyframe_arrival": "x"}
    return _msg(wire.Message("job", meta, arrays))


GENERIC: list[Callable[[np.random.Generator], Frames]] = [
    _random_bytes,
    _deep,
    _deep_meta,
    _long_int,
    _absurd_shape,
    _wrong_types,
    _out_of_range,
    _not_utf8,
    _array_count,
]
# Per receiving socket: the generic kinds plus the lies aimed at it.
TARGETED: dict[str, list[Callable[[np.random.Generator], Frames]]] = {
    "jobs": [*GENERIC, _bad_control, _huge_job, _lying_result],
    "results": [*GENERIC, _lying_result, _spoofed_capture, _bloated_status],
    "worker": [*GENERIC, _huge_job, _bad_control],
}


def hostile_frames(rng: np.random.Generator, target: str) -> Frames:
    """One hostile multipart message for a receiving socket ("jobs": the pool's job
    socket; "results": the recorder's; "worker": what a worker receives)."""
    kinds = TARGETED[target]
    return kinds[int(rng.integers(len(kinds)))](rng)


def _rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _flood(
    endpoints: dict[str, str],
    seed: int,
    per_socket: int | None,
    stop: Any,
    sent: Any,
    ready: Any,
) -> None:
    """The hostile process: its own interpreter, so that making messages never takes
    time from the capture process it attacks."""
    rng = np.random.default_rng(seed)
    targets = ("jobs", "results")
    batches = (
        {t: [hostile_frames(rng, t) for _ in range(per_socket)] for t in targets}
        if per_socket is not None
        else None
    )
    ready.set()
    ctx = zmq.Context()
    socks = {"jobs": ctx.socket(zmq.DEALER), "results": ctx.socket(zmq.PUSH)}
    for target, sock in socks.items():
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.SNDTIMEO, 2000)  # never stuck on a receiver that went away
        sock.connect(endpoints[target])
    try:
        i = 0
        while not stop.is_set() and (batches is None or i < per_socket):
            for k, target in enumerate(targets):
                frames = batches[target][i] if batches is not None else hostile_frames(rng, target)
                try:
                    socks[target].send_multipart(frames)
                    sent[k] += 1
                except zmq.Again:
                    pass  # the receiver is behind or gone: that is its right
            while socks["jobs"].poll(0):  # a hostile "ready" may be answered with a job
                socks["jobs"].recv_multipart()
            i += 1
    finally:
        for sock in socks.values():
            sock.close(0)
        ctx.term()


class HostilePeers:
    """Floods a live recording's job socket (the pool's) and results socket (the
    recorder's: results and worker status) from a process of its own, as fast as it
    can, while a thread here keeps the peak memory of the recorder and the workers.
    Start it from run_live's on_started; the endpoints are read from the newest
    session.json under out.

    per_socket: that many messages each, made before the flood starts (so that they all
    go out while the recording runs); None: made on the fly until stop()."""

    def __init__(self, out: Path, per_socket: int | None = None, seed: int = 15) -> None:
        self.out = Path(out)
        self.per_socket, self.seed = per_socket, seed
        self._mp = mp.get_context("spawn")
        self._stop = self._mp.Event()
        self._sent = self._mp.Array("q", 2)
        self._ready = self._mp.Event()
        self.rss_mb: dict[str, float] = {}
        self.process: Any = None
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()

    @property
    def sent(self) -> dict[str, int]:
        return {"jobs": int(self._sent[0]), "results": int(self._sent[1])}

    def start(self, processes: dict) -> None:
        self.process = self._mp.Process(
            target=_flood,
            args=(
                self._endpoints(),
                self.seed,
                self.per_socket,
                self._stop,
                self._sent,
                self._ready,
            ),
            name="slomo-hostile",
            daemon=True,
        )
        self.process.start()
        # Capture starts when on_started returns: made messages all go out while it runs.
        while not self._ready.wait(0.5):
            if not self.process.is_alive():
                raise RuntimeError(f"the hostile peer exited with code {self.process.exitcode}")
        self._sampler = threading.Thread(target=self._sample, args=(processes,), daemon=True)
        self._sampler.start()

    def join(self, timeout_s: float = 120.0) -> None:
        """Wait until a fixed number of messages are all sent."""
        if self.process is not None:
            self.process.join(timeout_s)
        self._sampling.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self.join(timeout_s)
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def _endpoints(self) -> dict[str, str]:
        manifests = sorted(self.out.glob("*/session.json"), key=lambda p: p.stat().st_mtime)
        for manifest in reversed(manifests):
            endpoints = json.loads(manifest.read_text()).get("endpoints")
            if endpoints:
                return endpoints
        raise RuntimeError(f"no session with endpoints under {self.out}")

    def _sample(self, processes: dict) -> None:
        while not self._sampling.wait(0.2):
            for role, key in (("recorder", "recorder"), ("workers", "worker")):
                for p in list(processes.get(role, [])):
                    if p.is_alive():
                        self.rss_mb[key] = max(self.rss_mb.get(key, 0.0), _rss_mb(p.pid))
