"""What limits interpolation quality on the held-out simulated sequences.

    python -m models.diagnose [--sequences 8] [--motion varied]

Per evaluation seed: how many events an interval holds (per pixel, and the share of
pixels with any), and two ceilings computed from the simulator's exact motion
(`SceneMotion`), which no interpolator has: both keyframes warped to the inserted
instant with the exact backward flows (bilinear, sources outside the frame clamped to
its edge) and blended by time ("exact-motion blend"), and the better of the two warps
and that blend chosen per pixel by the ground truth ("exact-motion best"). TimeLens'
warping branch can at best approach the second (its attention picks per pixel; its
flows come from events alone). The frame-only DIS baseline is printed beside them.

Why it exists: docs/benchmarks.md explains the TimeLens-vs-flow gap with these numbers
(the events are sparse where the background is smooth, so event-only flow there is
guesswork, while the exact-motion ceiling is far above every method).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from contracts.jobs import inserted_timestamps
from models.dataset import (
    DEFAULT_CACHE,
    DEFAULT_FRAME_SIZE,
    GT_FACTOR,
    Sequence_,
    eval_seeds,
    load_sequences,
    scene_motion,
    sequence_motion,
)
from models.evaluate import psnr_uint8


def _warp_clamped(src: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
    """out(y, x) = src(y + dy, x + dx), bilinear, outside clamped to the edge."""
    h, w = src.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, -1)
    fl = torch.from_numpy(flow)
    grid = torch.stack([2 * (xs + fl[1]) / (w - 1) - 1, 2 * (ys + fl[0]) / (h - 1) - 1], -1)
    return F.grid_sample(
        src, grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).numpy().astype(np.uint8)


def diagnose_sequence(seq: Sequence_) -> dict:
    """Event density and exact-motion ceilings (PSNR dB at GT_FACTOR) of one sequence."""
    h, w = seq.frames.shape[1:3]
    motion = scene_motion(seq.seed, (w, h), sequence_motion(seq.config))
    blend, best, per_px, any_px = [], [], [], []
    for i in range(len(seq)):
        t0, t1 = int(seq.times_us[i]), int(seq.times_us[i + 1])
        ev = seq.events.time_slice(t0, t1)
        xi = np.clip(np.rint(ev.x).astype(np.intp), 0, w - 1)
        yi = np.clip(np.rint(ev.y).astype(np.intp), 0, h - 1)
        counts = np.bincount(yi * w + xi, minlength=h * w)
        per_px.append(len(ev.t) / (h * w))
        any_px.append(float((counts > 0).mean()))
        f0, f1 = (
            torch.from_numpy(seq.frames[j]).permute(2, 0, 1)[None].float() / 255 for j in (i, i + 1)
        )
        for k, t in enumerate(inserted_timestamps(t0, t1, GT_FACTOR)):
            tau = (t - t0) / (t1 - t0)
            gt = seq.gt[i, k]
            w0 = _warp_clamped(f0, motion.backward_flow(t, t0, 0, 0, w, h))
            w1 = _warp_clamped(f1, motion.backward_flow(t, t1, 0, 0, w, h))
            cands = np.stack([_u8(w0), _u8(w1), _u8((1 - tau) * w0 + tau * w1)])
            err = np.abs(cands.astype(np.int32) - gt[None].astype(np.int32)).sum(-1)
            pick = np.take_along_axis(cands, err.argmin(0)[None, ..., None], 0)[0]
            blend.append(psnr_uint8(cands[2], gt))
            best.append(psnr_uint8(pick, gt))
    return {
        "seed": seq.seed,
        "events_per_pixel": float(np.mean(per_px)),
        "pixels_with_events": float(np.mean(any_px)),
        "exact_motion_blend_db": float(np.mean(blend)),
        "exact_motion_best_db": float(np.mean(best)),
    }


def diagnose(
    sequences: int = 8,
    intervals: int = 2,
    motion: str = "varied",
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    cache_dir=DEFAULT_CACHE,
    methods: tuple[str, ...] = ("flow",),
) -> list[dict]:
    """One row per eval seed; `methods` (make_interpolator specs) are scored beside."""
    from models.registry import make_interpolator

    seqs = load_sequences(eval_seeds(sequences), intervals, frame_size, cache_dir, motion)
    interps = {m: make_interpolator(m) for m in methods}
    rows = []
    for seq in seqs:
        row = diagnose_sequence(seq)
        for name, interp in interps.items():
            scores = [
                psnr_uint8(p, g)
                for s in seq.samples()
                for p, g in zip(
                    interp.interpolate(s.job(GT_FACTOR)), s.ground_truth(GT_FACTOR), strict=True
                )
            ]
            row[f"{name}_db"] = float(np.mean(scores))
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k != "seed"]
    lines = ["| seed | " + " | ".join(keys) + " |", "| ---: |" + " ---: |" * len(keys)]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    lines.append("| mean | " + " | ".join(f"{mean[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m models.diagnose", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--intervals", type=int, default=2)
    p.add_argument("--motion", default="varied")
    p.add_argument("--methods", nargs="*", default=["flow"], help="interpolators scored beside")
    args = p.parse_args(argv)
    rows = diagnose(args.sequences, args.intervals, args.motion, methods=tuple(args.methods))
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
