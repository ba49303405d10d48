"""`slomo-rig report SESSION`: one self-contained HTML page of what a session holds.

`info` prints numbers; an operator checking a take wants to see it: how the event and
frame rates went over time, what was dropped, how well the clock fitted (per frame,
against the trigger edges), which intervals were interpolated live, which were skipped
and which were filled in afterwards, a strip of thumbnails and the slow-motion video.

The page opens offline and can be mailed around: CSS inline, charts as inline SVG,
thumbnails as data: URIs, the video embedded as a data: URI up to EMBED_LIMIT_BYTES
(larger videos are linked beside the page instead). Everything is read from the
session's own files (session.json, raw.aedat4, timestamps.csv, slowmo.mp4)."""

from __future__ import annotations

import argparse
import base64
import csv
import html
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.session import Session, SessionError

REPORT_FILE = "report.html"
EMBED_LIMIT_BYTES = 40 * 1024 * 1024  # a demo's video is a few MB: embedded
THUMBNAILS = 10
MAX_POINTS = 300  # per chart line
COLOURS = {"live": "#2e9d4a", "replayed": "#2f6fd0", "skipped": "#d23c3c"}


class ReportError(RuntimeError):
    """The report cannot be written; the message says what to do."""


# ---- data ----------------------------------------------------------------------------
@dataclass
class RawSummary:
    """What the raw recording itself says (not the manifest's counters)."""

    event_bins_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    events_per_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_times_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    trigger_times_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    events: int = 0
    damage: int = 0
    note: str = ""

    def residuals_us(self) -> tuple[np.ndarray, np.ndarray]:
        """(frame time, frame start - nearest trigger edge) for frames with an edge within
        half a frame period: how far each frame sits from where its wire says it was."""
        f, t = self.frame_times_us, np.sort(self.trigger_times_us)
        if len(f) < 2 or len(t) == 0:
            return np.zeros(0), np.zeros(0)
        i = np.clip(np.searchsorted(t, f), 1, len(t) - 1) if len(t) > 1 else np.zeros(len(f), int)
        near = t[i]
        if len(t) > 1:
            left = t[i - 1]
            near = np.where(np.abs(f - left) < np.abs(f - near), left, near)
        d = (f - near).astype(np.float64)
        keep = np.abs(d) < np.median(np.diff(f)) / 2
        return f[keep].astype(np.float64), d[keep]


