"""`slomo-rig console`: the operator console, a web page served by the tool itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="the operator console in a web browser (live view, record, calibrate, sessions)",
        description="Serve the operator console and print its URL. Loopback only unless "
        "--bind says otherwise; then every request needs the printed token.",
    )
    p.add_argument("--rig", choices=["sim"], default=None, help="the simulated rig (default)")
    p.add_argument("--config", type=Path, help="rig configuration file (TOML)")
    p.add_argument("--calibration", type=Path, help="calibration from 'slomo-rig calibrate'")
    p.add_argument("--sessions", type=Path, default=Path("sessions"), help="sessions folder")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0: any)")
    p.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    p.add_argument(
        "--token-file", type=Path, help="file holding the access token (else one is made up)"
    )
    p.add_argument("--seed", type=int, default=0, help="simulated scene seed")
    p.add_argument("--sim-unplug-after", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_console)


def _check(args: argparse.Namespace) -> None:
    from pipeline.cli import CliError

    if args.rig and args.config:
        raise CliError("give --rig sim or --config rig.toml, not both")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port}: give 0 to 65535")
    if args.config is not None:
        from rig.config import RigConfig

        RigConfig.load(args.config)  # a mistake names the file and the key, before serving
    if args.calibration is not None:
        from calibration import load_calibration

        load_calibration(args.calibration)


def cmd_console(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from pipeline.cli import CliError
    from pipeline.console.rig import RigSpec
    from pipeline.console.security import Access, ConsoleSecurityError, is_loopback
    from pipeline.console.server import Console, ConsoleConfig, build_app

    _check(args)
    try:
        access = Access.make(args.bind, args.token_file)
    except ConsoleSecurityError as exc:
        raise CliError(str(exc)) from None
    spec = RigSpec(
        config=args.config,
        calibration=args.calibration,
        seed=args.seed,
        unplug_after=args.sim_unplug_after,
    )
    console = Console(ConsoleConfig(args.sessions, spec, access))
    sock = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.bind, args.port))
    except OSError as exc:
        raise CliError(
            f"cannot listen on {args.bind}:{args.port} ({exc.strerror}): choose another --port"
        ) from None
    sock.listen(128)  # connections wait in the backlog until the server takes them
    port = sock.getsockname()[1]
    host = "127.0.0.1" if is_loopback(args.bind) else args.bind
    if args.bind in ("0.0.0.0", "::"):
        host = socket.gethostname()
    url = f"http://{host}:{port}/"
    if not access.open_reads:
        url += f"?token={access.token}"
    print(f"slomo-rig console: {url}", flush=True)
    if not access.open_reads:
        print("  (listening beyond loopback: every request needs this token)", flush=True)
    config = uvicorn.Config(build_app(console), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    print("slomo-rig console: stopped", file=sys.stderr)
    return 0
