"""Jobs and results to and from wire messages, with their fields checked."""

from __future__ import annotations

import numpy as np

from contracts.jobs import IntervalJob, IntervalResult
from pipeline.wire import (
    MAX_NAME_CHARS,
    Message,
    WireError,
    optional_number,
    require_int,
    require_str,
)
from rig.types import EventBatch

# Every size a peer can ask for is bounded, so that a small message cannot make a
# worker or the recorder allocate much more than it is. Frames per job: the most a
# slow-motion factor of MAX_FACTOR inserts.
MAX_FACTOR = 128
MAX_FRAMES_PER_JOB = MAX_FACTOR - 1
MAX_SIDE = 4096  # keyframe width and height, px (events travel as int16 1/8 px)
MAX_INDEX = 2**40  # keyframe / interval numbers
MAX_TIME_US = 2**62  # |rig time|: room for an interval's span without int64 overflow
MAX_REASON_CHARS = 300
MAX_TICKET_CHARS = 64
STATUS_COUNTERS = ("jobs", "frames", "bad_messages", "failed_jobs")
INTERVAL_STATUSES = ("dispatched", "skipped", "failed")

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


def _check_frame(arr: np.ndarray, what: str) -> None:
    if arr.ndim != 3 or arr.shape[2] != 3 or not (0 < arr.shape[0] <= MAX_SIDE):
        raise WireError(f"{what} must be HxWx3 with sides of 1 to {MAX_SIDE} px")
    if not 0 < arr.shape[1] <= MAX_SIDE:
        raise WireError(f"{what} must be HxWx3 with sides of 1 to {MAX_SIDE} px")


def ticket_of(meta: dict) -> str | None:
    """The dispatcher's ticket a job carries and its result echoes (see pipeline.peers)."""
    ticket = meta.get("ticket")
    if ticket is None:
        return None
    if not isinstance(ticket, str) or not 0 < len(ticket) <= MAX_TICKET_CHARS:
        raise WireError("meta field 'ticket' must be a short string")
    return ticket


