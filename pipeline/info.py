"""`slomo-rig info`: what a session holds, including how far a cut-off one got."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.errors import SessionError
from pipeline.aedat4 import MAGIC
from pipeline.session import Session

STATUS_NOTES = {
    "recording": "the recording was cut off (crash or power loss): raw data up to the cut is "
    "readable; run 'slomo-rig replay' to interpolate it",
    "interrupted": "the recording was stopped with Ctrl-C: everything captured before is kept",
    "failed": "the recording failed (see the error above): everything captured before the "
    "failure is kept and can be replayed",
    "incomplete": "the recording ended but parts are missing (see the error above)",
}


def _raw_state(path: Path) -> str | None:
    """None if the raw file starts like an AEDAT4 file, else what is wrong with it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "empty (0 bytes)"
    if head != MAGIC:
        return "damaged (not an AEDAT4 file)"
    return None


def describe(path: Path) -> dict[str, Any]:
    session = Session.open(path)
    manifest = session.manifest()
    data = manifest.data
    files = {}
    for key, name in manifest.files.items():
        f = session.path / name
        files[key] = {
            "path": str(f),
            "exists": f.is_file(),
            "bytes": f.stat().st_size if f.is_file() else 0,
        }
    status = manifest.status
    raw_problem = _raw_state(session.path / manifest.files.raw)
    if raw_problem is not None and status == "complete":
        raise SessionError(
            f"{session.path} says it is complete, but its raw recording "
            f"{manifest.files.raw} is {raw_problem}: the session is damaged and cannot be "
            "replayed (restore the file from a copy)"
        )
    out = data.get("output", {})
    notes = []
    if status in STATUS_NOTES:
        notes.append(STATUS_NOTES[status])
    if raw_problem is not None:
        notes.append(f"the raw recording {manifest.files.raw} is {raw_problem}")
    if isinstance(data.get("recorder_error"), str):
        notes.append(data["recorder_error"])
    if out.get("status") not in (None, "complete"):
        notes.append(
            f"the slow-motion output is {out.get('status')}: the video ends where it stopped"
        )
    if out.get("intervals_skipped"):
        notes.append(
            f"{out['intervals_skipped']} intervals have no interpolated frames; "
            "'slomo-rig replay' fills them in from the raw recording"
        )
    return {
        **data,
        "path": str(session.path),
        "status": status,
        "notes": notes,
        "file_status": files,
    }


def format_text(info: dict[str, Any]) -> str:
    cap = info.get("capture", {})
    out = info.get("output", {})
    clock = info.get("clock", {})
    lines = [
        f"session  {info['path']}",
        f"status   {info['status']}" + (f"  ({info['error']})" if info.get("error") else ""),
        f"created  {info.get('created', '?')}",
    ]
    if cap:
        span = 0.0
        if cap.get("first_event_us") is not None and cap.get("last_event_us") is not None:
            span = (cap["last_event_us"] - cap["first_event_us"]) / 1e6
        lines += [
            f"raw      {cap.get('events', 0):,} events, {cap.get('frames', 0)} frames, "
            f"{cap.get('triggers', 0)} triggers over {span:.2f} s",
            f"drops    camera skipped {cap.get('camera_skipped_frames', 0)} frames, "
            f"live path dropped {cap.get('live_events_dropped', 0):,} events (raw keeps all)",
            f"intervals {cap.get('intervals', 0)}: {cap.get('intervals_dispatched', 0)} sent to "
            f"workers, {cap.get('intervals_skipped', 0)} skipped live (workers busy)",
        ]
    if clock:
        lines.append(
            f"clock    {clock.get('method')}: drift {clock.get('drift_ppm', 0):.2f} ppm, "
            f"residual rms {clock.get('residual_rms_us', 0):.2f} us over {clock.get('n', 0)} frames"
        )
    fix = info.get("clock_correction")
    if isinstance(fix, dict) and isinstance(fix.get("mapping"), dict):
        m = fix["mapping"]
        t = cap.get("first_event_us") or 0  # the correction at the start of the recording
        shift = m.get("offset_us", 0) + (m.get("scale", 1.0) - 1.0) * t
        lines.append(
            f"clock    corrected by `slomo-rig sync` ({fix.get('method')}): "
            f"{shift / 1e3:+.2f} ms at the start, drift {fix.get('drift_ppm', 0):+.2f} ppm, "
            f"correlation {fix.get('correlation', 0):.2f}, {fix.get('fast_events', 0):,} fast "
            "events; replay applies it"
        )
    if out:
        lines.append(
            f"output   {out.get('frames_written', 0)} frames "
            f"({out.get('original_frames', 0)} original, {out.get('interpolated_frames', 0)} "
            f"interpolated by {', '.join(out.get('models', [])) or '-'}), status {out.get('status')}"
        )
        fill = info.get("fill_in")
        if isinstance(fill, dict) and fill.get("status") == "complete":
            lines.append(
                f"fill-in  {fill.get('intervals_filled', 0)} of "
                f"{fill.get('intervals_skipped_live', 0)} intervals skipped live were filled in "
                f"afterwards by {fill.get('model_name', '?')} (live video kept as "
                f"{fill.get('live_video', '?')})"
            )
        skipped = out.get("skipped_intervals", [])
        if skipped:
            lines.append(f"skipped  {len(skipped)} intervals:")
            for s in skipped[:20]:
                lines.append(f"  #{s['index']:5d}  {s['t0_us']} .. {s['t1_us']} us  {s['reason']}")
            if len(skipped) > 20:
                lines.append(f"  ... and {len(skipped) - 20} more (see --json)")
    pool = info.get("pool")
    if pool:
        lines.append(
            f"pool     {len(pool.get('workers_seen', []))} workers seen, {pool.get('workers_lost', 0)} "
            f"lost, {pool.get('restarts', 0)} restarted, {pool.get('redispatched', 0)} intervals "
            f"re-dispatched, {pool.get('lost', 0)} lost with their worker"
        )
    out_lat = info.get("output", {}).get("latency_p50_ms")
    if out_lat is not None:
        lines.append(
            f"latency  keyframe -> interpolated frames: p50 {out_lat} ms, "
            f"p99 {info['output'].get('latency_p99_ms')} ms"
        )
    for name, w in info.get("workers", {}).items():
        lines.append(
            f"worker   {name}: {w.get('results_received', 0)} intervals delivered, "
            f"{w.get('bad_messages', 0)} bad messages, {w.get('failed_jobs', 0)} failed"
        )
    for key, f in info["file_status"].items():
        mark = "" if f["exists"] else "  (missing)"
        lines.append(f"file     {key:10s} {f['path']}  {f['bytes']:,} bytes{mark}")
    lines += [f"note     {n}" for n in info["notes"]]
    return "\n".join(lines)
