"""A session is one folder per recording. Its `session.json` is updated in place by the
processes that own each section (capture, output, workers), so a session that was cut
off still says how far it got.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.errors import OutputFolderError, SessionError
from contracts.session import (
    RAW_FILE,
    SESSION_FORMAT,
    SESSION_VERSION,
    TIMESTAMPS_FILE,
    VIDEO_FILE,
    Manifest,
)

__all__ = ["SessionError", "Session", "write_atomic", "write_json_atomic", "check_output_folder"]

MANIFEST = "session.json"
CLOCK_FILE = "clock.json"
CALIBRATION_FILE = "calibration.json"
# Space set aside when a session is created and given back on the first "disk full",
# so that session.json and clock.json can still say what happened (issue 15).
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 2 * 1024 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def release_reserve(folder: Path) -> bool:
    """Give back the session's reserved space; True if there was some to give."""
    try:
        (Path(folder) / RESERVE_FILE).unlink()
    except OSError:
        return False
    return True


def write_atomic(path: Path, data: str | bytes, use_reserve: bool = False) -> None:
    """Replace `path` with `data` so that a reader only ever sees the old or the new
    file, never a partial or empty one: write a temporary file beside it, fsync, then
    rename. On a full disk the old file stays as it was and OSError is raised; with
    use_reserve the folder's reserve (if it is a session folder) is released and the
    write retried, so that the final status of a session that filled its disk is still
    written. The one helper for every JSON file of a session (session.json, clock.json,
    replay's progress)."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for attempt in (1, 2):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            return
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            disk_full = exc.errno in _DISK_FULL
            if attempt == 1 and use_reserve and disk_full and release_reserve(path.parent):
                continue
            raise


def write_json_atomic(path: Path, data: Any, use_reserve: bool = False) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n", use_reserve)


def check_output_folder(folder: Path, option: str = "--out") -> Path:
    """Create `folder` if needed and prove it is writable, before any work starts (a
    read-only --out must not be found after minutes of computing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{option} {folder} is a file: give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".slomo-rig-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(
            f"{option} {folder}: cannot write there ({exc.strerror or exc}); choose a "
            "writable folder"
        ) from None
    return folder


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
        """A new folder under parent, named by the start time unless a name is given.
        A folder that cannot be written, or a disk without room for the reserve, is
        refused here, before any process starts."""
        parent = check_output_folder(Path(parent))
        stem = name or _dt.datetime.now().strftime("session-%Y%m%d-%H%M%S")
        path = parent / stem
        n = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = parent / f"{stem}-{n}"
            except OSError as exc:
                raise OutputFolderError(
                    f"--out {parent}: cannot create the session folder {path.name} "
                    f"({exc.strerror or exc}); choose a writable folder"
                ) from None
        try:
            fd = os.open(path / RESERVE_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError as exc:
            release_reserve(path)
            with contextlib.suppress(OSError):
                path.rmdir()
            raise OutputFolderError(
                f"--out {parent}: no room for a recording ({exc.strerror or exc}); free "
                "disk space or choose another folder"
            ) from None
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
        """The manifest as a dict, after checking it against the schema."""
        return self.manifest().data

    def manifest(self) -> Manifest:
        """The manifest, checked (contracts/session.py): a damaged or edited one is a
        SessionError that names the file and the key."""
        where = str(self.manifest_path)
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            raise SessionError(
                f"{self.path} has no {MANIFEST}: it is not a slomo-rig session "
                "(to interpolate a recording from another tool, use 'slomo-rig replay')"
            ) from None
        except OSError as exc:
            raise SessionError(f"cannot read {where}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SessionError(
                f"{where} is not UTF-8 text (bad byte at offset {exc.start}): it is damaged; "
                f"the raw recording {RAW_FILE} is not affected and can still be replayed"
            ) from None
        except json.JSONDecodeError as exc:
            raise SessionError(
                f"{where} is corrupt ({exc.msg} at line {exc.lineno}); the raw "
                f"recording {RAW_FILE} is not affected and can still be replayed"
            ) from None
        except RecursionError:
            raise SessionError(f"{where} is corrupt (nested too deeply)") from None
        return Manifest.from_dict(data, where)

    def file(self, key: str) -> Path:
        """The session's file for `key` (raw, video, timestamps), inside its folder."""
        files = self.manifest().files
        name = dict(files.items()).get(key)
        if name is None:
            raise SessionError(f"{self.manifest_path} names no {key!r} file")
        return self.path / name

    def update(self, **sections: Any) -> dict[str, Any]:
        """Merge top-level sections under a file lock, then replace the file atomically,
        so concurrent writers never lose each other's sections and a reader never sees
        half a file."""
        return self._merge(sections, use_reserve=False)

    def finish(self, **sections: Any) -> dict[str, Any]:
        """The last update of a recording (its status): may use the space reserved at
        creation if the disk is full, then gives the reserve back."""
        try:
            return self._merge(sections, use_reserve=True)
        finally:
            release_reserve(self.path)

    def _merge(self, sections: dict[str, Any], use_reserve: bool) -> dict[str, Any]:
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
                write_json_atomic(self.manifest_path, data, use_reserve)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return data

    def _write(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, data)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
