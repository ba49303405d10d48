"""Sensors: one interface for event sources, one for frame sources, many backends."""

from rig.base import DeviceInfo, EventSource, FrameSource, SourceError
from rig.types import EventBatch, EventSlice, Frame

__all__ = [
    "DeviceInfo",
    "EventBatch",
    "EventSlice",
    "EventSource",
    "Frame",
    "FrameSource",
    "SourceError",
]
