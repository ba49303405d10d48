"""`slomo-rig bench`: the figures in docs/benchmarks.md, each taken in one run so the
ratios hold on a noisy machine."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def bench_sim(args: argparse.Namespace) -> dict[str, Any]:
    from rig.sim.bench import bench_simulator

    from rig.sim.config import SimConfig

    return {"simulator": bench_simulator(seconds=args.seconds, config=SimConfig())}


def bench_demo(args: argparse.Namespace) -> dict[str, Any]:
    """The whole live pipeline on the simulated rig in real time: does it keep up, how
    many intervals get interpolated, what output fps is achieved."""
    from calibration.mapping import EventToFrameMap
    from pipeline.live import LiveOptions, run_live
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig

    cfg = SimConfig(realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources()
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = run_live(
            events,
            frames,
            mapper,
            {"backend": "sim"},
            LiveOptions(
                out=Path(tmp), seconds=args.seconds, model=args.model, factor=8, progress=False
            ),
        )
        wall = time.perf_counter() - t
        m = result.manifest
    cap, out = m["capture"], m["output"]
    span = (cap["last_event_us"] - cap["first_event_us"]) / 1e6
    return {
        "demo": {
            "model": args.model,
            "rig_seconds": round(span, 3),
            "wall_seconds_total": round(wall, 2),
            "capture_wall_seconds": m.get("wall_seconds"),
            "events": cap["events"],
            "events_per_s": round(cap["events"] / span),
            "frames": cap["frames"],
            "intervals": cap["intervals"],
            "intervals_interpolated": out["intervals_interpolated"],
            "intervals_skipped": out["intervals_skipped"],
            "output_frames": out["frames_written"],
            "output_fps_achieved": round(out["frames_written"] / span, 1),
        }
    }


BENCHES = {"sim": bench_sim, "demo": bench_demo}


def cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHES) if args.what == "all" else [args.what]
    results: dict[str, Any] = {}
    for name in names:
        results.update(BENCHES[name](args))
    print(json.dumps(results, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput (see docs/benchmarks.md)")
    p.add_argument("what", choices=[*BENCHES, "all"])
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of simulated time")
    p.add_argument("--model", default="integration", help="model for the demo bench")
    p.add_argument("--json", action="store_true", help="JSON output (the default format)")
    p.set_defaults(func=cmd_bench)
