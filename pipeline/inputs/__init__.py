"""Inputs that `slomo-rig replay` reads, one module per kind, behind one interface
(`ReplaySource`: keyframes on the event clock, events per interval in the frame grid):

- session:  a slomo-rig session folder (raw.aedat4 + session.json)
- davis:    an iniVation DAVIS AEDAT4 file (frames and events of one sensor)
- stereo:   a two-camera AEDAT4 file (frames of one camera, events of the other)
- pair:     an event file (AEDAT4 or Prophesee RAW) + a video or image folder
- timelens: the official TimeLens / HS-ERGB / BS-ERGB folder layout

`open_input` looks at a path and picks the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.inputs.base import InputError, Keyframe, MissingEvents, ReplaySource

__all__ = [
    "InputError",
    "InputOptions",
    "Keyframe",
    "MissingEvents",
    "ReplaySource",
    "open_input",
]


@dataclass
class InputOptions:
    calibration: str | None = None  # a calibration file, or "identity"
    frames: Path | None = None  # RGB video or image folder (with an event file)
    frame_timestamps: Path | None = None
    timestamps_unit: str = "auto"
    sync: str = "timestamps"  # or "triggers"
    exposure_us: int = 0
    event_coord_scale: float | None = None
    frame_camera: str | None = None
    raw_resolution: tuple[int, int] | None = None


def open_input(path: str | Path, opts: InputOptions | None = None) -> ReplaySource:
    """Open INPUT as whichever kind it is; InputError (with what to do) otherwise."""
    from pipeline.inputs.aedat4file import MAGIC, Aedat4File, Aedat4FormatError

    opts = opts or InputOptions()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist: check the path")
    try:
        if path.is_dir():
            if (path / "session.json").exists():
                from pipeline.inputs.session import SessionSource

                _no_frames(opts, path, "a session")
                return SessionSource.open(path, opts.calibration)
            from pipeline.inputs.timelens import TimeLensFolderSource, find_layout

            if find_layout(path) is not None:
                _no_frames(opts, path, "a TimeLens folder")
                return TimeLensFolderSource(path, opts.event_coord_scale, opts.timestamps_unit)
            raise InputError(
                f"{path} is a folder but neither a slomo-rig session (session.json) nor a "
                "TimeLens sequence (images/ + events/ + timestamp.txt)"
            )
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
        if head == MAGIC:
            file = Aedat4File(path)
            cams = file.cameras()
            has_frames = any("FRME" in s for s in cams.values())
            has_events = any("EVTS" in s for s in cams.values())
            if has_events and not has_frames:
                return _pair(path, opts)
            if has_frames and not has_events:
                raise InputError(f"{path} holds frames but no events: nothing to interpolate with")
            if not has_frames:
                raise InputError(f"{path} holds neither frames nor events")
            _no_frames(opts, path, "an AEDAT4 file with its own frames")
            ev_cams = [c for c, s in cams.items() if "EVTS" in s]
            fr_cams = [c for c, s in cams.items() if "FRME" in s]
            if len(cams) > 1 and (set(ev_cams) != set(fr_cams) or opts.frame_camera):
                from pipeline.inputs.stereo import StereoSource

                return StereoSource.open(path, opts.calibration, opts.frame_camera)
            from pipeline.inputs.davis import DavisSource
            from pipeline.inputs.mapping import load_mapper

            mapper = None
            if opts.calibration is not None:
                from pipeline.inputs.davis import pick_streams

                fr, ev, _ = pick_streams(file)
                assert fr is not None and ev is not None and fr.size and ev.size
                mapper, _how = load_mapper(opts.calibration, ev.size, fr.size)
            return DavisSource.open(path, mapper)
        if head.startswith(b"% "):
            return _pair(path, opts)
    except Aedat4FormatError as exc:
        raise InputError(str(exc)) from None
    raise InputError(
        f"{path}: unknown input format. replay reads a session folder, a TimeLens folder, "
        "an AEDAT4 file, or an event file (AEDAT4 / Prophesee RAW) with --frames"
    )


def _no_frames(opts: InputOptions, path: Path, what: str) -> None:
    if opts.frames is not None:
        raise InputError(f"{path} is {what} with its own frames: drop --frames")


def _pair(path: Path, opts: InputOptions) -> ReplaySource:
    from pipeline.inputs.pair import PairSource

    if opts.frames is None:
        raise InputError(
            f"{path} holds only events: give the RGB recording with --frames VIDEO_OR_FOLDER "
            "and its times with --frame-timestamps FILE"
        )
    return PairSource(
        path,
        Path(opts.frames),
        Path(opts.frame_timestamps) if opts.frame_timestamps else None,
        opts.calibration,
        opts.sync,
        opts.exposure_us,
        opts.timestamps_unit,
        opts.raw_resolution,
    )
