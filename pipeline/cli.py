"""The `slomo-rig` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from models.registry import DEFAULT_MODEL, MODEL_NAMES


class CliError(RuntimeError):
    """A user-facing error: printed without a traceback, exit code 2."""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def factor_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"slow-motion factor must be >= 2, got {text}")
    from pipeline.messages import MAX_FACTOR

    if value > MAX_FACTOR:  # frames per job are bounded on the wire
        raise argparse.ArgumentTypeError(f"slow-motion factor must be <= {MAX_FACTOR}, got {text}")
    return value


def check_model_spec(spec: str) -> None:
    """Fail on a model name before anything starts (a worker would only fail later, in
    another process): unknown names, a missing timelens:PATH, a bad integration:C."""
    from models.registry import CHECKPOINT_SUFFIXES

    name, _, arg = spec.partition(":")
    if name in MODEL_NAMES and name not in ("integration", "timelens") and not arg:
        return  # the baselines without weights (blend, flow, fusion, ...)
    if name == "integration":
        if arg:
            try:
                ok = float(arg) > 0
            except ValueError:
                ok = False
            if not ok:
                raise CliError(
                    f"--model {spec}: the argument is the contrast threshold, a positive "
                    "number such as integration:0.2"
                )
        return
    if name == "timelens":
        if not arg:
            return
        path = Path(arg).expanduser()
        if not path.is_file():
            raise CliError(
                f"--model {spec}: {path} is not a file; give an .onnx export or a checkpoint "
                f"({', '.join(CHECKPOINT_SUFFIXES)})"
            )
        if path.suffix.lower() not in (".onnx", *CHECKPOINT_SUFFIXES):
            raise CliError(
                f"--model {spec}: unknown file type {path.suffix or '(none)'}; use an .onnx "
                f"export or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
            )
        return
    raise CliError(f"--model {spec}: unknown model; choose one of: {', '.join(MODEL_NAMES)}")


def check_endpoint(option: str, endpoint: str) -> str:
    """A ZeroMQ endpoint a worker can connect to: tcp://HOST:PORT (or ipc://PATH)."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    example = "tcp://capture-host:5555"
    if "://" not in endpoint:
        raise CliError(
            f"{option} {endpoint}: no scheme; write it as tcp://{endpoint} (e.g. {example})"
        )
    scheme, _, rest = endpoint.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme != "tcp" or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise CliError(f"{option} {endpoint}: not a tcp://HOST:PORT endpoint (e.g. {example})")
    return endpoint


def _add_live_args(p: argparse.ArgumentParser, seconds_default: float | None) -> None:
    p.add_argument("--out", type=Path, required=True, help="folder to create the session in")
    p.add_argument(
        "--seconds",
        type=positive_float,
        default=seconds_default,
        help="stop after this many seconds"
        + (" (default: %(default)s)" if seconds_default else " (default: until Ctrl-C)"),
    )
    p.add_argument("--factor", type=factor_arg, default=8, help="slow-motion factor (default: 8)")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"interpolation model: {', '.join(MODEL_NAMES)} (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=1, help="inference worker processes (default: 1)")
    p.add_argument(
        "--playback-fps",
        type=positive_float,
        default=30.0,
        help="frame rate the video plays at (default: 30)",
    )
    p.add_argument(
        "--job-timeout",
        type=positive_float,
        default=30.0,
        help="seconds to wait for an interval's result before listing it as skipped",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    net = p.add_argument_group("network (workers on other machines)")
    net.add_argument(
        "--bind",
        default="127.0.0.1",
        help="interface for the job and result sockets (default: loopback only); "
        "any other needs --keys",
    )
    net.add_argument("--job-port", type=int, default=0, help="fixed port for workers to pull jobs")
    net.add_argument("--result-port", type=int, default=0, help="fixed port for worker results")
    net.add_argument("--keys", type=Path, help="CurveZMQ key folder made by 'slomo-rig keys'")


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=positive_float, default=50.0, help="simulated RGB camera fps")
    p.add_argument("--seed", type=int, default=0, help="simulated scene seed")


def _sim_rig(args: argparse.Namespace):
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig

    cfg = SimConfig(fps=args.fps, seed=args.seed, realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources()
    from calibration.mapping import EventToFrameMap

    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)
    info = {"backend": "sim", "sim": cfg.to_dict() if hasattr(cfg, "to_dict") else vars(cfg)}
    return events, frames, mapper, info


