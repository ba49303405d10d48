"""`slomo-rig soak`: a long simulated session at a high event rate while a worker is
killed every so often. Passes when the raw recording holds exactly what the simulator
produced, every interval without interpolated frames is listed in the session, and
replay then fills every one of them in.

`--fuzz` adds hostile peers (pipeline/hostile.py) flooding the job and results sockets
at full rate for the whole session: it must still pass, with every hostile message
counted as bad and the recorder's and workers' memory bounded."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dv_processing as dv

from calibration.mapping import EventToFrameMap
from pipeline.hostile import HostilePeers
from pipeline.live import LiveOptions, run_live
from pipeline.session import write_json_atomic
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

# The soak tests the pipeline, not the model: a fast interpolator, so that the replay of
# every interval fits in minutes on a CPU.
SOAK_MODEL = "blend"
FUZZ_RSS_LIMIT_MB = 1500  # recorder or worker peak memory under --fuzz


def _raw_counts(path: Path) -> tuple[int, int, int]:
    rec = dv.io.MonoCameraRecording(str(path))
    n_ev = n_fr = n_tr = 0
    while (b := rec.getNextEventBatch()) is not None:
        n_ev += b.size()
    while rec.getNextFrame() is not None:
        n_fr += 1
    while (t := rec.getNextTriggerBatch()) is not None:
        n_tr += len(t)
    return n_ev, n_fr, n_tr


def high_rate_config() -> SimConfig:
    """A busier scene than the demo: more and faster objects, faster pan, more noise."""
    return SimConfig(
        realtime=True, n_objects=6, object_speed=300.0, pan_speed=(150.0, 60.0), noise_rate_hz=2.0
    )


def run_soak(
    out: Path,
    minutes: float,
    kill_every_s: float = 60.0,
    workers: int = 2,
    model: str = SOAK_MODEL,
    replay: bool = True,
    log=print,
    fuzz: bool = False,
    fuzz_per_socket: int | None = None,
) -> dict[str, Any]:
    """fuzz: hostile peers flood the job and results sockets, at full rate for the whole
    session, or with fuzz_per_socket messages each (tests)."""
    cfg = high_rate_config()
    rig = SimulatedRig(cfg)
    duration = minutes * 60.0
    events, frames = rig.sources(duration_s=duration)
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)
    kills: list[dict[str, Any]] = []
    stop_killing = threading.Event()
    attacker = HostilePeers(out, fuzz_per_socket) if fuzz else None

    def killer(processes: dict) -> None:
        pool_procs = processes["workers"]

        def loop() -> None:
            t0 = time.monotonic()
            while not stop_killing.wait(kill_every_s):
                alive = [p for p in pool_procs if p.is_alive()]
                if not alive:
                    continue
                victim = alive[len(kills) % len(alive)]
                os.kill(victim.pid, signal.SIGKILL)
                kills.append({"at_s": round(time.monotonic() - t0, 1), "worker": victim.name})
                log(f"soak: killed {victim.name} at {kills[-1]['at_s']} s")

        threading.Thread(target=loop, daemon=True).start()
        if attacker is not None:
            attacker.start(processes)

    opts = LiveOptions(
        out=out,
        workers=workers,
        progress=sys.stderr.isatty(),
        job_timeout_s=20.0,
        drain_timeout_s=60.0,
        heartbeat_timeout_s=3.0,
        session_name=None,
    )
    opts.model = model
    t0 = time.monotonic()
    try:
        result = run_live(
            events,
            frames,
            mapper,
            {"backend": "sim", "sim": cfg.to_dict(), "soak": True},
            opts,
            on_started=killer,
        )
    finally:
        stop_killing.set()
        if attacker is not None:
            attacker.stop()
    wall = time.monotonic() - t0
    m = result.manifest
    n_ev, n_fr, n_tr = _raw_counts(result.session.raw_path)
    out_sec = m["output"]
    report: dict[str, Any] = {
        "session": str(result.session.path),
        "minutes": minutes,
        "wall_s": round(wall, 1),
        "kills": kills,
        "pool": m.get("pool", {}),
        "simulator": {
            "events": rig.events_emitted,
            "frames": rig.frames_emitted,
            "triggers": rig.triggers_emitted,
        },
        "raw": {"events": n_ev, "frames": n_fr, "triggers": n_tr},
        "event_rate_per_s": round(rig.events_emitted / duration),
        "intervals": m["capture"]["intervals"],
        "intervals_interpolated_live": out_sec["intervals_interpolated"],
        "intervals_skipped_live": out_sec["intervals_skipped"],
        "latency_p50_ms": out_sec.get("latency_p50_ms"),
        "latency_p99_ms": out_sec.get("latency_p99_ms"),
    }
    checks = {
        "raw_events_equal_simulator": n_ev == rig.events_emitted,
        "raw_frames_equal_simulator": n_fr == rig.frames_emitted,
        "every_skip_listed": out_sec["intervals_interpolated"] + len(out_sec["skipped_intervals"])
        == m["capture"]["intervals"],
    }
    if replay:
        from pipeline.inputs import InputOptions, open_input
        from pipeline.replay import ReplayOptions, run_replay

        ropts = ReplayOptions(
            out=out / "replay",
            factor=m["live"]["factor"],
            format="mp4",
            model=m["live"]["model"],
            progress=False,
        )
        with open_input(result.session.path, InputOptions()) as source:
            summary = run_replay(source, ropts)
        report["replay"] = {
            "status": summary["status"],
            "intervals": summary["intervals"],
            "timing": {k: summary["timing"].get(k) for k in ("wall_s", "intervals_per_s")},
        }
        checks["replay_fills_every_interval"] = (
            summary["status"] == "complete"
            and summary["intervals"]["skipped"] == 0
            and summary["intervals"]["interpolated"] >= m["capture"]["intervals"]
        )
    if attacker is not None:
        report["fuzz"] = {
            "sent": attacker.sent,
            "rate_per_s": round(sum(attacker.sent.values()) / wall),
            "recorder_bad_messages": out_sec.get("bad_messages", 0),
            "pool_bad_messages": m.get("pool", {}).get("bad_messages", 0),
            "peak_rss_mb": {k: round(v) for k, v in attacker.rss_mb.items()},
        }
        checks["hostile_messages_refused"] = (
            report["fuzz"]["recorder_bad_messages"] > 0 and report["fuzz"]["pool_bad_messages"] > 0
        )
        checks["memory_bounded"] = all(v < FUZZ_RSS_LIMIT_MB for v in attacker.rss_mb.values())
    report["checks"] = checks
    report["passed"] = all(checks.values())
    write_json_atomic(result.session.path / "soak.json", report)
    return report


def cmd_soak(args: argparse.Namespace) -> int:
    report = run_soak(
        args.out,
        args.minutes,
        args.kill_every,
        args.workers,
        args.model,
        log=lambda line: print(line, file=sys.stderr),
        fuzz=args.fuzz,
    )
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import positive_float, positive_int

    p = sub.add_parser("soak", help="long simulated session with worker kills, then replay")
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=10.0,
        help="length of the live session (default: 10)",
    )
    p.add_argument(
        "--kill-every", type=positive_float, default=60.0, help="seconds between worker kills"
    )
    p.add_argument(
        "--workers", type=positive_int, default=2, help="local worker processes (default: 2)"
    )
    p.add_argument(
        "--model", default=SOAK_MODEL, help="model live and in replay (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("sessions/soak"),
        help="folder for the session and its replay (default: %(default)s)",
    )
    p.add_argument(
        "--fuzz",
        action="store_true",
        help="also flood the job and results sockets with hostile messages at full rate",
    )
    p.set_defaults(func=cmd_soak)
