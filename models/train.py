"""Training TimeLens on simulated data: the paper's staged recipe, compressed.

The paper trains the interpolation-by-synthesis module first, then the warping
(flow) module, then the warping refinement, then the attention averaging, and finally
fine-tunes everything together, each with an L1 loss on that module's output, Adam.
Synthesis and warping do not depend on each other, so here they train in the same
stage (their losses just add up); later stages run the frozen earlier modules without
gradients. Stages are fractions of the step budget (`STAGES`).

Outputs in the run folder:
- `last.pt`: our checkpoint format (TimeLens.save) with the recipe and step in its
  metadata; `state.pt`: optimizer state and step for `--resume`.
- `loss.csv` (step, stage, loss, lr, seconds, val_psnr) and `loss.png` (drawn with
  OpenCV: matplotlib is not a dependency).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.dataset import (
    DEFAULT_CACHE,
    DEFAULT_FRAME_SIZE,
    TRAIN_SEED_BASE,
    crop_batch,
    load_sequences,
    train_seeds,
)
from models.timelens import TimeLens, backward_warp

#: (name, fraction of the steps, U-Nets trained, loss terms)
STAGES: tuple[tuple[str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "synthesis+warping",
        0.35,
        ("fusion_network", "flow_network"),
        ("fusion", "before_warped", "after_warped"),
    ),
    ("refinement", 0.15, ("flow_refinement_network",), ("before_refined", "after_refined")),
    ("attention", 0.15, ("attention_network",), ("final",)),
    (
        "all",
        0.35,
        ("fusion_network", "flow_network", "flow_refinement_network", "attention_network"),
        ("final",),
    ),
)
#: Optional first stage (`TrainConfig.flow_steps`): the flow U-Net alone, L1 between its
#: two outputs and the simulator's exact backward flows (`models.dataset.SceneMotion`).
FLOW_STAGE: tuple[str, tuple[str, ...], tuple[str, ...]] = (
    "flow",
    ("flow_network",),
    ("before_flow", "after_flow"),
)
#: Validation seeds: below the training range and above any eval range we use (0..N).
VAL_SEEDS = (900, 901, 902, 903)

STATE_FILE = "state.pt"
CHECKPOINT_FILE = "last.pt"


class TrainError(RuntimeError):
    """A training run that cannot start or resume; the message says why."""


def resolve_device(name: str) -> torch.device:
    """The torch device for TrainConfig.device, or a TrainError that says what to do."""
    name = (name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TrainError(
                f"--device {name}: this torch ({torch.__version__}) sees no CUDA device; "
                "train with --device cpu, or install a CUDA build of torch on a GPU machine"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TrainError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return dev
    raise TrainError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")


@dataclass
class TrainConfig:
    out: str
    width: float = 0.1875
    steps: int = 1400
    crop: int = 96
    batch: int = 8
    lr: float = 5e-4
    train_sequences: int = 48
    intervals: int = 8
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 100
    log_every: int = 10
    cache_dir: str = str(DEFAULT_CACHE)
    #: Scene motion of the simulated data (models.dataset.MOTIONS).
    motion: str = "varied"
    zero_init_heads: bool = False
    #: Steps of ground-truth flow pretraining before the staged recipe (0: none); the
    #: staged recipe's fractions then apply to the remaining steps.
    flow_steps: int = 0
    #: Weight of the ground-truth flow L1 (pixels) added to the loss of later stages that
    #: train the flow U-Net (0: none).
    flow_weight: float = 0.0
    #: Learning-rate multiplier for the flow U-Net's last conv during the flow stage: its
    #: outputs are pixel flows (tens of pixels) computed from sparse voxel grids, and
    #: Adam moves each weight by about lr per step, so at the base rate the flows grow
    #: far too slowly.
    flow_head_lr_mult: float = 1.0
    #: Start a new run from this checkpoint's weights instead of a random initialisation.
    init: str = ""
    #: "cpu", "cuda" (or "cuda:N") or "auto" (CUDA when torch sees one). Not part of the
    #: recipe: a run may resume on another device.
    device: str = "cpu"
    #: Processes that cut training batches ahead of the optimizer (0: in the training
    #: process). Batch k depends only on the seed and k, so the weights are the same for
    #: any value; on a GPU the simulated crops (voxel grids, exact flows) are the
    #: bottleneck and a few workers keep it busy. Not part of the recipe.
    data_workers: int = 0
    history: list = field(default_factory=list)
    stages: list = field(default_factory=lambda: [list(s[:2]) for s in STAGES])


def _fractions(fractions: Sequence[float] | None) -> list[float]:
    return [s[1] for s in STAGES] if fractions is None else [float(f) for f in fractions]


def stage_at(step: int, total: int, fractions: Sequence[float] | None = None) -> int:
    """Index of the stage that step (0-based) belongs to (fractions: share of each of
    STAGES, default their own)."""
    edge = 0.0
    for i, frac in enumerate(_fractions(fractions)):
        edge += frac
        if step < round(edge * total):
            return i
    return len(STAGES) - 1


def stage_bounds(
    index: int, total: int, fractions: Sequence[float] | None = None
) -> tuple[int, int]:
    fr = _fractions(fractions)
    start = round(sum(fr[:index]) * total)
    end = round(sum(fr[: index + 1]) * total)
    return start, max(end, start + 1)


def _cosine(p: float, base: float) -> float:
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def learning_rate(
    step: int, total: int, base: float, fractions: Sequence[float] | None = None
) -> float:
    """Cosine decay from base to base/10 within each stage (each module starts fresh)."""
    i = stage_at(step, total, fractions)
    start, end = stage_bounds(i, total, fractions)
    return _cosine((step - start) / max(1, end - start), base)


def run_stage(step: int, cfg: TrainConfig) -> tuple[str, tuple[str, ...], tuple[str, ...], float]:
    """(name, U-Nets trained, loss terms, learning rate) at step (0-based) of a run:
    the ground-truth flow stage for the first cfg.flow_steps steps, then STAGES (with
    the run's fractions) over the rest."""
    if step < cfg.flow_steps:
        return (*FLOW_STAGE, _cosine(step / max(1, cfg.flow_steps), cfg.lr))
    fractions = [f for _, f in cfg.stages]
    rest = max(1, cfg.steps - cfg.flow_steps)
    i = stage_at(step - cfg.flow_steps, rest, fractions)
    name, _, trainable, terms = STAGES[i]
    return name, trainable, terms, learning_rate(step - cfg.flow_steps, rest, cfg.lr, fractions)


def zero_init_heads(model: TimeLens) -> None:
    """Zero the last conv of the flow, refinement and attention U-Nets, so training
    starts from zero flows (warped images = keyframes) and equal attention weights: the
    attention stage then only has to learn the tau-weighted blend to match the simplest
    baseline, and every later improvement is on top of it. Gradients still reach those
    layers (their inputs are not zero), so nothing is stuck."""
    for name in ("flow_network", "flow_refinement_network", "attention_network"):
        head = getattr(model, name).conv3
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)


