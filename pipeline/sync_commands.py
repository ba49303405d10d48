"""`slomo-rig sync SESSION`: refine the clock of a session recorded without a trigger wire.

Live, `HostClockSync` puts the frames on the rig clock only to a few ms (host latency).
Offline, `rig.software_sync.estimate_offset_software` matches the frames' intensity
change to the events and finds what is left. The stored frame times play the "device"
clock, so the result is a correction stored -> rig: written to clock.json (next to the
live mapping it refines) and to session.json (``clock_correction``), where replay picks
it up. The raw file is never rewritten, so running `sync` again re-estimates from the
stored times and replaces the correction instead of stacking a second one.

Wired into pipeline/cli.py with ``sync_commands.register(sub)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import positive_float
from pipeline.inputs.aedat4file import Aedat4FormatError
from pipeline.inputs.base import Gap, InputError
from pipeline.inputs.davis import aedat4_event_chunks
from pipeline.inputs.session import SessionSource
from pipeline.session import CLOCK_FILE, Session, SessionError, write_atomic
from rig.software_sync import SoftwareSyncReport, estimate_offset_software
from rig.sync import ClockMapping, SyncError
from rig.types import EventBatch, Frame

CLOCK_METHOD = "software"
MAX_SPAN_S = 60.0  # sessions up to this long are read whole
MAX_WINDOWS = 6  # beyond, this many windows spread over the session
SPAN_MARGIN_US = 1_000_000  # events kept around a window, beyond the search range
DESCRIPTION = """\
Refine the clock of a session recorded without a trigger wire (live, the host clock
puts the frames on the event clock only to a few ms): the frames' intensity change is
matched to the events, and the correction goes into clock.json and session.json, where
replay applies it. Needs brisk motion in view of both cameras. Running it again
re-estimates from the recorded times and replaces the correction.

Exit codes: 0 done, 2 user error (not a session, no raw file, streams that cannot be
matched: the message says what to do).

