import pytest

from pipeline.soak import run_soak

pytestmark = pytest.mark.slow


def test_short_soak_with_worker_kills(tmp_path):
    report = run_soak(tmp_path, minutes=0.25, kill_every_s=4.0, workers=2, log=lambda s: None)
    assert len(report["kills"]) >= 2
    assert report["checks"] == {
        "raw_events_equal_simulator": True,
        "raw_frames_equal_simulator": True,
        "every_skip_listed": True,
        "replay_fills_every_interval": True,
    }
    assert report["raw"]["events"] > 1_000_000