def _run_live(
    args: argparse.Namespace, events, frames, mapper, rig_info, wiring="trigger", calibration=None
) -> int:
    from pipeline.info import describe
    from pipeline.live import LiveOptions, run_live

    check_model_spec(args.model)  # before any folder or process exists
    opts = LiveOptions(
        out=args.out,
        factor=args.factor,
        model=args.model,
        workers=args.workers,
        playback_fps=args.playback_fps,
        seconds=args.seconds,
        job_timeout_s=args.job_timeout,
        progress=not args.quiet,
        wiring=wiring,
        calibration=calibration,
        bind_host=args.bind,
        job_port=args.job_port,
        result_port=args.result_port,
        keys=args.keys,
    )
    result = run_live(events, frames, mapper, rig_info, opts)
    demo_calibration = None
    if calibration is None and rig_info.get("backend") == "sim":
        from calibration.demorig import save_sim_calibration

        # the raw file alone then replays too: replay raw.aedat4 --calibration this file
        demo_calibration = save_sim_calibration(rig_info, result.session.path)
    fill = None
    if getattr(args, "fill_in", False) and result.manifest.get("status") == "complete":
        from pipeline.fillin import fill_in_session, summary_line

        fill = fill_in_session(
            result.session.path,
            args.model,
            args.factor,
            args.workers,
            args.playback_fps,
            progress=not args.quiet,
        )
    print(closing_summary(describe(result.session.path)))
    if fill is not None:
        print(summary_line(fill, args.model))
    if demo_calibration is not None:
        print(
            f"  calibration     {demo_calibration} (the simulated rig's geometry; "
            f"`slomo-rig replay {result.session.raw_path} --calibration {demo_calibration}`)"
        )
    if wiring != "trigger":
        print(
            "  clock           host clock only (a few ms): for full quality run "
            f"`slomo-rig sync {result.session.path}` (needs brisk motion in the recording), "
            "then replay"
        )
    print(
        f"  report          `slomo-rig report {result.session.path}` writes report.html "
        "(rates, drops, clock, intervals, thumbnails, the video; opens offline)"
    )
    return _live_exit_code(args, result.manifest)


def _live_exit_code(args: argparse.Namespace, manifest: dict) -> int:
    """0 complete, 130 interrupted (Ctrl-C), 1 anything else, with the first error on
    stderr: a failure never passes for success."""
    status = manifest.get("status")
    if status == "complete":
        return 0
    if status == "interrupted":
        print(f"slomo-rig {args.command}: interrupted; the session is kept", file=sys.stderr)
        return 130
    reason = manifest.get("error") or manifest.get("recorder_error") or "see 'slomo-rig info'"
    print(f"slomo-rig {args.command}: {status}: {reason}", file=sys.stderr)
    return 1


def closing_summary(info: dict) -> str:
    cap, out = info.get("capture", {}), info.get("output", {})
    span = 0.0
    if cap.get("first_event_us") is not None and cap.get("last_event_us") is not None:
        span = (cap["last_event_us"] - cap["first_event_us"]) / 1e6
    frames = out.get("frames_written", 0)
    fps = frames / span if span > 0 else 0.0
    lines = [
        "",
        f"Session: {info['path']}  ({info['status']})",
        f"  raw recording   {info['file_status']['raw']['path']}",
        f"  slow-motion     {info['file_status']['video']['path']}",
        f"  timestamps      {info['file_status']['timestamps']['path']}",
        f"  captured        {cap.get('events', 0):,} events, {cap.get('frames', 0)} frames, "
        f"{cap.get('triggers', 0)} triggers in {span:.2f} s of rig time",
        f"  output          {frames} frames ({out.get('original_frames', 0)} original + "
        f"{out.get('interpolated_frames', 0)} interpolated) = {fps:.0f} fps achieved",
        f"  skipped         {out.get('intervals_skipped', 0)} of {cap.get('intervals', 0)} intervals "
        f"(listed in session.json; 'slomo-rig replay' fills them in)",
        f"  drops           camera {cap.get('camera_skipped_frames', 0)} frames, "
        f"live events {cap.get('live_events_dropped', 0)}",
    ]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    events, frames, mapper, info = _sim_rig(args)
    return _run_live(args, events, frames, mapper, info)


