"""How fast the simulator runs on one core: it must keep up with real time at DAVIS
resolution for live demos, and the number tells how much faster replay/training can go."""

from __future__ import annotations

import time

import cv2

from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig


def bench_simulator(
    seconds: float = 2.0, config: SimConfig | None = None, chunk_us: int = 10_000
) -> dict:
    """Run the rig as fast as possible on ONE thread for `seconds` of simulated time.

    Returns sim_seconds, wall_seconds, cpu_seconds, realtime_factor (sim / wall),
    events, events_per_s (per wall second), frames. cpu_seconds is reported too because
    wall time is inflated on a shared machine.
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rig = SimulatedRig(config or SimConfig())
        end = int(round(seconds * 1e6))
        n_events = n_frames = 0
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        while rig.time_us < end:
            step = rig.advance(min(rig.time_us + chunk_us, end))
            n_events += len(step.events)
            n_frames += len(step.frames)
        wall = time.perf_counter() - t_wall
        cpu = time.process_time() - t_cpu
    finally:
        cv2.setNumThreads(previous)
    return {
        "sim_seconds": seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "realtime_factor": seconds / wall if wall > 0 else float("inf"),
        "events": n_events,
        "events_per_s": n_events / wall if wall > 0 else float("inf"),
        "frames": n_frames,
        "event_size": rig.config.event_size,
    }


if __name__ == "__main__":
    for key, value in bench_simulator().items():
        print(f"{key}: {value}")
