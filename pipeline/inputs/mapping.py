"""Where the event->frame mapping of an input comes from: a calibration file, or
"identity" for an event sensor that shares the frame sensor's pixel grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.inputs.base import InputError
from rig.types import EventBatch

IDENTITY = "identity"


def load_mapper(
    calibration: str | Path,
    event_size: tuple[int, int],
    frame_size: tuple[int, int],
) -> tuple[Callable[[EventBatch], EventBatch] | None, str]:
    """(mapper, description). "identity" gives None (events are already in the frame
    grid; sizes must match). Otherwise the file is loaded with calibration's
    load_calibration and its map is checked against both sensor sizes."""
    if str(calibration) == IDENTITY:
        if tuple(event_size) != tuple(frame_size):
            raise InputError(
                f"--calibration identity needs events and frames of one size, got events "
                f"{tuple(event_size)} and frames {tuple(frame_size)}"
            )
        return None, "identity (events already in the frame grid)"
    from calibration import CalibrationError, load_calibration

    path = Path(calibration)
    try:
        mapper = load_calibration(path).event_to_frame_map()
    except CalibrationError as exc:
        raise InputError(f"calibration {path}: {exc}") from None
    if tuple(mapper.event_size) != tuple(event_size):
        raise InputError(
            f"calibration {path} is for a {mapper.event_size[0]}x{mapper.event_size[1]} event "
            f"sensor, but the events are {event_size[0]}x{event_size[1]}: is it the right rig?"
        )
    if tuple(mapper.frame_size) != tuple(frame_size):
        raise InputError(
            f"calibration {path} maps into {mapper.frame_size[0]}x{mapper.frame_size[1]} frames, "
            f"but the frames are {frame_size[0]}x{frame_size[1]}: is it the right rig?"
        )
    return mapper, f"calibration {path}"
