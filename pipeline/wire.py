"""The ZeroMQ wire format: one JSON header frame, then one raw buffer per array.

Never pickle: a peer can only make us allocate what the header declares, and the
header is checked against the buffers before any array is built. A bad message
raises `WireError`; receivers count it and carry on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

WIRE_VERSION = 1
MESSAGE_TYPES = frozenset(
    {
        "job",
        "result",
        "keyframe",
        "interval",
        "status",
        "end",
        "events",
        "frame",
        "triggers",
        "ready",
        "heartbeat",
    }
)
ALLOWED_DTYPES = frozenset(
    {"uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64", "bool"}
)
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAYS = 16
MAX_NDIM = 4
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
# Below this a buffer is copied into the message: zero-copy has a fixed cost in libzmq.
ZERO_COPY_MIN_BYTES = 64 * 1024


class WireError(ValueError):
    """A message that does not follow the wire format."""


@dataclass
class Message:
    type: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode(msg: Message) -> list[Any]:
    """Multipart frames for a message; large arrays are passed as buffers, not copied."""
    if msg.type not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {msg.type!r}")
    specs = []
    buffers: list[Any] = []
    for name, arr in msg.arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise WireError(f"array {name!r}: dtype {arr.dtype} is not allowed on the wire")
        specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        buffers.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
    header = json.dumps(
        {"v": WIRE_VERSION, "type": msg.type, "meta": msg.meta, "arrays": specs},
        separators=(",", ":"),
    ).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise WireError(f"header is {len(header)} bytes, over the {MAX_HEADER_BYTES} limit")
    return [header, *buffers]


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    return memoryview(frame)


def decode(frames: list[Any], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Validate and rebuild a message; arrays are read-only views of the received buffers."""
    if not frames:
        raise WireError("empty message")
    head = _buffer(frames[0])
    if len(head) > MAX_HEADER_BYTES:
        raise WireError(f"header is {len(head)} bytes, over the {MAX_HEADER_BYTES} limit")
    try:
        header = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    if header.get("v") != WIRE_VERSION:
        raise WireError(f"wire version {header.get('v')!r}, this build speaks {WIRE_VERSION}")
    mtype = header.get("type")
    if mtype not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {mtype!r}")
    meta = header.get("meta", {})
    specs = header.get("arrays", [])
    if not isinstance(meta, dict) or not isinstance(specs, list):
        raise WireError("header 'meta' must be an object and 'arrays' a list")
    if len(specs) > MAX_ARRAYS:
        raise WireError(f"{len(specs)} arrays, over the limit of {MAX_ARRAYS}")
    if len(frames) != 1 + len(specs):
        raise WireError(f"header declares {len(specs)} arrays but {len(frames) - 1} buffers came")
    total = 0
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:], strict=True):
        name, dtype, shape = _check_spec(spec)
        buf = _buffer(frame)
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if expected != len(buf):
            raise WireError(
                f"array {name!r}: {dtype}{tuple(shape)} needs {expected} bytes, got {len(buf)}"
            )
        total += expected
        if total > max_bytes:
            raise WireError(f"message is over the size cap of {max_bytes} bytes")
        if name in arrays:
            raise WireError(f"array {name!r} appears twice")
        arrays[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return Message(mtype, meta, arrays)


def _check_spec(spec: Any) -> tuple[str, str, list[int]]:
    if not isinstance(spec, dict):
        raise WireError("array spec is not an object")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise WireError("array spec without a name")
    if dtype not in ALLOWED_DTYPES:
        raise WireError(f"array {name!r}: dtype {dtype!r} is not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape)
    ):
        raise WireError(f"array {name!r}: bad shape {shape!r}")
    return name, dtype, shape


def send(sock: zmq.Socket, msg: Message, flags: int = 0) -> None:
    frames = encode(msg)
    copy = sum(len(f) for f in frames[1:]) < ZERO_COPY_MIN_BYTES
    sock.send_multipart(frames, flags=flags, copy=copy)


def recv(sock: zmq.Socket, flags: int = 0, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Receive one message; raises WireError for a bad one (already consumed)."""
    return decode(sock.recv_multipart(flags=flags, copy=False), max_bytes=max_bytes)


def send_to(sock: zmq.Socket, identity: bytes, msg: Message, flags: int = 0) -> None:
    """Send through a ROUTER socket to one peer."""
    frames = encode(msg)
    copy = sum(len(f) for f in frames[1:]) < ZERO_COPY_MIN_BYTES
    sock.send_multipart([identity, *frames], flags=flags, copy=copy)


def recv_from(
    sock: zmq.Socket, flags: int = 0, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[bytes, Message]:
    """Receive on a ROUTER socket: (peer identity, message). WireError for a bad one."""
    frames = sock.recv_multipart(flags=flags, copy=False)
    return bytes(frames[0].buffer), decode(frames[1:], max_bytes=max_bytes)


def require(meta: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """A meta field of the right type, or WireError naming it."""
    value = meta.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"meta field {key!r} missing or not {kind}")
    return value
