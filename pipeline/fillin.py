"""Fill in what the live path skipped, right after a recording, with replay.

On a CPU the default model cannot interpolate every interval as fast as the rig makes
them, so the live video has keyframes only where the workers were busy. `slomo-rig
demo` therefore ends by replaying the just-recorded session (pipeline.replay, the
same machinery as `slomo-rig replay SESSION`) with the model and factor it ran live,
with a progress bar, and puts the complete video where the session's video was. The
live output is kept beside it (slowmo.live.mp4, timestamps.live.csv) so nothing that
was recorded is lost; session.json says what ran live and what was filled in.

Replay recomputes every interval, not only the skipped ones: the few the live path
managed are recomputed with the same model on the same keyframes and events, which is
simpler than splicing two videos and costs little when most were skipped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.session import Session

FILL_DIR = ".fill-in"
LIVE_VIDEO = "slowmo.live.mp4"
LIVE_TIMESTAMPS = "timestamps.live.csv"


@dataclass(frozen=True)
class FillInResult:
    """What the fill-in did: intervals skipped live, how many it filled, its status."""

    status: str  # "complete", "interrupted", "not needed"
    live_skipped: int
    filled: int
    skipped_after: int
    model: str
    wall_s: float


def fill_in_session(
    path: Path,
    model: str,
    factor: int,
    workers: int = 1,
    playback_fps: float = 30.0,
    progress: bool = True,
) -> FillInResult:
    """Replay the session at path into a complete video, replacing the live one (kept
    as slowmo.live.mp4). Does nothing when the live path skipped no interval."""
    from pipeline.inputs import open_input
    from pipeline.replay import ReplayOptions, run_replay

    session = Session.open(path)
    data = session.read()
    out = data.get("output") or {}
    live_skipped = int(out.get("intervals_skipped") or 0)
    if live_skipped == 0:
        return FillInResult("not needed", 0, 0, 0, model, 0.0)
    files = dict(data.get("files") or {})
    video = session.path / files.get("video", "slowmo.mp4")
    stamps = session.path / files.get("timestamps", "timestamps.csv")
    work = session.path / FILL_DIR
    opts = ReplayOptions(
        out=work,
        factor=factor,
        format="mp4",
        model=model,
        workers=workers,
        playback_fps=playback_fps,
        progress=progress,
        restart=True,
    )
    with open_input(session.path) as source:
        summary = run_replay(source, opts)
    wall = float(summary["timing"]["wall_s"])
    if summary["status"] != "complete" or not summary["output"].get("video"):
        shutil.rmtree(work, ignore_errors=True)
        session.update(fill_in={"status": "interrupted", "model": model})
        return FillInResult("interrupted", live_skipped, 0, live_skipped, model, wall)
    # The live output stays, renamed; the complete one takes its place.
    if video.exists():
        os.replace(video, session.path / LIVE_VIDEO)
    if stamps.exists():
        os.replace(stamps, session.path / LIVE_TIMESTAMPS)
    os.replace(summary["output"]["video"], video)
    os.replace(summary["output"]["timestamps"], stamps)
    shutil.rmtree(work, ignore_errors=True)
    skipped = [_as_session_skip(s) for s in summary["skipped_intervals"]]
    filled = max(0, live_skipped - len(skipped))
    o = summary["output"]
    session.update(
        files={**files, "live_video": LIVE_VIDEO, "live_timestamps": LIVE_TIMESTAMPS},
        live_output={k: v for k, v in out.items() if k != "skipped_intervals"},
        output={
            "frames_written": o["frames_written"],
            "original_frames": o["original_frames"],
            "interpolated_frames": o["interpolated_frames"],
            "intervals_interpolated": summary["intervals"]["interpolated"],
            "intervals_skipped": len(skipped),
            "skipped_intervals": skipped,
            "models": sorted({*out.get("models", []), summary["settings"]["model_name"]}),
        },
        fill_in=_record(summary, live_skipped, filled, model),
    )
    return FillInResult("complete", live_skipped, filled, len(skipped), model, wall)


def _as_session_skip(s: dict[str, Any]) -> dict[str, Any]:
    """A replay skip entry in the session's form (index, t0_us, t1_us, reason)."""
    return {
        "index": int(s["interval"]),
        "t0_us": int(s["t0_us"]),
        "t1_us": int(s["t1_us"]),
        "reason": str(s["reason"]),
    }


def _record(summary: dict[str, Any], live_skipped: int, filled: int, model: str) -> dict:
    return {
        "status": "complete",
        "model": model,
        "model_name": summary["settings"]["model_name"],
        "factor": summary["settings"]["factor"],
        "intervals_skipped_live": live_skipped,
        "intervals_filled": filled,
        "intervals_replayed": summary["intervals"]["replayed"],
        "wall_s": summary["timing"]["wall_s"],
        "live_video": LIVE_VIDEO,
        "live_timestamps": LIVE_TIMESTAMPS,
    }


def summary_line(result: FillInResult, live_model: str) -> str:
    """One line for the demo's closing summary."""
    if result.status == "not needed":
        return f"  models          {live_model} live: every interval in time, nothing to fill in"
    if result.status != "complete":
        return (
            f"  models          {live_model} live; filling in the {result.live_skipped} skipped "
            "intervals was interrupted: the live video is unchanged ('slomo-rig replay' "
            "fills them in)"
        )
    return (
        f"  models          {live_model} live, then {result.filled} of {result.live_skipped} "
        f"skipped intervals filled in afterwards with {result.model} in {result.wall_s:.0f} s "
        f"(live video kept as {LIVE_VIDEO})"
    )


__all__ = ["FillInResult", "fill_in_session", "summary_line"]
