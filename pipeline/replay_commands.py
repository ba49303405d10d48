"""`slomo-rig replay`: the command line of offline replay (pipeline/replay.py).

Wired into pipeline/cli.py with ``replay_commands.register(sub)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from models.registry import DEFAULT_MODEL, MODEL_NAMES
from pipeline.cli import factor_arg, positive_float

if TYPE_CHECKING:
    from pipeline.inputs import InputOptions

EPILOG = """\
INPUT is one of:
  a slomo-rig session folder     (raw.aedat4 + session.json)
  a DAVIS AEDAT4 file            (frames and events of one sensor)
  a stereo AEDAT4 file           (needs --calibration)
  an event file, AEDAT4 or RAW   (needs --frames, --frame-timestamps, --calibration)
  a TimeLens / HS-ERGB folder    (images/ + timestamp.txt + events/%06d.npz)

A re-run with the same INPUT, --out and settings resumes where the last one stopped.
Exit codes: 0 complete (skipped intervals are listed), 2 user error, 130 interrupted.
"""


def _workers(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give WIDTHxHEIGHT, got {text}") from None
    return w, h


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The options that say how to read INPUT (shared with `eval --recording`)."""
    p.add_argument(
        "--calibration",
        help="calibration file (.json/.yaml) mapping events into the frames, or 'identity'",
    )
    g = p.add_argument_group("event file + RGB recording")
    g.add_argument("--frames", type=Path, help="RGB video file or image folder")
    g.add_argument(
        "--frame-timestamps",
        type=Path,
        help="one time per frame (mid-exposure, µs on the event clock)",
    )
    g.add_argument(
        "--timestamps-unit",
        choices=["auto", "us", "ms", "s", "ns"],
        default="auto",
        help="unit of the timestamps file (default: auto)",
    )
    g.add_argument(
        "--sync",
        choices=["timestamps", "triggers"],
        default="timestamps",
        help="timestamps: the times are on the event clock; triggers: match frames to the event file's trigger edges",
    )
    g.add_argument(
        "--exposure-us",
        type=int,
        default=0,
        help="with --sync triggers: exposure time, to use mid-exposure",
    )
    g.add_argument(
        "--raw-size", type=_size, help="sensor size WxH for RAW files whose header lacks it"
    )
    g.add_argument("--frame-camera", help="stereo AEDAT4: name of the camera whose frames to use")
    g = p.add_argument_group("TimeLens folders")
    g.add_argument(
        "--event-coord-scale",
        type=positive_float,
        help="divide event x, y by this (default: detected; HS-ERGB uses 32)",
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "replay",
        help="interpolate a recording offline (session, AEDAT4, RAW + video, TimeLens folder)",
        description="Interpolate a whole recording offline, faster than real time where the "
        "hardware allows; resumable; damaged input is replayed around the damage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        type=Path,
        metavar="INPUT",
        help="a session folder, or a recording (see above for the kinds)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument(
        "--factor", type=factor_arg, help="slow-motion factor: K-1 frames inserted per interval"
    )
    rate.add_argument(
        "--fps",
        type=positive_float,
        help="output frame rate in capture time (frames per second of the scene)",
    )
    p.add_argument(
        "--format",
        choices=["mp4", "mkv", "png"],
        default="mp4",
        help="mp4 (H.264), mkv (FFV1 lossless) or png (default: mp4)",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"{', '.join(MODEL_NAMES)} (default: %(default)s)"
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes (1: in this process; default 1)",
    )
    p.add_argument(
        "--playback-fps",
        type=positive_float,
        default=30.0,
        help="frame rate the video plays at (default 30)",
    )
    add_input_args(p)
    p.add_argument(
        "--restart", action="store_true", help="discard an earlier replay in --out and start over"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="allow --out to be a recording's session folder (replaces its live video)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_replay)
    return p


def input_options(args: argparse.Namespace) -> InputOptions:
    """InputOptions from the options add_input_args added."""
    from pipeline.inputs import InputOptions

    return InputOptions(
        calibration=args.calibration,
        frames=args.frames,
        frame_timestamps=args.frame_timestamps,
        timestamps_unit=args.timestamps_unit,
        sync=args.sync,
        exposure_us=args.exposure_us,
        event_coord_scale=args.event_coord_scale,
        frame_camera=args.frame_camera,
        raw_resolution=args.raw_size,
    )


def _check_out(args: argparse.Namespace) -> None:
    """--out must be writable, and never a recording's own session folder: its
    slowmo.mp4 and timestamps.csv are the live output, which a replay (even with
    --restart) would replace; --force allows it."""
    from pipeline.session import MANIFEST, OutputFolderError, check_output_folder

    out = Path(args.out)
    if (out / MANIFEST).is_file() and not getattr(args, "force", False):
        raise OutputFolderError(
            f"--out {out} is a recording's session folder: the replay would replace its "
            f"live slowmo.mp4 and timestamps.csv; choose another folder (e.g. --out "
            f"{out / 'replay'}), or add --force to replace them"
        )
    check_output_folder(out)


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.errors import is_user_error
    from pipeline.inputs import open_input
    from pipeline.replay import ReplayOptions, format_summary, run_replay

    _check_out(args)  # before the input is opened or a model loaded
    try:
        opts = ReplayOptions(
            out=args.out,
            factor=args.factor,
            fps=args.fps,
            format=args.format,
            model=args.model,
            workers=args.workers,
            playback_fps=args.playback_fps,
            progress=not args.quiet,
            restart=args.restart,
        )
        with open_input(args.input, input_options(args)) as source:
            summary = run_replay(source, opts)
    except Exception as exc:
        if not is_user_error(exc):  # one list of user errors for every command
            raise
        print(f"slomo-rig replay: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0 if summary["status"] == "complete" else 130


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (python -m pipeline.replay_commands ...) until cli.py wires it."""
    parser = argparse.ArgumentParser(prog="slomo-rig")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("slomo-rig replay: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
