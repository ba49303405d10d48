"""The ZeroMQ wire format: one JSON header frame, then one raw buffer per array.

Never pickle: a peer can only make us allocate what the header declares, and the
header is checked against the buffers before any array is built. A bad message
raises `WireError`; receivers count it and carry on.
"""

from __future__ import annotations

import json
import math
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
MAX_DEPTH = 4  # header -> meta -> a value -> one more level
MAX_CONTAINERS = 512  # lists and objects in one header
MAX_KEY_CHARS = 64
MAX_NAME_CHARS = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
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
    """Validate and rebuild a message; arrays are read-only views of the received buffers.

    Whatever a peer sends, the only exception is WireError: receivers catch that one
    and carry on, so any other exception escaping here would let one message stop a
    recording. The checks below name what is wrong; the last net turns anything they
    missed into a WireError too.
    """
    try:
        return _decode(frames, max_bytes)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: never anything but WireError
        raise WireError(f"malformed message ({type(exc).__name__}: {exc})"[:300]) from None


def _decode(frames: list[Any], max_bytes: int) -> Message:
    if not isinstance(frames, list | tuple) or not frames:
        raise WireError("empty message")
    head = _buffer(frames[0])
    if head.nbytes > MAX_HEADER_BYTES:
        raise WireError(f"header is {head.nbytes} bytes, over the {MAX_HEADER_BYTES} limit")
    header = parse_header(bytes(head))
    version = header.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise WireError(f"wire version {version!r:.40}, this build speaks {WIRE_VERSION}")
    mtype = header.get("type")
    if not isinstance(mtype, str) or mtype not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {mtype!r:.60}")
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
        if name in arrays:
            raise WireError(f"array {name!r} appears twice")
        buf = _buffer(frame)
        # Python integers: a product of large dims must not wrap around as int64 would.
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if expected != buf.nbytes:
            raise WireError(
                f"array {name!r}: {dtype}{tuple(shape)} needs {expected} bytes, got {buf.nbytes}"
            )
        total += expected
        if total > max_bytes:
            raise WireError(f"message is over the size cap of {max_bytes} bytes")
        arrays[name] = np.frombuffer(buf.cast("B"), dtype=dtype).reshape(shape)
    return Message(mtype, meta, arrays)


def _parse_int(text: str) -> int:
    # Before int(): a 4,300-digit number would raise ValueError, a longer one cost time.
    if len(text.lstrip("-")) > 19:
        raise WireError(f"integer {text[:24]}... does not fit 64 bits")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise WireError(f"integer {text} does not fit 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError(f"number {text[:24]} is not finite")
    return value


def _no_constant(text: str) -> float:
    raise WireError(f"{text} is not allowed in a header")


def parse_header(raw: bytes) -> dict[str, Any]:
    """The JSON header as a dict of plain values: 64-bit integers, finite floats, strings
    and lists/objects nested at most MAX_DEPTH deep."""
    if raw.count(b"[") + raw.count(b"{") > MAX_CONTAINERS:
        raise WireError(f"header has more than {MAX_CONTAINERS} lists and objects")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"header is not UTF-8: {exc}") from None
    try:
        header = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant
        )
    except WireError:
        raise
    except (ValueError, RecursionError) as exc:
        raise WireError(f"header is not JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    _check_depth(header, 0)
    return header


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"header nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_KEY_CHARS:
                raise WireError(f"header key {key[:20]!r}... is over {MAX_KEY_CHARS} characters")
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _check_spec(spec: Any) -> tuple[str, str, list[int]]:
    if not isinstance(spec, dict):
        raise WireError("array spec is not an object")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise WireError(f"array spec without a name of 1 to {MAX_NAME_CHARS} characters")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise WireError(f"array {name!r}: dtype {dtype!r:.40} is not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(type(d) is int and 0 <= d < 2**31 for d in shape)
    ):
        raise WireError(f"array {name!r}: bad shape {shape!r:.80}")
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
    identity = bytes(frames[0].buffer)[:256]
    return identity, decode(frames[1:], max_bytes=max_bytes)


def require(meta: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """A meta field of the right type, or WireError naming it."""
    value = meta.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"meta field {key!r} missing or not {kind}")
    return value


def require_int(meta: dict[str, Any], key: str, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """An integer meta field within [lo, hi], or WireError naming it."""
    value = meta.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise WireError(f"meta field {key!r} must be an integer in [{lo}, {hi}], got {value!r:.40}")
    return value


def require_str(meta: dict[str, Any], key: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A non-empty string meta field of at most max_chars, or WireError naming it."""
    value = meta.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise WireError(f"meta field {key!r} must be a string of 1 to {max_chars} characters")
    return value


def optional_number(meta: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    """A finite number in [lo, hi] or absent/None; WireError otherwise."""
    value = meta.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not lo <= value <= hi:
        raise WireError(f"meta field {key!r} must be a number in [{lo:g}, {hi:g}]")
    return float(value)
