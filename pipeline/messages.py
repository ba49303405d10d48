"""Jobs and results to and from wire messages, with their fields checked."""

from __future__ import annotations

import numpy as np

from contracts.jobs import IntervalJob, IntervalResult
from pipeline.wire import Message, WireError, require
from rig.types import EventBatch

# Events travel in a compact form, 9 bytes instead of 17: times as int32 offsets from
# the interval start (an interval is far shorter than the 35 minutes int32 µs holds),
# positions as int16 fixed point in 1/8 pixel (error <= 1/16 px, far below what the
# voxel grid resolves), for frame widths and heights up to 4095 px.
XY_SCALE = 8
MAX_XY = 32767 / XY_SCALE


def encode_events(events: EventBatch, t_base: int) -> dict[str, np.ndarray]:
    t_rel = events.t - t_base
    if len(t_rel) and (t_rel.min() < -(2**31) or t_rel.max() >= 2**31):
        raise ValueError("events span more than 35 minutes around the interval start")
    x = np.asarray(events.x, np.float32)
    y = np.asarray(events.y, np.float32)
    if len(x) and (x.min() < -MAX_XY or x.max() > MAX_XY or y.min() < -MAX_XY or y.max() > MAX_XY):
        raise ValueError(f"event positions beyond +-{MAX_XY:g} px cannot be sent")
    return {
        "t_rel": t_rel.astype(np.int32),
        "x_q": np.rint(x * XY_SCALE).astype(np.int16),
        "y_q": np.rint(y * XY_SCALE).astype(np.int16),
        "p": np.asarray(events.p, np.int8),
    }


def decode_events(msg: Message, t_base: int) -> EventBatch:
    t_rel = _array(msg, "t_rel", "int32", 1)
    columns = {
        k: _array(msg, k, dt, 1) for k, dt in (("x_q", "int16"), ("y_q", "int16"), ("p", "int8"))
    }
    if any(len(c) != len(t_rel) for c in columns.values()):
        raise WireError(f"{msg.type}: event columns differ in length")
    return EventBatch(
        t_rel.astype(np.int64) + t_base,
        columns["x_q"].astype(np.float32) / XY_SCALE,
        columns["y_q"].astype(np.float32) / XY_SCALE,
        columns["p"],
    )


def job_message(job: IntervalJob, **meta: object) -> Message:
    """meta: extra fields that travel with the job (e.g. when its keyframe arrived)."""
    return Message(
        "job",
        {"index": job.index, "t0_us": job.t0_us, "t1_us": job.t1_us, **meta},
        {
            "frame0": job.frame0,
            "frame1": job.frame1,
            **encode_events(job.events, job.t0_us),
            "timestamps": job.timestamps_us,
        },
    )


def _array(
    msg: Message, name: str, dtype: str | None = None, ndim: int | None = None
) -> np.ndarray:
    arr = msg.arrays.get(name)
    if arr is None:
        raise WireError(f"{msg.type} message without array {name!r}")
    if dtype is not None and arr.dtype.name != dtype:
        raise WireError(f"{msg.type}: array {name!r} is {arr.dtype}, expected {dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise WireError(f"{msg.type}: array {name!r} has {arr.ndim} dims, expected {ndim}")
    return arr


def job_from_message(msg: Message) -> IntervalJob:
    if msg.type != "job":
        raise WireError(f"expected a job, got {msg.type!r}")
    t0 = require(msg.meta, "t0_us", int)
    try:
        return IntervalJob(
            index=require(msg.meta, "index", int),
            frame0=_array(msg, "frame0", "uint8", 3),
            frame1=_array(msg, "frame1", "uint8", 3),
            t0_us=t0,
            t1_us=require(msg.meta, "t1_us", int),
            events=decode_events(msg, t0),
            timestamps_us=_array(msg, "timestamps", "int64", 1),
        )
    except ValueError as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"job: {exc}") from None


def result_message(result: IntervalResult, worker: str, latency_s: float | None = None) -> Message:
    """latency_s: from the closing keyframe's arrival at capture to this result leaving."""
    return Message(
        "result",
        {
            "index": result.index,
            "model": result.model,
            "compute_s": result.compute_s,
            "worker": worker,
            "latency_s": latency_s,
        },
        {"frames": result.frames, "timestamps": result.timestamps_us},
    )


def result_from_message(msg: Message) -> IntervalResult:
    if msg.type != "result":
        raise WireError(f"expected a result, got {msg.type!r}")
    frames = _array(msg, "frames", "uint8", 4)
    ts = _array(msg, "timestamps", "int64", 1)
    if len(frames) != len(ts) or (len(frames) and frames.shape[3] != 3):
        raise WireError("result: frames must be [N,H,W,3] with one timestamp each")
    return IntervalResult(
        index=require(msg.meta, "index", int),
        timestamps_us=ts,
        frames=frames,
        model=str(msg.meta.get("model", "?")),
        compute_s=float(require(msg.meta, "compute_s", (int, float))),
    )
