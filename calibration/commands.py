"""`slomo-rig calibrate`: the wizard on the command line.

--rig sim runs on the simulated calibration rig (ground truth is reported too); any
other --rig value is a rig configuration file opened through rig.config.

Everything goes into one folder: --out DIR (default ./calibration-YYYYMMDD-HHMMSS/),
holding calibration.json (DV), calibration.yaml (OpenCV), calibration.lut.npz (the
pipeline's lookup table), calibration.overlay.png and views/ (what each camera saw).
--out FILE.json writes the calibration files under that name instead. An existing
calibration is never replaced without --force."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.board import BoardSpec
from calibration.errors import CalibrationError
from calibration.preview import MODES, LivePreview
from calibration.storage import sidecars
from calibration.wizard import Status, WizardOptions, WizardResult, live_pairs, run_wizard

CALIBRATION_NAME = "calibration.json"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate the RGB + event rig (intrinsics, extrinsics, event-to-RGB mapping)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rig", default="sim", help="'sim' or a rig configuration file (rig.toml)")
    p.add_argument("--auto", action="store_true", help="unattended: keep views automatically")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR|FILE.json",
        help="folder to write the calibration into (default: ./calibration-YYYYMMDD-HHMMSS/), "
        "or the DV calibration JSON to write",
    )
    p.add_argument("--force", action="store_true", help="replace an existing calibration")
    p.add_argument(
        "--rig-type",
        choices=("beam_splitter", "side_by_side"),
        default="beam_splitter",
        help="beam_splitter: one homography, exact at any depth; side_by_side: exact at "
        "--working-distance (default: %(default)s)",
    )
    p.add_argument("--board", default="9x6", help="INNER corners, COLSxROWS (default 9x6)")
    p.add_argument("--square-mm", type=float, default=25.0, help="square size (default 25)")
    p.add_argument("--views", type=int, default=20, help="stereo views to collect")
    p.add_argument("--min-views", type=int, default=8, help="fewer fails verification")
    p.add_argument(
        "--working-distance",
        type=float,
        default=None,
        metavar="M",
        help="side_by_side: depth in metres where events align exactly (default 2)",
    )
    p.add_argument("--show-pattern", action="store_true", help="blink the board full screen")
    p.add_argument("--blink-ms", type=float, default=200.0, help="blink period (live rigs)")
    p.add_argument(
        "--preview",
        choices=MODES,
        default="auto",
        help="live pictures of both cameras with the detection drawn: a window where a "
        "display exists, else images in the output folder's views/ (default: auto)",
    )
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sim-board", default="9x6", help=argparse.SUPPRESS)  # board the sim shows
    p.add_argument("--sim-blur", type=float, default=0.4, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_calibrate)
    return p


@dataclass(frozen=True)
class Destination:
    """Where a run writes: the calibration JSON (sidecars next to it) and the folder of
    pictures (live views, failures)."""

    json: Path
    pictures: Path
    folder: Path

    @classmethod
    def from_arg(cls, out: str | None) -> Destination:
        if out is None:
            folder = Path(_dt.datetime.now().strftime("calibration-%Y%m%d-%H%M%S"))
            return cls(folder / CALIBRATION_NAME, folder / "views", folder)
        path = Path(out)
        if path.suffix.lower() == ".json":
            return cls(path, path.with_suffix(".views"), path.parent)
        if path.suffix.lower() in (".yaml", ".yml", ".npz", ".png") or path.is_file():
            raise CalibrationError(
                f"--out {out} is a file name; the calibration is written as DV's JSON",
                "--out",
                "give a folder (--out calib/) or a .json file name (--out calib.json).",
            )
        return cls(path / CALIBRATION_NAME, path / "views", path)

    def existing(self) -> list[Path]:
        return [p for p in (self.json, *sidecars(self.json).values()) if p.exists()]


def cmd_calibrate(args: argparse.Namespace) -> int:
    status = Status()
    try:
        dest, opts = _checked(args)
    except CalibrationError as e:
        status.say(f"slomo-rig calibrate: error: {e}")
        return 2
    try:
        result = _calibrate(args, opts, status)
    except CalibrationError as e:
        status.say(f"slomo-rig calibrate: error: {e}")
        return 2
    except KeyboardInterrupt:
        status.say("calibration interrupted; nothing saved")
        return 130
    finally:
        if opts.preview is not None:
            opts.preview.close()
    print(summary(result, dest))
    return result.exit_code


def _checked(args: argparse.Namespace) -> tuple[Destination, WizardOptions]:
    """Every argument checked before a camera opens or a file is written."""
    for name, value in (("--views", args.views), ("--min-views", args.min_views)):
        if value < 1:
            raise CalibrationError(f"{name} {value} must be at least 1", name)
    for name, value in (
        ("--square-mm", args.square_mm),
        ("--blink-ms", args.blink_ms),
        ("--working-distance", args.working_distance),
    ):
        if value is not None and not value > 0:
            raise CalibrationError(f"{name} {value} must be a positive number", name)
    board = BoardSpec.parse(args.board, args.square_mm)
    if args.rig != "sim":
        from rig.config import ConfigError, RigConfig

        try:
            RigConfig.load(args.rig)
        except ConfigError as e:
            raise CalibrationError(str(e), "--rig", "fix the file, or use --rig sim.") from None
    dest = Destination.from_arg(args.out)
    there = dest.existing()
    if there and not args.force:
        raise CalibrationError(
            f"a calibration is already there ({', '.join(str(p) for p in there)})",
            "--out",
            "choose another --out, or add --force to replace it.",
        )
    from pipeline.session import OutputFolderError, check_output_folder

    try:  # a read-only --out is found now, not after the views are taken
        check_output_folder(dest.folder)
    except OutputFolderError as e:
        raise CalibrationError(str(e), "--out", "choose a writable folder.") from None
    opts = WizardOptions(
        board=board,
        rig_type=args.rig_type,
        views=args.views,
        min_views=args.min_views,
        working_distance_m=args.working_distance,
        out=dest.json,
        interactive=not args.auto and args.rig != "sim",
        preview=LivePreview(dest.pictures, args.preview),
        pictures=dest.pictures,
    )
    return dest, opts


def _calibrate(args: argparse.Namespace, opts: WizardOptions, status: Status) -> WizardResult:
    if opts.preview is not None and opts.preview.note:
        status.say(opts.preview.note)
    if args.rig == "sim":
        return _calibrate_sim(args, opts, status)
    return _calibrate_live(args, opts, status)


def _camera_line(label: str, cam) -> str:
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    d = ", ".join(f"{v:+.4f}" for v in np.ravel(cam.dist)[:5])
    return (
        f"  {label:7s} {cam.size[0]}x{cam.size[1]}  f=({fx:.2f}, {fy:.2f})  c=({cx:.2f}, {cy:.2f})"
        f"  dist ({d})  rms {cam.rms_px:.3f} px"
    )


def summary(result: WizardResult, dest: Destination) -> str:
    """The one screen that ends the run: saved values, verdict, files, next step."""
    import cv2

    lines = [""]
    c, ver = result.calibration, result.verification
    if result.exit_code == 0 and c is not None:
        lines.append(f"Calibration saved (the values as read back from {c.path}):")
        lines.append(_camera_line("RGB", c.rgb))
        lines.append(_camera_line("events", c.events))
        rot = float(np.degrees(np.linalg.norm(cv2.Rodrigues(np.asarray(c.r, np.float64))[0])))
        lines.append(
            f"  stereo  baseline {c.baseline_m * 1000:.1f} mm, rotation {rot:.2f} deg, rms "
            f"{c.stereo_rms_px:.3f} px; {c.rig_type}, mapping {c.mapping.label}"
        )
    else:
        lines.append("Calibration NOT saved.")
    if ver is not None:
        lines.append(ver.verdict())
    elif result.advice:
        lines.append(f"FAIL: {result.advice[0]}")
    if result.files:
        lines.append("Files:")
        for key, path in result.files.items():
            lines.append(f"  {key:8s} {path}")
    if dest.pictures.is_dir():
        n = len(list(dest.pictures.glob("*.jpg"))) + len(list(dest.pictures.glob("*.png")))
        lines.append(f"  views    {dest.pictures}/ ({n} pictures of what the cameras saw)")
    if result.exit_code == 0 and c is not None:
        lines.append(
            f"Next: slomo-rig record --config rig.toml --calibration {c.path} --out sessions"
        )
    return "\n".join(lines)


def _calibrate_sim(args, opts: WizardOptions, status: Status) -> WizardResult:
    from calibration.simcheck import alignment_error_px, intrinsic_errors
    from calibration.simrig import SimCalibRig, default_truth

    shown = BoardSpec.parse(args.sim_board, args.square_mm)
    rig = SimCalibRig(default_truth(args.rig_type), shown, seed=args.seed, blur_px=args.sim_blur)
    if args.show_pattern:
        status.say("--show-pattern: the simulated screen blinks the board; no display used")
    tr = rig.truth
    result = run_wizard(
        rig.pairs(opts.max_captures or 2 * opts.views + 10),
        tr.rgb.size,
        tr.events.size,
        opts,
        status,
    )
    if result.calibration is not None:
        errs = intrinsic_errors(result.calibration, tr)
        status.say("ground truth: " + ", ".join(f"{k} {v:.3%}" for k, v in errs.items()))
        for z in (0.5, 2.0, 10.0):
            e = alignment_error_px(result.calibration, tr, z)
            pred = result.calibration.expected_parallax_px(z)
            status.say(
                f"  alignment vs truth at {z:g} m: {e:.3f} px (parallax predicted {pred:.3f} px)"
            )
    return result


def _calibrate_live(args, opts: WizardOptions, status: Status) -> WizardResult:
    from rig.config import RigConfig, open_sources

    cfg = RigConfig.load(args.rig)
    events, frames = open_sources(cfg)
    pattern = None
    if args.show_pattern:
        from calibration.pattern import BlinkingPattern

        pattern = BlinkingPattern(opts.board, args.blink_ms / 1000)
    opts.min_shift_px = 15.0
    opts.max_captures = 100_000
    with frames, events:
        try:
            status.say("hold the board still in view of both cameras; move it between views")
            pairs = live_pairs(
                frames, events, int(args.blink_ms * 1000), pattern.tick if pattern else None
            )
            return run_wizard(pairs, frames.resolution, events.resolution, opts, status)
        finally:
            if pattern is not None:
                pattern.close()


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (python -m calibration.commands ...) until the CLI includes it."""
    parser = argparse.ArgumentParser(prog="slomo-rig")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
