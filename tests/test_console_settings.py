"""Camera settings from the page: the simulated event sensor's contrast threshold (an
event-camera bias) is offered where the event camera is simulated, checked like the
other settings, and reaches the sensor when the cameras are reopened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.console.rig import CameraSettings, FormError, RigSpec, open_rig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_contrast_threshold_is_checked_like_any_setting() -> None:
    for bad in (0.0, 0.01, 2.5, -1.0):
        with pytest.raises(FormError, match=r"contrast threshold .*0\.05 to 2"):
            CameraSettings(contrast_threshold=bad)
    assert CameraSettings(contrast_threshold=0.3).contrast_threshold == 0.3


def test_offered_only_where_the_event_camera_is_simulated() -> None:
    assert "contrast_threshold" in RigSpec().supported_settings()
    assert "contrast_threshold" in RigSpec(config=EXAMPLES / "sim.toml").supported_settings()
    real = RigSpec(config=EXAMPLES / "basler-davis346-trigger.toml").supported_settings()
    assert "contrast_threshold" not in real and "gain_db" in real


def _events_in(spec: RigSpec, until_us: int) -> tuple[float, int]:
    events, frames, _, info, _ = open_rig(spec)
    rig = events.rig
    return float(np.mean(rig.emulator.c_on)), len(rig.advance(until_us).events)


@pytest.mark.parametrize("config", [None, EXAMPLES / "sim.toml"])
def test_the_threshold_reaches_the_simulated_sensor(config: Path | None) -> None:
    plain = _events_in(RigSpec(config=config), 100_000)
    higher = _events_in(
        RigSpec(config=config, settings=CameraSettings(contrast_threshold=0.6)), 100_000
    )
    assert plain[0] == pytest.approx(0.2, abs=0.01)
    assert higher[0] == pytest.approx(0.6, abs=0.01)
    assert higher[1] < plain[1]  # the same scene gives fewer events
