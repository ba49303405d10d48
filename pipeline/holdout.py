"""Hold-out evaluation on a real recording: `slomo-rig eval --recording INPUT --hold-out S`.

Simulated scenes say little about a particular rig. A recording from the rig itself has
no ground truth between its frames, but its own frames can serve as one: keep every
(S+1)-th frame, interpolate each interval between two kept frames at the exact times of
the S frames left out, and score the interpolated frames against those real frames.
Every input that `slomo-rig replay` reads works (pipeline.inputs), and every method
gets exactly the IntervalJob replay would give it (the events between the two kept
frames, in the frame grid), so the ranking is the one replay would show on this rig.

The held-out frames are S frame periods away from a kept frame at most, so the task is
S+1 times harder than the recording's own interval: hold-out 1 scores 2x slow motion of
a rig at half its frame rate.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from contracts.jobs import IntervalJob
from models.evaluate import psnr_uint8, ssim
from models.registry import DEFAULT_MODEL, make_interpolator
from pipeline.inputs import InputOptions, Keyframe, MissingEvents, open_input

#: The classical yardsticks and TimeLens, after the current default (whatever it is).
BASE_METHODS = ("blend", "flow", "integration", "timelens")
#: BGR colours of the plot, one per method in order.
_COLOURS = ((40, 40, 200), (60, 160, 60), (200, 120, 40), (140, 140, 140), (160, 60, 160))
FILES = {"json": "holdout.json", "md": "holdout.md", "png": "holdout.png"}


class HoldoutError(ValueError):
    """A hold-out evaluation that cannot run; the message says what to do."""


def default_methods() -> tuple[str, ...]:
    """The default model first (so the table leads with it), then the others."""
    out = [DEFAULT_MODEL]
    out += [m for m in BASE_METHODS if m not in out]
    return tuple(out)


@dataclass
class HoldoutConfig:
    """What to evaluate. Checked on construction, before any frame is read."""

    recording: Path
    hold_out: int
    methods: tuple[str, ...] = field(default_factory=default_methods)
    out: Path | None = None
    max_intervals: int | None = None  # score only the first N kept-frame intervals
    input_options: InputOptions = field(default_factory=InputOptions)

    def __post_init__(self) -> None:
        self.recording = Path(self.recording)
        if self.hold_out < 1:
            raise HoldoutError(
                f"--hold-out must be >= 1 (frames left out between kept frames), got "
                f"{self.hold_out}"
            )
        if self.max_intervals is not None and self.max_intervals < 1:
            raise HoldoutError(f"--max-intervals must be >= 1, got {self.max_intervals}")
        if not self.methods:
            raise HoldoutError("--methods needs at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise HoldoutError(f"--methods lists a method twice: {' '.join(self.methods)}")
        if not self.recording.exists():
            raise HoldoutError(f"--recording {self.recording} does not exist: check the path")
        if self.out is not None:
            self.out = Path(self.out)
            if self.out.exists() and not self.out.is_dir():
                raise HoldoutError(f"--out {self.out} is a file: give a folder")


@dataclass
class MethodScores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    seconds: float = 0.0
    intervals: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "psnr": float(np.mean(self.psnr)) if self.psnr else math.nan,
            "ssim": float(np.mean(self.ssim)) if self.ssim else math.nan,
            "frames": len(self.psnr),
            "ms_per_interval": 1000.0 * self.seconds / max(1, self.intervals),
            "psnr_per_frame": [round(v, 3) for v in self.psnr],
        }


@dataclass
class HoldoutResult:
    recording: str
    kind: str
    frame_size: tuple[int, int]
    hold_out: int
    frame_period_us: float
    held_out_t_us: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, MethodScores] = field(default_factory=dict)
    intervals: int = 0

    def to_json(self) -> dict[str, Any]:
        per = {m: s.summary() for m, s in self.scores.items()}
        blend = per.get("blend", {}).get("psnr")
        for s in per.values():
            s["psnr_vs_blend"] = (s["psnr"] - blend) if blend is not None else None
        return {
            "recording": self.recording,
            "kind": self.kind,
            "frame_size": list(self.frame_size),
            "hold_out": self.hold_out,
            "frame_period_ms": round(self.frame_period_us / 1000.0, 3),
            "kept_frame_interval_ms": round(self.frame_period_us * (self.hold_out + 1) / 1e3, 3),
            "intervals": self.intervals,
            "held_out_frames": len(self.held_out_t_us),
            "held_out_t_us": self.held_out_t_us,
            "skipped_intervals": self.skipped,
            "metrics": "PSNR dB (uint8 RGB, peak 255, mean over held-out frames); SSIM "
            "(Gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, mean over channels and frames)",
            "scores": per,
        }

    def table(self) -> str:
        """Markdown table, one row per method, with the gain over the cross-fade."""
        data = self.to_json()["scores"]
        lines = [
            "| method | PSNR (dB) | vs blend (dB) | SSIM | ms/interval |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for m, s in data.items():
            vs = s["psnr_vs_blend"]
            lines.append(
                f"| {m} | {s['psnr']:.2f} | {'' if vs is None else f'{vs:+.2f}'} | "
                f"{s['ssim']:.4f} | {s['ms_per_interval']:.0f} |"
            )
        return "\n".join(lines)


def _groups(frames: Iterable[Keyframe], step: int, limit: int | None) -> Iterator[list[Keyframe]]:
    """Consecutive runs of step+1 usable keyframes sharing their ends: [k0 .. k_step]."""
    group: list[Keyframe] = []
    made = 0
    last_t: int | None = None
    for kf in frames:
        if last_t is not None and kf.t_us <= last_t:
            continue  # not after the previous frame: unusable (replay drops it too)
        last_t = kf.t_us
        group.append(kf)
        if len(group) == step + 1:
            yield group
            made += 1
            if limit is not None and made >= limit:
                return
            group = [kf]


def evaluate_recording(
    cfg: HoldoutConfig, log: Callable[[str], None] | None = None
) -> HoldoutResult:
    """Score every method of cfg on the held-out frames of cfg.recording."""
    # Everything the user can get wrong is checked before any interpolation.
    interps = {}
    for spec in cfg.methods:
        interps[spec] = make_interpolator(spec)  # ModelError names the unknown method
    step = cfg.hold_out + 1
    with open_input(cfg.recording, cfg.input_options) as source:
        expected = source.expected_keyframes()
        if expected is not None and expected < step + 1:
            raise HoldoutError(_too_few(cfg, expected))
        result = HoldoutResult(
            str(cfg.recording),
            source.kind,
            tuple(source.frame_size),
            cfg.hold_out,
            math.nan,
            scores={m: MethodScores() for m in cfg.methods},
        )
        periods: list[int] = []
        for group in _groups(source.keyframes(), step, cfg.max_intervals):
            k0, k1, held = group[0], group[-1], group[1:-1]
            periods += [b.t_us - a.t_us for a, b in zip(group, group[1:], strict=False)]
            try:
                ev = source.events(k0, k1)
            except MissingEvents as exc:
                result.skipped.append(
                    {"frames": [k0.index, k1.index], "t0_us": k0.t_us, "reason": str(exc)}
                )
                continue
            ts = np.array([k.t_us for k in held], np.int64)
            job = IntervalJob(result.intervals, k0.image, k1.image, k0.t_us, k1.t_us, ev, ts)
            result.held_out_t_us += [int(t) for t in ts]
            for spec, interp in interps.items():
                t = time.perf_counter()
                pred = interp.interpolate(job)
                sc = result.scores[spec]
                sc.seconds += time.perf_counter() - t
                sc.intervals += 1
                for p, real in zip(pred, held, strict=True):
                    sc.psnr.append(psnr_uint8(p, real.image))
                    sc.ssim.append(ssim(p, real.image))
            result.intervals += 1
            if log:
                log(f"interval {result.intervals}: frames {k0.index}..{k1.index}")
        if result.intervals == 0:
            n = len(periods) + 1 if periods else 0
            if result.skipped:
                raise HoldoutError(
                    f"{cfg.recording}: every interval lacks events "
                    f"({result.skipped[0]['reason']}); nothing to score"
                )
            raise HoldoutError(_too_few(cfg, n))
        result.frame_period_us = float(np.median(periods))
    return result


def _too_few(cfg: HoldoutConfig, n: int) -> str:
    return (
        f"{cfg.recording} has {n} usable frames; --hold-out {cfg.hold_out} needs at least "
        f"{cfg.hold_out + 2} (two kept frames and {cfg.hold_out} between): lower --hold-out"
    )


def draw_plot(result: HoldoutResult, path: Path) -> None:
    """Bars (mean PSNR and SSIM per method) above PSNR per held-out frame over time,
    drawn with OpenCV (no plotting library needed)."""
    data = result.to_json()["scores"]
    methods = list(data)
    W, H = 1000, 620
    img = np.full((H, W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    black = (0, 0, 0)

    def text(s: str, x: int, y: int, scale: float = 0.45) -> None:
        cv2.putText(img, s, (x, y), font, scale, black, 1, cv2.LINE_AA)

    text(
        f"{Path(result.recording).name} ({result.kind}): hold-out {result.hold_out}, "
        f"{len(result.held_out_t_us)} held-out frames in {result.intervals} intervals",
        20,
        22,
        0.5,
    )
    top, bottom = 70, 280
    for key, title, x0, x1 in (("psnr", "PSNR (dB)", 0, W // 2), ("ssim", "SSIM", W // 2, W)):
        vals = [data[m][key] for m in methods if np.isfinite(data[m][key])]
        vmax = max(vals) * 1.1 if vals else 1.0
        left, right = x0 + 55, x1 - 15
        text(title, left, top - 20, 0.55)
        cv2.line(img, (left, bottom), (right, bottom), black, 1)
        cv2.line(img, (left, top), (left, bottom), black, 1)
        bar_w = (right - left) * 0.9 / max(1, len(methods))
        for mi, m in enumerate(methods):
            v = data[m][key]
            if not np.isfinite(v):
                continue
            bx0 = int(left + 8 + mi * bar_w)
            by = int(bottom - (bottom - top) * v / vmax)
            colour = _COLOURS[mi % len(_COLOURS)]
            cv2.rectangle(img, (bx0, by), (int(bx0 + bar_w) - 6, bottom), colour, -1)
            text(f"{v:.2f}" if key == "psnr" else f"{v:.3f}", bx0, by - 4, 0.4)
    # PSNR per held-out frame, in time order.
    top2, bottom2, left2, right2 = 330, H - 60, 55, W - 15
    text("PSNR per held-out frame (dB) over the recording", left2, top2 - 12, 0.5)
    cv2.line(img, (left2, bottom2), (right2, bottom2), black, 1)
    cv2.line(img, (left2, top2), (left2, bottom2), black, 1)
    series = [np.asarray(data[m]["psnr_per_frame"], np.float64) for m in methods]
    allv = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.zeros(0)
    lo = float(np.floor(allv.min())) if len(allv) else 0.0
    hi = float(np.ceil(allv.max())) if len(allv) else 1.0
    hi = hi if hi > lo else lo + 1.0
    for v in np.linspace(lo, hi, 5):
        y = int(bottom2 - (bottom2 - top2) * (v - lo) / (hi - lo))
        cv2.line(img, (left2 - 4, y), (left2, y), black, 1)
        text(f"{v:.0f}", 12, y + 4, 0.4)
    for mi, s in enumerate(series):
        n = len(s)
        if n == 0:
            continue
        xs = left2 + (np.arange(n) + 0.5) * (right2 - left2) / n
        ys = bottom2 - (bottom2 - top2) * (np.clip(s, lo, hi) - lo) / (hi - lo)
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        colour = _COLOURS[mi % len(_COLOURS)]
        if n > 1:
            cv2.polylines(img, [pts], False, colour, 1, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, (int(p[0]), int(p[1])), 2, colour, -1)
    for mi, m in enumerate(methods):
        x = 60 + mi * 185
        cv2.rectangle(img, (x, H - 32), (x + 14, H - 18), _COLOURS[mi % len(_COLOURS)], -1)
        text(m[:22], x + 20, H - 20)
    cv2.imwrite(str(path), img)


def write_report(result: HoldoutResult, out: Path) -> dict[str, Path]:
    """holdout.json, holdout.md (the table) and holdout.png under out."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / name for k, name in FILES.items()}
    paths["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    paths["md"].write_text(result.table() + "\n")
    draw_plot(result, paths["png"])
    return paths


# -- the command line: `slomo-rig eval --recording ...` -----------------------------------
def extend_eval_parser(p: Any, add_input_args: Callable[[Any], None]) -> None:
    """Add the recording options to the `eval` parser (registered by models.commands,
    which must not import pipeline) and route --recording here."""
    g = p.add_argument_group(
        "a real recording (--recording): hold frames out and score them",
        "keep every (S+1)-th frame, interpolate at the held-out frames' times, score "
        "against the real frames; --methods and --out apply; the simulator options do not",
    )
    g.add_argument(
        "--recording",
        type=Path,
        metavar="INPUT",
        help="anything 'slomo-rig replay' reads: session, DAVIS AEDAT4, TimeLens folder, "
        "event file with --frames",
    )
    g.add_argument(
        "--hold-out",
        type=int,
        default=None,
        metavar="S",
        help="frames left out between two kept frames (1: keep every other frame)",
    )
    g.add_argument(
        "--max-intervals",
        type=int,
        default=None,
        metavar="N",
        help="score only the first N intervals between kept frames (default: all)",
    )
    add_input_args(p)
    simulated = p.get_default("func")

    def dispatch(args: Any) -> int:
        if args.recording is None:
            if args.hold_out is not None:
                raise HoldoutError("--hold-out needs --recording INPUT")
            return simulated(args)
        return cmd_eval_recording(args)

    p.set_defaults(func=dispatch)


def cmd_eval_recording(args: Any) -> int:
    from pipeline.replay_commands import input_options

    if args.hold_out is None:
        raise HoldoutError("--recording needs --hold-out S (e.g. 1: keep every other frame)")
    cfg = HoldoutConfig(
        recording=args.recording,
        hold_out=args.hold_out,
        methods=tuple(args.methods) if args.methods else default_methods(),
        out=args.out,
        max_intervals=args.max_intervals,
        input_options=input_options(args),
    )
    result = evaluate_recording(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(result.table())
    if result.skipped:
        print(f"skipped {len(result.skipped)} intervals without complete events (see JSON)")
    if cfg.out is not None:
        paths = write_report(result, cfg.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


__all__ = [
    "HoldoutConfig",
    "HoldoutError",
    "HoldoutResult",
    "default_methods",
    "evaluate_recording",
    "extend_eval_parser",
    "write_report",
]
