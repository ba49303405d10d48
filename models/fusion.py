"""The default CPU interpolator: frame-flow warping, checked pixel by pixel against the
events, and event integration where the flow fails.

Candidates (all from the same job, no weights):
- flow: bidirectional DIS optical flow, both keyframes warped to t (bicubic) in linear
  light and blended by time, each keyframe's share scaled down where its warped luma
  leaves the events' band (below): at an occlusion one keyframe fetches the wrong
  surface, and the events say which. Right for smooth textured motion; wrong on fast
  rotation, aliasing spokes and non-linear paths.
- integration: the log-intensity change the events report, integrated from F0 with
  thresholds fitted to this interval (models.threshold); the part of F1 - F0 the events
  miss is spread over the interval as the pixel's own events progress, so a per-pixel
  threshold error cancels exactly. Right where events are dense.

The events decide. From F0 a pixel's log luma at t is L0 + E0(t), from F1 it is
L1 - E1(t), each up to the scatter the events leave unexplained in this interval (the
threshold fit's residual spread: measured per interval, not assumed). Where the flow
candidate's log luma stays inside that band it is kept; the further it strays, the more
the integration candidate takes over (weights blurred spatially: no seams). Flow that is
forward-backward consistent to a fraction of a pixel gets `dead` band widths of extra
slack, so event noise cannot pull a right flow off; inconsistent flow gets none (the
consistency of each direction lives in its keyframe's pixels and is carried to t along
the same maps as the keyframe). Where
the two keyframes, each warped to t, agree in log luma (`photo` band widths at most,
falling off with the disagreement over `photo_log`) the flow gets more slack still: at
the motion-blurred borders of moving objects the keyframes are not the instantaneous
brightness, so the events' band is off there while the warped frames still agree.
These choices are smooth, so they are made on a grid twice coarser and interpolated
back; the inserted frames are independent and run on two threads.
Measurements behind every choice: docs/model.md.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from contracts.jobs import IntervalJob
from models.interpolator import Interpolator
from models.threshold import LOG_EPS, Thresholds, fit_thresholds, frame_gamma

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class FusionConfig:
    """gamma: the keyframes' encoding, or None: grey frames linear, colour frames
    display gamma (models.threshold.frame_gamma). band: half-width of the event band in
    units of the interval's residual spread. dead: extra slack, in band widths, for flow
    whose forward-backward error is well under fb_px pixels (exp(-err^2 / fb_px^2)).
    blur: sigma in pixels of the spatial smoothing of the choice. prior_events: events'
    worth of weight the elapsed time gets when the missed part of F1 - F0 is spread over
    the interval (where a pixel saw no events it is spread by time). preset: the DIS
    optical-flow preset (0 ultrafast, 1 fast, 2 medium). isolated: drop events none of
    whose 8 neighbours fired in the interval (background activity). photo: extra slack,
    in band widths, where the two warped keyframes agree at t, falling off as
    exp(-(d / photo_log)^2) with d their log-luma difference. visibility: each warped
    keyframe's share of the flow candidate is scaled by exp(-(o / (visibility * band))^2),
    o how far its luma lies outside the events' band (0: the plain time blend).
    cubic: bicubic warps (bilinear ones blur the texture at every fractional shift).
    finest_scale: DIS's finest pyramid level (0: full resolution), refine: its
    variational refinement iterations per level, stride: its patch stride in pixels,
    patch: its patch size in pixels; None: the preset's. The defaults (no refinement,
    which smooths the flow across motion boundaries; denser, smaller patches, which
    follow small moving parts and cost no more) scored higher than the medium preset
    on every suite, real and simulated (docs/model.md). decide: the choice is
    made on a grid this many times coarser (1 or 2) and interpolated back (4 was
    tried: it blurs the choice across sharp edges)."""

    gamma: float | None = None
    band: float = 0.7
    dead: float = 3.0
    blur: float = 2.0
    prior_events: float = 1.0
    preset: int = 2
    fb_px: float = 0.3
    isolated: bool = True
    photo: float = 1.0
    photo_log: float = 0.15
    visibility: float = 1.0
    cubic: bool = True
    finest_scale: int | None = None
    refine: int | None = 0
    stride: int | None = 2
    patch: int | None = 4
    decide: int = 2

    def __post_init__(self) -> None:
        if self.gamma is not None and not 0.2 <= self.gamma <= 5:
            raise ValueError(f"FusionConfig.gamma must be in [0.2, 5] or None, got {self.gamma}")
        if not 0 < self.band <= 10:
            raise ValueError(f"FusionConfig.band must be in (0, 10], got {self.band}")
        if not 0 <= self.dead <= 10:
            raise ValueError(f"FusionConfig.dead must be in [0, 10], got {self.dead}")
        if not 0 <= self.blur <= 50:
            raise ValueError(f"FusionConfig.blur must be in [0, 50], got {self.blur}")
        if not 0 < self.prior_events <= 100:
            raise ValueError(
                f"FusionConfig.prior_events must be in (0, 100], got {self.prior_events}"
            )
        if not 0 < self.fb_px <= 20:
            raise ValueError(f"FusionConfig.fb_px must be in (0, 20], got {self.fb_px}")
        if not 0 <= self.photo <= 10:
            raise ValueError(f"FusionConfig.photo must be in [0, 10], got {self.photo}")
        if not 0 < self.photo_log <= 5:
            raise ValueError(f"FusionConfig.photo_log must be in (0, 5], got {self.photo_log}")
        if not 0 <= self.visibility <= 10:
            raise ValueError(f"FusionConfig.visibility must be in [0, 10], got {self.visibility}")
        if self.finest_scale is not None and not 0 <= self.finest_scale <= 4:
            raise ValueError(
                f"FusionConfig.finest_scale must be in [0, 4] or None, got {self.finest_scale}"
            )
        if self.refine is not None and not 0 <= self.refine <= 50:
            raise ValueError(f"FusionConfig.refine must be in [0, 50] or None, got {self.refine}")
        if self.stride is not None and not 1 <= self.stride <= 16:
            raise ValueError(f"FusionConfig.stride must be in [1, 16] or None, got {self.stride}")
        if self.patch is not None and not 3 <= self.patch <= 32:
            raise ValueError(f"FusionConfig.patch must be in [3, 32] or None, got {self.patch}")
        if self.decide not in (1, 2):
            raise ValueError(f"FusionConfig.decide must be 1 or 2, got {self.decide}")
        if self.preset not in (0, 1, 2):
            raise ValueError(f"FusionConfig.preset must be 0, 1 or 2, got {self.preset}")


class FusionInterpolator(Interpolator):
    name = "fusion"

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()
        # One DIS per direction, run on two threads while the events are counted and the
        # thresholds fitted (OpenCV releases the GIL; the result is the same).
        self._dis = _make_dis(self.config)
        self._dis_back = _make_dis(self.config)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        #: What the last interval was fitted with (for diagnosis and tests).
        self.last_thresholds: Thresholds | None = None
        self.last_gamma: float | None = None

    def interpolate(self, job: IntervalJob) -> np.ndarray:
        cfg = self.config
        h, w = job.height, job.width
        if self._pool is None or self._pool_pid != os.getpid():  # a forked copy has no threads
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="fusion-dis")
            self._pool_pid = os.getpid()
        g0 = cv2.cvtColor(job.frame0, cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(job.frame1, cv2.COLOR_RGB2GRAY)
        fwd = self._pool.submit(self._dis.calc, g0, g1, None)
        bwd = self._pool.submit(self._dis_back.calc, g1, g0, None)
        pix, on, t_ev = _event_pixels(job)
        if cfg.isolated:
            pix, on, t_ev = _drop_isolated(pix, on, t_ev, h, w)
        # Where each inserted frame's time falls among the events kept (not among all
        # of the job's: the dropped ones would shift every later frame's share).
        splits = np.searchsorted(t_ev, job.timestamps_us, side="left")
        tot_on = _count(pix[on], h, w)
        tot_off = _count(pix[~on], h, w)
        gamma = cfg.gamma if cfg.gamma is not None else frame_gamma(job.frame0)
        eps = np.float32(LOG_EPS)
        # Linear light + eps (log-ready).
        lut = np.power(np.arange(256, dtype=np.float32) / 255.0, np.float32(gamma))
        lut += eps
        lin0, lin1 = cv2.LUT(job.frame0, lut), cv2.LUT(job.frame1, lut)
        l0 = cv2.log(_luma(lin0))
        l1 = cv2.log(_luma(lin1))
        th = fit_thresholds(job.frame0, job.frame1, tot_on, tot_off, gamma, dlog=l1 - l0)
        self.last_thresholds, self.last_gamma = th, gamma
        e_total = np.float32(th.c_on) * tot_on - np.float32(th.c_off) * tot_off
        missed = l1 - l0 - e_total  # what the events do not explain
        n_total = tot_on + tot_off + np.float32(cfg.prior_events)
        # The band's half-width: how far this interval's pixels stray from what their
        # events explain (the fit's residual spread: reference levels unknown within a
        # threshold, mismatch, noise), measured, not assumed.
        spread = th.spread if th.fitted else 0.5 * (th.c_on + th.c_off)
        slack = np.float32(cfg.band * max(spread, 1e-3))
        # Integration from both ends: F1 brought back to F0's brightness by the whole
        # interval's log change, so each frame needs one mix and one gain.
        base0 = lin0
        back_to0 = cv2.exp(cv2.subtract(l0, l1))
        towards1 = cv2.multiply(lin1, cv2.merge((back_to0,) * 3))
        towards1 -= base0
        # Signed log change (thresholds applied) and count of the events up to each
        # inserted frame: cheap and sequential, so done while the flows run; the frames themselves are
        # then independent and run on the pool's two threads (OpenCV and numpy release
        # the GIL in their loops, so the wall time is about halved on two cores).
        weights = np.where(on, np.float32(th.c_on), -np.float32(th.c_off))
        e0 = np.zeros((h, w), np.float32)
        done = np.full((h, w), np.float32(0))
        progress = []
        prev = 0
        for split in splits:
            seg = pix[prev:split]
            e0 += np.bincount(seg, weights[prev:split], h * w).reshape(h, w).astype(np.float32)
            done += _count(seg, h, w)
            progress.append((e0.copy(), done.copy()))
            prev = split
        f01, f10 = fwd.result(), bwd.result()
        grid = _grid2(h, w)
        # Forward-backward consistency of the two flows, in each keyframe's pixels:
        # where they agree, the flow is given `dead` band widths of extra slack (event
        # noise must not pull it off).
        dead0 = _consistent(f01, f10, grid, cfg)
        dead1 = _consistent(f10, f01, grid, cfg)
        out = np.empty((len(splits), h, w, 3), np.uint8)
        small = (max(1, w // cfg.decide), max(1, h // cfg.decide))

        def down(a: np.ndarray) -> np.ndarray:
            return a if cfg.decide == 1 else cv2.resize(a, small, interpolation=cv2.INTER_AREA)

        shared = _Shared(
            lin0,
            lin1,
            down(l0),
            f01,
            f10,
            grid,
            base0,
            towards1,
            missed,
            down(missed),
            dead0,
            dead1,
            1.0 / n_total,
            slack,
            eps,
            gamma,
        )
        taus = job.taus.astype(np.float32)
        list(
            self._pool.map(
                lambda k: self._frame(shared, progress[k][0], progress[k][1], taus[k], out[k]),
                range(len(splits)),
            )
        )
        return out

    def _frame(
        self, s: _Shared, e0: np.ndarray, done: np.ndarray, tau: np.float32, out: np.ndarray
    ) -> None:
        """One inserted frame at tau into `out` (HxWx3 uint8)."""
        cfg = self.config
        h, w = e0.shape
        # The part of F1 - F0 the events miss (threshold mismatch, lost events) is
        # spread over the interval as the pixel's events progress (by time where it
        # has none): a per-pixel threshold error then cancels exactly.
        rho = cv2.multiply(cv2.add(done, float(cfg.prior_events * tau)), s.inv_n)
        change = cv2.add(e0, cv2.multiply(s.missed_full, rho))  # log luma at t minus at t0
        interp = cv2.INTER_CUBIC if cfg.cubic else cv2.INTER_LINEAR
        w0, w1, map0, map1 = _warp_both(s.lin0, s.lin1, s.f01, s.f10, float(tau), s.grid, interp)
        if cfg.cubic:  # bicubic overshoots at edges: keep the light positive (log-ready)
            cv2.max(w0, float(s.eps), dst=w0)
            cv2.max(w1, float(s.eps), dst=w1)
        # The choice (which keyframe, how much integration) is smooth (blurred over
        # `blur` pixels), so it is made on a grid `decide` times coarser (luma averaged
        # over each cell) and interpolated back: most of the per-pixel arithmetic then
        # runs on a quarter of the pixels.
        small = s.l0.shape[::-1]
        down = (
            (lambda a: a)
            if cfg.decide == 1
            else (lambda a: cv2.resize(a, small, interpolation=cv2.INTER_AREA))
        )
        y0 = down(_luma(w0))
        y1 = down(_luma(w1))
        lw0, lw1 = cv2.log(y0), cv2.log(y1)
        # Where the events put the pixel, from each end, within the band; the flow
        # candidate is trusted as long as its luma stays inside.
        slack = s.slack
        ea = cv2.add(s.l0, down(e0))
        eb = cv2.add(ea, s.missed)
        centre = cv2.add(s.l0, down(change))
        lo = cv2.min(cv2.subtract(cv2.max(ea, eb), float(slack)), centre)
        hi = cv2.max(cv2.add(cv2.min(ea, eb), float(slack)), centre)
        blur = cfg.blur / cfg.decide
        if cfg.visibility > 0:
            share0 = self._share0(lw0, lw1, float(tau), lo, hi, slack)
        else:
            share0 = np.full(lw0.shape, np.float32(1 - tau))
        # The flows' forward-backward consistency lives in each keyframe's pixels: it is
        # carried to t along the same maps as the keyframes and blended by time.
        d0 = cv2.remap(s.dead0, map0, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        d1 = cv2.remap(s.dead1, map1, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        slack_k = down(cv2.addWeighted(d0, 1 - float(tau), d1, float(tau), 0.0))
        if cfg.photo > 0:  # the warped keyframes agree at t: more slack for the flow
            d = cv2.subtract(lw0, lw1)  # their log-luma difference
            d *= np.float32(1.0 / cfg.photo_log)
            slack_k = cv2.scaleAdd(cv2.exp(-cv2.multiply(d, d)), float(cfg.photo), slack_k)
        # The flow candidate's luma: the blend of the two, in linear light.
        yf = cv2.add(cv2.multiply(cv2.subtract(y0, y1), share0), y1)
        moved = _outside(cv2.log(yf), lo, hi)
        if blur > 0:
            moved = cv2.GaussianBlur(moved, (0, 0), blur)
        moved *= np.float32(1.0 / slack)
        w_int = cv2.max(cv2.min(cv2.subtract(moved, slack_k), 1.0), 0.0)
        if cfg.decide != 1:
            share0 = cv2.resize(share0, (w, h), interpolation=cv2.INTER_LINEAR)
            w_int = cv2.resize(w_int, (w, h), interpolation=cv2.INTER_LINEAR)
        flow = cv2.blendLinear(w0, w1, share0, np.subtract(np.float32(1), share0))
        est = cv2.subtract(flow, (float(s.eps),) * 3)
        n_int = cv2.countNonZero(w_int)
        if 0 < 4 * n_int < h * w:  # integration takes part in a small region
            sel = np.flatnonzero(w_int)
            flat = est.reshape(-1, 3)
            base0, towards1 = s.base0.reshape(-1, 3), s.towards1.reshape(-1, 3)
            gain = np.exp(change.ravel()[sel])[:, None]
            integ = (base0[sel] + rho.ravel()[sel][:, None] * towards1[sel]) * gain - s.eps
            flat[sel] += w_int.ravel()[sel, None] * (integ - flat[sel])
        elif n_int:  # whole frame, OpenCV arithmetic on 3 channels (no numpy temporaries)
            integ = cv2.multiply(s.towards1, cv2.merge((rho, rho, rho)))
            integ += s.base0
            gain = cv2.exp(change)
            integ = cv2.multiply(integ, cv2.merge((gain, gain, gain)))
            integ = cv2.subtract(integ, est, dst=integ)
            integ -= s.eps
            integ = cv2.multiply(integ, cv2.merge((w_int, w_int, w_int)), dst=integ)
            est += integ
        out[...] = _encode(est, s.gamma)

    def _share0(
        self, lw0: np.ndarray, lw1: np.ndarray, tau: float, lo: np.ndarray, hi: np.ndarray, slack
    ) -> np.ndarray:
        """Keyframe 0's share of the flow candidate, given the two warped keyframes' log
        lumas: the time blend, each side weighted by how well its luma sits in the
        events' band. Where a region is hidden in one keyframe (occluded, or uncovered by
        the motion) that keyframe's warp fetches the wrong surface and its luma leaves
        the band, so the other one takes over; where both agree it is 1 - tau."""
        cfg = self.config
        k2 = float(1.0 / (cfg.visibility * slack)) ** 2
        blur = cfg.blur / cfg.decide
        vis = []
        for lw, share in ((lw0, 1.0 - tau), (lw1, tau)):
            off = _outside(lw, lo, hi)
            if blur > 0:
                off = cv2.GaussianBlur(off, (0, 0), blur)
            v = cv2.exp(cv2.multiply(off, off, scale=-k2))
            vis.append(cv2.multiply(cv2.add(v, 1e-3), share))
        return cv2.divide(vis[0], cv2.add(vis[0], vis[1]))


@dataclass(frozen=True)
class _Shared:
    """What every inserted frame of one interval reads (never written while in use)."""

    lin0: np.ndarray
    lin1: np.ndarray
    l0: np.ndarray
    f01: np.ndarray
    f10: np.ndarray
    grid: np.ndarray
    base0: np.ndarray
    towards1: np.ndarray
    missed_full: np.ndarray
    missed: np.ndarray  # at the decision grid, as l0 and dead
    dead0: np.ndarray
    dead1: np.ndarray
    inv_n: np.ndarray
    slack: np.float32
    eps: np.float32
    gamma: float


def _consistent(fwd: np.ndarray, bwd: np.ndarray, grid: np.ndarray, cfg: FusionConfig):
    """cfg.dead * exp(-e^2 / fb_px^2), e the forward-backward error in pixels of `fwd`
    (HxW float32, in the pixels of the keyframe `fwd` starts from)."""
    back = cv2.remap(
        bwd, cv2.add(grid, fwd), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    ex, ey = cv2.split(cv2.add(fwd, back))
    err = cv2.add(cv2.multiply(ex, ex), cv2.multiply(ey, ey))
    return cv2.multiply(cv2.exp(err * np.float32(-1.0 / cfg.fb_px**2)), float(cfg.dead))


def _make_dis(cfg: FusionConfig):
    dis = cv2.DISOpticalFlow_create(cfg.preset)
    if cfg.finest_scale is not None:
        dis.setFinestScale(cfg.finest_scale)
    if cfg.refine is not None:
        dis.setVariationalRefinementIterations(cfg.refine)
    if cfg.stride is not None:
        dis.setPatchStride(cfg.stride)
    if cfg.patch is not None:
        dis.setPatchSize(cfg.patch)
    return dis


def _grid2(h: int, w: int) -> np.ndarray:
    """HxWx2 float32 pixel coordinates (x, y), the identity map of cv2.remap."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([gx, gy])