def _load_calibration(path: Path):
    from calibration import load_calibration

    return load_calibration(path)


def _checked_map(calibration, events, frames):
    """The calibration's event->RGB map, after checking it was made for these cameras."""
    if tuple(calibration.events.size) != tuple(events.resolution) or tuple(
        calibration.rgb.size
    ) != tuple(frames.resolution):
        raise CliError(
            f"calibration {calibration.path} is for an event camera of "
            f"{calibration.events.size} and an RGB camera of {calibration.rgb.size}, but the rig "
            f"has {tuple(events.resolution)} and {tuple(frames.resolution)}: recalibrate with "
            "'slomo-rig calibrate' for this rig"
        )
    return calibration.event_to_frame_map()


def cmd_record(args: argparse.Namespace) -> int:
    if args.config:
        from dataclasses import asdict

        from calibration.mapping import EventToFrameMap
        from rig.config import RigConfig, open_sources

        cfg = RigConfig.load(args.config)
        events, frames = open_sources(cfg)
        calibration = _load_calibration(args.calibration) if args.calibration else None

        def mapper(ev, fr):
            if calibration is not None:
                return _checked_map(calibration, ev, fr)
            if tuple(ev.resolution) != tuple(fr.resolution):
                raise CliError(
                    f"the event camera ({ev.resolution[0]}x{ev.resolution[1]}) and the frame "
                    f"camera ({fr.resolution[0]}x{fr.resolution[1]}) differ: events must be "
                    "mapped into the RGB image; run 'slomo-rig calibrate' and pass --calibration"
                )
            return EventToFrameMap.identity(tuple(ev.resolution))

        if min(events.resolution) > 0 and min(frames.resolution) > 0:
            mapper = mapper(events, frames)  # sizes known before opening: check them now
        info = {"config_file": str(args.config), "config": asdict(cfg)}
        if calibration is not None:
            info["calibration"] = str(args.calibration)
        return _run_live(
            args, events, frames, mapper, info, wiring=cfg.wiring, calibration=args.calibration
        )
    if args.rig != "sim":
        raise CliError("record needs --rig sim or --config rig.toml")
    events, frames, mapper, info = _sim_rig(args)
    if args.calibration:
        calibration = _load_calibration(args.calibration)
        mapper = _checked_map(calibration, events, frames)
        info["calibration"] = str(args.calibration)
        return _run_live(args, events, frames, mapper, info, calibration=args.calibration)
    return _run_live(args, events, frames, mapper, info)


