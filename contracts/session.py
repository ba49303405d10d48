"""The schema of a session's `session.json`, checked whenever a session is read.

Several processes write the manifest (capture, recorder, `slomo-rig sync`), and people
copy, edit and damage session folders, so a reader never trusts it: every section that
slomo-rig reads is checked for its type here, file names may only name files inside
the session folder, and a mistake is a SessionError that names the file and the key
(never a TypeError deep in `info` or replay). Sections this version does not know are
kept as they are (a newer writer may add some).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import PurePath
from typing import Any

from contracts.errors import SessionError

SESSION_FORMAT = "slomo-rig-session"
SESSION_VERSION = 1
RAW_FILE = "raw.aedat4"
VIDEO_FILE = "slowmo.mp4"
TIMESTAMPS_FILE = "timestamps.csv"

# "recording" while it runs (and forever if it was cut off by a crash or power loss);
# "incomplete": it ended, but something is missing (listed in "error").
STATUSES = ("recording", "complete", "interrupted", "failed", "incomplete")


def _where(path: str, key: str) -> str:
    return f"{path}: '{key}'"


def _check(value: Any, types: type | tuple[type, ...], where: str, what: str) -> Any:
    # bool is an int to Python; it is never a count, a version or a time here.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SessionError(f"{where} must be {what}, got {value!r}")
    if not isinstance(value, types):
        shown = repr(value) if len(repr(value)) < 60 else type(value).__name__
        raise SessionError(f"{where} must be {what}, got {shown}")
    return value


def session_file_name(name: Any, where: str) -> str:
    """A file named by the manifest: a plain name inside the session folder, never a
    path that leads out of it (`../../etc/passwd`, `/etc/passwd`)."""
    _check(name, str, where, "a file name")
    p = PurePath(name)
    if not name or p.is_absolute() or len(p.parts) != 1 or p.name in (".", ".."):
        raise SessionError(
            f"{where} is {name!r}: a session only names files inside its own folder; "
            "the manifest was edited or damaged (restore the file name, e.g. "
            f"{RAW_FILE!r})"
        )
    return name


@dataclass(frozen=True)
class SessionFiles:
    raw: str = RAW_FILE
    video: str = VIDEO_FILE
    timestamps: str = TIMESTAMPS_FILE
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SessionFiles:
        _check(data, dict, _where(where, "files"), "a table of file names")
        names = {str(k): session_file_name(v, _where(where, f"files.{k}")) for k, v in data.items()}
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = {k: v for k, v in names.items() if k not in known}
        return cls(**{k: v for k, v in names.items() if k in known}, extra=extra)

    def items(self) -> list[tuple[str, str]]:
        return [("raw", self.raw), ("video", self.video), ("timestamps", self.timestamps)] + list(
            self.extra.items()
        )


# Counters of the capture section: ints (the two event times may be null).
CAPTURE_COUNTS = (
    "events",
    "triggers",
    "frames",
    "keyframes",
    "camera_skipped_frames",
    "intervals",
    "intervals_dispatched",
    "intervals_skipped",
    "intervals_lost",
    "live_events_dropped",
    "recorder_messages_dropped",
)
CAPTURE_TIMES = ("first_event_us", "last_event_us")
POOL_COUNTS = ("dispatched", "redispatched", "lost", "workers_lost", "restarts")
WORKER_COUNTS = ("results_received", "bad_messages", "failed_jobs")


def _check_counts(data: Any, section: str, where: str, counts: tuple[str, ...]) -> None:
    _check(data, dict, _where(where, section), "a table")
    for key in counts:
        if key in data:
            v = _check(data[key], int, _where(where, f"{section}.{key}"), "a whole number")
            if v < 0:
                raise SessionError(f"{_where(where, f'{section}.{key}')} must be >= 0, got {v}")


@dataclass(frozen=True)
class Manifest:
    """The sections of session.json that slomo-rig reads, checked; `data` is the
    whole manifest as read (what `info --json` prints)."""

    format_version: int
    status: str
    created: str
    files: SessionFiles
    error: str | None
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise SessionError(f"{where} is not a slomo-rig session manifest")
        version = _check(
            data.get("format_version", SESSION_VERSION),
            int,
            _where(where, "format_version"),
            "a whole number",
        )
        if version > SESSION_VERSION:
            raise SessionError(
                f"{where} was written by a newer slomo-rig (format {version}); upgrade to read it"
            )
        status = _check(data.get("status", "recording"), str, _where(where, "status"), "a word")
        if status not in STATUSES:
            raise SessionError(
                f"{_where(where, 'status')} must be one of {', '.join(STATUSES)}, got {status!r}"
            )
        created = _check(data.get("created", "?"), str, _where(where, "created"), "a date")
        files = SessionFiles.from_dict(data.get("files", {}), where)
        error = data.get("error")
        if error is not None:
            _check(error, str, _where(where, "error"), "a message")
        for section in ("rig", "versions", "live", "clock", "sync", "pool", "workers", "output"):
            if section in data:
                _check(data[section], dict, _where(where, section), "a table")
        if "capture" in data:
            cap = data["capture"]
            _check_counts(cap, "capture", where, CAPTURE_COUNTS)
            for key in CAPTURE_TIMES:
                if cap.get(key) is not None:
                    _check(cap[key], int, _where(where, f"capture.{key}"), "a time in us")
        if "raw" in data:
            _check_counts(data["raw"], "raw", where, ("events", "frames", "triggers"))
        out = data.get("output")
        if out is not None:
            _check_counts(
                out,
                "output",
                where,
                ("frames_written", "original_frames", "interpolated_frames", "intervals_skipped"),
            )
            skipped = out.get("skipped_intervals", [])
            _check(skipped, list, _where(where, "output.skipped_intervals"), "a list")
            for i, s in enumerate(skipped):
                item = f"output.skipped_intervals[{i}]"
                _check(s, dict, _where(where, item), "a table")
                for key in ("index", "t0_us", "t1_us"):
                    _check(s.get(key), int, _where(where, f"{item}.{key}"), "a whole number")
            models = out.get("models", [])
            _check(models, list, _where(where, "output.models"), "a list of model names")
            for m in models:
                _check(m, str, _where(where, "output.models"), "a list of model names")
        for section in ("clock", "clock_correction"):
            sec = data.get(section)
            if isinstance(sec, dict):
                for key in ("drift_ppm", "residual_rms_us", "scale", "offset_us", "correlation"):
                    if sec.get(key) is not None:
                        _check(
                            sec[key], (int, float), _where(where, f"{section}.{key}"), "a number"
                        )
        for name, w in (data.get("workers") or {}).items():
            _check(w, dict, _where(where, f"workers.{name}"), "a table")
            _check_counts(w, f"workers.{name}", where, WORKER_COUNTS)
        if "pool" in data:
            _check_counts(data["pool"], "pool", where, POOL_COUNTS)
            seen = data["pool"].get("workers_seen", [])
            _check(seen, list, _where(where, "pool.workers_seen"), "a list of worker names")
        for key in ("latency_p50_ms", "latency_p99_ms"):
            value = (out or {}).get(key)
            if value is not None:
                _check(value, (int, float), _where(where, f"output.{key}"), "a number")
        return cls(version, status, created, files, error, data)
