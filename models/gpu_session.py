"""One prepared run for a lent GPU machine, and the way back for what it trained.

GPU machines come to this project rarely and briefly: a task that draws one gets about
15 minutes of device time in all (machine start included), at most 10 minutes a
command, and back come at most 8 files of 16 MiB (64 MiB in all). The machine is bare
and offline: its python3 has torch with CUDA, numpy, OpenCV, onnx and a CPU-only
onnxruntime, but none of pyzmq, dv-processing, PyAV or lz4, and onnxruntime-gpu (a
256 MB wheel) is too big to carry there. So everything the model issue needs from a GPU
is one command, run from the repository root without installing anything:

    python3 -m models.gpu_session run --out "$OUT" --budget-s 420

It imports only models/, rig/ (the simulator) and contracts/, and in that budget:
1. env: the GPU, torch and CUDA versions, CPU count; checks of the GPU code paths
   against their CPU twins (voxel grids on the device, the model in fp32 and fp16, the
   worker's interpolator on a simulated interval: `gpu_checks`);
2. bench: eager torch on CUDA (fp32 with TF32 convolutions, fp16 U-Nets channels-last),
   full size and the training width, 256x256 and 640x480, batch 7 (one 8x interval)
   and 28 (four intervals, what several queued intervals allow), against the goal of
   400 inserted frames/s (8x slow motion of a 50 fps camera);
3. train: `models.train` on the GPU, time-boxed: the shipped weights widened to
   --width, the ground-truth flow stage then the staged recipe, its step count set
   from a measured step rate, with a deadline as a safety net;
4. eval: the held-out evaluation of `slomo-rig eval` (same seeds, same metrics) of the
   new weights, the shipped weights and the frame-only baselines;
5. pack: report.json / report.md, loss.csv, run.log and the new weights in fp16, cut in
   parts below the size limit with their SHA-256.

Back on a development machine, `python -m models.gpu_session assemble DIR --out X.pt`
checks and joins the parts into one of our checkpoints (fp32), ready for `slomo-rig
eval --methods timelens:X.pt` and `slomo-rig model export X.pt`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from models.commands import _frame_size, _positive_int, _stage_fractions

REPORT = "report.json"
PART_PREFIX = "weights.fp16.part"
#: Bytes per weights part: under the 16 MiB a returned file may have.
PART_BYTES = 15 * 1024 * 1024
#: What may come back in all (64 MiB), less room for the report, log and loss curve.
MAX_WEIGHTS_BYTES = 56 * 1024 * 1024
#: Inserted frames/s for real-time 8x slow motion of a 50 fps camera (issue goal).
GOAL_FPS = 400.0


class GpuSessionError(RuntimeError):
    """A run or an assembly that cannot go on; the message says what to do."""


# ------------------------------------------------------------------ run


def _env(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "device": str(device),
    }
    if device.type == "cuda":
        env.update(
            gpu=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1),
        )
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime"] = None
    return env


def _fill_cache(
    seeds: list[int], intervals: int, frame_size, cache_dir: str, motion: str, workers: int
):
    """Simulate (and cache) sequences in parallel, so the trainer's loading is a read."""
    from models.dataset import load_sequence

    if workers <= 1:
        for s in seeds:
            load_sequence(s, intervals, frame_size, cache_dir, motion)
        return
    with ProcessPoolExecutor(workers) as pool:
        futures = [
            pool.submit(load_sequence, s, intervals, frame_size, cache_dir, motion) for s in seeds
        ]
        for f in futures:
            f.result()


def _weights_bytes(width: float) -> int:
    from models.timelens import TimeLens

    return 2 * sum(p.numel() for p in TimeLens(width=width).parameters())


