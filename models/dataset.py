"""Training and evaluation data from the simulated rig.

Every sample is what the live worker gets (an `IntervalJob`: two consecutive keyframes
at their mid-exposure times on the rig clock, the events between them in the frames'
pixel grid) plus the ground truth: the sharp frames at the inserted instants, rendered
by `SimulatedRig.ground_truth`.

The rig runs with `event_view="same_sensor"` (a DAVIS-style sensor), so events are
already in the frame grid and no calibration enters the data. Each seed draws its own
scene, speeds, frame rate, exposure and sensor settings (`sim_config_for_seed`), so the
training set is varied. Training seeds start at `TRAIN_SEED_BASE`; evaluation seeds are
`0..N-1` and must stay below it, so the two sets never overlap (checked).

Sequences are cached as .npz files (one per seed and setting) so training and
evaluation only simulate once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.jobs import IntervalJob, inserted_timestamps
from rig.sim import SimConfig, SimulatedRig
from rig.types import EventBatch

#: Ground truth is stored at this slow-motion factor; any factor dividing it is served.
GT_FACTOR = 8
#: Training seeds are TRAIN_SEED_BASE, TRAIN_SEED_BASE+1, ...; eval seeds are below it.
TRAIN_SEED_BASE = 1000
#: Bumped whenever the generated data changes, so stale caches are not reused.
DATA_VERSION = 3
#: How the scenes move: "varied" (the default: straight-line motion plus a shaking
#: camera and swinging objects, i.e. non-linear within a frame interval, as real fast
#: scenes are) or "linear" (straight lines at constant speed between bounces: the
#: easiest case for frame-only interpolation; data version 2 was exactly this).
MOTIONS = ("varied", "linear")
DEFAULT_FRAME_SIZE = (320, 240)
DEFAULT_CACHE = Path.home() / ".cache" / "slomo-rig" / "sim-data"


class DatasetError(RuntimeError):
    """Bad dataset request (overlapping seeds, unusable factor, corrupt cache)."""


def train_seeds(n: int, start: int = 0) -> list[int]:
    """The n training seeds (from TRAIN_SEED_BASE + start)."""
    return [TRAIN_SEED_BASE + start + i for i in range(n)]


def eval_seeds(n: int) -> list[int]:
    """The n held-out evaluation seeds, 0..n-1 (never used for training)."""
    if n > TRAIN_SEED_BASE:
        raise DatasetError(f"at most {TRAIN_SEED_BASE} eval sequences, got {n}")
    return list(range(n))


def check_disjoint(train: Sequence[int], held_out: Sequence[int]) -> None:
    """Raise DatasetError if any seed is in both sets."""
    both = sorted(set(train) & set(held_out))
    if both:
        raise DatasetError(f"training and evaluation seeds overlap: {both[:5]}")


def sim_config_for_seed(
    seed: int, frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, motion: str = "varied"
) -> SimConfig:
    """A varied, deterministic rig for `seed`, in the regime slow motion is for (fast
    motion: several to tens of pixels per frame interval): 20-50 fps, exposure 0.5 ms up
    to a quarter of the period (max 3 ms), camera pan 100-600 px/s in any direction, 1-6
    objects at 200-1000 px/s spinning up to 360 deg/s, contrast threshold 0.15-0.35 with
    mismatch, background noise 0.05-1 Hz per pixel.

    motion="varied" adds the non-linear part (drawn from a separate stream, so the
    linear part is the same for both): a camera shake of 1-10 px at 2-12 Hz (peak speed
    at most 300 px/s: a hand-held camera or a vibrating mount) and a swing of each object
    of 5-40 px at 1.5-8 Hz (at most 500 px/s: swinging, vibrating, bouncing parts)."""
    if motion not in MOTIONS:
        raise DatasetError(f"motion must be one of {MOTIONS}, got {motion!r}")
    rng = np.random.default_rng([seed, 0x51D0])
    fps = float(rng.choice([20.0, 25.0, 30.0, 40.0, 50.0]))
    period = 1e6 / fps
    exposure = int(rng.uniform(500, min(3000, period / 4)))
    pan = rng.uniform(100, 600)
    angle = rng.uniform(0, 2 * math.pi)
    threshold = float(rng.uniform(0.15, 0.35))
    shake = swing = (0.0, 0.0)
    if motion == "varied":
        sway = np.random.default_rng([seed, 0x5A7F])
        shake_hz = float(sway.uniform(2, 12))
        shake_px = min(float(sway.uniform(1, 10)), 300 / (2 * math.pi * shake_hz))
        swing_hz = float(sway.uniform(1.5, 8))
        swing_px = min(float(sway.uniform(5, 40)), 500 / (2 * math.pi * swing_hz))
        shake, swing = (shake_px, shake_hz), (swing_px, swing_hz)
    return SimConfig(
        frame_size=frame_size,
        fps=fps,
        exposure_us=exposure,
        seed=int(seed),
        pan_speed=(float(pan * math.cos(angle)), float(pan * math.sin(angle))),
        n_objects=int(rng.integers(1, 7)),
        object_speed=float(rng.uniform(200, 1000)),
        rotation_speed=float(rng.uniform(0, 360)),
        camera_shake=shake,
        object_swing=swing,
        contrast_threshold=threshold,
        threshold_sigma=float(rng.uniform(0.01, 0.05)),
        noise_rate_hz=float(rng.uniform(0.05, 1.0)),
        event_view="same_sensor",
    )


@dataclass(frozen=True)
class IntervalSample:
    """One interval with ground truth at GT_FACTOR: gt[k] is the sharp frame at
    gt_timestamps_us[k] = inserted_timestamps(t0_us, t1_us, GT_FACTOR)[k]."""

    seed: int
    index: int
    frame0: np.ndarray
    frame1: np.ndarray
    t0_us: int
    t1_us: int
    events: EventBatch
    gt: np.ndarray
    gt_timestamps_us: np.ndarray

    def _gt_rows(self, factor: int) -> np.ndarray:
        if factor < 2 or GT_FACTOR % factor:
            raise DatasetError(
                f"factor {factor} not available: ground truth is stored at {GT_FACTOR}x, "
                f"use a factor that divides it (2, 4, 8)"
            )
        step = GT_FACTOR // factor
        return np.arange(step - 1, GT_FACTOR - 1, step)

    def job(self, factor: int) -> IntervalJob:
        """The interval as the live worker would get it, asking for factor-x slow motion."""
        self._gt_rows(factor)
        return IntervalJob(
            self.index,
            self.frame0,
            self.frame1,
            self.t0_us,
            self.t1_us,
            self.events,
            inserted_timestamps(self.t0_us, self.t1_us, factor),
        )

    def ground_truth(self, factor: int) -> np.ndarray:
        """[factor-1, H, W, 3] uint8 sharp frames at job(factor).timestamps_us."""
        rows = self._gt_rows(factor)
        ts = inserted_timestamps(self.t0_us, self.t1_us, factor)
        assert np.array_equal(self.gt_timestamps_us[rows], ts)
        return self.gt[rows]


@dataclass
class Sequence_:
    """A run of consecutive intervals from one seed (arrays shared by its samples)."""

    seed: int
    config: dict
    frames: np.ndarray  # [n+1, H, W, 3] uint8 keyframes
    times_us: np.ndarray  # [n+1] mid-exposure, rig clock
    events: EventBatch  # float32 x/y in the frame grid, rig clock, sorted
    gt: np.ndarray  # [n, GT_FACTOR-1, H, W, 3]

    def __len__(self) -> int:
        return len(self.times_us) - 1

    def sample(self, i: int) -> IntervalSample:
        t0, t1 = int(self.times_us[i]), int(self.times_us[i + 1])
        return IntervalSample(
            self.seed,
            i,
            self.frames[i],
            self.frames[i + 1],
            t0,
            t1,
            self.events.time_slice(t0, t1),
            self.gt[i],
            inserted_timestamps(t0, t1, GT_FACTOR),
        )

    def samples(self) -> Iterator[IntervalSample]:
        for i in range(len(self)):
            yield self.sample(i)


def simulate_sequence(
    seed: int,
    n_intervals: int,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    motion: str = "varied",
) -> Sequence_:
    """Run the rig for seed until n_intervals+1 frames exist; keep events and ground truth."""
    if n_intervals < 1:
        raise DatasetError(f"need at least one interval, got {n_intervals}")
    cfg = sim_config_for_seed(seed, frame_size, motion)
    rig = SimulatedRig(cfg)
    frames = []
    chunks = []
    until = 0
    step = int(cfg.frame_period_us)
    while len(frames) < n_intervals + 1:
        until += step
        out = rig.advance(until)
        chunks.append(out.events)
        frames.extend(out.frames)
    frames = frames[: n_intervals + 1]
    times = np.array(
        [rig.frame_device_to_rig(f.timestamp_us) + f.exposure_us // 2 for f in frames], np.int64
    )
    ev = EventBatch.concat(chunks).time_slice(int(times[0]), int(times[-1]))
    events = EventBatch(ev.t, ev.x.astype(np.float32), ev.y.astype(np.float32), ev.p)
    w, h = frame_size
    gt = np.empty((n_intervals, GT_FACTOR - 1, h, w, 3), np.uint8)
    for i in range(n_intervals):
        for k, t in enumerate(inserted_timestamps(int(times[i]), int(times[i + 1]), GT_FACTOR)):
            gt[i, k] = rig.ground_truth(int(t))
    return Sequence_(seed, cfg.to_dict(), np.stack([f.image for f in frames]), times, events, gt)


def _cache_path(
    cache_dir: Path, seed: int, n: int, frame_size: tuple[int, int], motion: str
) -> Path:
    w, h = frame_size
    return Path(cache_dir) / f"seq_v{DATA_VERSION}_{motion}_s{seed}_{w}x{h}_n{n}.npz"


def load_sequence(
    seed: int,
    n_intervals: int,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    motion: str = "varied",
) -> Sequence_:
    """`simulate_sequence`, cached as .npz under cache_dir (None: no cache)."""
    if motion not in MOTIONS:
        raise DatasetError(f"motion must be one of {MOTIONS}, got {motion!r}")
    if cache_dir is None:
        return simulate_sequence(seed, n_intervals, frame_size, motion)
    path = _cache_path(Path(cache_dir), seed, n_intervals, frame_size, motion)
    if path.exists():
        try:
            with np.load(path) as z:
                return Sequence_(
                    seed,
                    json.loads(str(z["config"])),
                    z["frames"],
                    z["times_us"],
                    EventBatch(z["ev_t"], z["ev_x"], z["ev_y"], z["ev_p"]),
                    z["gt"],
                )
        except Exception:  # noqa: BLE001 - a broken cache file is regenerated
            path.unlink(missing_ok=True)
    seq = simulate_sequence(seed, n_intervals, frame_size, motion)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        config=json.dumps(seq.config),
        frames=seq.frames,
        times_us=seq.times_us,
        ev_t=seq.events.t,
        ev_x=seq.events.x,
        ev_y=seq.events.y,
        ev_p=seq.events.p,
        gt=seq.gt,
    )
    tmp.replace(path)
    return seq


def load_sequences(
    seeds: Sequence[int],
    n_intervals: int,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    motion: str = "varied",
) -> list[Sequence_]:
    return [load_sequence(s, n_intervals, frame_size, cache_dir, motion) for s in seeds]


# ------------------------------------------------------------------ ground-truth flow


class SceneMotion:
    """The exact motion of a seed's simulated scene (no textures): the background pan and
    every object's pose over time plus its alpha mask. `backward_flow` gives, for each
    pixel of a crop at rig time t_from, where that scene point is at rig time t_to: the
    flow TimeLens' flow network should predict to warp the keyframe at t_to to t_from.

    Rig time is scene time and the frame grid is the world grid (`same_sensor` rig, see
    rig/sim/rig.py). Objects are drawn in order over the background, so the topmost
    object whose alpha exceeds 0.5 at t_from owns the pixel; elsewhere the background
    moves: content seen at x at time t shows texel x + offset(t) (pan and shake), so the
    point at x at t_from sits at x + offset(t_from) - offset(t_to) at t_to. Objects:
    their pose at t_to times the inverse pose at t_from (bounces and swings included,
    the poses are closed-form).
    """

    def __init__(
        self, seed: int, frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, motion: str = "varied"
    ) -> None:
        rig = SimulatedRig(sim_config_for_seed(seed, frame_size, motion))
        scene = rig.scene
        self.scene = scene
        self.objects = scene.objects
        # Alpha of each sprite (its rgba stores transmittance 1 - alpha in channel 3).
        self.alphas = [np.ascontiguousarray(1.0 - o.rgba[..., 3]) for o in self.objects]

    def backward_flow(
        self, t_from_us: float, t_to_us: float, x0: int, y0: int, w: int, h: int
    ) -> np.ndarray:
        """[2, h, w] float32 (dy, dx) for the crop with top-left (x0, y0) at t_from."""
        import cv2

        ox, oy = self.scene.background_offset(np.array([t_from_us, t_to_us]) * 1e-6)
        flow = np.empty((2, h, w), np.float32)
        flow[0] = oy[0] - oy[1]
        flow[1] = ox[0] - ox[1]
        if not self.objects:
            return flow
        ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float64)
        ts = np.array([t_from_us, t_to_us], np.float64) * 1e-6
        for obj, alpha in zip(self.objects, self.alphas, strict=True):
            fwd, inv = obj.poses(ts)
            m = inv[0].copy()  # crop pixel -> sprite pixel at t_from
            m[:, 2] += m[:, 0] * x0 + m[:, 1] * y0
            cover = cv2.warpAffine(
                alpha, m[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
            mask = cover > 0.5
            if not mask.any():
                continue
            a = fwd[1] @ inv[0]  # world at t_from -> world at t_to
            px = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
            py = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
            flow[0][mask] = (py - ys)[mask]
            flow[1][mask] = (px - xs)[mask]
        return flow


_MOTION_CACHE: dict[tuple[int, tuple[int, int], str], SceneMotion] = {}


def scene_motion(seed: int, frame_size: tuple[int, int], motion: str = "varied") -> SceneMotion:
    """SceneMotion for seed, built once per process."""
    key = (int(seed), tuple(frame_size), motion)
    if key not in _MOTION_CACHE:
        _MOTION_CACHE[key] = SceneMotion(seed, frame_size, motion)
    return _MOTION_CACHE[key]


def sequence_motion(config: dict) -> str:
    """Which `MOTIONS` entry a sequence's stored rig config was drawn with."""
    moving = any(
        float(v) for v in (*config.get("camera_shake", ()), *config.get("object_swing", ()))
    )
    return "varied" if moving else "linear"


