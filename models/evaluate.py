"""Evaluation on held-out simulated sequences with ground truth.

Every method gets exactly what the live worker gets (an IntervalJob per interval) and
its frames are compared with the sharp ground-truth frames at the inserted instants:
PSNR (uint8 RGB, peak 255, per frame, averaged) and SSIM (Wang et al. 2004: Gaussian
window sigma 1.5, K1 0.01, K2 0.03, per colour channel, averaged). The sequences use
evaluation seeds 0..N-1, which training never uses (models.dataset).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.dataset import DEFAULT_CACHE, DEFAULT_FRAME_SIZE, eval_seeds, load_sequences
from models.registry import make_interpolator

DEFAULT_METHODS = ("fusion", "timelens", "integration", "flow", "blend")
#: BGR colours for the bar plot, one per method in order.
_COLOURS = ((40, 40, 200), (60, 160, 60), (200, 120, 40), (140, 140, 140), (160, 60, 160))


def psnr_uint8(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of one uint8 image against another (peak 255); identical -> 100 dB."""
    mse = float(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * np.log10(255.0**2 / mse)


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM over the image and its channels (Gaussian 11x11 window, sigma 1.5,
    K1 = 0.01, K2 = 0.03), the standard constants of Wang et al. 2004."""
    if pred.shape != gt.shape:
        raise ValueError(f"ssim: shapes differ, {pred.shape} vs {gt.shape}")
    x = pred.astype(np.float64)
    y = gt.astype(np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    scores = []
    for c in range(x.shape[2]):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = blur(a), blur(b)
        saa = blur(a * a) - mu_a**2
        sbb = blur(b * b) - mu_b**2
        sab = blur(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
        scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


@dataclass
class EvalResult:
    factors: list[int]
    sequences: int
    intervals: int
    seeds: list[int]
    frame_size: tuple[int, int]
    motion: str = "varied"
    #: method -> factor (str) -> {"psnr", "ssim", "ms_per_interval", "frames"}
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "factors": self.factors,
            "sequences": self.sequences,
            "intervals_per_sequence": self.intervals,
            "seeds": self.seeds,
            "frame_size": list(self.frame_size),
            "motion": self.motion,
            "metrics": "PSNR dB (uint8 RGB, peak 255, mean over frames); SSIM (Gaussian "
            "11x11 sigma 1.5, K1 0.01, K2 0.03, mean over channels and frames)",
            "scores": self.scores,
        }

    def table(self) -> str:
        """Markdown table: one row per method, PSNR / SSIM per factor."""
        head = (
            "| method | "
            + " | ".join(f"PSNR {f}x (dB) | SSIM {f}x" for f in self.factors)
            + " | ms/interval (8x or last) |"
        )
        sep = "| --- |" + " ---: | ---: |" * len(self.factors) + " ---: |"
        lines = [head, sep]
        for method, per in self.scores.items():
            cells = []
            for f in self.factors:
                s = per[str(f)]
                cells += [f"{s['psnr']:.2f}", f"{s['ssim']:.4f}"]
            last = per[str(8 if 8 in self.factors else self.factors[-1])]
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {last['ms_per_interval']:.0f} |"
            )
        return "\n".join(lines)


def evaluate(
    methods: Sequence[str] = DEFAULT_METHODS,
    factors: Sequence[int] = (4, 8),
    sequences: int = 8,
    intervals: int = 4,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    log=None,
    motion: str = "varied",
) -> EvalResult:
    """Score every method spec (as accepted by make_interpolator) on held-out sequences
    whose scenes move as `motion` says (models.dataset.MOTIONS)."""
    seeds = eval_seeds(sequences)
    seqs = load_sequences(seeds, intervals, frame_size, cache_dir, motion)
    result = EvalResult(list(factors), sequences, intervals, seeds, tuple(frame_size), motion)
    for spec in methods:
        interp = make_interpolator(spec)
        result.scores[spec] = {}
        for f in factors:
            ps, ss, secs, n_int = [], [], 0.0, 0
            per_seed: dict[str, float] = {}
            for seq in seqs:
                first = len(ps)
                for sample in seq.samples():
                    job = sample.job(f)
                    t = time.perf_counter()
                    pred = interp.interpolate(job)
                    secs += time.perf_counter() - t
                    n_int += 1
                    gt = sample.ground_truth(f)
                    for p, g in zip(pred, gt, strict=True):
                        ps.append(psnr_uint8(p, g))
                        ss.append(ssim(p, g))
                per_seed[str(seq.seed)] = float(np.mean(ps[first:]))
            result.scores[spec][str(f)] = {
                "psnr": float(np.mean(ps)),
                "ssim": float(np.mean(ss)),
                "ms_per_interval": 1000.0 * secs / max(1, n_int),
                "frames": len(ps),
                # Mean PSNR of each held-out seed: where a method wins or loses.
                "psnr_per_seed": per_seed,
            }
            if log:
                s = result.scores[spec][str(f)]
                log(f"{spec} {f}x: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}")
    return result


def draw_bars(result: EvalResult, path: str | Path) -> None:
    """Grouped bar plot (PSNR left, SSIM right; one group per factor) with OpenCV."""
    methods = list(result.scores)
    W, H = 1000, 460
    img = np.full((H, W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    panels = (("psnr", "PSNR (dB)", 0, W // 2), ("ssim", "SSIM", W // 2, W))
    top, bottom = 60, H - 80
    for key, title, x0, x1 in panels:
        vals = [result.scores[m][str(f)][key] for m in methods for f in result.factors]
        vmax = max(vals) * 1.1 if vals else 1.0
        vmin = 0.0
        left, right = x0 + 55, x1 - 15
        cv2.putText(img, title, (left, top - 25), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (left, bottom), (right, bottom), (0, 0, 0), 1)
        cv2.line(img, (left, top), (left, bottom), (0, 0, 0), 1)
        for v in np.linspace(vmin, vmax, 5):
            y = int(bottom - (bottom - top) * (v - vmin) / (vmax - vmin))
            cv2.line(img, (left - 4, y), (left, y), (0, 0, 0), 1)
            label = f"{v:.0f}" if key == "psnr" else f"{v:.2f}"
            cv2.putText(img, label, (x0 + 8, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        group_w = (right - left) / max(1, len(result.factors))
        bar_w = group_w * 0.8 / max(1, len(methods))
        for gi, f in enumerate(result.factors):
            gx = left + gi * group_w + group_w * 0.1
            for mi, m in enumerate(methods):
                v = result.scores[m][str(f)][key]
                bx0 = int(gx + mi * bar_w)
                bx1 = int(gx + (mi + 1) * bar_w) - 2
                by = int(bottom - (bottom - top) * (v - vmin) / (vmax - vmin))
                cv2.rectangle(img, (bx0, by), (bx1, bottom), _COLOURS[mi % len(_COLOURS)], -1)
                label = f"{v:.1f}" if key == "psnr" else f"{v:.3f}"
                cv2.putText(img, label, (bx0, by - 4), font, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(
                img, f"{f}x", (int(gx + group_w * 0.35), bottom + 18), font, 0.5, (0, 0, 0), 1
            )
    for mi, m in enumerate(methods):
        x = 60 + mi * 190
        cv2.rectangle(img, (x, H - 40), (x + 14, H - 26), _COLOURS[mi % len(_COLOURS)], -1)
        cv2.putText(img, m[:22], (x + 20, H - 28), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        img,
        f"Held-out simulated sequences ({result.motion} motion): {result.sequences} x "
        f"{result.intervals} intervals, {result.frame_size[0]}x{result.frame_size[1]}",
        (20, 20),
        font,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    cv2.imwrite(str(path), img)


def write_report(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """eval.json, eval.md (the table) and eval.png (bars) under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "md": out / "eval.md", "png": out / "eval.png"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    paths["md"].write_text(result.table() + "\n")
    draw_bars(result, paths["png"])
    return paths
