"""What every replay input provides: keyframes on the event clock and, per interval, the
events between two keyframes already in the keyframes' pixel grid.

Inputs never stop at damage they can get past: they report it in ``problems`` (what,
where, what was lost) and go on. An interval whose events are known to be incomplete
raises ``MissingEvents`` so replay keeps its keyframes but does not invent frames.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.events import EventCursor, FileEventSource
from pipeline.intervals import Gap, MissingEvents
from rig.types import EventBatch

__all__ = [
    "EventCursor",
    "FileEventSource",
    "Gap",
    "InputError",
    "Keyframe",
    "MissingEvents",
    "ReplaySource",
    "file_fingerprint",
]


class InputError(ValueError):
    """An input that cannot be replayed: wrong path, unknown layout, missing option.
    The message says what to do."""


@dataclass(frozen=True)
class Keyframe:
    """index: position of the frame in the input (0-based, counting every frame the
    input holds, usable or not); image: HxWx3 uint8 RGB; t_us: mid-exposure on the
    event camera's clock."""

    index: int
    image: np.ndarray
    t_us: int


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of an input file or folder for resuming (path, size, mtime)."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class ReplaySource(abc.ABC):
    """One recording to replay. Call ``keyframes()`` once; call ``events(k0, k1)`` for
    consecutive keyframe pairs in time order (windows never go back in time)."""

    kind: str = "?"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.frame_size: tuple[int, int] = (0, 0)  # (width, height) of the keyframes
        self.problems: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def problem(self, what: str, detail: str, **where: Any) -> None:
        self.problems.append({"what": what, "detail": detail, **where})

    @abc.abstractmethod
    def keyframes(self) -> Iterator[Keyframe]:
        """Every readable frame in input order (replay drops those not after the
        previous one)."""

    @abc.abstractmethod
    def events(self, k0: Keyframe, k1: Keyframe) -> EventBatch:
        """Events with k0.t_us <= t < k1.t_us, x/y float32 in the frame grid, t sorted.
        Raises MissingEvents when they are known to be incomplete."""

    @abc.abstractmethod
    def event_source(self) -> tuple[FileEventSource, Callable[[EventBatch], EventBatch]]:
        """The events as one stream in time order behind the live EventSource interface
        (replay reads it as capture reads a camera), and the mapping of a slice of them
        into the frame grid."""

    def expected_keyframes(self) -> int | None:
        """How many frames the input holds, if cheap to know (for the progress bar)."""
        return None

    def fingerprint(self) -> list[dict[str, Any]]:
        """Identity of the input files, so a resumed replay is the same replay."""
        return [file_fingerprint(self.path)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "frame_size": list(self.frame_size)}

    def finish_report(self) -> None:
        """Called once reading is over: move any damage found into ``problems``."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        return None

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
