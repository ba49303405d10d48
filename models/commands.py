"""`slomo-rig train`, `slomo-rig eval` and `slomo-rig model {export,info,import-official}`.

`register(subparsers)` adds them to the main parser (pipeline/cli.py). Every command
returns an exit code; problems the user can fix raise ModelError (printed without a
traceback by the CLI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.registry import ModelError


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 320x240, got {text!r}"
        ) from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"frame size must be at least 32x32, got {text!r}")
    return w, h


def _stage_fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected four numbers like 0.05,0.25,0.2,0.5, got {text!r}"
        ) from None
    if len(values) != 4 or any(not (0 <= v <= 1) for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(
            f"expected four shares in [0, 1] summing to 1 (synthesis+warping, refinement, "
            f"attention, all), got {text!r}"
        )
    return values


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    from models.dataset import DEFAULT_CACHE, DEFAULT_FRAME_SIZE

    size = f"{DEFAULT_FRAME_SIZE[0]}x{DEFAULT_FRAME_SIZE[1]}"

    p = subparsers.add_parser(
        "train", help="train TimeLens on the simulated rig (staged recipe, resumable)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, loss curve)")
    p.add_argument("--width", type=float, default=0.1875, help="channel width multiplier")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="total optimizer steps (default 1400; with --resume: the run's own, or a new total)",
    )
    p.add_argument(
        "--crop",
        type=_positive_int,
        default=None,
        help="square training crop in px (default 96; with --resume: changes it from here on)",
    )
    p.add_argument(
        "--batch", type=_positive_int, default=None, help="default 8; may change on --resume"
    )
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (per stage)")
    p.add_argument(
        "--sequences", type=_positive_int, default=48, help="simulated training sequences"
    )
    p.add_argument("--intervals", type=_positive_int, default=8, help="intervals per sequence")
    p.add_argument(
        "--frame-size",
        type=_frame_size,
        default=DEFAULT_FRAME_SIZE,
        metavar=size,
        help=f"simulated frame size WxH (default: {DEFAULT_FRAME_SIZE[0]}x{DEFAULT_FRAME_SIZE[1]})",
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch sampling")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=100,
        help="steps between checkpoints (default: 100)",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="simulated data cache")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (step, optimizer, recipe); --steps may change the total",
    )
    p.add_argument(
        "--zero-init-heads",
        action="store_true",
        help="start the flow/refinement/attention U-Nets' last conv at zero (zero flow)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto (CUDA when present); may change on --resume",
    )
    p.add_argument(
        "--data-workers",
        type=int,
        default=0,
        help="processes cutting batches ahead (0: none; a few keep a GPU busy; same weights)",
    )
    p.add_argument(
        "--motion",
        choices=("varied", "linear"),
        default="varied",
        help="scene motion of the simulated data (see slomo-rig eval --motion)",
    )
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint")
    p.add_argument(
        "--flow-steps",
        type=int,
        default=0,
        help="first train the flow U-Net alone on the simulator's exact flows for N steps",
    )
    p.add_argument(
        "--flow-weight",
        type=float,
        default=0.0,
        help="add this x the exact-flow L1 (px) to the stages that train the flow U-Net",
    )
    p.add_argument(
        "--flow-head-lr-mult",
        type=float,
        default=1.0,
        help="learning-rate multiplier of the flow U-Net's last conv in the flow stage",
    )
    p.add_argument(
        "--stages",
        type=_stage_fractions,
        default=None,
        metavar="F,F,F,F",
        help="shares of the staged recipe's steps for synthesis+warping, refinement, "
        "attention, all (default 0.35,0.15,0.15,0.35)",
    )
    p.add_argument("--onnx", action="store_true", help="also export last.onnx at the end")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "eval", help="PSNR/SSIM of TimeLens and the baselines on held-out simulated sequences"
    )
    p.add_argument("--factors", type=int, nargs="+", default=[4, 8], help="slow-motion factors")
    p.add_argument("--sequences", type=_positive_int, default=8, help="held-out sequences")
    p.add_argument("--intervals", type=_positive_int, default=4, help="intervals per sequence")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="model specs (default: fusion timelens integration flow blend); e.g. timelens:run/last.pt",
    )
    p.add_argument(
        "--frame-size",
        type=_frame_size,
        default=DEFAULT_FRAME_SIZE,
        metavar=size,
        help=f"simulated frame size WxH (default: {DEFAULT_FRAME_SIZE[0]}x{DEFAULT_FRAME_SIZE[1]})",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="simulated data cache")
    p.add_argument(
        "--motion",
        choices=("varied", "linear"),
        default="varied",
        help="scene motion: varied (default; straight lines plus camera shake and swinging "
        "objects) or linear (constant speed between bounces, the easy case for frame flow)",
    )
    p.add_argument("--out", type=Path, default=None, help="write eval.json/.md/.png here")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("model", help="TimeLens model files: export, info, import")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("export", help="checkpoint (.pt/.pth/.bin) -> ONNX")
    q.add_argument("checkpoint", type=Path, help="checkpoint to export (.pt/.pth/.bin)")
    q.add_argument("--out", type=Path, default=None, help="default: checkpoint with .onnx")
    prec = q.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="U-Nets in half precision (GPU use)")
    prec.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 model for fast CPU workers (calibrated on simulated "
        "intervals; use it with --model timelens:FILE.int8.onnx)",
    )
    q.add_argument("--trust-pickle", action="store_true", help=_TRUST_HELP)
    q.set_defaults(func=cmd_export)
    q = msub.add_parser("info", help="width, parameters and metadata of a .pt/.pth/.bin/.onnx")
    q.add_argument("path", type=Path, help="model file (.pt/.pth/.bin/.onnx)")
    q.add_argument("--json", action="store_true", help="print machine-readable JSON")
    q.add_argument("--trust-pickle", action="store_true", help=_TRUST_HELP)
    q.set_defaults(func=cmd_info)
    q = msub.add_parser(
        "import-official",
        help="the official TimeLens checkpoint (your own copy) -> our format (+ ONNX)",
    )
    q.add_argument("checkpoint", type=Path, help="official checkpoint.bin")
    q.add_argument("--out", type=Path, required=True, help="our checkpoint to write (.pt)")
    q.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    q.add_argument("--fp16", action="store_true", help="export the ONNX with fp16 U-Nets")
    q.add_argument("--trust-pickle", action="store_true", help=_TRUST_HELP)
    q.set_defaults(func=cmd_import_official)


_TRUST_HELP = "allow full unpickling (only for files from a source you trust)"


def _print(msg: str) -> None:
    print(msg, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from models.train import STAGES, TrainConfig, TrainError, train

    if not (0 < args.width <= 4):
        raise ModelError(f"--width must be in (0, 4], got {args.width}")
    if args.crop is not None and args.crop < 32:
        raise ModelError(f"--crop must be at least 32 px, got {args.crop}")
    cfg = TrainConfig(
        out=str(args.out),
        width=args.width,
        steps=args.steps or (0 if args.resume else 1400),
        crop=args.crop or 96,
        batch=args.batch or 8,
        lr=args.lr,
        train_sequences=args.sequences,
        intervals=args.intervals,
        frame_size=tuple(args.frame_size),
        seed=args.seed,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        cache_dir=str(args.cache),
        zero_init_heads=args.zero_init_heads,
        motion=args.motion,
        init=str(args.init) if args.init else "",
        flow_steps=args.flow_steps,
        flow_weight=args.flow_weight,
        flow_head_lr_mult=args.flow_head_lr_mult,
        device=args.device,
        data_workers=max(0, args.data_workers),
    )
    if args.stages:
        cfg.stages = [[s[0], f] for s, f in zip(STAGES, args.stages, strict=True)]
    if args.flow_steps < 0 or (args.flow_steps > cfg.steps and not args.resume):
        raise ModelError(
            f"--flow-steps must be >= 0 and at most --steps ({cfg.steps}; equal: a run of "
            f"flow pretraining only), got {args.flow_steps}"
        )
    if args.flow_weight < 0 or args.flow_head_lr_mult <= 0:
        raise ModelError("--flow-weight must be >= 0 and --flow-head-lr-mult > 0")
    if args.init and not args.init.is_file():
        raise ModelError(f"--init {args.init}: no such checkpoint file")
    try:
        ckpt = train(
            cfg,
            resume=args.resume,
            log=_print,
            resume_overrides={"crop": args.crop, "batch": args.batch},
        )
    except TrainError as exc:
        raise ModelError(str(exc)) from exc
    _print(f"checkpoint: {ckpt}")
    if args.onnx:
        path = _export(ckpt, ckpt.with_suffix(".onnx"), fp16=False, trust=False)
        _print(f"onnx: {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from models.evaluate import DEFAULT_METHODS, evaluate, write_report

    bad = [f for f in args.factors if f not in (2, 4, 8)]
    if bad:
        raise ModelError(f"--factors: ground truth is stored at 8x; use 2, 4 or 8, not {bad}")
    result = evaluate(
        methods=args.methods or DEFAULT_METHODS,
        factors=args.factors,
        sequences=args.sequences,
        intervals=args.intervals,
        frame_size=tuple(args.frame_size),
        cache_dir=args.cache,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        motion=args.motion,
    )
    _print(result.table())
    if args.out:
        paths = write_report(result, args.out)
        _print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _load_checkpoint(path: Path, trust: bool, official: bool = False):
    from models.timelens import CheckpointError, TimeLens

    try:
        if official:
            return TimeLens.from_official_checkpoint(path, trust_pickle=trust)
        return TimeLens.load(path, trust_pickle=trust)
    except CheckpointError as exc:
        raise ModelError(str(exc)) from exc


def _export(ckpt: Path, out: Path, fp16: bool, trust: bool, model=None) -> Path:
    from models.export import export_onnx

    if model is None:
        model = _load_checkpoint(ckpt, trust)
    try:
        return export_onnx(model, out, fp16=fp16)
    except OSError as exc:
        raise ModelError(f"cannot write {out}: {exc}") from exc


def cmd_export(args: argparse.Namespace) -> int:
    if args.checkpoint.suffix.lower() == ".onnx":
        raise ModelError(f"{args.checkpoint} is already ONNX; export takes a checkpoint")
    out = args.out or args.checkpoint.with_suffix(".fp16.onnx" if args.fp16 else ".onnx")
    path = _export(args.checkpoint, out, args.fp16, args.trust_pickle)
    _print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.int8:
        from models.quantize import quantize_onnx, simulated_calibration_inputs

        int8 = quantize_onnx(path, path.with_suffix(".int8.onnx"), simulated_calibration_inputs())
        _print(f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB, int8 for CPU workers)")
    return 0


def model_info(path: Path, trust: bool = False) -> dict:
    """What a model file holds: kind, width, parameter count, pairing, metadata."""
    if not path.is_file():
        raise ModelError(f"{path} does not exist or is not a file")
    if path.suffix.lower() == ".onnx":
        import onnx
        from onnx import numpy_helper

        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types
            raise ModelError(f"{path} is not a readable ONNX file ({exc})") from exc
        meta = {p.key: p.value for p in proto.metadata_props}
        params = sum(int(numpy_helper.to_array(t).size) for t in proto.graph.initializer)
        return {
            "path": str(path),
            "kind": "onnx",
            "width": float(meta["width"]) if "width" in meta else None,
            "parameters": params,
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "opset": max((o.version for o in proto.opset_import), default=None),
            "inputs": [i.name for i in proto.graph.input],
            "metadata": meta,
        }
    import torch

    model = _load_checkpoint(path, trust)
    blob = torch.load(path, map_location="cpu", weights_only=not trust)
    official = "format" not in blob and "width" not in blob
    return {
        "path": str(path),
        "kind": "official checkpoint" if official else "slomo-rig checkpoint",
        "width": model.width,
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "swap_refined": model.swap_refined,
        "metadata": {k: v for k, v in (blob.get("metadata") or {}).items()},
    }


def cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.path, args.trust_pickle)
    if args.json:
        _print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if key == "metadata":
            continue
        if key == "parameters":
            value = f"{value:,}"
        _print(f"{key}: {value}")
    for key, value in info["metadata"].items():
        text = str(value)
        _print(f"  {key}: {text if len(text) < 200 else text[:197] + '...'}")
    return 0


def cmd_import_official(args: argparse.Namespace) -> int:
    out = args.out
    if out.suffix.lower() not in (".pt", ".pth"):
        raise ModelError(f"--out {out}: give a .pt or .pth path for the converted checkpoint")
    model = _load_checkpoint(args.checkpoint, args.trust_pickle, official=True)
    meta = {
        "source": "official TimeLens checkpoint (uzh-rpg/rpg_timelens)",
        "imported_from": str(args.checkpoint),
        "licence": "the official weights' evaluation-only licence applies to this file",
    }
    try:
        model.save(out, meta)
    except OSError as exc:
        raise ModelError(f"cannot write {out}: {exc}") from exc
    n = sum(p.numel() for p in model.parameters())
    _print(f"wrote {out} (width 1.0, {n:,} parameters, run_fast pairing)")
    if not args.no_onnx:
        onnx_out = out.with_suffix(".fp16.onnx" if args.fp16 else ".onnx")
        path = _export(out, onnx_out, args.fp16, False, model=model)
        _print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def build_standalone_parser() -> argparse.ArgumentParser:
    """A parser with only these commands (python -m models.commands ...)."""
    parser = argparse.ArgumentParser(prog="slomo-rig")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_standalone_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModelError as exc:
        print(f"slomo-rig {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
