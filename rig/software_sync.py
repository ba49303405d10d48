"""Clock offset (and drift) without a wire, from the frames and events themselves.

An event camera reports, per pixel, the instants its log intensity crossed a threshold,
so over any time window the signed event count of a pixel is (up to the threshold) the
change of its log intensity. The frames give that change directly between two mid-
exposures. Only at the right offset do the two agree pixel by pixel:
`event count in [mid_k + o, mid_k+1 + o]` ~ `log frame k+1 - log frame k`.

Two things make this hard, and shape the method:
- Steady motion carries no timing: the event count in any window of one frame period
  is about the same wherever the window sits, so cell- or image-level sums give a broad,
  flat peak. Per-pixel sums keep the sharp timing of an edge crossing one pixel.
- Quantisation lag: a pixel whose log intensity drifts slowly fires its event long after
  the change began (it has to make up the threshold plus whatever the previous opposite
  change left over), which biases the estimate late by milliseconds. Events that come in
  quick same-polarity bursts belong to fast edges whose lag is tiny, so the fine search
  uses only those ("fast" events, a same-pixel neighbour within 1 ms, widened to 3 or
  10 ms when the motion is slow); it needs brisk motion in view of both cameras.

A coarse search on a grid of cells (all events, cheap, robust) finds the offset to a
fraction of a frame period; the fine search on pixels (fast events only) sharpens it.
Long recordings are split into windows whose offsets are fitted with a line: the drift.
The correlation at the peak and the share of fast events go into the report so an
operator can judge the result; the trigger wire stays the way to get microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from rig.sync import ClockMapping, SyncError
from rig.types import EventBatch, Frame

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
LOG_EPS = 0.02  # on [0, 1] grey: keeps dark pixels' log from amplifying noise
COARSE_CELLS = 20  # cells across the longer side of the event sensor in the coarse search
MIN_FAST_EVENTS = 200
COARSE_SPAN_US = 5e6  # frames used by the coarse search: enough to lock, bounded cost
FEW_FAST_EVENTS = 2000


@dataclass(frozen=True)
class SoftwareSyncReport:
    """The mapping plus what an operator needs to trust it (goes into clock.json)."""

    mapping: ClockMapping
    correlation: float
    coarse_correlation: float
    fast_events: int
    events: int
    windows: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "method": self.mapping.method,
            "mapping": self.mapping.to_dict(),
            "drift_ppm": self.mapping.drift_ppm,
            "correlation": float(self.correlation),
            "coarse_correlation": float(self.coarse_correlation),
            "fast_events": int(self.fast_events),
            "events": int(self.events),
            "windows": int(self.windows),
            "notes": list(self.notes),
        }


class _FrameLogs:
    """Log grey level of each frame resampled onto the event sensor's pixel grid.

    Log of the encoded grey level, not of linear light: for a power-law transfer the two
    differ by a constant factor, which the correlation ignores, so the camera's gamma
    need not be known."""

    def __init__(self, frames: Sequence[Frame], event_size: tuple[int, int], event_to_frame):
        self.frames = frames
        self.event_size = event_size
        ew, eh = event_size
        self.maps = None
        self.valid = np.ones(ew * eh, bool)
        if event_to_frame is not None:
            if tuple(event_to_frame.event_size) != tuple(event_size):
                raise SyncError(
                    f"software sync: the calibration is for a {event_to_frame.event_size} "
                    f"event sensor but the events are {event_size}: use the rig's own calibration"
                )
            self.maps = (
                event_to_frame.lut_x.reshape(eh, ew),
                event_to_frame.lut_y.reshape(eh, ew),
            )
            self.valid = event_to_frame.valid.copy()

    def __call__(self, k: int) -> np.ndarray:
        img = self.frames[k].image
        grey = img.astype(np.float32) @ LUMA if img.ndim == 3 else img.astype(np.float32)
        if img.dtype == np.uint16:
            grey /= 65535.0
        else:
            grey /= 255.0
        log = np.log(grey + LOG_EPS)
        ew, eh = self.event_size
        if self.maps is not None:
            log = cv2.remap(log, *self.maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        elif log.shape != (eh, ew):
            log = cv2.resize(log, (ew, eh), interpolation=cv2.INTER_AREA)
        return log.ravel()


class _SignedCounts:
    """Cumulative signed event counts per bin (a pixel or a cell), queried at any time:
    one sort by (bin, t) and one searchsorted per query."""

    def __init__(self, bins: np.ndarray, t: np.ndarray, p: np.ndarray) -> None:
        self.t0 = int(t.min()) - 1
        self.span = int(t.max()) - self.t0 + 2
        key = bins.astype(np.int64) * self.span + (t.astype(np.int64) - self.t0)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        sign = np.where(p[order] > 0, 1.0, -1.0)
        self.cum = np.concatenate([[0.0], np.cumsum(sign)])
        self.t_lo, self.t_hi = int(t.min()), int(t.max())

    def at(self, bins: np.ndarray, q: np.ndarray) -> np.ndarray:
        qq = np.clip(np.asarray(q, np.float64) - self.t0, 0, self.span - 1).astype(np.int64)
        return self.cum[np.searchsorted(self.key, bins * self.span + qq, side="right")]


def _fast_mask(pix: np.ndarray, t: np.ndarray, p: np.ndarray, gap_us: float) -> np.ndarray:
    """Events with a same-pixel, same-polarity neighbour within gap_us."""
    order = np.lexsort((t, pix))
    ps, ts, pol = pix[order], t[order].astype(np.int64), p[order]
    pair = (ps[1:] == ps[:-1]) & (pol[1:] == pol[:-1]) & (ts[1:] - ts[:-1] <= gap_us)
    fast_sorted = np.zeros(len(order), bool)
    fast_sorted[1:] |= pair
    fast_sorted[:-1] |= pair
    out = np.zeros(len(order), bool)
    out[order] = fast_sorted
    return out


def _peak(offsets: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(score))
    best = float(offsets[i])
    if 0 < i < len(score) - 1 and np.isfinite(score[i - 1 : i + 2]).all():
        den = score[i - 1] - 2 * score[i] + score[i + 1]
        if den < 0:
            best += (offsets[1] - offsets[0]) * 0.5 * (score[i - 1] - score[i + 1]) / den
    return best, float(score[i])


def _coarse(
    logs: _FrameLogs,
    sel: np.ndarray,
    mids: np.ndarray,
    pix: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    lo: float,
    hi: float,
    step: float,
) -> tuple[float, float]:
    """Cell-level signed correlation over the whole search range."""
    ew, eh = logs.event_size
    cell = max(1, max(ew, eh) // COARSE_CELLS)
    gw, gh = ew // cell, eh // cell
    xs, ys = pix % ew, pix // ew
    inside = (xs < gw * cell) & (ys < gh * cell)
    cells = (ys // cell) * gw + xs // cell
    counts = _SignedCounts(cells[inside], t[inside], p[inside])
    valid = logs.valid.reshape(eh, ew)[: gh * cell, : gw * cell]
    cover = valid.reshape(gh, cell, gw, cell).mean(axis=(1, 3)).ravel()
    use = cover > 0.9
    if not use.any():
        raise SyncError("software sync: the calibration maps no event pixel into the frames")
    cell_logs = []
    for k in sel:
        lg = logs(k).reshape(eh, ew)[: gh * cell, : gw * cell]
        cell_logs.append(lg.reshape(gh, cell, gw, cell).mean(axis=(1, 3)).ravel()[use])
    d_log = np.diff(np.array(cell_logs), axis=0)  # (K-1, C)
    ids = np.nonzero(use)[0]
    m = mids[sel]
    offsets = np.arange(lo, hi + step, step)
    score = np.full(len(offsets), -np.inf)
    for j, o in enumerate(offsets):
        q = m + o
        ok = (q[:-1] >= counts.t_lo) & (q[1:] <= counts.t_hi)
        if ok.sum() < max(5, len(ok) // 2):
            continue
        b = np.diff(counts.at(ids[None, :], q[:, None]), axis=0)[ok]
        a = d_log[ok]
        a = a - a.mean()
        b = b - b.mean()
        den = np.sqrt(np.sum(a * a) * np.sum(b * b))
        if den > 0:
            score[j] = float(np.sum(a * b) / den)
    if not np.isfinite(score).any():
        raise SyncError(
            "software sync: the frames and events do not overlap in time for any offset "
            f"in [{lo:.0f}, {hi:.0f}] µs, or nothing moves: record both cameras at the same "
            "time, with motion in view of both"
        )
    return _peak(offsets, score)


def _fine(
    logs: _FrameLogs,
    sel: np.ndarray,
    mids: np.ndarray,
    pix: np.ndarray,
    t: np.ndarray,
    p: np.ndarray,
    centre: float,
    period: float,
) -> tuple[float, float]:
    """Pixel-level signed correlation of fast events around `centre`."""
    reach = 2 * period
    m = mids[sel]
    keep_k = (m[:-1] + centre - reach >= t.min()) & (m[1:] + centre + reach <= t.max())
    if keep_k.sum() < 3:
        return centre, -1.0
    counts = _SignedCounts(pix, t, p)
    # (interval, pixel) pairs an event can reach for any offset within centre +- reach
    starts = m[:-1] + centre
    k_lo = np.searchsorted(starts, t - reach, side="right") - 2
    k_hi = np.searchsorted(starts, t + reach, side="right")
    k_lo = np.clip(k_lo, 0, len(starts) - 1)
    k_hi = np.clip(k_hi, 0, len(starts) - 1)
    n = (k_hi - k_lo + 1).astype(np.int64)
    rep_pix = np.repeat(pix, n)
    rep_k = np.repeat(k_lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    npix = logs.event_size[0] * logs.event_size[1]
    pair = np.unique(rep_k.astype(np.int64) * npix + rep_pix)
    pk, pp = pair // npix, pair % npix
    ok = keep_k[pk] & logs.valid[pp]
    pk, pp = pk[ok], pp[ok]
    if len(pk) < 50:
        return centre, -1.0
    a = np.empty(len(pk), np.float64)
    bounds = np.searchsorted(pk, np.arange(len(m)))
    prev = logs(sel[0])
    for k in range(len(m) - 1):
        cur = logs(sel[k + 1])
        s, e = bounds[k], bounds[k + 1]
        if e > s:
            a[s:e] = cur[pp[s:e]] - prev[pp[s:e]]
        prev = cur
    norm_a = np.sqrt(np.sum(a * a))

    def score(o: float) -> float:
        b = counts.at(pp, m[pk + 1] + o) - counts.at(pp, m[pk] + o)
        den = norm_a * np.sqrt(np.sum(b * b))
        return float(np.sum(a * b) / den) if den > 0 else -np.inf

    wide = np.arange(centre - reach / 2, centre + reach / 2 + 1, max(100.0, period / 20))
    o1, _ = _peak(wide, np.array([score(o) for o in wide]))
    step = 100.0
    narrow = np.arange(o1 - 15 * step, o1 + 15 * step + 1, step)
    return _peak(narrow, np.array([score(o) for o in narrow]))


def estimate_offset_software(
    frames: Sequence[Frame],
    events: EventBatch,
    event_to_frame=None,
    event_size: tuple[int, int] | None = None,
    search_us: tuple[float, float] | None = None,
    window_s: float = 10.0,
    fast_gap_us: float = 1000.0,
    min_correlation: float = 0.2,
) -> SoftwareSyncReport:
    """Device->rig mapping from the streams alone (see the module docstring).

    frames: device-clock frames in order; events: rig-clock events (event-sensor pixels).
    event_to_frame: the rig's EventToFrameMap (calibration); without it both cameras are
    taken to see the same field of view (a beam splitter), scaled to the event grid.
    event_size: (width, height) of the event sensor (default: the map's, else from events).
    search_us: (lo, hi) bounds of the offset rig - device (default: every offset at which
    at least half of the frames overlap the events; narrow it when a rough offset is
    known, e.g. from host arrival times, to make this faster and safer).
    window_s: recordings longer than 2.5 windows are fitted per window, giving the drift.
    Raises SyncError when the streams cannot be matched, with what to do about it.
    """
    if len(frames) < 8:
        raise SyncError(f"software sync needs at least 8 frames, got {len(frames)}")
    if len(events) < 100:
        raise SyncError(f"software sync needs events, got {len(events)}")
    mids = np.array([f.mid_exposure_us for f in frames], np.float64)
    if np.any(np.diff(mids) <= 0):
        raise SyncError("software sync: frame timestamps are not increasing")
    t = np.asarray(events.t, np.int64)
    if np.any(np.diff(t) < 0):
        raise SyncError("software sync: event timestamps are not in order")
    if event_size is None:
        event_size = (
            tuple(event_to_frame.event_size)
            if event_to_frame is not None
            else (int(events.x.max()) + 1, int(events.y.max()) + 1)
        )
    ew, eh = event_size
    x = np.asarray(events.x).astype(np.int64)
    y = np.asarray(events.y).astype(np.int64)
    if x.min() < 0 or y.min() < 0 or x.max() >= ew or y.max() >= eh:
        raise SyncError(
            f"software sync: events fall outside the {ew}x{eh} event sensor: wrong event_size "
            "or calibration"
        )
    pix = y * ew + x
    p = np.asarray(events.p)
    logs = _FrameLogs(frames, (ew, eh), event_to_frame)
    period = float(np.median(np.diff(mids)))
    notes: list[str] = []

    first = logs(0)
    if all(np.array_equal(first, logs(k)) for k in range(1, len(frames), max(1, len(frames) // 8))):
        raise SyncError(
            "software sync: the frames never change (static scene?): move something in "
            "view of both cameras, or wire the trigger"
        )
    if search_us is None:
        mid_dev = mids[len(mids) // 2]
        lo, hi = float(t[0] - mid_dev), float(t[-1] - mid_dev)
    else:
        lo, hi = map(float, search_us)
        if hi < lo:
            raise ValueError(f"search_us must be (lo, hi) with lo <= hi, got {search_us}")
    n_coarse = min(len(frames), max(8, int(COARSE_SPAN_US / period)))
    c0 = (len(frames) - n_coarse) // 2
    coarse_sel = np.arange(c0, c0 + n_coarse)
    o_coarse, c_score = _coarse(logs, coarse_sel, mids, pix, t, p, lo, hi, period / 2)
    if c_score < min_correlation:
        raise SyncError(
            f"software sync: log frame change and signed event counts correlate only "
            f"{c_score:.2f} at best (need {min_correlation}): record brisk motion in view "
            "of both cameras, check the calibration, or wire the trigger"
        )

    # Widen "fast" step by step when the motion is slow: a 3 ms neighbour still lags far
    # less than a lone event, and falling back to every event costs milliseconds.
    for gap in (fast_gap_us, 3 * fast_gap_us, 10 * fast_gap_us):
        fast = _fast_mask(pix, t, p, gap)
        n_fast = int(fast.sum())
        if n_fast >= FEW_FAST_EVENTS:
            break
    if gap > fast_gap_us:
        notes.append(
            f"few fast events: used events with a same-pixel neighbour within "
            f"{gap / 1000:g} ms ({n_fast}); the offset may be off by a millisecond or more: "
            "record brisker motion for a sharper estimate"
        )
    if n_fast < MIN_FAST_EVENTS:
        notes.append(
            f"only {n_fast} such events: the fine search used all events and may be late "
            "by milliseconds"
        )
        fast = np.ones(len(t), bool)
    fpix, ft, fp = pix[fast], t[fast], p[fast]

    everything = np.arange(len(frames))
    duration = mids[-1] - mids[0]
    if duration < 2.5 * window_s * 1e6:
        o, s = _fine(logs, everything, mids, fpix, ft, fp, o_coarse, period)
        if s < min_correlation:
            notes.append(f"fine search correlation {s:.2f} is weak: kept the coarse offset")
            o, s = o_coarse, c_score
        mapping = ClockMapping(1.0, o, 0.0, 0.0, len(frames), "software")
        return SoftwareSyncReport(mapping, s, c_score, n_fast, len(t), 1, tuple(notes))

    n_win = int(duration // (window_s * 1e6))
    edges = np.linspace(mids[0], mids[-1] + 1, n_win + 1)
    centres, offs, scores = [], [], []
    for w0, w1 in zip(edges[:-1], edges[1:], strict=True):
        sel = np.nonzero((mids >= w0) & (mids < w1))[0]
        if len(sel) >= 8:
            o, s = _fine(logs, sel, mids, fpix, ft, fp, o_coarse, period)
            if s >= min_correlation:
                centres.append(float(np.mean(mids[sel])))
                offs.append(o)
                scores.append(s)
    if len(centres) < 2:
        notes.append("fewer than two windows could be matched: no drift estimate")
        o, s = _fine(logs, everything, mids, fpix, ft, fp, o_coarse, period)
        mapping = ClockMapping(1.0, o, 0.0, 0.0, len(frames), "software")
        return SoftwareSyncReport(mapping, s, c_score, n_fast, len(t), 1, tuple(notes))
    c = np.array(centres)
    mapping = ClockMapping.fit(c, c + np.array(offs), "software-windows")
    return SoftwareSyncReport(
        mapping, float(np.mean(scores)), c_score, n_fast, len(t), len(centres), tuple(notes)
    )
