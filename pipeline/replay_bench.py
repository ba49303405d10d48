"""Simulated recordings for replay (a DAVIS-style AEDAT4 file of the simulated rig,
with its ground truth) and the replay benchmark (`bench_replay`: intervals/s and
inserted frames/s end to end; docs/benchmarks.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def write_sim_davis(
    path: Path,
    seconds: float,
    config: Any = None,
    writer: str = "aedat4",
    chunk_us: int = 10_000,
) -> Any:
    """Record the simulated rig as a DAVIS-style AEDAT4 file (frames and events of one
    sensor, frames on the event clock, exposure stored) and return the SimulatedRig
    (its ground_truth(t) gives the true in-between frames). writer: "aedat4" (this
    project's fast numpy writer) or "dv" (dv-processing's MonoCameraWriter)."""
    from rig.sim.config import SimConfig
    from rig.sim.rig import SimulatedRig

    cfg = config or SimConfig(event_view="same_sensor")
    if cfg.event_view != "same_sensor":
        raise ValueError("a DAVIS recording needs SimConfig(event_view='same_sensor')")
    rig = SimulatedRig(cfg)
    gt_rig = SimulatedRig(cfg)  # untouched copy for ground truth
    end_us = int(seconds * 1e6)
    if writer == "dv":
        import datetime

        import dv_processing as dv

        w = dv.io.MonoCameraWriter(
            str(path), dv.io.MonoCameraWriter.DAVISConfig("DAVIS-sim", cfg.frame_size)
        )
        for t in range(chunk_us, end_us + chunk_us, chunk_us):
            step = rig.advance(t)
            ev = step.events
            if len(ev):
                store = dv.EventStore()
                for tt, x, y, p in zip(
                    ev.t.tolist(), ev.x.tolist(), ev.y.tolist(), ev.p.tolist(), strict=True
                ):
                    store.push_back(tt, x, y, bool(p))
                w.writeEvents(store)
            for f in step.frames:
                start = rig.frame_device_to_rig(f.timestamp_us)
                fr = dv.Frame(start, np.ascontiguousarray(f.image[:, :, ::-1]))
                fr.exposure = datetime.timedelta(microseconds=f.exposure_us)
                w.writeFrame(fr)
        del w
    elif writer == "aedat4":
        from pipeline.aedat4 import Aedat4Writer
        from rig.types import Frame

        with Aedat4Writer(
            path, "DAVIS-sim", event_size=cfg.frame_size, frame_size=cfg.frame_size
        ) as w:
            for t in range(chunk_us, end_us + chunk_us, chunk_us):
                step = rig.advance(t)
                if len(step.events):
                    w.write_events(step.events)
                for f in step.frames:
                    start = rig.frame_device_to_rig(f.timestamp_us)
                    w.write_frame(Frame(f.image, f.index, start, f.exposure_us))
    else:
        raise ValueError(f"writer must be 'aedat4' or 'dv', got {writer!r}")
    return gt_rig


def bench_replay(
    models: tuple[str, ...] = ("integration", "blend", "flow"),
    seconds: float = 2.0,
    factor: int = 8,
    format: str = "mp4",
    workers: int = 1,
    frame_size: tuple[int, int] = (320, 240),
    directory: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Replay speed per model on a simulated DAVIS recording (50 fps, frame_size):
    intervals/s and inserted frames/s, end to end (reading, events, model, encoding).
    A model that cannot be built (e.g. timelens without weights) is listed with its error."""
    import tempfile

    from models.registry import ModelError
    from pipeline.inputs import open_input
    from pipeline.replay import ReplayError, ReplayOptions, run_replay
    from rig.sim.config import SimConfig

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        rec = Path(tmp) / "sim.aedat4"
        write_sim_davis(rec, seconds, SimConfig(frame_size=frame_size, event_view="same_sensor"))
        for model in models:
            out = Path(tmp) / f"out-{model.replace(':', '_')}"
            try:
                with open_input(rec) as src:
                    s = run_replay(
                        src,
                        ReplayOptions(
                            out,
                            factor=factor,
                            format=format,
                            model=model,
                            workers=workers,
                            progress=False,
                        ),
                    )
            except (ModelError, ReplayError) as exc:
                rows.append({"model": model, "error": str(exc)})
                continue
            tm = s["timing"]
            rows.append(
                {
                    "model": model,
                    "format": format,
                    "workers": workers,
                    "frame_size": list(frame_size),
                    "factor": factor,
                    "intervals": tm["intervals_computed"],
                    "inserted_frames": tm["inserted_frames"],
                    "wall_s": tm["wall_s"],
                    "intervals_per_s": tm["intervals_per_s"],
                    "inserted_frames_per_s": tm["inserted_frames_per_s"],
                    "realtime_factor": tm["realtime_factor"],
                }
            )
            shutil.rmtree(out, ignore_errors=True)
    return rows
