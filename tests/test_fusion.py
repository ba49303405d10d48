"""The default interpolator (models.fusion): per pixel it must keep whichever input is
right, on constructed intervals where one input is exact (measured figures on real and
simulated recordings: docs/model.md)."""

import cv2
import numpy as np
import pytest

from contracts.jobs import IntervalJob, inserted_timestamps
from models.baselines import BlendInterpolator, FlowInterpolator, IntegrationInterpolator
from models.evaluate import psnr_uint8
from models.fusion import FusionConfig, FusionInterpolator
from models.registry import DEFAULT_MODEL, make_interpolator
from rig.sim.events import LOG_EPS, EventEmulator
from rig.types import EventBatch

H, W = 96, 128
T1 = 40_000  # one 25 fps interval, microseconds
GAMMA = 2.2


def _texture(seed: int, top: float = 0.8) -> np.ndarray:
    """Smooth random colour texture, linear light in [0.03, top], periodic."""
    rng = np.random.default_rng(seed)
    tex = rng.standard_normal((H, W, 3)).astype(np.float32)
    tiled = np.tile(tex, (3, 3, 1))  # blurred as tiles: stays periodic
    tex = cv2.GaussianBlur(tiled, (0, 0), 2.5)[H : 2 * H, W : 2 * W]
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (0.03 + (top - 0.03) * tex).astype(np.float32)


def _encode(linear: np.ndarray) -> np.ndarray:
    return np.round(np.clip(linear, 0, 1) ** (1 / GAMMA) * 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)).astype(np.float32)


def _events(frames_linear, times_us, threshold: float) -> EventBatch:
    """The simulator's event model (known threshold, no mismatch, no noise) run over
    the scene at 1 ms steps, references settled on the first image."""
    emu = EventEmulator((W, H), np.random.default_rng(0), threshold, 0.0, 0, 0.0)
    emu.reset(_luma(frames_linear[0]), int(times_us[0]))
    chunks = [
        emu.step(_luma(f), int(t)) for f, t in zip(frames_linear[1:], times_us[1:], strict=True)
    ]
    ev = EventBatch.concat(chunks)
    ev = ev[np.argsort(ev.t, kind="stable")]
    return EventBatch(ev.t, ev.x.astype(np.float32), ev.y.astype(np.float32), ev.p)