def read_raw(path: Path) -> RawSummary:
    from pipeline.inputs.aedat4file import Aedat4File, Aedat4FormatError
    from pipeline.inputs.davis import pick_streams

    out = RawSummary()
    if not path.exists():
        out.note = f"{path.name} is missing"
        return out
    try:
        f = Aedat4File(path)
    except (Aedat4FormatError, OSError) as exc:
        out.note = f"{path.name} cannot be read: {exc}"
        return out
    fr, ev, _ = pick_streams(f)
    if fr is not None:
        out.frame_times_us = np.array(
            [
                p.exposure_start_us if p.exposure_end_us > p.exposure_start_us else p.timestamp_us
                for p in f.frames(fr.id)
            ],
            np.int64,
        )
    trig = [s for s in f.header.streams if s.type == "TRIG"]
    if trig:
        out.trigger_times_us = np.asarray(f.triggers(trig[0].id)["t"], np.int64)
    if ev is not None:
        bin_us, counts, t0 = 10_000, np.zeros(0, np.int64), None
        for _, packet in f.event_packets(ev.id):
            if packet is None or not len(packet):
                continue
            t = packet["t"].astype(np.int64)
            t0 = int(t[0]) if t0 is None else t0
            idx = np.clip((t - t0) // bin_us, 0, None)
            c = np.bincount(idx)
            if len(c) > len(counts):
                counts = np.pad(counts, (0, len(c) - len(counts)))
            counts[: len(c)] += c
            out.events += len(t)
        if t0 is not None and len(counts):
            k = max(1, int(np.ceil(len(counts) / MAX_POINTS)))  # coarser bins, same rate
            n = len(counts) // k * k or len(counts)
            merged = counts[:n].reshape(-1, k).sum(axis=1) if n % k == 0 else counts
            width = bin_us * (k if n % k == 0 else 1)
            out.event_bins_us = t0 + np.arange(len(merged)) * width + width / 2
            out.events_per_s = merged / (width / 1e6)
    out.damage = len(f.damage)
    return out


def read_timestamps(path: Path) -> list[tuple[int, int, str]]:
    """(index, timestamp_us, source) rows of a timestamps.csv; [] when missing."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [(int(r["index"]), int(r["timestamp_us"]), r["source"]) for r in csv.DictReader(fh)]


@dataclass
class Interval:
    index: int
    t0_us: int
    t1_us: int
    status: str  # live | replayed | skipped
    reason: str = ""
    first_row: int = 0  # row of its first keyframe in timestamps.csv (= video frame)


def intervals(
    final: list[tuple[int, int, str]],
    live: list[tuple[int, int, str]] | None,
    skipped: list[dict[str, Any]],
) -> list[Interval]:
    """One entry per keyframe pair of the output: interpolated live (frames in the live
    video), replayed (frames only in the filled-in video) or skipped (none)."""
    keys = np.array([t for _, t, s in final if s == "original"], np.int64)
    rows = [i for i, (_, _, s) in enumerate(final) if s == "original"]
    if len(keys) < 2:
        return []

    def filled(rows: list[tuple[int, int, str]]) -> np.ndarray:
        t = np.array([t for _, t, s in rows if s == "interpolated"], np.int64)
        has = np.zeros(len(keys) - 1, bool)
        if len(t):
            k = np.searchsorted(keys, t, side="right") - 1
            ok = (k >= 0) & (k < len(keys) - 1)
            has[k[ok]] = True
        return has

    in_final = filled(final)
    in_live = filled(live) if live is not None else in_final
    reasons: dict[int, str] = {}
    for s in skipped:
        t0 = s.get("t0_us")
        if isinstance(t0, int | float):
            k = int(np.clip(np.searchsorted(keys, t0, side="right") - 1, 0, len(keys) - 2))
            reasons[k] = str(s.get("reason", ""))
    out = []
    for i in range(len(keys) - 1):
        status = "live" if in_live[i] else ("replayed" if in_final[i] else "skipped")
        out.append(Interval(i, int(keys[i]), int(keys[i + 1]), status, reasons.get(i, ""), rows[i]))
    return out


def thumbnails(video: Path, rows: list[tuple[int, int, str]], n: int = THUMBNAILS) -> list[dict]:
    """n frames spread over the video as JPEG data URIs, with their time and source."""
    if not video.exists():
        return []
    import av
    import cv2

    try:
        with av.open(str(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError):
        return []
    if not frames:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(n, len(frames)))})
    out = []
    for i in picks:
        img = frames[i]
        scale = 240 / img.shape[1]
        small = cv2.resize(img, (240, max(1, int(img.shape[0] * scale))))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if not ok:
            continue
        row = rows[i] if i < len(rows) else (i, None, "?")
        out.append(
            {
                "uri": "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode(),
                "index": i,
                "t_us": row[1],
                "source": row[2],
            }
        )
    return out


# ---- drawing (inline SVG) ------------------------------------------------------------
def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    first = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(first, hi + step / 2, step)]


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def line_chart(
    series: list[tuple[str, np.ndarray, np.ndarray, str]],
    xlabel: str,
    ylabel: str,
    dots: bool = False,
    width: int = 900,
    height: int = 220,
) -> str:
    """An SVG chart of (label, x, y, colour) lines (or dots), with axes and a legend."""
    pad_l, pad_r, pad_t, pad_b = 60, 10, 22, 34
    xs = [s[1] for s in series if len(s[1])]
    ys = [s[2] for s in series if len(s[2])]
    if not xs:
        return '<p class="none">no data</p>'
    x0, x1 = min(float(np.min(x)) for x in xs), max(float(np.max(x)) for x in xs)
    y0 = min(0.0, min(float(np.min(y)) for y in ys))
    y1 = max(float(np.max(y)) for y in ys)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def py(y: float) -> float:
        return pad_t + h - (y - y0) / (y1 - y0) * h

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img">']
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
            f'<text x="{pad_l - 6}" y="{py(t) + 4:.1f}" class="ytick">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1, 8):
        parts.append(f'<text x="{px(t):.1f}" y="{pad_t + h + 16}" class="xtick">{_fmt(t)}</text>')
    parts.append(
        f'<text x="{pad_l + w / 2}" y="{height - 4}" class="axis">{html.escape(xlabel)}</text>'
        f'<text x="12" y="{pad_t + h / 2}" class="axis" '
        f'transform="rotate(-90 12 {pad_t + h / 2})">{html.escape(ylabel)}</text>'
    )
    for k, (label, x, y, colour) in enumerate(series):
        if not len(x):
            continue
        if dots:
            parts += [
                f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.2" fill="{colour}"/>'
                for a, b in zip(x, y, strict=True)
            ]
        else:
            pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y, strict=True))
            parts.append(
                f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
            )
        lx = pad_l + 8 + k * 220
        parts.append(
            f'<rect x="{lx}" y="6" width="12" height="8" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="14" class="legend">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def video_fps(video: Path) -> float | None:
    """Playback rate of the video (frames per second of video time)."""
    if not video.exists():
        return None
    import av

    try:
        with av.open(str(video)) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def timeline(
    items: list[Interval], fps: float | None = None, width: int = 900, height: int = 46
) -> str:
    """One coloured bar per interval along rig time; hover for index, times, reason;
    a click plays the video from that interval (when its rate is known)."""
    if not items:
        return '<p class="none">no intervals (fewer than two keyframes in the output)</p>'
    t0, t1 = items[0].t0_us, items[-1].t1_us
    span = max(t1 - t0, 1)
    parts = [f'<svg id="timeline" class="chart" viewBox="0 0 {width} {height}" role="img">']
    for it in items:
        x = (it.t0_us - t0) / span * (width - 2) + 1
        w = max((it.t1_us - it.t0_us) / span * (width - 2) - 0.6, 0.6)
        tip = f"interval {it.index}: {it.t0_us / 1e6:.3f}-{it.t1_us / 1e6:.3f} s, {it.status}"
        if it.reason:
            tip += f" ({it.reason})"
        start = f' data-start-s="{it.first_row / fps:.3f}"' if fps else ""
        parts.append(
            f'<rect class="iv {it.status}" data-index="{it.index}"{start} x="{x:.2f}" y="4" '
            f'width="{w:.2f}" height="26" fill="{COLOURS[it.status]}">'
            f"<title>{html.escape(tip)}</title></rect>"
        )
    parts.append(
        f'<text x="1" y="{height - 2}" class="xtick" style="text-anchor:start">'
        f"{t0 / 1e6:.3f} s</text>"
        f'<text x="{width - 1}" y="{height - 2}" class="xtick" style="text-anchor:end">'
        f"{t1 / 1e6:.3f} s</text></svg>"
    )
    return "".join(parts)


# ---- page ----------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d232b;
background:#f4f6f8}
header{background:#1d232b;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header .sub{color:#b9c2cc;font-size:13px}
main{padding:12px 24px 40px;max-width:1000px}
section{background:#fff;border-radius:8px;padding:12px 16px;margin:12px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:2px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#f4f6f8;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#5a6570;font-size:12px}
table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left}
th{color:#5a6570;font-weight:normal}
.status-complete{color:#2e9d4a}.status-failed,.status-recording{color:#d23c3c}
.chart{width:100%;height:auto}.grid{stroke:#e3e7eb}.ytick{font-size:11px;text-anchor:end;
fill:#5a6570}.xtick{font-size:11px;text-anchor:middle;fill:#5a6570}.axis{font-size:12px;
text-anchor:middle;fill:#5a6570}.legend{font-size:12px;fill:#1d232b}
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;
vertical-align:-1px;border-radius:2px}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;font-size:11px;
color:#5a6570}.thumbs img{display:block;width:180px;border-radius:4px}
.thumbs .interpolated img{outline:2px solid #2f6fd0}
video{width:100%;max-width:960px;background:#000;border-radius:6px}
.note{color:#8a5a00}.none{color:#5a6570}code{background:#eef1f4;padding:1px 4px}
"""

SCRIPT = """
document.querySelectorAll('#timeline rect.iv').forEach(function (r) {
  r.addEventListener('click', function () {
    var v = document.querySelector('video'), t = r.getAttribute('data-start-s');
    if (v && t !== null) { v.currentTime = parseFloat(t); v.play(); }
  });
});
"""


def _card(value: object, label: str) -> str:
    return (
        f'<div class="card"><b>{html.escape(str(value))}</b><span>{html.escape(label)}</span></div>'
    )


def _rows(pairs: list[tuple[str, object]]) -> str:
    return (
        "<table>"
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs
        )
        + "</table>"
    )