def job_tokens(meta: dict) -> dict[str, str]:
    """The ticket and seal a job carries, to echo in its result (see pipeline.peers)."""
    out = {}
    for key in ("ticket", "seal"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TICKET_CHARS:
            raise WireError(f"meta field {key!r} must be a short string")
        out[key] = value
    return out


def job_from_message(msg: Message) -> IntervalJob:
    """A job, checked before anything is allocated: at most MAX_FRAMES_PER_JOB instants,
    keyframes of at most MAX_SIDE px, times that fit, events inside the interval."""
    if msg.type != "job":
        raise WireError(f"expected a job, got {msg.type!r}")
    timestamps = _array(msg, "timestamps", "int64", 1)
    if len(timestamps) > MAX_FRAMES_PER_JOB:
        raise WireError(
            f"job asks for {len(timestamps)} frames, over the limit of {MAX_FRAMES_PER_JOB}"
        )
    index = require_int(msg.meta, "index", 0, MAX_INDEX)
    t0 = require_int(msg.meta, "t0_us", -MAX_TIME_US, MAX_TIME_US)
    t1 = require_int(msg.meta, "t1_us", -MAX_TIME_US, MAX_TIME_US)
    if not 0 < t1 - t0 < 2**31:
        raise WireError(f"job {index}: t1_us - t0_us must be in (0, 2**31) us")
    frame0, frame1 = _array(msg, "frame0", "uint8", 3), _array(msg, "frame1", "uint8", 3)
    _check_frame(frame0, "job frame0")
    optional_number(msg.meta, "keyframe_arrival", -1e12, 1e12)
    job_tokens(msg.meta)
    events = decode_events(msg, t0)
    if len(events) and (events.t.min() < t0 or events.t.max() >= t1):
        raise WireError(f"job {index}: events outside [t0_us, t1_us)")
    try:
        return IntervalJob(
            index=index,
            frame0=frame0,
            frame1=frame1,
            t0_us=t0,
            t1_us=t1,
            events=events,
            timestamps_us=timestamps,
        )
    except ValueError as exc:
        raise WireError(f"job: {exc}") from None


def result_message(
    result: IntervalResult,
    worker: str,
    latency_s: float | None = None,
    tokens: dict[str, str] | None = None,
) -> Message:
    """latency_s: from the closing keyframe's arrival at capture to this result leaving.
    tokens: the job's ticket and seal, echoed."""
    return Message(
        "result",
        {
            "index": result.index,
            "model": result.model,
            "compute_s": result.compute_s,
            "worker": worker,
            "latency_s": latency_s,
            **(tokens or {}),
        },
        {"frames": result.frames, "timestamps": result.timestamps_us},
    )


def result_from_message(msg: Message) -> IntervalResult:
    """A result, shapes and fields checked; whether it was asked for is pipeline.peers'."""
    if msg.type != "result":
        raise WireError(f"expected a result, got {msg.type!r}")
    frames = _array(msg, "frames", "uint8", 4)
    ts = _array(msg, "timestamps", "int64", 1)
    if len(frames) != len(ts) or frames.shape[3] != 3:
        raise WireError("result: frames must be [N,H,W,3] with one timestamp each")
    if len(ts) > MAX_FRAMES_PER_JOB:
        raise WireError(f"result: {len(ts)} frames, over the limit of {MAX_FRAMES_PER_JOB}")
    if not (0 < frames.shape[1] <= MAX_SIDE and 0 < frames.shape[2] <= MAX_SIDE):
        raise WireError(f"result: frame sides must be 1 to {MAX_SIDE} px")
    model = msg.meta.get("model", "?")
    if not isinstance(model, str) or len(model) > MAX_NAME_CHARS:
        raise WireError(f"result: 'model' must be a string of at most {MAX_NAME_CHARS} characters")
    compute_s = optional_number(msg.meta, "compute_s", 0.0, 1e6)
    if compute_s is None:
        raise WireError("meta field 'compute_s' missing")
    optional_number(msg.meta, "latency_s", -1e6, 1e6)
    if "worker" in msg.meta:
        require_str(msg.meta, "worker")
    ticket_of(msg.meta)
    return IntervalResult(
        index=require_int(msg.meta, "index", 0, MAX_INDEX),
        timestamps_us=ts,
        frames=frames,
        model=model,
        compute_s=compute_s,
    )


def _text(value: object, max_chars: int) -> str:
    return value[:max_chars] if isinstance(value, str) else ""


def status_meta(msg: Message) -> dict:
    """A worker's status as the bounded dict that goes into session.json: known fields
    only, names and the last error cut to length, counters non-negative integers."""
    meta = msg.meta
    out: dict = {"worker": require_str(meta, "worker"), "model": _text(meta.get("model"), 64)}
    for key in STATUS_COUNTERS:
        out[key] = require_int(meta, key, 0, 2**53) if key in meta else 0
    out["compute_s"] = optional_number(meta, "compute_s", 0.0, 1e12) or 0.0
    out["final"] = meta.get("final") is True
    out["last_error"] = _text(meta.get("last_error"), MAX_REASON_CHARS)
    return out


def interval_meta(msg: Message) -> dict:
    """An interval notice: index, a known status, a reason cut to length, a ticket."""
    meta = msg.meta
    status = meta.get("status")
    if status not in INTERVAL_STATUSES:
        raise WireError(f"interval message with unknown status {status!r:.40}")
    out = {
        "index": require_int(meta, "index", 0, MAX_INDEX),
        "status": status,
        "reason": _text(meta.get("reason", status), MAX_REASON_CHARS) or str(status),
    }
    ticket = ticket_of(meta)
    if ticket is not None:
        out["ticket"] = ticket
    return out


def keyframe_meta(msg: Message) -> tuple[int, int, np.ndarray]:
    """(index, t_us, image) of a keyframe notice."""
    image = _array(msg, "image", "uint8", 3)
    _check_frame(image, "keyframe image")
    return (
        require_int(msg.meta, "index", 0, MAX_INDEX),
        require_int(msg.meta, "t_us", -MAX_TIME_US, MAX_TIME_US),
        image,
    )
