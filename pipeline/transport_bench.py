"""Capture-to-worker transport, measured across two processes on loopback ZeroMQ with
the wire format the pipeline uses. Lossless by construction (PUSH blocks when the
receiver falls behind), and checked: every message carries a sequence number and its
event count, and the receiver validates every one."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np
import zmq

from pipeline import wire
from pipeline.messages import decode_events, encode_events
from rig.types import EventBatch


def _receiver(endpoint_conn, result_conn, max_bytes: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    endpoint_conn.send(f"tcp://127.0.0.1:{port}")
    events = frames = bad = 0
    expected_seq = 0
    gaps = 0
    t_first = t_last = None
    while True:
        msg = wire.recv(sock)
        now = time.perf_counter()
        t_first = t_first or now
        if msg.type == "end":
            break
        seq = msg.meta.get("seq")
        if seq != expected_seq:
            gaps += 1
        expected_seq = (seq or 0) + 1
        if msg.type == "events":
            batch = decode_events(msg, int(msg.meta["t_base"]))
            if len(batch) != msg.meta["n"] or (len(batch) and batch.t[-1] != msg.meta["t_last"]):
                bad += 1
            events += len(batch)
        elif msg.type == "frame":
            img = msg.arrays["image"]
            if img.shape != tuple(msg.meta["shape"]):
                bad += 1
            frames += 1
        t_last = now
    result_conn.send(
        {
            "events": events,
            "frames": frames,
            "bad": bad,
            "sequence_gaps": gaps,
            "seconds": (t_last or 0) - (t_first or 0),
            "sent": msg.meta,
        }
    )
    sock.close(0)
    ctx.term()


def bench_transport(
    seconds: float = 5.0,
    batch_events: int = 1 << 20,
    frame_every: int = 4,
    frame_size: tuple[int, int] = (640, 480),
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ep_parent, ep_child = ctx.Pipe(duplex=False)
    res_parent, res_child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_receiver, args=(ep_child, res_child, wire.DEFAULT_MAX_MESSAGE_BYTES))
    proc.start()
    endpoint = ep_parent.recv()
    rng = np.random.default_rng(0)
    w, h = frame_size
    # Raw events as a camera driver delivers them: int16 pixels, sorted µs times.
    dt = rng.integers(0, 2, batch_events).cumsum().astype(np.int64)
    raw = EventBatch(
        dt,
        rng.integers(0, w, batch_events).astype(np.int16),
        rng.integers(0, h, batch_events).astype(np.int16),
        rng.integers(0, 2, batch_events).astype(np.int8),
    )
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    zctx = zmq.Context()
    sock = zctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 8)
    sock.connect(endpoint)
    seq = sent_events = sent_frames = 0
    payload_bytes = 0
    t0 = time.perf_counter()
    t_base = 0
    while time.perf_counter() - t0 < seconds:
        batch = EventBatch(raw.t + t_base, raw.x, raw.y, raw.p)
        arrays = encode_events(batch, t_base)
        payload_bytes += sum(a.nbytes for a in arrays.values())
        meta = {"seq": seq, "t_base": t_base, "n": len(batch), "t_last": int(batch.t[-1])}
        wire.send(sock, wire.Message("events", meta, arrays))
        seq += 1
        sent_events += len(batch)
        t_base = int(batch.t[-1]) + 1
        if seq % frame_every == 0:
            wire.send(
                sock, wire.Message("frame", {"seq": seq, "shape": [h, w, 3]}, {"image": image})
            )
            seq += 1
            sent_frames += 1
    wire.send(sock, wire.Message("end", {"events": sent_events, "frames": sent_frames, "seq": seq}))
    got = res_parent.recv()
    elapsed = time.perf_counter() - t0
    proc.join(10)
    sock.close(0)
    zctx.term()
    return {
        "events_per_s": round(got["events"] / elapsed),
        "frames_per_s": round(got["frames"] / elapsed, 1),
        "events_sent": sent_events,
        "events_received": got["events"],
        "lost_events": sent_events - got["events"],
        "lost_frames": sent_frames - got["frames"],
        "bad_messages": got["bad"],
        "sequence_gaps": got["sequence_gaps"],
        "bytes_per_event": round(payload_bytes / max(sent_events, 1), 2),
        "batch_events": batch_events,
        "seconds": round(elapsed, 2),
        "wire": "int32 time offsets, int16 x/y in 1/8 px, int8 polarity; JSON header",
    }