def make_optimizer(model: TimeLens, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over all weights; with a flow-head multiplier, the flow U-Net's last conv is
    a separate parameter group (named "flow_head") so its rate can differ."""
    if cfg.flow_head_lr_mult == 1.0:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    head = list(model.flow_network.conv3.parameters())
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.Adam(
        [{"params": rest, "name": "rest"}, {"params": head, "name": "flow_head"}], lr=cfg.lr
    )


def forward_parts(
    model: TimeLens, batch: dict[str, torch.Tensor], needed: Sequence[str], trainable: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The model's data flow (same as TimeLens.forward) returning the intermediate images
    the stage losses need; stops as soon as everything in `needed` is computed. U-Nets not
    in `trainable` run without gradients."""

    def run(name: str, x: torch.Tensor) -> torch.Tensor:
        net = getattr(model, name)
        if name in trainable:
            return net(x)
        with torch.no_grad():
            return net(x)

    b0, b1 = batch["before_rgb"], batch["after_rgb"]
    vb, vr, va = batch["before_voxel"], batch["before_reversed_voxel"], batch["after_voxel"]
    n = b0.shape[0]
    out: dict[str, torch.Tensor] = {}
    if set(needed) - {"before_flow", "after_flow"}:
        out["fusion"] = run("fusion_network", torch.cat([vb, b0, va, b1], 1))
    flows = run("flow_network", torch.cat([vr, va], 0))
    out["before_flow"], out["after_flow"] = flows[:n], flows[n:]
    if not set(needed) - {"before_flow", "after_flow"}:
        return out
    warped = backward_warp(torch.cat([b0, b1], 0), flows)
    out["before_warped"], out["after_warped"] = warped[:n], warped[n:]
    if not set(needed) - {"fusion", "before_warped", "after_warped", "before_flow", "after_flow"}:
        return out
    residual = run(
        "flow_refinement_network",
        torch.cat([out["after_warped"], out["before_warped"], out["fusion"]], 1),
    )
    refined = backward_warp(
        torch.cat([out["after_warped"], out["before_warped"]], 0),
        torch.cat([residual[:, 0:2], residual[:, 2:4]], 0),
    )
    after_refined, before_refined = refined[:n], refined[n:]
    out["before_refined"], out["after_refined"] = before_refined, after_refined
    if "final" not in needed:
        return out
    if model.swap_refined:
        before_refined, after_refined = after_refined, before_refined
    h, w = b0.shape[2:]
    tau_map = batch["tau"].view(-1, 1, 1, 1).expand(-1, 1, h, w)
    scores = run(
        "attention_network",
        torch.cat([flows[n:], after_refined, flows[:n], before_refined, out["fusion"], tau_map], 1),
    )
    a = torch.softmax(scores, 1)
    out["final"] = (
        a[:, 0:1] * before_refined + a[:, 1:2] * after_refined + a[:, 2:3] * out["fusion"]
    )
    return out


def _to_torch(
    batch: dict[str, np.ndarray], device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    if device is not None and device.type != "cpu":
        out = {k: v.pin_memory().to(device, non_blocking=True) for k, v in out.items()}
    return out


def psnr(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, peak: float = 1.0
) -> float:
    mse = float(((pred - gt) ** 2).mean())
    return 10 * math.log10(peak * peak / max(mse, 1e-12))


def needs_flow(step: int, cfg: TrainConfig) -> bool:
    """Whether the batch of `step` carries the exact flows (flow stage, or a flow
    weight on a stage that trains the flow U-Net)."""
    name, trainable, _, _ = run_stage(step, cfg)
    return name == FLOW_STAGE[0] or (cfg.flow_weight > 0 and "flow_network" in trainable)


def training_batch(sequences: Sequence, step: int, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The batch of `step`: a pure function of the data, the seed and the step."""
    rng = np.random.default_rng([cfg.seed, step])
    return crop_batch(sequences, cfg.batch, cfg.crop, rng, with_flow=needs_flow(step, cfg))


class _BatchStream(torch.utils.data.Dataset):
    """Batches for steps first..cfg.steps-1, for a DataLoader's worker processes."""

    def __init__(self, sequences: Sequence, cfg: TrainConfig, first: int) -> None:
        self.sequences, self.cfg, self.first = sequences, cfg, first

    def __len__(self) -> int:
        return max(0, self.cfg.steps - self.first)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return training_batch(self.sequences, self.first + i, self.cfg)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        log=print,
        resume_overrides: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        torch.set_num_threads(cfg.threads)
        self.step = 0
        self.elapsed = 0.0
        state_path = self.out / STATE_FILE
        if resume:
            if not state_path.exists() or not (self.out / CHECKPOINT_FILE).exists():
                raise TrainError(
                    f"--resume: no {STATE_FILE} / {CHECKPOINT_FILE} in {self.out}; "
                    "start a new run without --resume"
                )
            self.model = TimeLens.load(self.out / CHECKPOINT_FILE)
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            saved = state["config"]
            # The recipe comes from the run being resumed; only the step budget may change
            # (stage boundaries are fractions of it, so they move with it).
            steps = cfg.steps or saved["steps"]
            if steps < int(state["step"]):
                raise TrainError(
                    f"--steps {steps} is below the {int(state['step'])} steps already done "
                    f"in {self.out}"
                )
            saved.update(
                out=cfg.out,
                steps=steps,
                threads=cfg.threads,
                device=cfg.device,
                data_workers=cfg.data_workers,
            )
            # A curriculum may change the crop and batch size between sessions.
            for key, value in (resume_overrides or {}).items():
                if key in ("crop", "batch") and value and value != saved[key]:
                    saved.setdefault("history", []).append(
                        f"step {int(state['step'])}: {key} {saved[key]} -> {value}"
                    )
                    saved[key] = value
            saved["frame_size"] = tuple(saved["frame_size"])
            self.cfg = cfg = TrainConfig(**saved)
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed_s", 0.0))
            self.model.to(self.device)
            self.opt = make_optimizer(self.model, cfg)
            self.opt.load_state_dict(state["optimizer"])  # moves its state to the params' device
            log(f"resuming {self.out} at step {self.step}/{cfg.steps}")
        else:
            if state_path.exists():
                raise TrainError(
                    f"{self.out} already holds a run (step state in {state_path}); "
                    "use --resume to continue it or choose another --out"
                )
            torch.manual_seed(cfg.seed)
            if cfg.init:
                self.model = TimeLens.load(cfg.init)
                if self.model.width > cfg.width + 1e-9 or self.model.swap_refined:
                    raise TrainError(
                        f"--init {cfg.init}: width {self.model.width} / swap_refined "
                        f"{self.model.swap_refined}, the run needs width <= {cfg.width} and "
                        "the paper pairing"
                    )
                if self.model.width < cfg.width - 1e-9:
                    log(f"widening {cfg.init} from width {self.model.width} to {cfg.width}")
                    self.model = self.model.widened(cfg.width)
            else:
                self.model = TimeLens(width=cfg.width, swap_refined=False)
            if cfg.zero_init_heads:
                zero_init_heads(self.model)
            self.model.to(self.device)
            self.opt = make_optimizer(self.model, cfg)
        self.out.mkdir(parents=True, exist_ok=True)
        seeds = train_seeds(cfg.train_sequences)
        assert min(seeds) >= TRAIN_SEED_BASE > max(VAL_SEEDS)
        t = time.perf_counter()
        self.train = load_sequences(seeds, cfg.intervals, cfg.frame_size, cfg.cache_dir, cfg.motion)
        val = load_sequences(VAL_SEEDS, 2, cfg.frame_size, cfg.cache_dir, cfg.motion)
        self.val_batch = _to_torch(
            crop_batch(val, 16, cfg.crop, np.random.default_rng(12345), augment=False),
            self.device,
        )
        log(
            f"data: {len(self.train)} training sequences x {cfg.intervals} intervals "
            f"(seeds {seeds[0]}..{seeds[-1]}, {cfg.motion} motion), ready in "
            f"{time.perf_counter() - t:.0f} s; training on {self.device}"
        )

    def validate(self) -> float:
        self.model.eval()
        with torch.no_grad():
            pred = forward_parts(self.model, self.val_batch, ("final",), ())["final"]
        self.model.train()
        return psnr(pred.clamp(0, 1), self.val_batch["gt"])

    def run(self, deadline: float | None = None) -> Path:
        """Train up to cfg.steps. `deadline` (a time.perf_counter() value) ends the run
        early, after the step in progress, with a checkpoint: a time-boxed run on a lent
        machine must return weights even when its step-rate estimate was optimistic."""
        cfg = self.cfg
        self.stopped_early = False
        #: Wall seconds of each step of this call, data included (step-rate probes).
        self.step_times: list[float] = []
        self._fractions = [f for _, f in cfg.stages]
        csv_path = self.out / "loss.csv"
        rows = _read_rows(csv_path, self.step)
        window: list[float] = []
        batches = self._batches()
        t_last = time.perf_counter()
        while self.step < cfg.steps:
            name, trainable, terms, lr = run_stage(self.step, cfg)
            for unet in (
                "fusion_network",
                "flow_network",
                "flow_refinement_network",
                "attention_network",
            ):
                getattr(self.model, unet).requires_grad_(unet in trainable)
            for g in self.opt.param_groups:
                mult = cfg.flow_head_lr_mult if name == FLOW_STAGE[0] else 1.0
                g["lr"] = lr * (mult if g.get("name") == "flow_head" else 1.0)
            with_flow = needs_flow(self.step, cfg)
            batch = _to_torch(next(batches), self.device)
            parts = forward_parts(self.model, batch, terms, trainable)
            # Flow terms are compared with the ground-truth flows, images with the frame.
            loss = sum(
                F.l1_loss(parts[t], batch[t] if t.endswith("_flow") else batch["gt"]) for t in terms
            ) / len(terms)
            if with_flow and name != FLOW_STAGE[0]:
                loss = loss + cfg.flow_weight * 0.5 * sum(
                    F.l1_loss(parts[t], batch[t]) for t in ("before_flow", "after_flow")
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            now = time.perf_counter()
            self.elapsed += now - t_last
            self.step_times.append(now - t_last)
            t_last = now
            loss_value = float(loss.detach())
            window.append(loss_value)
            val = ""
            if deadline is not None and now >= deadline and self.step < cfg.steps:
                self.stopped_early = True
            last = self.step == cfg.steps or self.stopped_early
            if self.step % cfg.checkpoint_every == 0 or last:
                val = f"{self.validate():.2f}"
                self.save()
            rows.append(
                [self.step, name, f"{loss_value:.5f}", f"{lr:.2e}", f"{self.elapsed:.1f}", val]
            )
            if self.step % cfg.log_every == 0 or last:
                rate = self.elapsed / max(1, self.step)
                eta = (cfg.steps - self.step) * rate
                self.log(
                    f"step {self.step}/{cfg.steps} [{name}] loss {np.mean(window):.4f} "
                    f"lr {lr:.1e} {rate:.2f} s/step eta {eta / 60:.1f} min"
                    + (f" val {val} dB" if val else "")
                )
                window.clear()
                _write_rows(csv_path, rows)
                draw_loss_curve(
                    rows, self.out / "loss.png", cfg.steps, cfg.flow_steps, self._fractions
                )
            if self.stopped_early:
                self.log(f"deadline reached: stopped at step {self.step} of {cfg.steps}")
                break
        _write_rows(csv_path, rows)
        draw_loss_curve(rows, self.out / "loss.png", cfg.steps, cfg.flow_steps, self._fractions)
        return self.out / CHECKPOINT_FILE

    def _batches(self):
        """Training batches from the current step on, cut here or by worker processes."""
        cfg = self.cfg
        if cfg.data_workers <= 0:
            return (training_batch(self.train, k, cfg) for k in range(self.step, cfg.steps))
        loader = torch.utils.data.DataLoader(
            _BatchStream(self.train, cfg, self.step),
            batch_size=None,  # each item is already a batch
            shuffle=False,
            num_workers=cfg.data_workers,
            prefetch_factor=4,
            persistent_workers=False,
        )
        return ({k: v.numpy() for k, v in b.items()} for b in loader)

    def save(self) -> None:
        cfg = self.cfg
        meta = {
            "trained_by": "slomo-rig train",
            "step": self.step,
            "stage": run_stage(self.step - 1, cfg)[0],
            "recipe": json.dumps(asdict(cfg)),
            "train_seeds": f"{TRAIN_SEED_BASE}..{TRAIN_SEED_BASE + cfg.train_sequences - 1}",
            "train_wall_s": round(self.elapsed, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}"
            + (
                f", {torch.cuda.get_device_name(self.device)}" if self.device.type == "cuda" else ""
            ),
        }
        tmp = self.out / (CHECKPOINT_FILE + ".tmp")
        self.model.save(tmp, meta)
        tmp.replace(self.out / CHECKPOINT_FILE)
        state = {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "optimizer": self.opt.state_dict(),
            "config": {**asdict(cfg), "frame_size": list(cfg.frame_size)},
        }
        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out / STATE_FILE)


def _read_rows(path: Path, up_to_step: int) -> list[list]:
    """Existing loss rows up to the resumed step (later ones were not checkpointed)."""
    if not path.exists() or up_to_step == 0:
        return []
    with path.open() as f:
        r = csv.reader(f)
        next(r, None)
        return [row for row in r if row and int(row[0]) <= up_to_step]


def _write_rows(path: Path, rows: list[list]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "stage", "loss", "lr", "elapsed_s", "val_psnr"])
        w.writerows(rows)
    tmp.replace(path)


def draw_loss_curve(
    rows: list[list],
    path: Path,
    total_steps: int,
    flow_steps: int = 0,
    fractions: Sequence[float] | None = None,
) -> None:
    """Training loss (log scale, raw and smoothed; the flow stage's loss is in pixels)
    and validation PSNR, with stage boundaries, drawn with OpenCV."""
    if not rows:
        return
    W, H, L, R, T, B = 900, 480, 70, 70, 40, 50
    img = np.full((H, W, 3), 255, np.uint8)
    steps = np.array([int(r[0]) for r in rows], float)
    loss = np.log10(np.maximum(np.array([float(r[2]) for r in rows]), 1e-6))
    lo, hi = float(loss.min()), float(loss.max())
    if hi - lo < 1e-3:
        lo, hi = lo - 0.5, hi + 0.5
    xmax = max(total_steps, int(steps.max()), 1)

    def px(s, v, a, b):
        x = L + (W - L - R) * s / xmax
        y = H - B - (H - T - B) * (v - a) / (b - a)
        return np.stack([x, y], -1).astype(np.int32)

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(img, (L, T), (W - R, H - B), (0, 0, 0), 1)
    rest = max(1, total_steps - flow_steps)
    starts = [(FLOW_STAGE[0], 0)] if flow_steps else []
    starts += [
        (name, flow_steps + stage_bounds(i, rest, fractions)[0])
        for i, (name, *_rest) in enumerate(STAGES)
    ]
    for i, (name, s0) in enumerate(starts):
        x = int(L + (W - L - R) * s0 / xmax)
        if i:
            cv2.line(img, (x, T), (x, H - B), (200, 200, 200), 1)
        x += 3
        cv2.putText(img, name, (x, T + 14 + 14 * (i % 2)), font, 0.4, (120, 120, 120), 1)
    cv2.polylines(img, [px(steps, loss, lo, hi)], False, (230, 190, 150), 1, cv2.LINE_AA)
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    cv2.polylines(img, [px(steps[k - 1 :], smooth, lo, hi)], False, (180, 80, 20), 2, cv2.LINE_AA)
    for v in np.linspace(lo, hi, 5):
        y = int(px(np.array(0.0), np.array(v), lo, hi)[1])
        cv2.putText(img, f"{10**v:.3f}", (5, y + 4), font, 0.4, (180, 80, 20), 1)
    vals = [(int(r[0]), float(r[5])) for r in rows if len(r) > 5 and r[5]]
    if vals:
        vs = np.array([v for _, v in vals])
        a, b = float(vs.min()) - 0.5, float(vs.max()) + 0.5
        pts = px(np.array([s for s, _ in vals], float), vs, a, b)
        cv2.polylines(img, [pts], False, (40, 40, 200), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(c) for c in p), 3, (40, 40, 200), -1)
        for v in np.linspace(a, b, 5):
            y = int(px(np.array(0.0), np.array(v), a, b)[1])
            cv2.putText(img, f"{v:.1f}", (W - R + 5, y + 4), font, 0.4, (40, 40, 200), 1)
    for s in np.linspace(0, xmax, 6):
        x = int(L + (W - L - R) * s / xmax)
        cv2.putText(img, f"{int(s)}", (x - 10, H - B + 18), font, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "step", (W // 2 - 15, H - 10), font, 0.5, (0, 0, 0), 1)
    cv2.putText(
        img,
        "TimeLens training: L1 loss (blue, log scale) and validation PSNR dB (red)",
        (L, 25),
        font,
        0.5,
        (0, 0, 0),
        1,
    )
    cv2.imwrite(str(path), img)


def train(
    cfg: TrainConfig, resume: bool = False, log=print, resume_overrides: dict | None = None
) -> Path:
    """Train (or resume) and return the checkpoint path. On resume the run's own recipe
    is used; `resume_overrides` may change "crop" and "batch" (a curriculum)."""
    return Trainer(cfg, resume=resume, log=log, resume_overrides=resume_overrides).run()


def main(argv: list[str] | None = None) -> int:
    """python -m models.train ARGS == slomo-rig train ARGS."""
    from models.commands import main as commands_main

    return commands_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
