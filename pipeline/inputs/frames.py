"""A recording's keyframes behind the live frame-source interface (rig.base.FrameSource),
the way dv-processing's CameraInputBase serves a camera and a file alike: ``read()``
returns the next Frame, ``EOFError`` at the end. Replay reads every input kind through
it, as capture reads a camera.

The frames are already on the rig clock at mid-exposure (each input puts them there:
stored exposure, trigger matching, a clock correction), so a Frame's timestamp_us is
that time and exposure_us 0; Frame.index is the frame's number in the input.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.inputs.base import Keyframe, ReplaySource
from rig.base import FrameSource
from rig.types import Frame


class FileFrameSource(FrameSource):
    backend = "file"

    def __init__(self, source: ReplaySource) -> None:
        super().__init__()
        self.source = source
        self.resolution = source.frame_size
        self._frames: Iterator[Keyframe] | None = None

    def open(self) -> None:
        self._frames = iter(self.source.keyframes())
        self._open = True

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if self._frames is None:
            raise RuntimeError("FileFrameSource.read before open")
        try:
            kf = next(self._frames)
        except StopIteration:
            raise EOFError(f"{self.source.path}: no more frames") from None
        return Frame(kf.image, kf.index, kf.t_us, 0)

    def close(self) -> None:
        self._frames = None
        self._open = False
