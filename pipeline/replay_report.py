"""What a replay reports: its progress while it runs (a bar on stderr, a callback for
the console) and its summary afterwards (replay.json, and the text `slomo-rig replay`
prints), with every skipped interval, dropped keyframe, frame gap and damage found.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.dispatch import Dispatcher
from pipeline.inputs import ReplaySource
from pipeline.intervals import IntervalCutter
from pipeline.segments import FRAMES_DIR, TIMESTAMPS_FILE

SUMMARY_FILE = "replay.json"


class Progress:
    """The progress of a replay: a bar with rate and ETA on stderr (enabled), and/or a
    callback (``ReplayOptions.on_progress``; the console shows it on a page) given a
    dict: done and total intervals, inserted frames, intervals/s, ETA in seconds, and
    "final" on the last call. At most four updates a second, and a last one."""

    def __init__(
        self,
        enabled: bool,
        total: int | None,
        done0: int,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.done0 = done0
        self.callback = callback
        self.t0 = time.monotonic()
        self.last = 0.0
        self._latest = (done0, 0)

    def update(self, done: int, frames: int, force: bool = False) -> None:
        self._latest = (done, frames)
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        el = max(now - self.t0, 1e-9)
        rate = (done - self.done0) / el
        eta = (self.total - done) / rate if self.total and rate > 0 else None
        if self.callback is not None:
            self.callback(
                {
                    "done": done,
                    "total": self.total,
                    "frames": frames,
                    "intervals_per_s": round(rate, 2),
                    "eta_s": None if eta is None else round(eta, 1),
                    "final": force,
                }
            )
        if not self.enabled:
            return
        if self.total:
            frac = min(done / self.total, 1.0)
            width = 24
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            eta_s = _hms(eta) if eta is not None else "--:--"
            line = (
                f"\rreplay [{bar}] {done}/{self.total} intervals {100 * frac:5.1f}%  "
                f"{rate:6.1f} int/s  {frames / el:7.1f} frames/s  ETA {eta_s}  "
            )
        else:
            line = f"\rreplay {done} intervals  {rate:6.1f} int/s  {frames / el:7.1f} frames/s  "
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        self.update(*self._latest, force=True)
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _hms(s: float) -> str:
    s = int(s)
    return (
        f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        if s >= 3600
        else f"{s // 60:02d}:{s % 60:02d}"
    )


def merge_skipped(skipped: list[dict[str, Any]]) -> list[str]:
    """Human-readable lines, runs of consecutive intervals with one reason merged."""
    lines: list[str] = []
    i = 0
    while i < len(skipped):
        j = i
        while (
            j + 1 < len(skipped)
            and skipped[j + 1]["interval"] == skipped[j]["interval"] + 1
            and skipped[j + 1]["reason"] == skipped[i]["reason"]
        ):
            j += 1
        a, b = skipped[i], skipped[j]
        which = (
            f"interval {a['interval']}" if i == j else f"intervals {a['interval']}-{b['interval']}"
        )
        lines.append(
            f"{which} (frames {a['frames'][0]}..{b['frames'][1]}, {a['t0_us']}..{b['t1_us']} µs): "
            f"{a['reason']}"
        )
        i = j + 1
    return lines


def build_summary(
    source: ReplaySource,
    opts: Any,  # ReplayOptions
    state: dict[str, Any],
    status: str,
    cutter: IntervalCutter,
    compute: Dispatcher,
    wall: float,
    computed: int,
    inserted: int,
    resumed_from: int,
) -> dict[str, Any]:
    span_s = cutter.span_s
    out_info: dict[str, Any] = {
        "format": opts.format,
        "timestamps": str(opts.out / TIMESTAMPS_FILE),
    }
    if opts.format == "png":
        out_info["frames_dir"] = str(opts.out / FRAMES_DIR)
    else:
        out_info["video"] = str(opts.video_path) if status == "complete" else None
        out_info["playback_fps"] = opts.playback_fps
    total_intervals = state["next_interval"] - (1 if state["last_keyframe_written"] else 0)
    return {
        "status": status,
        "input": source.describe(),
        "notes": source.notes,
        "settings": {
            "factor": opts.factor,
            "fps": opts.fps,
            "model": opts.model,
            "model_name": getattr(compute, "name", opts.model),
            "workers": opts.workers,
        },
        "output": {
            **out_info,
            "frames_written": state["frames"],
            "original_frames": state["original"],
            "interpolated_frames": state["interpolated"],
        },
        "intervals": {
            "replayed": total_intervals,
            "interpolated": state["intervals_interpolated"],
            "skipped": len(state["skipped"]),
            "resumed_from": resumed_from,
            "runs": state.get("runs", 1),
        },
        "skipped_intervals": state["skipped"],
        "dropped_keyframes": cutter.dropped,
        "frame_gaps": cutter.gaps,
        "problems": source.problems,
        "timing": {
            "wall_s": round(wall, 3),
            "intervals_computed": computed,
            "inserted_frames": inserted,
            "intervals_per_s": round(computed / wall, 2) if wall > 0 else None,
            "inserted_frames_per_s": round(inserted / wall, 1) if wall > 0 else None,
            "capture_span_s": span_s,
            "realtime_factor": round(span_s / wall, 3)
            if span_s and wall > 0 and resumed_from == 0
            else None,
            **compute.stats(),
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """What `slomo-rig replay` prints on stdout."""
    inp, o, iv, tm = summary["input"], summary["output"], summary["intervals"], summary["timing"]
    lines = [
        f"replay {summary['status']}: {inp['kind']} {inp['path']}",
        f"  output      {o.get('video') or o.get('frames_dir') or '(video joined when complete)'}",
        f"  timestamps  {o['timestamps']}",
        f"  frames      {o['frames_written']} ({o['original_frames']} original + "
        f"{o['interpolated_frames']} interpolated, model {summary['settings']['model_name']})",
        f"  intervals   {iv['replayed']} replayed, {iv['interpolated']} interpolated, "
        f"{iv['skipped']} skipped"
        + (f" (resumed at {iv['resumed_from']})" if iv["resumed_from"] else ""),
    ]
    if tm.get("intervals_per_s") is not None:
        rt = f", {tm['realtime_factor']:.2f}x real time" if tm.get("realtime_factor") else ""
        lines.append(
            f"  speed       {tm['intervals_per_s']} intervals/s, {tm['inserted_frames_per_s']} "
            f"inserted frames/s in {tm['wall_s']} s{rt}"
        )
    for n in summary.get("notes", []):
        lines.append(f"  note        {n}")
    skipped = merge_skipped(summary["skipped_intervals"])
    if skipped:
        lines.append(
            f"  SKIPPED (keyframes kept, no frames inserted): {len(summary['skipped_intervals'])} intervals"
        )
        lines += [f"    {s}" for s in skipped]
    for d in summary["dropped_keyframes"]:
        lines.append(f"  DROPPED frame {d['frame']}: {d['reason']}")
    for g in summary["frame_gaps"]:
        lines.append(
            f"  GAP after frame {g['frames'][0]} ({g['t0_us']}..{g['t1_us']} µs): {g['detail']}"
        )
    for p in summary["problems"]:
        lines.append(f"  DAMAGE {p['what']}: {p['detail']}")
    if summary["status"] != "complete":
        lines.append("  interrupted: run the same command again to resume where it stopped")
    lines.append(f"  summary     {Path(o['timestamps']).parent / SUMMARY_FILE}")
    return "\n".join(lines)
