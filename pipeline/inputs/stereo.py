"""A stereo AEDAT4 recording (what dv-processing's StereoCameraWriter and DV write for
two cameras): frames from one camera, events from the other, mapped with
--calibration. Also a one-camera file whose frame and event sizes differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.inputs.aedat4file import Aedat4File, StreamInfo
from pipeline.inputs.base import InputError
from pipeline.inputs.davis import Aedat4Source
from pipeline.inputs.mapping import load_mapper


def stereo_streams(
    file: Aedat4File, frame_camera: str | None = None
) -> tuple[StreamInfo, StreamInfo]:
    """(frame stream, event stream): the frames of the camera that has frames, the
    events of the other camera (or of the same one when only one has events)."""
    cams = file.cameras()
    with_frames = [c for c, s in cams.items() if "FRME" in s]
    with_events = [c for c, s in cams.items() if "EVTS" in s]
    if frame_camera is not None:
        if frame_camera not in with_frames:
            raise InputError(
                f"{file.path}: camera {frame_camera!r} has no frames; cameras with frames: {with_frames}"
            )
        with_frames = [frame_camera]
    if not with_frames or not with_events:
        raise InputError(
            f"{file.path} needs a frame stream and an event stream, has {sorted(cams)}"
        )
    fcam = with_frames[0]
    ecams = [c for c in with_events if c != fcam] or with_events
    return cams[fcam]["FRME"], cams[ecams[0]]["EVTS"]


class StereoSource(Aedat4Source):
    kind = "stereo-aedat4"

    @classmethod
    def open(
        cls, path: Path, calibration: str | Path | None, frame_camera: str | None = None
    ) -> StereoSource:
        file = Aedat4File(path)
        fr, ev = stereo_streams(file, frame_camera)
        if calibration is None:
            raise InputError(
                f"{path} holds frames from {fr.source!r} and events from {ev.source!r}: give "
                "--calibration FILE (from 'slomo-rig calibrate' or DV) to map the events into "
                "the frames, or '--calibration identity' if they share one pixel grid"
            )
        assert fr.size is not None and ev.size is not None
        mapper, how = load_mapper(calibration, ev.size, fr.size)
        src = cls(path, fr, ev, mapper, file)
        src.mapping_from = how
        return src

    mapping_from: str = ""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mapping": self.mapping_from}
