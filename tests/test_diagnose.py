"""models.diagnose: the exact-motion ceilings and event density of eval sequences."""

from __future__ import annotations

import numpy as np

from models.dataset import load_sequence
from models.diagnose import diagnose_sequence, format_rows
from models.evaluate import psnr_uint8
from models.registry import make_interpolator


def test_exact_motion_beats_blending_and_counts_events(tmp_path):
    seq = load_sequence(3, 2, (96, 64), tmp_path)
    row = diagnose_sequence(seq)
    blend = make_interpolator("blend")
    blend_db = np.mean(
        [
            psnr_uint8(p, g)
            for s in seq.samples()
            for p, g in zip(blend.interpolate(s.job(8)), s.ground_truth(8), strict=True)
        ]
    )
    # Warping with the simulator's exact motion must beat ignoring the motion, and
    # choosing per pixel can only add to that.
    assert row["exact_motion_blend_db"] > blend_db + 1.0
    assert row["exact_motion_best_db"] >= row["exact_motion_blend_db"]
    assert 0 < row["pixels_with_events"] <= 1 and row["events_per_pixel"] > 0
    table = format_rows([row])
    assert "| mean |" in table and "exact_motion_best_db" in table