def cmd_info(args: argparse.Namespace) -> int:
    from pipeline.info import describe, format_text
    from pipeline.session import MANIFEST

    folder = Path(args.session)
    if folder.is_dir() and not (folder / MANIFEST).exists():
        inside = sorted(p.parent for p in folder.glob(f"*/{MANIFEST}"))
        if inside:
            names = ", ".join(str(p) for p in inside[-3:])
            raise CliError(
                f"{folder} is the folder sessions are created in, not a session; it holds "
                f"{len(inside)}: {names}"
                + (" (newest last)" if len(inside) > 1 else "")
                + f": run 'slomo-rig info {inside[-1]}'"
            )
    info = describe(folder)
    print_to_pipe(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def print_to_pipe(text: str) -> None:
    """Print, quietly stopping when the reader went away (`info --json | head`)."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.worker import default_worker_name, run_worker

    check_endpoint("--jobs", args.jobs)
    check_endpoint("--results", args.results)
    check_model_spec(args.model)
    if args.keys is not None and not Path(args.keys).is_dir():
        raise CliError(f"--keys {args.keys}: no such key folder (make one with 'slomo-rig keys')")
    name = args.name or default_worker_name()

    def say(text: str) -> None:
        print(f"worker {name}: {text}", file=sys.stderr, flush=True)

    say(
        f"model {args.model}; jobs from {args.jobs}, results to {args.results}"
        + (f", keys {args.keys}" if args.keys else "")
        + " (Ctrl-C stops)"
    )
    code = run_worker(args.jobs, args.results, args.model, name=name, keys=args.keys, announce=say)
    say("stopped")
    return code


def cmd_keys(args: argparse.Namespace) -> int:
    from pipeline.security import SERVER, add_worker_key, generate_keys
    from pipeline.session import check_output_folder

    folder = check_output_folder(args.folder, "keys folder")  # writable, before any key
    if args.worker is None or not (Path(folder) / f"{SERVER}.key_secret").exists():
        made = generate_keys(folder, overwrite=args.force and args.worker is None)
        print(f"CurveZMQ keys of the rig in {folder} (keep it on the capture machine):")
        for what, path in made.items():
            print(f"  {what:14s} {path}")
    if args.worker is None:
        print(
            "Give each worker machine its own keys: slomo-rig keys "
            f"{folder} --worker NAME; then\n"
            f"  capture: slomo-rig record ... --bind 0.0.0.0 --job-port 5555 --result-port 5556 --keys {folder}"
        )
        return 0
    made = add_worker_key(folder, args.worker, overwrite=args.force)
    print(
        f"worker {args.worker}: keys in {made['worker_folder']} (copy that folder to the worker; "
        "keep client.key_secret private)\n"
        f"  authorised as {made['authorized']} (delete that file to revoke this worker)\n"
        f"  worker: slomo-rig worker --jobs tcp://CAPTURE:5555 --results tcp://CAPTURE:5556 "
        f"--keys {made['worker_folder']} --name {args.worker}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slomo-rig",
        description="Live event-based slow motion from an RGB camera plus an event camera.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="record a few seconds from the simulated rig, end to end")
    _add_live_args(p, seconds_default=5.0)
    _add_sim_args(p)
    p.add_argument(
        "--no-fill-in",
        dest="fill_in",
        action="store_false",
        help="end after the live capture (default: then fill in the intervals the live "
        "path skipped, with a progress bar, so the video is complete)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("record", help="record live until Ctrl-C (or --seconds)")
    _add_live_args(p, seconds_default=None)
    _add_sim_args(p)
    p.add_argument("--rig", choices=["sim"], default=None, help="the simulated rig")
    p.add_argument("--config", type=Path, help="rig configuration file (TOML)")
    p.add_argument(
        "--calibration", type=Path, help="calibration from 'slomo-rig calibrate' (JSON or YAML)"
    )
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("info", help="what a session holds")
    p.add_argument(
        "session", type=Path, help="session folder (or the --out folder: it lists those inside)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("worker", help="run an inference worker for a capture node")
    p.add_argument(
        "--jobs", required=True, help="capture node's job endpoint, e.g. tcp://127.0.0.1:5555"
    )
    p.add_argument(
        "--results", required=True, help="recorder's endpoint, e.g. tcp://127.0.0.1:5556"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"interpolation model: {', '.join(MODEL_NAMES)} (default: %(default)s)",
    )
    p.add_argument(
        "--name", default=None, help="name in the session's worker list (default: HOST:PID)"
    )
    p.add_argument("--keys", type=Path, help="CurveZMQ key folder when the capture node uses keys")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("keys", help="make CurveZMQ keys for a rig spread over machines")
    p.add_argument("folder", type=Path, help="folder to create the keys in")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p.add_argument(
        "--worker",
        metavar="NAME",
        help="add one worker's own key pair (DIR/workers/NAME) and authorise it",
    )
    p.set_defaults(func=cmd_keys)

    from calibration import commands as calibration_commands
    from models import commands as model_commands
    from pipeline import bench, replay_commands, report, soak, sync_commands
    from pipeline.console import commands as console_commands
    from rig import commands as rig_commands

    replay_commands.register(sub)
    sync_commands.register(sub)
    report.register(sub)
    bench.register(sub)
    soak.register(sub)
    rig_commands.register(sub)
    calibration_commands.register(sub)
    model_commands.register(sub)
    from pipeline import holdout

    holdout.extend_eval_parser(sub.choices["eval"], replay_commands.add_input_args)
    console_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from pipeline.errors import is_user_error

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"slomo-rig {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from pipeline.entry import interrupted

        if interrupted():  # a Ctrl-C that surfaced as another error (an import cut short)
            print(f"slomo-rig {args.command}: interrupted", file=sys.stderr)
            return 130
        if args.verbose:
            raise
        if is_user_error(exc):
            print(f"slomo-rig {args.command}: error: {exc}", file=sys.stderr)
            return 2
        # Anything else is a bug, and must not pass for a user error (exit 1).
        print(
            f"slomo-rig {args.command}: internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in slomo-rig: run again with -v for the traceback and report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    from pipeline.entry import main as entry_main

    sys.exit(entry_main())