def _train_config(
    args: argparse.Namespace, out: Path, steps: int, device: str, flow_steps: int | None = None
):
    from models.train import STAGES, TrainConfig

    fractions = args.stages
    if flow_steps is None:
        flow_steps = int(round(args.flow_share * steps))

    return TrainConfig(
        out=str(out),
        train_sequences=args.train_sequences,
        frame_size=args.frame_size,
        width=args.width,
        steps=steps,
        crop=args.crop,
        batch=args.batch,
        lr=args.lr,
        threads=args.threads,
        # Checkpoints (with a validation) on logged steps, so the log shows them.
        checkpoint_every=5 * max(1, steps // 40),
        log_every=max(1, steps // 40),
        cache_dir=args.cache_dir,
        motion=args.motion,
        flow_steps=flow_steps,
        flow_weight=args.flow_weight,
        flow_head_lr_mult=args.flow_head_lr_mult,
        init=args.init,
        device=device,
        data_workers=args.data_workers,
        stages=[[name, f] for (name, *_), f in zip(STAGES, fractions, strict=True)],
    )


def _measure_step_s(args: argparse.Namespace, work: Path, device: str, log, stage: str) -> float:
    """Seconds per step of `stage` ("flow": the ground-truth flow stage; "all": the most
    expensive staged one), data included, from the per-step times of a short throwaway
    run (its first steps, which start the data workers and let cuDNN pick algorithms,
    are not counted)."""
    from models.train import STAGES, Trainer

    probe_args = argparse.Namespace(**vars(args))
    probe_args.flow_share = 1.0 if stage == "flow" else 0.0
    probe_args.stages = [0.0] * (len(STAGES) - 1) + [1.0]
    warm, timed = 3, max(5, args.probe_steps)
    cfg = _train_config(probe_args, work / f"probe-{stage}", warm + timed, device)
    cfg.checkpoint_every = 10**9
    cfg.log_every = 10**9
    trainer = Trainer(cfg, log=lambda *_: None)
    trainer.run()
    # The median step: data workers warm up (each builds the scenes it meets) over the
    # first steps, and a mean would plan from those stalls.
    rate = max(1e-4, float(np.median(trainer.step_times[warm:])))
    log(
        f"train: {rate:.3f} s/step in stage '{stage}' (batch {args.batch}, crop {args.crop}, "
        "data included)"
    )
    return rate


def gpu_checks(device: torch.device, frame_size: tuple[int, int] = (96, 64)) -> list[dict]:
    """The project's GPU code paths against their CPU twins (they never ran on a GPU
    before a machine was lent): voxel grids built on the device, the model in fp32 and
    in fp16, and the worker's interpolator on a simulated interval. Each row: name,
    measured value, limit, passed."""
    from models.dataset import load_sequence
    from models.engine import TimeLensInterpolator
    from models.export import sample_inputs
    from models.timelens import TimeLens, voxel_grid, voxel_grid_torch
    from models.train import psnr

    rows = []

    def check(name: str, value: float, limit: float, higher_is_better: bool) -> None:
        ok = value >= limit if higher_is_better else value <= limit
        rows.append({"check": name, "value": float(value), "limit": limit, "passed": bool(ok)})

    rng = np.random.default_rng(0)
    n, h, w = 200_000, 120, 160
    x, y = rng.uniform(0, w - 1, n).astype(np.float32), rng.uniform(0, h - 1, n).astype(np.float32)
    t, p = np.sort(rng.integers(0, 20_000, n)), rng.integers(0, 2, n).astype(np.int8)
    ref = voxel_grid(x, y, t, p, 0, 20_000, 5, h, w)
    on = voxel_grid_torch(
        *(torch.as_tensor(a, device=device) for a in (x, y, t, p)), 0, 20_000, 5, h, w
    )
    check(
        "voxel grid: device vs numpy, max abs diff",
        (on.cpu() - torch.from_numpy(ref)).abs().max(),
        1e-3,
        False,
    )

    # The code path, not the precision: TF32 off, so the device computes what the CPU does.
    torch.manual_seed(0)
    model = TimeLens(width=1.0).eval()
    args = sample_inputs(2, 64, 96)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            cpu = model(*args)
            dev = model.to(device)(*(a.to(device) for a in args)).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    check(
        "TimeLens fp32 (random weights, no TF32): device vs CPU, max abs diff / max abs",
        (dev - cpu).abs().max() / cpu.abs().max().clamp_min(1e-6),
        1e-4,
        False,
    )

    # Trained weights on a real interval: outputs in range, so PSNR means something.
    job = load_sequence(3, 1, frame_size, None).sample(0).job(8)
    on_cpu = TimeLensInterpolator(TimeLens.load(_shipped_checkpoint()), backend="torch")
    ref = on_cpu.interpolate(job).astype(np.float32)
    for precision in ("fp32", "fp16"):
        model = TimeLens.load(_shipped_checkpoint())
        if precision == "fp16":
            model.half_unets()
        frames = TimeLensInterpolator(model, backend="torch", device=device).interpolate(job)
        check(
            f"worker interpolator, shipped weights {precision} on the device vs fp32 on the CPU "
            "(8x frames): PSNR dB",
            psnr(frames.astype(np.float32), ref, 255.0),
            45.0 if precision == "fp32" else 38.0,
            True,
        )
    return rows


def _shipped_checkpoint() -> Path:
    from models.registry import SHIPPED_CHECKPOINT

    return SHIPPED_CHECKPOINT


def _pack_weights(ckpt: Path, out: Path, meta: dict) -> list[dict]:
    """fp16 state dict of `ckpt`, in parts of at most PART_BYTES, with their hashes."""
    from models.timelens import TimeLens

    model = TimeLens.load(ckpt)
    state = {k: v.detach().half().cpu() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(
        {
            "networks": state,
            "width": model.width,
            "swap_refined": model.swap_refined,
            "metadata": meta,
        },
        buf,
    )
    data = buf.getvalue()
    if len(data) > MAX_WEIGHTS_BYTES:
        raise GpuSessionError(
            f"packed weights are {len(data) / 2**20:.0f} MiB, more than the "
            f"{MAX_WEIGHTS_BYTES / 2**20:.0f} MiB that can come back; use a smaller --width"
        )
    parts = []
    for i in range(0, len(data), PART_BYTES):
        chunk = data[i : i + PART_BYTES]
        name = f"{PART_PREFIX}{len(parts)}"
        (out / name).write_bytes(chunk)
        parts.append(
            {"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()}
        )
    return parts


def _bench_md(rows: list[dict]) -> str:
    lines = [
        "| size (HxW) | model width | precision | batch | ms / inserted frame | inserted frames/s | vs 400 fps goal |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['height']}x{r['width_px']} | {r['model_width']:g} | {r['precision']} | "
            f"{r['batch']} | {r['ms_per_frame']:.2f} | {r['fps']:.1f} | {r['fps'] / GOAL_FPS:.2f}x |"
        )
    return "\n".join(lines)


def _report_md(report: dict) -> str:
    env = report["env"]
    out = [
        "# GPU session report (models.gpu_session)",
        "",
        f"Machine: {env.get('gpu', env['device'])}, torch {env['torch']}, CUDA {env.get('cuda')}, "
        f"{env['cpus']} CPUs; budget {report['budget_s']:.0f} s, used {report['used_s']:.0f} s.",
        "",
    ]
    if report.get("checks"):
        out += [
            "## GPU code paths against their CPU twins",
            "",
            "| check | value | limit | |",
            "| --- | ---: | ---: | --- |",
        ]
        out += [
            f"| {c['check']} | {c['value']:.3g} | {c['limit']:g} | {'ok' if c['passed'] else 'FAIL'} |"
            for c in report["checks"]
        ]
        out.append("")
    if report.get("bench"):
        out += ["## Bench (eager torch, CUDA events, median)", "", _bench_md(report["bench"]), ""]
    tr = report.get("train")
    if tr:
        out += [
            "## Training",
            "",
            f"width {tr['width']}, {tr['steps_done']} of {tr['steps_planned']} steps "
            f"({tr['flow_steps']} ground-truth flow steps), batch {tr['batch']}, crop {tr['crop']}, "
            f"{tr['seconds']:.0f} s, init {tr['init'] or 'random'}; last validation {tr['val_psnr']} dB",
            "",
        ]
    if report.get("eval_table"):
        out += [
            "## Held-out evaluation (slomo-rig eval seeds, PSNR / SSIM)",
            "",
            report["eval_table"],
            "",
        ]
    for key in ("errors",):
        for e in report.get(key, []):
            out.append(f"- error: {e}")
    return "\n".join(out) + "\n"


def _train(
    args: argparse.Namespace, work: Path, device: torch.device, deadline: float, report: dict, log
) -> Path:
    """Plan the step count from measured step rates, train to the deadline, and fill
    report["train"]; returns the checkpoint."""
    from models.train import Trainer

    flow_s = _measure_step_s(args, work, str(device), log, "flow") if args.flow_share else 0
    all_s = _measure_step_s(args, work, str(device), log, "all")
    train_s = deadline - time.perf_counter() - args.eval_reserve_s
    if train_s < 10 * all_s:
        raise GpuSessionError(
            f"only {train_s:.0f} s left for training at {all_s:.2f} s/step; raise --budget-s "
            "or lower --eval-reserve-s"
        )
    # The flow stage gets its share of the time; the staged recipe the rest, its
    # earlier stages (fewer U-Nets with gradients) costing about 0.85 of an "all"
    # step on average. The deadline guards against an optimistic plan.
    flow_steps = int(args.flow_share * train_s / flow_s) if args.flow_share else 0
    staged = max(10, int((1.0 - args.flow_share) * train_s / (0.85 * all_s)))
    if args.max_steps and flow_steps + staged > args.max_steps:
        # A rehearsal caps the plan so that it ends by steps, not by the clock: on a busy
        # machine the deadline would otherwise decide how much it checks.
        flow_steps = min(flow_steps, max(1, args.max_steps // 4)) if flow_steps else 0
        staged = args.max_steps - flow_steps
    steps = flow_steps + staged
    cfg = _train_config(args, work / "run", steps, str(device), flow_steps)
    trainer = Trainer(cfg, log=log)
    t = time.perf_counter()
    ckpt = trainer.run(deadline=deadline - args.eval_reserve_s)
    rows = (work / "run" / "loss.csv").read_text()
    (Path(args.out) / "loss.csv").write_text(rows)
    vals = [r.split(",")[-1] for r in rows.strip().splitlines()[1:] if r.split(",")[-1]]
    report["train"] = {
        "width": args.width,
        "steps_planned": steps,
        "steps_done": trainer.step,
        "flow_steps": cfg.flow_steps,
        "batch": args.batch,
        "crop": args.crop,
        "lr": args.lr,
        "init": args.init,
        "seconds": time.perf_counter() - t,
        "step_s_measured": {"flow": flow_s, "all": all_s},
        "stopped_at_deadline": trainer.stopped_early,
        "val_psnr": vals[-1] if vals else None,
    }
    return ckpt


def run(args: argparse.Namespace, log=print) -> dict:
    """Every phase within args.budget_s; returns the report (also written to args.out)."""
    from models.train import resolve_device

    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "run.log").open("a")
    echo = log

    def log(msg: str) -> None:  # noqa: F811 - every line also goes to run.log
        echo(msg)
        log_file.write(f"{time.perf_counter() - t_start:7.1f} s  {msg}\n")
        log_file.flush()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    if device.type == "cuda":
        # Fixed crop and frame sizes: let cuDNN time its algorithms once per shape.
        torch.backends.cudnn.benchmark = True
    if not args.skip_train and _weights_bytes(args.width) > MAX_WEIGHTS_BYTES:
        raise GpuSessionError(
            f"--width {args.width}: its fp16 weights ({_weights_bytes(args.width) / 2**20:.0f} MiB) "
            f"could not come back (at most {MAX_WEIGHTS_BYTES / 2**20:.0f} MiB); use --width 0.5 or less"
        )
    if not args.skip_train and args.init:
        # A wrong --init fails here, not after the bench has spent its share of the lease.
        from models.timelens import TimeLens

        start = TimeLens.load(args.init)
        if start.width > args.width + 1e-9:
            raise GpuSessionError(
                f"--init {args.init} has width {start.width}, above --width {args.width}; "
                "the run grows a checkpoint, it cannot shrink one"
            )
    report: dict = {"budget_s": args.budget_s, "args": vars(args), "errors": []}
    # 0. data, simulated on every core before CUDA is initialised (the pool forks)
    if not args.skip_train:
        from models.dataset import eval_seeds, train_seeds
        from models.train import VAL_SEEDS

        t = time.perf_counter()
        size, jobs = args.frame_size, args.data_workers
        _fill_cache(train_seeds(args.train_sequences), 8, size, args.cache_dir, args.motion, jobs)
        _fill_cache(list(VAL_SEEDS), 2, size, args.cache_dir, args.motion, jobs)
        _fill_cache(eval_seeds(args.eval_sequences), 2, size, args.cache_dir, args.motion, jobs)
        log(f"data: simulated in {time.perf_counter() - t:.0f} s")

    report["env"] = _env(device)
    log(f"env: {json.dumps(report['env'])}")

    def save() -> None:
        report["used_s"] = time.perf_counter() - t_start
        (out / REPORT).write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / "report.md").write_text(_report_md(report))

    # 1. checks and bench
    if device.type == "cuda":
        try:
            report["checks"] = gpu_checks(device)
            for row in report["checks"]:
                log(
                    f"check {'ok  ' if row['passed'] else 'FAIL'} {row['check']}: {row['value']:.3g} (limit {row['limit']:g})"
                )
        except Exception as exc:  # noqa: BLE001 - report and go on
            report["errors"].append(f"checks: {type(exc).__name__}: {exc}")
            log(f"checks failed: {exc}")
        save()
    if not args.skip_bench and device.type == "cuda":
        from models.bench import bench_torch_cuda

        sizes = [tuple(int(v) for v in s.split("x"))[::-1] for s in args.bench_sizes]
        widths = sorted({1.0, args.width})
        try:
            report["bench"] = []
            for batch in args.bench_batches:
                report["bench"] += bench_torch_cuda(
                    sizes=sizes,
                    widths=widths,
                    batch=batch,
                    repeats=args.bench_repeats,
                    device=str(device),
                )
            log(_bench_md(report["bench"]))
        except Exception as exc:  # noqa: BLE001 - report and go on to training
            report["errors"].append(f"bench: {type(exc).__name__}: {exc}")
            log(f"bench failed: {exc}")
        save()

    # 2. train (a failure is reported and the eval of the rest still runs: one lease)
    ckpt = None
    if not args.skip_train:
        try:
            ckpt = _train(args, work, device, deadline, report, log)
        except Exception as exc:  # noqa: BLE001 - recorded; the command ends with status 1
            import traceback

            report["errors"].append(f"train: {type(exc).__name__}: {exc}")
            log(f"training failed:\n{traceback.format_exc()}")
        save()

    # 3. eval
    if ckpt is not None or args.eval_shipped:
        from models.evaluate import evaluate
        from models.registry import SHIPPED_CHECKPOINT

        methods = []
        if ckpt is not None:
            methods.append(f"timelens:{ckpt}")
        if args.eval_shipped:
            methods.append(f"timelens:{SHIPPED_CHECKPOINT}")
        methods += ["flow", "blend"]
        result = evaluate(
            methods,
            (4, 8),
            args.eval_sequences,
            2,
            frame_size=args.frame_size,
            cache_dir=args.cache_dir,
            motion=args.motion,
            log=log,
        )
        names = {
            f"timelens:{ckpt}": "timelens (this run)",
            f"timelens:{SHIPPED_CHECKPOINT}": "timelens (shipped)",
        }
        result.scores = {names.get(k, k): v for k, v in result.scores.items()}
        report["eval"] = result.to_json()
        report["eval_table"] = result.table()
        log(result.table())
        save()

    # 4. pack
    if ckpt is not None:
        meta = {
            "trained_by": "models.gpu_session",
            "env": report["env"],
            "train": report["train"],
            "eval": report.get("eval", {}).get("scores"),
        }
        report["weights"] = _pack_weights(ckpt, out, json.loads(json.dumps(meta, default=str)))
    save()
    log(f"done in {report['used_s']:.0f} s; report in {out / REPORT}")
    log_file.close()
    return report


# ------------------------------------------------------------------ assemble


def assemble(folder: str | Path, out: str | Path) -> Path:
    """Check and join the weight parts a run left in `folder` into our checkpoint `out`."""
    from models.timelens import CheckpointError, TimeLens

    folder = Path(folder)
    report_path = folder / REPORT
    if not report_path.is_file():
        raise GpuSessionError(
            f"{report_path} not found: give the folder a 'models.gpu_session run' wrote "
            "(the files that came back from $OUT)"
        )
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise GpuSessionError(f"{report_path} is not valid JSON ({exc}); fetch it again") from exc
    parts = report.get("weights")
    if not parts:
        raise GpuSessionError(
            f"{report_path} lists no weights: that run did not train (see its 'errors' and "
            "report.md)"
        )
    data = bytearray()
    for part in parts:
        path = folder / part["file"]
        if not path.is_file():
            raise GpuSessionError(f"weights part {path} is missing; fetch all {len(parts)} parts")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise GpuSessionError(
                f"weights part {path} is damaged (SHA-256 differs from {report_path}); fetch it again"
            )
        data += chunk
    blob = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    model = TimeLens(width=float(blob["width"]), swap_refined=bool(blob["swap_refined"]))
    try:
        model.load_state_dict({k: v.float() for k, v in blob["networks"].items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not fit width {blob['width']}: {exc}") from exc
    meta = dict(blob.get("metadata", {}))
    meta["assembled_from"] = str(folder)
    model.save(out, {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})
    return Path(out)


# ------------------------------------------------------------------ command line


def _share(text: str) -> float:
    v = float(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _bench_size(text: str) -> str:
    _frame_size(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    from models.dataset import DEFAULT_FRAME_SIZE

    p = argparse.ArgumentParser(
        prog="python -m models.gpu_session", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="bench, train and evaluate within a time budget")
    add = r.add_argument
    add("--out", required=True, help="folder for what comes back ($OUT on the device)")
    add("--work", default="/tmp/slomo-gpu-session", help="scratch folder (checkpoints, state)")
    add("--budget-s", type=_positive, default=420.0, help="wall-clock budget of the whole run")
    add("--eval-reserve-s", type=_positive, default=75.0, help="seconds kept for eval, packing")
    add("--device", default="cuda", help="cuda, cuda:N, cpu (cpu: a rehearsal)")
    add("--width", type=_positive, default=0.5)
    add("--batch", type=_positive_int, default=32)
    add("--crop", type=_positive_int, default=128)
    add("--lr", type=_positive, default=5e-4)
    add("--flow-share", type=_share, default=0.25, help="share of the training time on flow")
    add("--flow-weight", type=float, default=0.01)
    add("--flow-head-lr-mult", type=_positive, default=20.0)
    add("--stages", type=_stage_fractions, default=[0.05, 0.25, 0.2, 0.5], help="staged shares")
    add("--init", default="", help="checkpoint to start from (default: the shipped weights)")
    add("--motion", default="varied", choices=("varied", "linear"))
    add("--data-workers", type=int, default=max(0, min(14, (os.cpu_count() or 2) - 2)))
    add("--probe-steps", type=_positive_int, default=10)
    add("--max-steps", type=int, default=0, help="cap on the planned steps (0: the budget decides)")
    add("--threads", type=_positive_int, default=max(1, min(4, os.cpu_count() or 1)))
    add("--cache-dir", default="", help="simulated data cache (default: WORK/sim-data)")
    add("--eval-sequences", type=_positive_int, default=8)
    add("--train-sequences", type=_positive_int, default=48)
    add("--frame-size", type=_frame_size, default=DEFAULT_FRAME_SIZE, help="WxH of the data")
    add("--no-eval-shipped", dest="eval_shipped", action="store_false")
    add("--bench-sizes", type=_bench_size, nargs="+", default=["256x256", "640x480"], help="WxH")
    add("--bench-repeats", type=_positive_int, default=10)
    add(
        "--bench-batches",
        type=_positive_int,
        nargs="+",
        default=[7, 28],
        help="inserted frames per run: 7 = one 8x interval, 28 = four intervals at once",
    )
    add("--skip-bench", action="store_true")
    add("--skip-train", action="store_true")
    a = sub.add_parser("assemble", help="join the weights a run sent back into a checkpoint")
    a.add_argument("folder")
    a.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    return p


def main(argv: list[str] | None = None) -> int:
    from models.registry import ModelError
    from models.timelens import CheckpointError
    from models.train import TrainError

    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "run":
            if not args.cache_dir:
                args.cache_dir = str(Path(args.work) / "sim-data")
            if not args.init:
                from models.registry import SHIPPED_CHECKPOINT

                args.init = str(SHIPPED_CHECKPOINT)
            elif args.init == "none":
                args.init = ""
            report = run(args, log=lambda m: print(m, flush=True))
            failed = [c["check"] for c in report.get("checks", []) if not c["passed"]]
            if report["errors"] or failed:
                for line in report["errors"] + [f"check failed: {c}" for c in failed]:
                    print(f"error: {line}", file=sys.stderr)
                return 1
        else:
            path = assemble(args.folder, args.out)
            print(f"wrote {path}")
    except (GpuSessionError, TrainError, CheckpointError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
