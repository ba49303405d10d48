"""The simulated rig is the ground truth for everything else (sync, mapping,
interpolation quality), so these tests check its physics and geometry, not just shapes."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from rig.base import DeviceInfo, SourceError
from rig.sim import SimConfig, SimEventSource, SimFrameSource, SimulatedRig
from rig.sim.events import LOG_EPS
from rig.sync import ClockMapping

SMALL = dict(frame_size=(160, 120), event_size=(173, 130))


def small(**kw) -> SimConfig:
    return SimConfig(**(SMALL | kw))


@pytest.mark.parametrize("sway", [{}, dict(camera_shake=(6.0, 9.0), object_swing=(20.0, 5.0))])
def test_events_integrate_to_log_intensity_change(sway):
    rig = SimulatedRig(small(noise_rate_hz=0.0, refractory_us=0, seed=3, **sway))
    t_end = 40_000
    step = rig.advance(t_end)
    ev = step.events
    assert len(ev) > 2000
    assert np.all(np.diff(ev.t) >= 0) and ev.t[0] >= 0 and ev.t[-1] < t_end
    assert set(np.unique(ev.p)) <= {0, 1}
    w, h = rig.config.event_size
    pix = ev.y.astype(np.int64) * w + ev.x
    c = np.where(ev.p == 1, rig.emulator.c_on[pix], -rig.emulator.c_off[pix])
    integrated = np.bincount(pix, weights=c, minlength=w * h)
    log0 = np.log(rig.render_event_view(0).astype(np.float64) + LOG_EPS).ravel()
    log1 = np.log(rig.render_event_view(t_end).astype(np.float64) + LOG_EPS).ravel()
    resid = (log1 - log0) - integrated
    inside = (resid < rig.emulator.c_on + 1e-4) & (resid > -rig.emulator.c_off - 1e-4)
    assert inside.mean() >= 0.99, f"only {inside.mean():.3%} within one threshold"
    # and the events carry the signal: most of the change is explained by them
    moved = np.abs(log1 - log0) > 0.5
    assert moved.sum() > 100
    assert np.mean(np.abs(resid[moved])) < 0.5 * np.mean(np.abs((log1 - log0)[moved]))


def test_deterministic_for_a_seed_and_chunking():
    a = SimulatedRig(small(seed=7))
    b = SimulatedRig(small(seed=7))
    ea = a.advance(30_000).events
    parts = [b.advance(t).events for t in (1_234, 10_000, 10_001, 30_000)]
    eb = type(ea).concat(parts)
    assert len(ea) == len(eb) > 0
    for col in ("t", "x", "y", "p"):
        assert np.array_equal(getattr(ea, col), getattr(eb, col))
    c = SimulatedRig(small(seed=8))
    ec = c.advance(30_000).events
    assert len(ec) != len(ea) or not np.array_equal(ec.x, ea.x)
    assert not np.array_equal(a.ground_truth(5_000), c.ground_truth(5_000))


def test_frames_are_exposed_and_blurred():
    cfg = small(exposure_us=8000, fps=50.0)
    rig = SimulatedRig(cfg)
    frames = rig.advance(200_000).frames
    # starts at 1000 + k * 20000; exposure must end by 200 000 -> k = 0..9
    assert [f.index for f in frames] == list(range(10))
    for f in frames:
        assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
        assert f.exposure_us == 8000
    assert rig.frames_emitted == 10
    start = rig.exposure_start_us(3)
    sharp_mid = rig.ground_truth(start + 4000).astype(np.float64)
    sharp_start = rig.ground_truth(start).astype(np.float64)
    blurred = frames[3].image.astype(np.float64)
    err_mid = np.abs(blurred - sharp_mid).mean()
    assert 0.02 < err_mid < 4.0
    assert np.abs(blurred - sharp_mid).max() > 10  # moving edges smear
    assert err_mid < np.abs(blurred - sharp_start).mean()


def test_one_trigger_per_frame_and_exact_clock_inverse():
    rig = SimulatedRig(small())
    triggers, frames = [], []
    for until in range(10_000, 400_001, 10_000):
        step = rig.advance(until)
        triggers.extend(step.triggers.tolist())
        frames.extend(step.frames)
    assert len(triggers) == rig.triggers_emitted
    assert len(frames) <= len(triggers) <= len(frames) + 1
    assert triggers[:3] == [1000, 21000, 41000]
    for f, trig in zip(frames, triggers, strict=False):
        assert abs(rig.frame_device_to_rig(f.timestamp_us) - trig) <= 1
        assert f.timestamp_us == rig.frame_rig_to_device(trig)
    fit = ClockMapping.fit(
        np.array([f.timestamp_us for f in frames]), np.array(triggers[: len(frames)]), "triggers"
    )
    assert fit.residual_max_us <= 1.5
    assert abs(fit.drift_ppm - (1 / (1 + 30e-6) - 1) * 1e6) < 10


def _luma_linear(rgb_u8: np.ndarray) -> np.ndarray:
    lin = (rgb_u8.astype(np.float32) / 255.0) ** 2.2
    return lin @ np.array([0.2126, 0.7152, 0.0722], np.float32)


@pytest.mark.parametrize("view", ["side_by_side", "same_sensor"])
def test_event_view_is_the_rgb_view_through_the_homography(view):
    rig = SimulatedRig(SimConfig(event_view=view))
    prod = rig.h_event_to_frame @ rig.h_frame_to_event
    assert np.allclose(prod / prod[2, 2], np.eye(3), atol=1e-9)
    if view == "same_sensor":
        assert rig.config.event_size == rig.config.frame_size
        assert np.allclose(rig.h_frame_to_event, np.eye(3))
    t = 123_500
    ew, eh = rig.config.event_size
    expected = cv2.warpPerspective(
        _luma_linear(rig.ground_truth(t)), rig.h_frame_to_event, (ew, eh)
    )
    got = rig.render_event_view(t)
    # pixels whose RGB-grid position is well inside the RGB frame
    ys, xs = np.mgrid[0:eh, 0:ew].astype(np.float64)
    p = np.stack([xs, ys, np.ones_like(xs)], -1) @ rig.h_event_to_frame.T
    fx, fy = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    fw, fh = rig.config.frame_size
    ok = (fx > 2) & (fx < fw - 3) & (fy > 2) & (fy < fh - 3)
    assert ok.mean() > 0.7
    err = np.abs(got - expected)[ok]
    assert err.mean() < 0.005, err.mean()
    assert np.percentile(err, 99) < 0.03
    # a wrong homography is clearly worse: the test can fail
    shifted = cv2.warpPerspective(
        _luma_linear(rig.ground_truth(t)),
        rig.h_frame_to_event @ np.array([[1, 0, 3], [0, 1, 0], [0, 0, 1.0]]),
        (ew, eh),
    )
    assert np.abs(got - shifted)[ok].mean() > 3 * err.mean()


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(step_us=2000), "step_us"),
        (dict(step_us=0), "step_us"),
        (dict(fps=0), "fps"),
        (dict(exposure_us=30_000), "exposure_us"),
        (dict(event_view="stereo"), "event_view"),
        (dict(frame_size=(8, 8)), "frame_size"),
        (dict(frame_size=(320,)), "frame_size"),
        (dict(contrast_threshold=0.0), "contrast_threshold"),
        (dict(threshold_sigma=0.5), "threshold_sigma"),
        (dict(refractory_us=-1), "refractory_us"),
        (dict(noise_rate_hz=-1.0), "noise_rate_hz"),
        (dict(n_objects=-1), "n_objects"),
        (dict(clock_drift_ppm=5000.0), "clock_drift_ppm"),
        (dict(camera_shake=(-1.0, 5.0)), "camera_shake"),
        (dict(camera_shake=(5.0,)), "camera_shake"),
        (dict(object_swing=(10.0, float("nan"))), "object_swing"),
        (dict(object_swing=(10.0, 500.0)), "object_swing"),
    ],
)
def test_config_validation(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SimConfig(**kw)


def test_config_round_trips_through_a_dict():
    cfg = SimConfig(seed=5, pan_speed=(1.0, 2.0), camera_shake=(3.0, 4.0))
    assert SimConfig(**cfg.to_dict()) == cfg


def test_shaking_camera_moves_the_background_off_a_straight_line():
    # No objects: the event view at t2 is the view at t1 moved by the background offset
    # difference, and the midpoint is NOT where constant-velocity motion would put it.
    rig = SimulatedRig(small(n_objects=0, camera_shake=(8.0, 7.0), pan_speed=(50.0, 0.0)))
    scene = rig.scene
    t = np.array([0.020, 0.050, 0.080])
    ox, oy = scene.background_offset(t)
    off = np.stack([ox, oy], 1)
    assert np.linalg.norm(off[1] - (off[0] + off[2]) / 2) > 2.0  # px off the chord
    a = rig.render_event_view(20_000)
    b = rig.render_event_view(50_000)
    d = off[1] - off[0]  # content at texel x + off(t): view(t2)(x) = view(t1)(x + d)
    m = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
    size = rig.config.event_size
    moved = cv2.warpAffine(a, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    straight = off[0] + (off[2] - off[0]) * 0.5 - off[0]
    m2 = np.float32([[1, 0, straight[0]], [0, 1, straight[1]]])
    wrong = cv2.warpAffine(a, m2, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inner = (slice(12, -12), slice(12, -12))
    err = np.abs(moved - b)[inner].mean()
    assert err < 0.01 < np.abs(wrong - b)[inner].mean()
    # the batched renderer (one warp per step when shaking) agrees with single renders
    batch = scene.render_gray_batch(20_000, size, rig.h_frame_to_event)
    for j in range(scene.BATCH):
        one = scene.render_gray(20_000 + j * scene.step_us, size, rig.h_frame_to_event)
        assert np.allclose(batch[j], one, atol=1e-5)


def test_swinging_objects_leave_the_straight_line_and_bound_the_speed():
    rig = SimulatedRig(small(n_objects=3, object_swing=(30.0, 6.0), seed=4))
    scene = rig.scene
    t = np.array([0.010, 0.050, 0.090])
    off_chord = []
    for obj in scene.objects:
        fwd, _ = obj.poses(t)
        c = fwd[:, :2, 2]  # sprite origin in the world
        off_chord.append(np.linalg.norm(c[1] - (c[0] + c[2]) / 2))
        # the pose's speed never exceeds the bound the exposure sampling relies on
        ts = np.linspace(0, 1, 20_001)
        cx = obj.poses(ts)[0][:, :2, 2]
        speed = np.linalg.norm(np.diff(cx, axis=0), axis=1) / np.diff(ts)[:, None].ravel()
        assert speed.max() <= scene.max_speed_px_per_s() * 1.001
    assert max(off_chord) > 5.0
    still = SimulatedRig(small(n_objects=3, seed=4)).scene  # same seed, no swing
    assert [o.pos0 for o in still.objects] == [o.pos0 for o in scene.objects]


def test_same_sensor_forces_event_size():
    cfg = SimConfig(event_view="same_sensor", frame_size=(200, 100), event_size=(346, 260))
    assert cfg.event_size == (200, 100)


def test_sources_context_eof_and_close():
    assert SimEventSource.find() == [
        DeviceInfo("sim", "simulated", "sim-events-0", "events", "procedural scene")
    ]
    assert len(SimFrameSource.find()) == 1 and SimFrameSource.find()[0].kind == "frames"
    rig = SimulatedRig(small())
    ev_src, fr_src = rig.sources(duration_s=0.1)
    assert ev_src.backend == fr_src.backend == "sim"
    assert ev_src.resolution == (173, 130) and fr_src.resolution == (160, 120)
    with ev_src, fr_src:
        n_events, n_trig, last_t = 0, 0, -1
        while True:
            try:
                s = ev_src.read()
            except EOFError:
                break
            assert s is not None
            if len(s.events):
                assert s.events.t[0] >= last_t
                last_t = int(s.events.t[-1])
            n_events += len(s.events)
            n_trig += len(s.triggers)
        frames = []
        while True:
            try:
                frames.append(fr_src.read())
            except EOFError:
                break
    assert last_t < 100_000 and n_events > 1000 and n_trig == 5
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    with pytest.raises(SourceError):
        ev_src.read()
    with pytest.raises(SourceError):
        fr_src.read()
    standalone = SimFrameSource(small(), duration_s=0.03)
    with pytest.raises(SourceError):
        standalone.read()  # not opened


def test_realtime_paces_to_the_wall_clock():
    src = SimEventSource(small(realtime=True), duration_s=0.08)
    t0 = time.monotonic()
    with src:
        while True:
            try:
                src.read(timeout_s=0.5)
            except EOFError:
                break
    assert time.monotonic() - t0 >= 0.07
