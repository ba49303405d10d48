"""A session is one folder per recording. Its `session.json` is updated in place by the
processes that own each section (capture, output, workers), so a session that was cut
off still says how far it got.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

SESSION_FORMAT = "slomo-rig-session"
SESSION_VERSION = 1
RAW_FILE = "raw.aedat4"
MANIFEST = "session.json"
VIDEO_FILE = "slowmo.mp4"
TIMESTAMPS_FILE = "timestamps.csv"
CLOCK_FILE = "clock.json"
CALIBRATION_FILE = "calibration.json"


class SessionError(RuntimeError):
    """A session folder that cannot be used; the message says what to do."""


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("slomo-rig", "numpy", "dv-processing", "pyzmq", "av", "onnxruntime-gpu", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Session:
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def raw_path(self) -> Path:
        return self.path / RAW_FILE

    @property
    def video_path(self) -> Path:
        return self.path / VIDEO_FILE

    @property
    def timestamps_path(self) -> Path:
        return self.path / TIMESTAMPS_FILE

    @classmethod
    def create(cls, parent: Path, rig: dict[str, Any], name: str | None = None) -> Session:
        """A new folder under parent, named by the start time unless a name is given."""
        parent = Path(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionError(f"cannot create output folder {parent}: {exc.strerror}") from None
        stem = name or _dt.datetime.now().strftime("session-%Y%m%d-%H%M%S")
        path = parent / stem
        n = 1
        while path.exists():
            n += 1
            path = parent / f"{stem}-{n}"
        path.mkdir()
        session = cls(path)
        session._write(
            {
                "format": SESSION_FORMAT,
                "format_version": SESSION_VERSION,
                "created": now_iso(),
                "status": "recording",
                "rig": rig,
                "versions": versions(),
                "files": {"raw": RAW_FILE, "video": VIDEO_FILE, "timestamps": TIMESTAMPS_FILE},
            }
        )
        return session

    @classmethod
    def open(cls, path: Path) -> Session:
        path = Path(path)
        if not path.exists():
            raise SessionError(f"no session at {path}: check the path")
        if not path.is_dir():
            raise SessionError(f"{path} is a file, not a session folder")
        session = cls(path)
        session.read()
        return session

    def read(self) -> dict[str, Any]:
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            raise SessionError(
                f"{self.path} has no {MANIFEST}: it is not a slomo-rig session "
                "(to interpolate a recording from another tool, use 'slomo-rig replay')"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SessionError(
                f"{self.manifest_path} is corrupt ({exc.msg} at line {exc.lineno}); the raw "
                f"recording {RAW_FILE} is not affected and can still be replayed"
            ) from None
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise SessionError(f"{self.manifest_path} is not a slomo-rig session manifest")
        if data.get("format_version", 0) > SESSION_VERSION:
            raise SessionError(
                f"{self.manifest_path} was written by a newer slomo-rig "
                f"(format {data['format_version']}); upgrade to read it"
            )
        return data

    def update(self, **sections: Any) -> dict[str, Any]:
        """Merge top-level sections under a file lock, then replace the file atomically,
        so concurrent writers never lose each other's sections and a reader never sees
        half a file."""
        lock_path = self.path / ".session.lock"
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                for key, value in sections.items():
                    if isinstance(value, dict) and isinstance(data.get(key), dict):
                        data[key] = {**data[key], **value}
                    else:
                        data[key] = value
                data["updated"] = now_iso()
                self._write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=_json_default))
        os.replace(tmp, self.manifest_path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
