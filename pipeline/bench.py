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
    """Wall-clock and CPU-time real-time factors: on a shared machine the wall clock
    counts other jobs' time too, the CPU time (this process) much less so."""
    from rig.sim.bench import bench_simulator
    from rig.sim.config import SimConfig

    r = bench_simulator(seconds=args.seconds, config=SimConfig())
    if r.get("cpu_seconds"):
        r["cpu_realtime_factor"] = r["sim_seconds"] / r["cpu_seconds"]
    return {"sim": r}


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
            "latency_p50_ms": out.get("latency_p50_ms"),
            "latency_p99_ms": out.get("latency_p99_ms"),
        }
    }


def bench_transport_cmd(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.transport_bench import bench_transport

    return {"transport": bench_transport(seconds=args.seconds)}


def bench_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Voxel-grid building, the raw writer's sustained rate, and the live pipeline on
    the simulated rig (latency, output fps)."""
    import numpy as np

    from models.timelens import voxel_grid
    from pipeline.rawfile import RawRecorder
    from rig.types import EventBatch

    rng = np.random.default_rng(0)
    n = 2_000_000
    w, h = 640, 480
    x = rng.uniform(0, w - 1, n).astype(np.float32)
    y = rng.uniform(0, h - 1, n).astype(np.float32)
    t = np.sort(rng.integers(0, 20_000, n)).astype(np.int64)
    p = rng.integers(0, 2, n).astype(np.int8)
    times = []
    for _ in range(4):  # the first run pays for page faults: report the best warm run
        t0 = time.perf_counter()
        voxel_grid(x, y, t, p, 0, 20_000, 5, h, w)
        times.append(time.perf_counter() - t0)
    voxel_rate = n / min(times[1:])
    out: dict[str, Any] = {"voxel_grid_events_per_s": round(voxel_rate)}
    total, batch = 20_000_000, 50_000
    for compression in ("lz4", "none"):
        with tempfile.TemporaryDirectory() as tmp:
            rec = RawRecorder(Path(tmp) / "raw.aedat4", (w, h), (w, h), compression=compression)
            bx = rng.integers(0, w, batch).astype(np.int16)
            by = rng.integers(0, h, batch).astype(np.int16)
            bp = rng.integers(0, 2, batch).astype(np.int8)
            bt = np.arange(batch, dtype=np.int64) // 10
            t0 = time.perf_counter()
            for i in range(total // batch):
                rec.write_events(EventBatch(bt + i * (batch // 10), bx, by, bp))
            rec.close()
            dt = time.perf_counter() - t0
            size = (Path(tmp) / "raw.aedat4").stat().st_size
        out[f"raw_write_{compression}_events_per_s"] = round(total / dt)
        out[f"raw_write_{compression}_bytes_per_event"] = round(size / total, 2)
    out.update(bench_demo(args)["demo"])
    return {"pipeline": out}


def bench_model_cmd(args: argparse.Namespace) -> dict[str, Any]:
    """ms per inserted frame for eager PyTorch and the ONNX engine (fp32, and int8 on
    CPU; fp16 on a GPU when one works), full-size and small, in one alternating run;
    plus eager torch on CUDA (fp32, fp16; batch 7 = one 8x interval) when torch sees a GPU."""
    import torch

    from models.bench import bench_model, bench_torch_cuda

    sizes = tuple(tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes)
    rows = bench_model(sizes=sizes, widths=tuple(args.widths), repeats=args.repeats)
    if torch.cuda.is_available():
        rows += bench_torch_cuda(sizes=sizes, widths=tuple(args.widths))
    return {"model": rows}


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    if isinstance(v, list | tuple):
        return "x".join(_value(x) for x in v) if len(v) == 2 else str(v)
    return str(v)


def format_result(name: str, result: Any) -> str:
    """One benchmark as a Markdown table: the model bench's rows as its own table,
    every other bench as measure | value (nested sections flattened with a dot)."""
    if name == "model":
        from models.bench import format_table

        return format_table(result)
    if name == "console":
        from pipeline.console.bench import format_table as console_table

        return console_table(result)
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                flat.append((f"{prefix}{k}", v))

    walk("", result if isinstance(result, dict) else {"value": result})
    width = max(len(k) for k, _ in flat) if flat else 7
    lines = [f"| {'measure':<{width}} | value |", f"| {'-' * width} | ---: |"]
    lines += [f"| {k:<{width}} | {_value(v)} |" for k, v in flat]
    return "\n".join(lines)


def bench_console_cmd(args: argparse.Namespace) -> dict[str, Any]:
    """The operator console: capture with two browsers watching the previews vs none
    (pipeline/console/bench.py; needs Chromium and selenium)."""
    from pipeline.console.bench import bench_console

    result = bench_console(
        args.seconds, args.model, rounds=args.repeats, sim=args.sim, loop_s=args.loop_s
    )
    return {"console": result}


BENCHES = {
    "model": bench_model_cmd,
    "sim": bench_sim,
    "demo": bench_demo,
    "transport": bench_transport_cmd,
    "pipeline": bench_pipeline,
    "console": bench_console_cmd,
}


def cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHES) if args.what == "all" else [args.what]
    results: dict[str, Any] = {}
    for name in names:
        results.update(BENCHES[name](args))
        if not args.json:  # each table as soon as its bench is done
            print(f"\n## bench {name}\n\n{format_result(name, results[name])}", flush=True)
    if args.json:
        # One bench prints its own object (e.g. {"events_per_s": ..., "lost_events": ...}).
        print(json.dumps(results[names[0]] if len(names) == 1 else results, indent=2))
    return 0


def size_arg(text: str) -> str:
    """WxH, both at least 16 pixels (what --sizes takes)."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) >= 16 and int(h) >= 16):
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT, e.g. 640x480, got {text!r}")
    return text


def sim_rate_arg(text: str) -> str:
    """--sim WxH@FPS for the console bench, checked before any work."""
    from pipeline.console.bench import SimRate

    try:
        SimRate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def loop_arg(text: str) -> float:
    """--loop-s for the console bench, checked before any work."""
    from pipeline.console.bench import loop_s_arg

    try:
        return loop_s_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.cli import positive_float, positive_int

    p = sub.add_parser("bench", help="measure throughput (see docs/benchmarks.md)")
    p.add_argument(
        "what", choices=[*BENCHES, "all"], help="which benchmark (all: every one, in turn)"
    )
    p.add_argument("--seconds", type=positive_float, default=3.0, help="seconds of simulated time")
    p.add_argument("--model", default="integration", help="model for the demo bench")
    p.add_argument(
        "--sizes",
        nargs="+",
        type=size_arg,
        default=["256x256", "640x480"],
        help="model bench: WxH sizes",
    )
    p.add_argument(
        "--widths",
        nargs="+",
        type=positive_float,
        default=[1.0, 0.25],
        help="model bench: width multipliers",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="model bench: timed runs per row; console bench: rounds of its three cases",
    )
    p.add_argument(
        "--sim",
        type=sim_rate_arg,
        metavar="WxH@FPS",
        help="console bench: the simulated rig's size and frame rate (default: the largest "
        "that keeps real time unwatched here)",
    )
    p.add_argument(
        "--loop-s",
        type=loop_arg,
        default=4.0,
        metavar="S",
        help="console bench: the simulated rig renders S seconds once and replays them, "
        "so capture pays no rendering, as with real cameras (0: render live)",
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON instead of a table per benchmark"
    )
    p.set_defaults(func=cmd_bench)
