"""The two sensor interfaces. Backends live one per module and import their SDK lazily,
so a missing SDK only matters when that backend is used."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from rig.types import EventSlice, Frame


class SourceError(RuntimeError):
    """A sensor could not be opened or stopped delivering. The message says what to do."""


class SdkMissingError(SourceError):
    """The backend's SDK is not installed."""

    def __init__(self, backend: str, package: str, hint: str = "") -> None:
        msg = f"The {backend} backend needs the '{package}' package, which is not installed."
        msg += f" {hint}" if hint else f" Install it with: pip install {package}"
        super().__init__(msg)


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    model: str
    serial: str
    kind: str  # "events" or "frames"
    note: str = ""


class _Source(abc.ABC):
    """open / read / close, usable as a context manager."""

    backend: str = "?"

    def __init__(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @classmethod
    def find(cls) -> list[DeviceInfo]:
        """Devices this backend can see right now; [] when there are none."""
        return []

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventSource(_Source):
    """An event camera (or a file of one). Timestamps are on the rig clock."""

    resolution: tuple[int, int]  # (width, height)

    @abc.abstractmethod
    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        """Next events and triggers in time order; None when nothing came within the
        timeout. Raises EOFError at the end of a finite source."""


class FrameSource(_Source):
    """An RGB camera (or a file of one). Timestamps are on the camera's own clock."""

    resolution: tuple[int, int]  # (width, height)

    @abc.abstractmethod
    def read(self, timeout_s: float = 1.0) -> Frame | None:
        """Next frame; None when none came within the timeout. Raises EOFError at the
        end of a finite source."""

    @property
    def skipped_frames(self) -> int:
        """Frames the camera or driver reported as lost."""
        return 0