A session synced by trigger edges (µs) is refused unless --force: the software
estimate (about a millisecond) would only make it worse. `sync --undo` puts back the
clock as it was before the last `sync` (the live one, or the previous correction).
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sync",
        help="refine the clock of a session recorded without a trigger wire (from its data)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", type=Path, metavar="SESSION", help="session folder")
    p.add_argument(
        "--calibration",
        help="calibration file (.json/.yaml) mapping events into the frames, or 'identity' "
        "(default: the session's own, as replay picks it)",
    )
    p.add_argument(
        "--search-ms",
        type=positive_float,
        default=500.0,
        help="largest clock error to look for, either way (default: %(default)s ms)",
    )
    p.add_argument(
        "--window-s",
        type=positive_float,
        default=10.0,
        help="recordings longer than 2.5 windows get one offset per window, fitted with a "
        "line (the drift) (default: %(default)s s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="also refine a session whose clock came from trigger edges (replaces µs timing "
        "with a ms estimate; --undo brings it back)",
    )
    p.add_argument(
        "--undo",
        action="store_true",
        help="restore the clock as it was before the last 'slomo-rig sync' of this session",
    )
    p.set_defaults(func=cmd_sync)
    return p


def cmd_sync(args: argparse.Namespace) -> int:
    """Errors are the user's to fix (a wrong path, a scene without motion): one line, exit 2."""
    try:
        if args.undo:
            print(undo_sync(args.session))
            return 0
        result = refine_session_clock(
            args.session,
            calibration=args.calibration,
            search_us=args.search_ms * 1000.0,
            window_s=args.window_s,
            force=args.force,
        )
    except (SyncError, InputError, SessionError, Aedat4FormatError, FileNotFoundError) as exc:
        print(f"slomo-rig sync: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


def _trigger_clock(session: Session) -> dict[str, Any] | None:
    """The live clock when it came from trigger edges (µs accurate), else None."""
    live, _ = _live_clock(session, session.read())
    if isinstance(live, dict) and live.get("method") == "triggers":
        return live
    return None


def undo_sync(path: Path) -> str:
    """Put back the clock from before the last `sync`: the previous correction when there
    was one, else the live clock alone (clock.json as recorded, no correction)."""
    session = Session.open(Path(path))
    clock_path = session.path / CLOCK_FILE
    try:
        data = json.loads(clock_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = None
    if not (isinstance(data, dict) and data.get("method") == CLOCK_METHOD):
        raise SyncError(
            f"{session.path} has no clock correction from 'slomo-rig sync' to undo: its clock "
            "is the one it was recorded with"
        )
    previous = data.get("previous_correction")
    if isinstance(previous, dict):
        _write_json(
            clock_path, {"method": CLOCK_METHOD, "live": data.get("live"), "correction": previous}
        )
        session.update(clock_correction=previous)
        what = "the correction of the sync before it"
    else:
        live = data.get("live")
        if isinstance(live, dict):
            _write_json(clock_path, live)
        else:
            clock_path.unlink()
        session.update(clock_correction=None)
        method = live.get("method") if isinstance(live, dict) else "none"
        what = f"the clock it was recorded with ({method})"
    return (
        f"Clock of {session.path} restored to {what}.\n"
        f"  written to   {CLOCK_FILE} and session.json; replay uses it from now on"
    )


def read_session(
    path: Path,
    calibration: str | None = None,
    spans: list[tuple[float, float]] | None = None,
    margin_us: float = SPAN_MARGIN_US,
) -> tuple[SessionSource, list[Frame], EventBatch, list[str]]:
    """The frames (stored times, exposure start) and events (sensor pixels) of a session,
    through the same reader and event->frame mapping choice as replay. spans: keep only
    frames starting in these (t0, t1) ranges and events in them widened by margin_us
    (bounded memory for long sessions); None keeps everything."""
    src = SessionSource.open(Path(path), calibration)
    notes: list[str] = []
    w, h = src.frame_size
    frames: list[Frame] = []
    dropped = 0
    last = None
    for i, fp in enumerate(src.file.frames(src.frame_stream.id)):
        if fp.exposure_end_us > fp.exposure_start_us:
            start, exposure = fp.exposure_start_us, fp.exposure_end_us - fp.exposure_start_us
        else:
            start, exposure = fp.timestamp_us, 0
        if fp.image.shape[:2] != (h, w) or (last is not None and start <= last):
            dropped += 1  # replay drops these too
            continue
        last = start
        if spans is None or any(a <= start < b for a, b in spans):
            frames.append(Frame(fp.image, i, start, exposure))
    if dropped:
        notes.append(f"{dropped} frames of the wrong size or out of time order were left out")
    chunks = []
    for c in aedat4_event_chunks(src.file, src.event_stream):
        if isinstance(c, Gap) or not len(c):
            continue
        if spans is not None:
            t = c.t
            keep = np.zeros(len(c), bool)
            for a, b in spans:
                keep |= (t >= a - margin_us) & (t < b + margin_us)
            c = c[keep]
        chunks.append(c)
    events = EventBatch.concat(chunks) if chunks else EventBatch.empty()
    if len(events) and np.any(np.diff(events.t) < 0):
        events = events[np.argsort(events.t, kind="stable")]
        notes.append("events were not in time order in the raw file: sorted")
    if src.file.damage:
        notes.append(
            f"the raw file is damaged in {len(src.file.damage)} places: what could be read was used"
        )
    return src, frames, events, notes


def frame_times(path: Path, calibration: str | None = None) -> np.ndarray:
    """Start times of the session's frames, without keeping the images."""
    src = SessionSource.open(Path(path), calibration)
    return np.array(
        [
            fp.exposure_start_us if fp.exposure_end_us > fp.exposure_start_us else fp.timestamp_us
            for fp in src.file.frames(src.frame_stream.id)
        ],
        np.int64,
    )


def choose_spans(
    times: np.ndarray, window_s: float, max_span_s: float = MAX_SPAN_S
) -> list[tuple[float, float]] | None:
    """None (use everything) up to MAX_SPAN_S of recording; beyond, MAX_WINDOWS windows of
    window_s spread evenly over it: enough for offset and drift, bounded memory."""
    if len(times) < 2 or times[-1] - times[0] <= max_span_s * 1e6:
        return None
    win = window_s * 1e6
    n = int(min(MAX_WINDOWS, (times[-1] - times[0]) // win))
    starts = np.linspace(times[0], times[-1] - win, n)
    return [(float(a), float(a + win)) for a in starts]


def refine_session_clock(
    path: Path,
    calibration: str | None = None,
    search_us: float = 500_000.0,
    window_s: float = 10.0,
    max_span_s: float = MAX_SPAN_S,
    force: bool = False,
) -> dict[str, Any]:
    """Estimate the correction and write it into the session; nothing is written when the
    estimate fails (SyncError), so a failed run leaves the session as it was. A session
    whose clock came from trigger edges is refused unless force."""
    triggers = _trigger_clock(Session.open(Path(path)))
    if triggers is not None and not force:
        rms = triggers.get("residual_rms_us")
        raise SyncError(
            f"{path} was synced by trigger edges (residual "
            + (f"{rms:.2f} µs" if isinstance(rms, int | float) else "µs level")
            + "); a software estimate (about 1 ms) would replace that: nothing changed. "
            "Add --force to do it anyway ('slomo-rig sync --undo' restores it)"
        )
    spans = choose_spans(frame_times(path, calibration), window_s, max_span_s)
    margin = search_us + SPAN_MARGIN_US
    src, frames, events, notes = read_session(path, calibration, spans, margin)
    if spans is None:
        report = estimate_offset_software(
            frames,
            events,
            event_to_frame=src.event_to_frame,
            event_size=src.event_stream.size,
            search_us=(-search_us, search_us),
            window_s=window_s,
        )
    else:
        report = _estimate_in_spans(src, frames, events, spans, search_us, margin)
        notes.append(
            f"long session: {len(spans)} windows of {window_s:g} s spread over it were used"
        )
    session = Session(src.session_path)
    live, live_note = _live_clock(session, src.manifest)
    if live_note:
        notes.append(live_note)
    correction = report.to_dict()
    previous = src.manifest.get("clock_correction")
    _write_json(
        session.path / CLOCK_FILE,
        {
            "method": CLOCK_METHOD,
            "live": live,
            "correction": correction,
            "previous_correction": previous if isinstance(previous, dict) else None,
        },
    )
    session.update(clock_correction=correction)
    return {
        "session": str(session.path),
        "report": report,
        "first_us": frames[0].timestamp_us,
        "last_us": frames[-1].timestamp_us,
        "frames": len(frames),
        "live_method": (live or {}).get("method") if isinstance(live, dict) else None,
        "notes": notes,
    }


def _estimate_in_spans(
    src: SessionSource,
    frames: list[Frame],
    events: EventBatch,
    spans: list[tuple[float, float]],
    search_us: float,
    margin_us: float,
) -> SoftwareSyncReport:
    """One offset per span, then a line through them (offset and drift)."""
    centres, offsets, reports = [], [], []
    failures = []
    for a, b in spans:
        fs = [f for f in frames if a <= f.timestamp_us < b]
        lo, hi = np.searchsorted(events.t, [a - margin_us, b + margin_us])
        try:
            rep = estimate_offset_software(
                fs,
                events[int(lo) : int(hi)],
                event_to_frame=src.event_to_frame,
                event_size=src.event_stream.size,
                search_us=(-search_us, search_us),
                window_s=float("inf"),
            )
        except SyncError as exc:
            failures.append(str(exc))
            continue
        c = float(np.mean([f.mid_exposure_us for f in fs]))
        centres.append(c)
        offsets.append(rep.mapping.to_rig_float(c) - c)
        reports.append(rep)
    if len(reports) < 2:
        raise SyncError(
            f"only {len(reports)} of {len(spans)} windows could be matched"
            + (f" ({failures[0]})" if failures else "")
        )
    c = np.array(centres)
    mapping = ClockMapping.fit(c, c + np.array(offsets), "software-windows")
    notes = sorted({n for r in reports for n in r.notes})
    if failures:
        notes.append(f"{len(failures)} of {len(spans)} windows could not be matched")
    return SoftwareSyncReport(
        mapping,
        float(np.mean([r.correlation for r in reports])),
        float(np.mean([r.coarse_correlation for r in reports])),
        sum(r.fast_events for r in reports),
        sum(r.events for r in reports),
        len(reports),
        tuple(notes),
    )


def _live_clock(session: Session, manifest: dict[str, Any]) -> tuple[Any, str | None]:
    """What the live recording said about the clock: clock.json as recorded, or its
    "live" part once `sync` has run (so the original is never lost)."""
    path = session.path / CLOCK_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return manifest.get("clock"), None
    except (OSError, json.JSONDecodeError):
        return manifest.get("clock"), (
            f"{CLOCK_FILE} was unreadable: its live part is taken from session.json"
        )
    if isinstance(data, dict) and data.get("method") == CLOCK_METHOD and "correction" in data:
        return data.get("live"), None
    return data, None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace: a reader never sees half a clock.json."""
    write_atomic(path, json.dumps(data, indent=2, default=_plain))


def _plain(obj: Any) -> Any:
    """numpy scalars (the estimator's floats and counts) as plain JSON numbers."""
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def format_summary(result: dict[str, Any]) -> str:
    """What `slomo-rig sync` prints: the correction an operator can sanity-check."""
    report: SoftwareSyncReport = result["report"]
    m = report.mapping
    at_start = (m.to_rig_float(result["first_us"]) - result["first_us"]) / 1e3
    at_end = (m.to_rig_float(result["last_us"]) - result["last_us"]) / 1e3
    lines = [
        f"Clock of {result['session']} refined from its frames and events ({m.method}):",
        f"  correction   {at_start:+.2f} ms at the start, {at_end:+.2f} ms at the end "
        f"(added to the stored frame times; {result['frames']} frames)",
        f"  drift        {m.drift_ppm:+.2f} ppm over {report.windows} window(s)",
        f"  correlation  {report.correlation:.2f} (coarse search {report.coarse_correlation:.2f})",
        f"  fast events  {report.fast_events:,} of {report.events:,}",
    ]
    if result["live_method"] == "triggers":
        lines.append(
            "  WARNING      this session was synced by trigger edges (µs); the software "
            "correction is coarser and replay now applies it ('slomo-rig sync --undo "
            f"{result['session']}' restores the trigger clock)"
        )
    for note in [*report.notes, *result["notes"]]:
        lines.append(f"  note         {note}")
    lines.append(
        f"  written to   {CLOCK_FILE} and session.json (clock_correction); replay applies it;"
        " 'slomo-rig sync --undo' restores the clock from before"
    )
    return "\n".join(lines)