# ------------------------------------------------------------------ training crops


def crop_batch(
    sequences: Sequence[Sequence_],
    batch: int,
    crop: int,
    rng: np.random.Generator,
    augment: bool = True,
    with_flow: bool = False,
) -> dict[str, np.ndarray]:
    """A random training batch: for each item a random interval, inserted instant
    (tau = k/GT_FACTOR) and crop; voxel grids are built from the events inside the crop.

    Returns float32 arrays: before_rgb, after_rgb, gt [B,3,S,S] in [0,1]; before_voxel,
    before_reversed_voxel, after_voxel [B,5,S,S]; tau [B]. With augment, random
    horizontal/vertical flips and time reversal (keyframes swapped, event times mirrored,
    polarities negated, tau -> 1 - tau).

    with_flow adds the ground-truth backward flows (`SceneMotion`) from the inserted
    instant to the before and the after keyframe: before_flow, after_flow [B,2,S,S]
    float32 (channel 0 dy, channel 1 dx, pixels), what the flow network should output
    for the before (reversed) and after voxel grids; flips and time reversal are applied
    to them too. The random draws are the same with or without it.
    """
    from models.timelens import NUM_BINS, reversed_voxel_grid, voxel_grid

    out = {
        k: np.empty((batch, c, crop, crop), np.float32)
        for k, c in (
            ("before_rgb", 3),
            ("after_rgb", 3),
            ("gt", 3),
            ("before_voxel", NUM_BINS),
            ("after_voxel", NUM_BINS),
        )
    }
    out["tau"] = np.empty(batch, np.float32)
    if with_flow:
        out["before_flow"] = np.empty((batch, 2, crop, crop), np.float32)
        out["after_flow"] = np.empty((batch, 2, crop, crop), np.float32)
    for b in range(batch):
        seq = sequences[int(rng.integers(len(sequences)))]
        i = int(rng.integers(len(seq)))
        k = int(rng.integers(GT_FACTOR - 1))
        h, w = seq.frames.shape[1:3]
        s = min(crop, h, w)
        y0 = int(rng.integers(h - s + 1))
        x0 = int(rng.integers(w - s + 1))
        t0, t1 = int(seq.times_us[i]), int(seq.times_us[i + 1])
        f0 = seq.frames[i, y0 : y0 + s, x0 : x0 + s]
        f1 = seq.frames[i + 1, y0 : y0 + s, x0 : x0 + s]
        g = seq.gt[i, k, y0 : y0 + s, x0 : x0 + s]
        split = int(inserted_timestamps(t0, t1, GT_FACTOR)[k])
        ev = seq.events.time_slice(t0, t1)
        sel = (ev.x >= x0) & (ev.x < x0 + s) & (ev.y >= y0) & (ev.y < y0 + s)
        ex, ey, et, ep = ev.x[sel] - x0, ev.y[sel] - y0, ev.t[sel], ev.p[sel].astype(np.int8)
        t_before, t_after = t0, t1
        instant = split
        if augment and rng.random() < 0.5:  # time reversal
            f0, f1 = f1, f0
            t_before, t_after = t1, t0
            et = (t0 + t1) - et[::-1]
            ex, ey, ep = ex[::-1], ey[::-1], 1 - ep[::-1]
            split = t0 + t1 - split
        before_sel = et < split
        vb = voxel_grid(
            ex[before_sel],
            ey[before_sel],
            et[before_sel],
            ep[before_sel],
            t0,
            split,
            NUM_BINS,
            s,
            s,
        )
        va = voxel_grid(
            ex[~before_sel],
            ey[~before_sel],
            et[~before_sel],
            ep[~before_sel],
            split,
            t1,
            NUM_BINS,
            s,
            s,
        )
        imgs = [np.moveaxis(a, -1, 0).astype(np.float32) / 255.0 for a in (f0, f1, g)]
        arrays = [*imgs, vb, va]
        keys = ["before_rgb", "after_rgb", "gt", "before_voxel", "after_voxel"]
        if with_flow:
            motion = scene_motion(seq.seed, (w, h), sequence_motion(seq.config))
            arrays += [
                motion.backward_flow(instant, t_before, x0, y0, s, s),
                motion.backward_flow(instant, t_after, x0, y0, s, s),
            ]
            keys += ["before_flow", "after_flow"]
        if augment:
            if rng.random() < 0.5:
                arrays = [a[..., ::-1] for a in arrays]
                if with_flow:  # mirrored x: dx changes sign
                    arrays[5:] = [
                        a * np.array([1, -1], np.float32)[:, None, None] for a in arrays[5:]
                    ]
            if rng.random() < 0.5:
                arrays = [a[..., ::-1, :] for a in arrays]
                if with_flow:
                    arrays[5:] = [
                        a * np.array([-1, 1], np.float32)[:, None, None] for a in arrays[5:]
                    ]
        for key, a in zip(keys, arrays, strict=True):
            out[key][b] = a
        out["tau"][b] = (split - t0) / float(t1 - t0)
    out["before_reversed_voxel"] = np.ascontiguousarray(reversed_voxel_grid(out["before_voxel"]))
    return out