def _translation_case():
    """A textured scene sliding right by one pixel every 5 ms (8 px per interval): flow
    is exact (up to the wrap-around border, which the scores leave out)."""
    tex = _texture(1)
    times = np.arange(0, T1 + 1, 5000)
    scene = [np.roll(tex, k, axis=1) for k in range(len(times))]
    ev = _events(scene, times, 0.2).time_slice(0, T1)
    ts = inserted_timestamps(0, T1, 8)
    job = IntervalJob(0, _encode(scene[0]), _encode(scene[-1]), 0, T1, ev, ts)
    gt = np.stack([_encode(scene[int(t // 5000)]) for t in ts])
    return job, gt


def _brightness_steps_case(c: float = 0.25):
    """A static textured scene whose disc brightens by exactly one threshold at each of
    four instants (a light switched up in steps): the events tell exactly when, event
    integration is exact, frame flow sees no motion and can only cross-fade."""
    tex = _texture(2, top=0.3)  # stays below white after four steps up
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (yy - H / 2) ** 2 + (xx - W / 2) ** 2 < (H / 3) ** 2
    steps = np.array([6_000, 16_000, 26_000, 33_000])  # not at an inserted instant

    def at(t: float) -> np.ndarray:
        n = int(np.sum(steps <= t))
        gain = np.where(disc, np.exp(c * n), 1.0)[..., None].astype(np.float32)
        return (tex + LOG_EPS) * gain - LOG_EPS  # the sensor's log(I + eps) moves by c*n

    ys, xs = np.nonzero(disc)
    t = np.repeat(steps, len(ys)).astype(np.int64)
    ev = EventBatch(
        t,
        np.tile(xs, len(steps)).astype(np.float32),
        np.tile(ys, len(steps)).astype(np.float32),
        np.ones(len(t), np.int8),
    )
    ts = inserted_timestamps(0, T1, 8)
    job = IntervalJob(0, _encode(at(0)), _encode(at(T1)), 0, T1, ev, ts)
    gt = np.stack([_encode(at(float(x))) for x in ts])
    return job, gt


def _mse(pred: np.ndarray, gt: np.ndarray, border: int = 0) -> float:
    s = np.s_[:, border : H - border, border : W - border] if border else np.s_[:]
    return float(np.mean((pred[s].astype(np.float64) - gt[s]) ** 2))


def _never_worse(fused: np.ndarray, inputs: list[np.ndarray], gt, border: int = 0) -> None:
    """The fused frames' squared error is at most the best input's plus 8-bit rounding
    (0.05 DN^2: a few pixels off by one level)."""
    best = min(_mse(x, gt, border) for x in inputs)
    assert _mse(fused, gt, border) <= best + 0.05, (_mse(fused, gt, border), best)


def _psnr(pred: np.ndarray, gt: np.ndarray, border: int = 0) -> float:
    s = np.s_[:, border : H - border, border : W - border] if border else np.s_[:]
    return float(np.mean([psnr_uint8(p, g) for p, g in zip(pred[s], gt[s], strict=True)]))


@pytest.mark.parametrize("decide", [1, 2])  # the choice at full and at half size
def test_flow_exact_translation_fusion_is_as_good_as_flow(decide):
    job, gt = _translation_case()
    b = 12  # the wrap-around border is wrong for every method
    flow = FlowInterpolator().interpolate(job)
    integ = IntegrationInterpolator().interpolate(job)
    assert _psnr(flow, gt, b) > 60 > _psnr(integ, gt, b) + 10  # flow is the exact input
    fused = FusionInterpolator(FusionConfig(decide=decide)).interpolate(job)
    _never_worse(fused, [flow, integ], gt, b)


@pytest.mark.parametrize("decide", [1, 2])
def test_integration_exact_brightness_steps_fusion_follows_the_events(decide):
    job, gt = _brightness_steps_case()
    flow = FlowInterpolator().interpolate(job)
    integ = IntegrationInterpolator(0.25).interpolate(job)  # given the true threshold
    assert _psnr(integ, gt) > 60 > _psnr(flow, gt) + 10  # integration is the exact input
    fusion = FusionInterpolator(FusionConfig(decide=decide))  # fits the threshold itself
    _never_worse(fusion.interpolate(job), [flow, integ], gt)
    th = fusion.last_thresholds
    assert th.fitted and abs(th.c_on / 0.25 - 1) < 0.15


def test_grey_frames_as_rgb_stay_grey_and_are_read_as_linear():
    job, gt = _translation_case()
    grey = [
        np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        for f in (job.frame0, job.frame1)
    ]
    gjob = IntervalJob(0, grey[0], grey[1], 0, T1, job.events, job.timestamps_us)
    gt_grey = np.stack(
        [np.repeat(cv2.cvtColor(g, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for g in gt]
    )
    fusion = FusionInterpolator()
    out = fusion.interpolate(gjob)
    assert fusion.last_gamma == 1.0
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    blend = _psnr(BlendInterpolator().interpolate(gjob), gt_grey, 12)
    assert _psnr(out, gt_grey, 12) > blend + 3


def test_no_events_and_no_instants():
    job, _ = _translation_case()
    empty = IntervalJob(
        0, job.frame0, job.frame1, 0, T1, EventBatch.empty(np.float32), job.timestamps_us
    )
    out = FusionInterpolator().interpolate(empty)
    assert out.shape == (7, H, W, 3) and out.dtype == np.uint8
    none = IntervalJob(0, job.frame0, job.frame1, 0, T1, job.events, np.empty(0, np.int64))
    assert FusionInterpolator().interpolate(none).shape == (0, H, W, 3)


def test_fusion_is_the_default_model():
    assert DEFAULT_MODEL == "fusion"
    assert isinstance(make_interpolator("fusion"), FusionInterpolator)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gamma": 0.0},
        {"band": 0},
        {"dead": -1},
        {"blur": 99},
        {"prior_events": 0},
        {"preset": 5},
        {"fb_px": 0},
        {"photo": -1},
        {"photo_log": 0},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="FusionConfig"):
        FusionConfig(**kwargs)


@pytest.mark.slow
def test_bench_has_the_cpu_default_row_at_davis_size():
    from models.bench import bench_cpu_default, format_table

    row = bench_cpu_default(repeats=1)
    assert (row["height"], row["width_px"], row["factor"], row["batch"]) == (260, 346, 8, 7)
    assert row["backend"] == DEFAULT_MODEL and row["events"] > 0
    assert row["ms_per_interval"] > 0 and row["cpu_ms_per_interval"] > 0
    assert "| 346x260 | - | fusion | cpu |" in format_table([row])


_FORKED: dict[str, FusionInterpolator] = {}


def _interpolate_in_child(job: IntervalJob) -> np.ndarray:
    return _FORKED["fusion"].interpolate(job)


def test_a_forked_copy_interpolates_too():
    """The flows run on a thread pool; a worker forked after the parent used the
    interpolator must start its own pool instead of waiting on threads it lacks."""
    import multiprocessing

    job, _ = _translation_case()
    _FORKED["fusion"] = fusion = FusionInterpolator()
    want = fusion.interpolate(job)  # the parent's pool threads exist from here on
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_interpolate_in_child, (job,)).get(timeout=300)
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("argv", "says"), [(["--seeds", "0"], "--seeds"), (["--methods", "nope"], "unknown model")]
)
def test_fastscenes_cli_bad_input_is_one_line_exit_2(argv, says):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "models.fastscenes", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_fastscenes_unknown_kind_is_refused():
    from models.fastscenes import scene_config

    with pytest.raises(ValueError, match="kind must be one of"):
        scene_config("tornado", 0)


def test_visibility_blend_takes_the_keyframe_the_events_agree_with():
    """Where one warped keyframe fetched the wrong surface (occluded in that keyframe),
    its luma leaves the events' band and the other keyframe takes over; where both sit
    in the band the result is the plain time blend."""
    fusion = FusionInterpolator()
    h, w, tau = 8, 20, 0.25
    right = np.full((h, w, 4), 0.4, np.float32)
    wrong = np.full((h, w, 4), 0.4, np.float32)
    wrong[:, :5] = 0.05  # the left fetched a dark surface in keyframe 0's warp
    wrong[:, 14:], right[:, 14:] = 0.41, 0.39  # the right: both inside the band
    band = np.log(np.float32(0.4))
    lo = np.full((h, w), band - 0.05, np.float32)
    hi = np.full((h, w), band + 0.05, np.float32)
    lw0, lw1 = np.log(wrong[..., 3]), np.log(right[..., 3])
    share0 = fusion._share0(lw0, lw1, tau, lo, hi, np.float32(0.05))
    out = right + share0[..., None] * (wrong - right)
    # Left (wrong in keyframe 0, though it has 3/4 of the time weight): keyframe 1.
    np.testing.assert_allclose(out[:, :2], 0.4, atol=0.01)
    # Both inside the band: the plain time blend.
    np.testing.assert_allclose(out[:, 15:], (1 - tau) * 0.41 + tau * 0.39, atol=1e-4)
    # Without the events' say the time blend keeps 3/4 of the wrong surface.
    plain = FusionInterpolator(FusionConfig(visibility=0))
    assert plain.config.visibility == 0
    blend = (1 - tau) * wrong + tau * right
    assert abs(float(blend[0, 0, 3]) - 0.4) > 0.2


def test_config_rejects_bad_flow_settings():
    for bad in (
        dict(visibility=-1),
        dict(finest_scale=7),
        dict(refine=-1),
        dict(stride=0),
        dict(patch=2),
        dict(decide=3),
    ):
        with pytest.raises(ValueError, match="FusionConfig"):
            FusionConfig(**bad)
