"""Classical interpolators on a simple known motion."""

import numpy as np
import pytest

from contracts.jobs import IntervalJob, inserted_timestamps
from models.baselines import BlendInterpolator, FlowInterpolator, IntegrationInterpolator
from models.registry import ModelError, make_interpolator
from rig.types import EventBatch


def _job_with_brightening_square():
    """A square whose intensity rises from I0 to I0*e^(0.2*k) via k ON events per pixel."""
    h, w = 16, 16
    f0 = np.full((h, w, 3), 50, np.uint8)
    ys, xs = np.mgrid[4:8, 4:8]
    k = 4
    c = 0.2
    lin0 = 50 / 255 + 1e-2
    f1 = f0.copy()
    f1[4:8, 4:8] = np.uint8(np.round((lin0 * np.exp(c * k) - 1e-2) * 255))
    t = np.repeat(np.array([2000, 4000, 6000, 8000], np.int64), 16)
    x = np.tile(xs.ravel(), k).astype(np.float32)
    y = np.tile(ys.ravel(), k).astype(np.float32)
    order = np.argsort(t, kind="stable")
    ev = EventBatch(t[order], x[order], y[order], np.ones(len(t), np.int8))
    return IntervalJob(0, f0, f1, 0, 10_000, ev, inserted_timestamps(0, 10_000, 2)), lin0, c


def test_integration_follows_events_where_blend_cannot():
    job, lin0, c = _job_with_brightening_square()
    mid = IntegrationInterpolator(contrast_threshold=c, gamma=1.0).interpolate(job)[0]
    # at t=5000 two of the four ON events have happened
    expected = (lin0 * np.exp(2 * c) - 1e-2) * 255
    assert abs(float(mid[5, 5, 0]) - expected) < 2.5
    assert mid[0, 0, 0] == 50
    blend = BlendInterpolator().interpolate(job)[0]
    assert blend.shape == (16, 16, 3)


def test_flow_recovers_a_translation():
    rng = np.random.default_rng(0)
    tex = (rng.random((80, 96)) * 255).astype(np.uint8)
    import cv2

    tex = cv2.GaussianBlur(tex, (0, 0), 2)
    img = np.stack([tex] * 3, -1)
    f0 = img[8:72, 8:88]
    f1 = img[8:72, 12:92]  # scene moved 4 px left
    mid_true = img[8:72, 10:90]
    job = IntervalJob(
        0,
        np.ascontiguousarray(f0),
        np.ascontiguousarray(f1),
        0,
        100,
        EventBatch.empty(np.float32),
        inserted_timestamps(0, 100, 2),
    )
    flow = FlowInterpolator().interpolate(job)[0].astype(float)
    blend = BlendInterpolator().interpolate(job)[0].astype(float)
    inner = (slice(8, -8), slice(8, -8))
    err_flow = np.abs(flow[inner] - mid_true[inner]).mean()
    err_blend = np.abs(blend[inner] - mid_true[inner]).mean()
    assert err_flow < 0.5 * err_blend


def test_registry():
    assert make_interpolator("blend").name == "blend"
    assert make_interpolator("integration").name == "integration"
    with pytest.raises(ModelError, match="unknown model"):
        make_interpolator("magic")
