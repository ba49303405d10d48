"""DAVIS-like evaluation scenes the random simulator seeds rarely give: a spinning
six-spoke wheel over a panning textured background (fast, rotating, aliasing for frame
flow: a spoke can move by more than half the spoke spacing between two frames) and
smooth textured motion (slow pan and drifting objects: frame flow's home ground).

Both run the project's simulator (rig.sim) as a one-sensor DAVIS346: 346x260 grey-level
events in the frames' grid, 25 fps, ground truth at 8x. Used by the fusion tests and by
the figures in docs/model.md; `python -m models.fastscenes` prints the table.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import cv2
import numpy as np

from contracts.jobs import IntervalJob, inserted_timestamps
from rig.sim import SimConfig, SimulatedRig
from rig.sim.scene import SceneObject
from rig.types import EventBatch

KINDS = ("wheel", "smooth")
DAVIS_SIZE = (346, 260)
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def wheel_object(radius: int, spin: float, centre: tuple[float, float], light: bool) -> SceneObject:
    """A six-spoke wheel (rim, spokes, hub) spinning at `spin` deg/s about a fixed centre."""
    n = 2 * radius + 7
    c = (n - 1) // 2
    mask = np.zeros((n, n), np.uint8)
    cv2.circle(mask, (c, c), radius, 255, max(3, radius // 8), cv2.LINE_AA)
    for k in range(6):
        ang = 2 * math.pi * k / 6
        tip = (int(c + radius * math.cos(ang)), int(c + radius * math.sin(ang)))
        cv2.line(mask, (c, c), tip, 255, max(3, radius // 10), cv2.LINE_AA)
    cv2.circle(mask, (c, c), radius // 6, 255, -1, cv2.LINE_AA)
    alpha = mask.astype(np.float32) / 255.0
    colour = np.array([0.9, 0.85, 0.7] if light else [0.08, 0.1, 0.12], np.float32)
    rgba = np.zeros((n, n, 4), np.float32)
    rgba[..., :3] = colour * alpha[..., None]
    rgba[..., 3] = 1.0 - alpha  # transmittance, as rig.sim.scene stores sprites
    luma = np.zeros_like(rgba)
    luma[..., 0] = (colour @ _LUMA) * alpha
    luma[..., 1] = 1.0 - alpha
    return SceneObject(
        rgba=rgba,
        luma=luma,
        pos0=centre,
        velocity=(0.0, 0.0),
        angle0=0.0,
        spin=spin,
        bounds=(centre[0], centre[1], centre[0], centre[1]),
    )


def scene_config(kind: str, seed: int, threshold: float = 0.2) -> SimConfig:
    """The rig for one scene: DAVIS346 size, 25 fps, same-sensor events."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng([seed, 0x3EE1])
    common = dict(
        frame_size=DAVIS_SIZE,
        fps=25.0,
        seed=seed,
        contrast_threshold=threshold,
        threshold_sigma=0.03,
        noise_rate_hz=0.2,
        event_view="same_sensor",
    )
    if kind == "wheel":
        return SimConfig(
            exposure_us=int(rng.uniform(500, 3000)),
            pan_speed=(float(rng.uniform(-250, 250)), float(rng.uniform(-80, 80))),
            n_objects=1,
            object_speed=0.0,
            rotation_speed=0.0,
            **common,
        )
    return SimConfig(
        exposure_us=1000,
        pan_speed=(float(rng.uniform(-120, 120)), float(rng.uniform(-60, 60))),
        n_objects=2,
        object_speed=100.0,
        rotation_speed=20.0,
        **common,
    )


def scene_intervals(
    kind: str, seed: int, intervals: int = 4, threshold: float = 0.2, factor: int = 8
) -> list[tuple[IntervalJob, np.ndarray]]:
    """`intervals` consecutive (job, ground truth [factor-1, H, W, 3] uint8) pairs."""
    cfg = scene_config(kind, seed, threshold)
    rig = SimulatedRig(cfg)
    if kind == "wheel":
        rng = np.random.default_rng([seed, 0x3EE2])
        spin = float(rng.uniform(300, 900)) * (1 if rng.random() < 0.5 else -1)
        centre = (DAVIS_SIZE[0] / 2 + float(rng.uniform(-30, 30)), DAVIS_SIZE[1] / 2)
        radius = int(rng.integers(60, 110))
        rig.scene.objects = [wheel_object(radius, spin, centre, light=seed % 2 == 0)]
        # The rig sized its blur sampling and first event reference for the old scene.
        rig._max_speed_px_per_us = rig.scene.max_speed_px_per_s() * 1e-6
        rig._batch_anchor = -1
        rig.emulator.reset(rig._event_view_on_grid(0, cache=False), 0)
    frames, chunks, until = [], [], 0
    while len(frames) < intervals + 2:
        until += int(cfg.frame_period_us)
        step = rig.advance(until)
        chunks.append(step.events)
        frames.extend(step.frames)
    frames = frames[1 : intervals + 2]  # the first interval starts from a reset sensor
    times = [rig.frame_device_to_rig(f.timestamp_us) + f.exposure_us // 2 for f in frames]
    events = EventBatch.concat(chunks)
    out = []
    for i in range(intervals):
        t0, t1 = int(times[i]), int(times[i + 1])
        ev = events.time_slice(t0, t1)
        ev = EventBatch(ev.t, ev.x.astype(np.float32), ev.y.astype(np.float32), ev.p)
        ts = inserted_timestamps(t0, t1, factor)
        gt = np.stack([rig.ground_truth(int(t)) for t in ts])
        out.append((IntervalJob(i, frames[i].image, frames[i + 1].image, t0, t1, ev, ts), gt))
    return out


def score(methods: Sequence[str], kinds: Sequence[str] = KINDS, seeds: int = 3) -> dict:
    """Mean PSNR (uint8, peak 255) and ms per interval of each method on each kind."""
    from models.evaluate import psnr_uint8
    from models.registry import make_interpolator

    result: dict = {}
    for kind in kinds:
        data = [iv for s in range(seeds) for iv in scene_intervals(kind, s)]
        for spec in methods:
            interp = make_interpolator(spec)
            ps, secs = [], 0.0
            for job, gt in data:
                start = time.perf_counter()
                pred = interp.interpolate(job)
                secs += time.perf_counter() - start
                ps += [psnr_uint8(p, g) for p, g in zip(pred, gt, strict=True)]
            result.setdefault(kind, {})[spec] = {
                "psnr": float(np.mean(ps)),
                "ms_per_interval": 1000.0 * secs / len(data),
            }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from models.registry import ModelError, make_interpolator

    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
        return int(text)

    parser = argparse.ArgumentParser(prog="python -m models.fastscenes", description=__doc__)
    parser.add_argument("--methods", nargs="+", default=["fusion", "flow", "integration", "blend"])
    parser.add_argument("--seeds", type=positive, default=3, help="scenes per kind")
    args = parser.parse_args(argv)
    for spec in args.methods:  # fail on a bad name before simulating anything
        try:
            make_interpolator(spec)
        except ModelError as exc:
            parser.error(f"--methods: {exc}")
    res = score(args.methods, seeds=args.seeds)
    print("| scene | " + " | ".join(args.methods) + " |")
    print("| --- |" + " ---: |" * len(args.methods))
    for kind, per in res.items():
        cells = [f"{per[m]['psnr']:.2f}" for m in args.methods]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
