"""Every camera every backend can see. A backend whose SDK is missing or fails is
skipped with a note, so listing devices never crashes on a half-installed machine."""

from __future__ import annotations

from collections.abc import Callable

from rig.base import DeviceInfo, SdkMissingError


def _backends() -> list[tuple[str, Callable[[], list[DeviceInfo]]]]:
    def basler():
        from rig.basler import BaslerFrameSource

        return BaslerFrameSource.find()

    def inivation():
        from rig.inivation import InivationEventSource

        return InivationEventSource.find()

    def prophesee():
        from rig.prophesee import PropheseeEventSource

        return PropheseeEventSource.find()

    return [("basler", basler), ("inivation", inivation), ("prophesee", prophesee)]


SDKS = {"basler": "pypylon", "inivation": "dv-processing", "prophesee": "Metavision SDK"}


def find_all(notes: list[str] | None = None, searched: list[str] | None = None) -> list[DeviceInfo]:
    """Devices found; `notes` (if given) collects why a backend was skipped, `searched`
    the backends whose SDK is installed and was asked (so "none found" can say where it
    looked instead of suggesting an install that is already there)."""
    found: list[DeviceInfo] = []
    for name, fn in _backends():
        try:
            found.extend(fn())
            if searched is not None:
                searched.append(name)
        except SdkMissingError as e:
            if notes is not None:
                notes.append(f"{name}: skipped, {e}")
        except Exception as e:  # a broken driver must not hide the other cameras
            if notes is not None:
                notes.append(f"{name}: discovery failed: {type(e).__name__}: {e}")
    return found
