"""`slomo-rig calibrate`: the wizard on the command line.

--rig sim runs on the simulated calibration rig (ground truth is reported too); any
other --rig value is a rig configuration file opened through rig.config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calibration.board import BoardSpec
from calibration.errors import CalibrationError
from calibration.wizard import Status, WizardOptions, WizardResult, live_pairs, run_wizard


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate the RGB + event rig (intrinsics, extrinsics, event-to-RGB mapping)",
        description=__doc__,
    )
    p.add_argument("--rig", default="sim", help="'sim' or a rig configuration file")
    p.add_argument("--auto", action="store_true", help="unattended: keep views automatically")
    p.add_argument("--out", default="calib.json", help="DV calibration JSON to write")
    p.add_argument("--rig-type", choices=("beam_splitter", "side_by_side"), default="beam_splitter")
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
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sim-board", default="9x6", help=argparse.SUPPRESS)  # board the sim shows
    p.add_argument("--sim-blur", type=float, default=0.4, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args: argparse.Namespace) -> int:
    status = Status()
    try:
        result = _calibrate(args, status)
    except CalibrationError as e:
        status.say(f"calibration failed: {e}")
        return 2
    except KeyboardInterrupt:
        status.say("calibration interrupted; nothing saved")
        return 130
    return result.exit_code


def _options(args: argparse.Namespace) -> WizardOptions:
    if args.views < 1:
        raise CalibrationError(f"--views {args.views} must be at least 1", "--views")
    return WizardOptions(
        board=BoardSpec.parse(args.board, args.square_mm),
        rig_type=args.rig_type,
        views=args.views,
        min_views=args.min_views,
        working_distance_m=args.working_distance,
        out=Path(args.out),
        interactive=not args.auto and args.rig != "sim",
    )


def _calibrate(args: argparse.Namespace, status: Status) -> WizardResult:
    opts = _options(args)
    if args.rig == "sim":
        return _calibrate_sim(args, opts, status)
    return _calibrate_live(args, opts, status)


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