def render(session: Path, out: Path, embed_limit: int = EMBED_LIMIT_BYTES) -> dict[str, Any]:
    """Build the page; returns what went into it (for the summary and tests)."""
    from pipeline.info import describe

    info = describe(session)
    cap, outp = info.get("capture", {}), info.get("output", {})
    files = info.get("files", {})
    raw = read_raw(session / files.get("raw", "raw.aedat4"))
    final = read_timestamps(session / files.get("timestamps", "timestamps.csv"))
    live_name = files.get("live_timestamps")
    live = read_timestamps(session / live_name) if live_name else None
    live_out = info.get("live_output", outp)
    items = intervals(final, live, live_out.get("skipped_intervals", []))
    counts = {s: sum(1 for i in items if i.status == s) for s in COLOURS}
    video = session / files.get("video", "slowmo.mp4")
    thumbs = thumbnails(video, final)

    # rates over time: events (raw), frames (raw), output frames (timestamps.csv)
    t_origin = float(raw.event_bins_us[0]) if len(raw.event_bins_us) else 0.0
    ft = raw.frame_times_us.astype(np.float64)
    series = [("events/s", (raw.event_bins_us - t_origin) / 1e6, raw.events_per_s, "#2f6fd0")]
    fps_series = []
    if len(ft) > 2:
        fps_series.append(
            ("camera frames/s", (ft[1:] - t_origin) / 1e6, 1e6 / np.diff(ft), "#1d232b")
        )
    out_t = np.array([t for _, t, _ in final], np.float64)
    if len(out_t) > 2:
        # output frames per 100 ms of rig time
        edges = np.arange(out_t.min(), out_t.max() + 100_000, 100_000)
        hist, _ = np.histogram(out_t, edges)
        fps_series.append(
            ("slow-motion frames/s (rig time)", (edges[:-1] + 50_000 - t_origin) / 1e6,
             hist / 0.1, "#2e9d4a")
        )  # fmt: skip
    res_t, res = raw.residuals_us()
    clock = info.get("clock", {})
    fix = info.get("clock_correction")

    # the video: embedded when small, linked beside the page when not
    video_html = '<p class="none">no slow-motion video in this session</p>'
    video_mode = "none"
    if video.exists() and video.stat().st_size > 0:
        if video.stat().st_size <= embed_limit:
            uri = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
            video_mode = "embedded"
        else:
            uri = html.escape(os.path.relpath(video, out.parent))
            video_mode = "linked"
        video_html = (
            f'<video id="video" controls muted loop preload="auto" src="{uri}"></video>'
            f'<p class="none">{html.escape(video.name)}, {video.stat().st_size / 1e6:.1f} MB, '
            f"{len(final)} frames ({video_mode})</p>"
        )

    span = 0.0
    if cap.get("first_event_us") is not None and cap.get("last_event_us") is not None:
        span = (cap["last_event_us"] - cap["first_event_us"]) / 1e6
    status = str(info.get("status"))
    live_cfg = info.get("live", {})
    drops = [
        ("camera skipped frames", cap.get("camera_skipped_frames", 0)),
        ("keyframes dropped", cap.get("keyframes_dropped", 0)),
        ("live events dropped (raw keeps all)", f"{cap.get('live_events_dropped', 0):,}"),
        ("recorder messages dropped", cap.get("recorder_messages_dropped", 0)),
        ("intervals lost with a worker", cap.get("intervals_lost", 0)),
        ("raw file damage skipped", raw.damage),
    ]
    clock_rows = [
        ("method", clock.get("method", "?")),
        ("residual rms / max", f"{clock.get('residual_rms_us', 0):.2f} / "
         f"{clock.get('residual_max_us', 0):.2f} µs over {clock.get('n', 0)} frames"),
        ("drift", f"{clock.get('drift_ppm', 0):+.2f} ppm"),
    ]  # fmt: skip
    if isinstance(fix, dict):
        clock_rows.append(
            ("corrected by slomo-rig sync", f"{fix.get('method')}, correlation "
             f"{fix.get('correlation', 0):.2f}, drift {fix.get('drift_ppm', 0):+.2f} ppm")
        )  # fmt: skip
    trig = np.sort(raw.trigger_times_us).astype(np.float64)
    jitter = []
    if len(trig) > 2:
        period = np.diff(trig)
        jitter = [
            (
                "trigger period - median period",
                (trig[1:] - t_origin) / 1e6,
                period - np.median(period),
                "#2f6fd0",
            )
        ]
    residual_html = (
        line_chart(
            [("frame start - its trigger edge", (res_t - t_origin) / 1e6, res, "#d23c3c"), *jitter],
            "rig time (s)",
            "µs",
            dots=True,
        )
        if len(res)
        else '<p class="none">no trigger edges in the raw file (software-synced session): '
        "the clock fit's residuals are the numbers above</p>"
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in info.get("notes", []))
    if raw.note:
        notes += f'<p class="note">{html.escape(raw.note)}</p>'
    file_rows = [
        (k, f"{Path(f['path']).name}  {f['bytes']:,} bytes" + ("" if f["exists"] else " (missing)"))
        for k, f in info.get("file_status", {}).items()
    ]
    thumbs_html = "".join(
        f'<figure class="{t["source"]}"><img alt="frame {t["index"]}" src="{t["uri"]}">'
        f"<figcaption>#{t['index']} {t['source']}"
        + (f" {t['t_us'] / 1e6:.4f} s" if t["t_us"] is not None else "")
        + "</figcaption></figure>"
        for t in thumbs
    )
    key = "".join(
        f'<span style="background:{c}"></span>{s} ({counts[s]})' for s, c in COLOURS.items()
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>slomo-rig session {html.escape(session.name)}</title><style>{CSS}</style></head>
<body><header><h1>Session {html.escape(session.name)}</h1>
<div class="sub">created {html.escape(str(info.get("created", "?")))} · rig
{html.escape(str(info.get("rig", {}).get("backend", info.get("rig", {}).get("config_file", "?"))))}
· model {html.escape(str(live_cfg.get("model", "?")))} · factor {live_cfg.get("factor", "?")} ·
status <b class="status-{html.escape(status)}">{html.escape(status)}</b></div></header><main>
{notes}
<section id="counts"><h2>Counts</h2><div class="cards">
{_card(f"{cap.get('events', raw.events):,}", "events")}
{_card(cap.get("frames", len(raw.frame_times_us)), "frames")}
{_card(cap.get("triggers", len(raw.trigger_times_us)), "trigger edges")}
{_card(f"{span:.2f} s", "rig time")}
{_card(len(items), "intervals")}
{_card(counts["live"], "interpolated live")}
{_card(counts["replayed"], "filled in afterwards")}
{_card(counts["skipped"], "skipped")}
{_card(outp.get("frames_written", len(final)), "output frames")}
{_card(f"{len(final) / span:.0f} fps" if span > 0 else "-", "slow-motion rate achieved")}
</div></section>
<section id="timeline-section"><h2>Intervals</h2><p class="key">{key}
(hover for details, click to play from there)</p>{timeline(items, video_fps(video))}
</section>
<section id="rates"><h2>Rates over time</h2>
{line_chart(series, "rig time (s)", "events/s")}
{line_chart(fps_series, "rig time (s)", "frames/s")}</section>
<section id="drops"><h2>Drops</h2>{_rows(drops)}</section>
<section id="clock"><h2>Clock</h2>{_rows(clock_rows)}{residual_html}</section>
<section id="thumbnails"><h2>Thumbnails</h2><div class="thumbs">
{thumbs_html or '<p class="none">no video frames</p>'}</div></section>
<section id="video-section"><h2>Slow motion</h2>{video_html}</section>
<section id="files"><h2>Files</h2>{_rows(file_rows)}</section>
</main><script>{SCRIPT}</script></body></html>
"""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return {
        "path": out,
        "intervals": counts,
        "thumbnails": len(thumbs),
        "video": video_mode,
        "residuals": len(res),
        "bytes": out.stat().st_size,
    }


# ---- command -------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write SESSION/report.html: one self-contained page of what a session holds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("session", type=Path, metavar="SESSION", help="session folder")
    p.add_argument(
        "--out", type=Path, default=None, help=f"page to write (default: SESSION/{REPORT_FILE})"
    )
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.add_argument(
        "--embed-limit-mb",
        type=float,
        default=EMBED_LIMIT_BYTES / 1024 / 1024,
        help="embed the video up to this size, link it beside the page above (default: 40)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        session = Session.open(args.session)
        session.read()
    except SessionError as exc:
        print(f"slomo-rig report: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or session.path / REPORT_FILE
    if out.suffix.lower() not in (".html", ".htm"):
        print(f"slomo-rig report: error: --out {out}: the report is a .html file", file=sys.stderr)
        return 2
    if out.exists() and not args.force:
        print(
            f"slomo-rig report: error: {out} exists; add --force to replace it, or --out FILE",
            file=sys.stderr,
        )
        return 2
    if not out.parent.is_dir():
        print(f"slomo-rig report: error: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    res = render(session.path, out, int(args.embed_limit_mb * 1024 * 1024))
    c = res["intervals"]
    print(
        f"Report of {session.path}: {res['path']} ({res['bytes'] / 1e6:.1f} MB, opens offline)\n"
        f"  intervals    {c['live']} live, {c['replayed']} filled in afterwards, "
        f"{c['skipped']} skipped\n"
        f"  pictures     {res['thumbnails']} thumbnails, video {res['video']}, "
        f"{res['residuals']} clock residuals\n"
        f"  open it      xdg-open {res['path']}"
    )
    return 0