def _outside(log_luma: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far (log units) each pixel lies outside [lo, hi] (lo <= hi: one side)."""
    return cv2.max(cv2.max(cv2.subtract(lo, log_luma), cv2.subtract(log_luma, hi)), 0.0)


def _warp_both(
    lin0: np.ndarray,
    lin1: np.ndarray,
    f01: np.ndarray,
    f10: np.ndarray,
    t: float,
    grid,
    interp: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both keyframes warped to t (Super-SloMo linear-motion intermediate flows, the
    same as models.baselines.warp_pair), with one 2-channel map per warp and OpenCV
    arithmetic (no numpy temporaries); the caller blends them by time."""
    m0 = cv2.addWeighted(f01, -(1 - t) * t, f10, t * t, 0.0)
    m1 = cv2.addWeighted(f01, (1 - t) * (1 - t), f10, -t * (1 - t), 0.0)
    map0, map1 = cv2.add(grid, m0), cv2.add(grid, m1)
    w0 = cv2.remap(lin0, map0, None, interp, borderMode=cv2.BORDER_REPLICATE)
    w1 = cv2.remap(lin1, map1, None, interp, borderMode=cv2.BORDER_REPLICATE)
    return w0, w1, map0, map1


def _drop_isolated(
    pix: np.ndarray, on: np.ndarray, t: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events at pixels none of whose 8 neighbours fired in the interval: background
    activity (sensor noise) rather than a moving edge, which always spans pixels."""
    fired = (np.bincount(pix, minlength=h * w) > 0).reshape(h, w).astype(np.float32)
    near = cv2.boxFilter(fired, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    keep = (near - fired).ravel()[pix] > 0
    return pix[keep], on[keep], t[keep]


def _count(pix: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.bincount(pix, minlength=h * w).reshape(h, w).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """HxW float32 luma of HxWx3 float32 linear RGB (+ eps in, + eps out: the weights
    sum to 1)."""
    return cv2.transform(rgb, _LUMA.reshape(1, 3))


def _encode(linear: np.ndarray, gamma: float) -> np.ndarray:
    """Linear light (HxWx3 float32, may stray outside [0, 1]) -> uint8 encoded with
    gamma, rounded; OpenCV's pow and saturating conversion (multi-threaded, no
    numpy temporaries)."""
    x = cv2.max(linear, 0.0, dst=linear)
    if gamma != 1.0:
        x = cv2.pow(x, 1.0 / gamma, dst=x)
    return cv2.convertScaleAbs(x, alpha=255.0)


def _event_pixels(job: IntervalJob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat pixel index, ON flag and time of every event inside the frame (rounded
    positions), in the job's (time) order."""
    ev = job.events
    xi = np.rint(ev.x).astype(np.intp)
    yi = np.rint(ev.y).astype(np.intp)
    inside = (xi >= 0) & (xi < job.width) & (yi >= 0) & (yi < job.height)
    return (yi * job.width + xi)[inside], (ev.p[inside] > 0), ev.t[inside]
