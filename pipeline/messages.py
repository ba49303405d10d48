"""Jobs and results to and from wire messages, with their fields checked."""

from __future__ import annotations

import numpy as np

from pipeline.jobs import IntervalJob, IntervalResult
from pipeline.wire import Message, WireError, require
from rig.types import EventBatch


def job_message(job: IntervalJob) -> Message:
    ev = job.events
    return Message(
        "job",
        {"index": job.index, "t0_us": job.t0_us, "t1_us": job.t1_us},
        {
            "frame0": job.frame0,
            "frame1": job.frame1,
            "t": ev.t,
            "x": ev.x,
            "y": ev.y,
            "p": ev.p,
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
    n = len(_array(msg, "t", "int64", 1))
    columns = {k: _array(msg, k, ndim=1) for k in ("x", "y", "p")}
    if any(len(c) != n for c in columns.values()):
        raise WireError("job: event columns differ in length")
    if columns["p"].dtype.name != "int8":
        raise WireError("job: polarity must be int8")
    try:
        return IntervalJob(
            index=require(msg.meta, "index", int),
            frame0=_array(msg, "frame0", "uint8", 3),
            frame1=_array(msg, "frame1", "uint8", 3),
            t0_us=require(msg.meta, "t0_us", int),
            t1_us=require(msg.meta, "t1_us", int),
            events=EventBatch(msg.arrays["t"], columns["x"], columns["y"], columns["p"]),
            timestamps_us=_array(msg, "timestamps", "int64", 1),
        )
    except ValueError as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"job: {exc}") from None


def result_message(result: IntervalResult, worker: str) -> Message:
    return Message(
        "result",
        {
            "index": result.index,
            "model": result.model,
            "compute_s": result.compute_s,
            "worker": worker,
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
