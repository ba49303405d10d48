"""Camera settings from the page: the simulated event sensor's contrast threshold (an
event-camera bias) is offered where the event camera is simulated, checked like the
other settings, and reaches the sensor when the cameras are reopened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.console.rig import (
    CameraSettings,
    FormError,
    RigSpec,
    configured_rig,
    open_rig,
    parse_biases,
)

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


# -- a real event camera's biases (iniVation / Prophesee) ----------------------------------


def test_biases_from_the_page_are_parsed_and_checked() -> None:
    got = parse_biases("bias_diff_on=10, bias_diff_off = -5; bias_fo=0x10\nContrastThresholdOn=3")
    assert got == {"bias_diff_on": 10, "bias_diff_off": -5, "bias_fo": 16, "ContrastThresholdOn": 3}
    assert parse_biases("  ") == {}
    for bad, message in (
        ("bias_diff_on", "not name=value"),
        ("=3", "not name=value"),
        ("bias_diff_on=ten", "whole number"),
        ("bias diff=3", "letters, digits and _"),
        ("bias_fo=99999999999", "out of range"),
    ):
        with pytest.raises(FormError, match=message):
            parse_biases(bad)
    with pytest.raises(FormError, match="whole number"):
        CameraSettings(event_biases={"bias_fo": 1.5})


def test_biases_offered_only_for_event_cameras_that_take_them() -> None:
    davis = RigSpec(config=EXAMPLES / "basler-davis346-trigger.toml")
    assert "event_biases" in davis.supported_settings()
    assert "event_biases" in RigSpec(config=EXAMPLES / "basler-prophesee.toml").supported_settings()
    assert "event_biases" not in RigSpec().supported_settings()
    assert "event_biases" not in RigSpec(config=EXAMPLES / "sim.toml").supported_settings()
    assert davis.configured_biases() == {} and RigSpec().configured_biases() is None


def _with_biases(tmp_path: Path) -> Path:
    text = (EXAMPLES / "basler-davis346-trigger.toml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("# biases"))
    config = tmp_path / "rig.toml"
    config.write_text(text.replace(line, "biases = { ContrastThresholdOn = 3, Other = 1 }"))
    return config


def test_biases_are_merged_over_the_config_without_changing_it(tmp_path: Path) -> None:
    from rig.config import _build_settings

    config = _with_biases(tmp_path)
    before = config.read_text()
    spec = RigSpec(
        config=config,
        settings=CameraSettings(exposure_us=1500, event_biases={"Other": 7, "New": -2}),
    )
    assert spec.configured_biases() == {"ContrastThresholdOn": 3, "Other": 1}
    rc = configured_rig(spec)
    built = _build_settings(rc.events)  # what the iniVation driver is opened with
    assert built.biases == {"ContrastThresholdOn": 3, "Other": 7, "New": -2}
    assert rc.frames.settings["exposure_us"] == 1500
    assert config.read_text() == before


@pytest.mark.slow
def test_biases_through_the_console_api(tmp_path: Path) -> None:
    """The console on a DAVIS346 + Basler config with neither camera here: the page is
    offered the configured biases, bad ones get a message, good ones are applied and
    the camera's own error (no such camera, from dv-processing) is what it shows."""
    import http.client
    import json

    from tests.console_browser import console, wait

    def call(port: int, method: str, path: str, token: str = "", body: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"X-Slomo-Token": token, "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    with console(tmp_path / "sessions", "--config", str(_with_biases(tmp_path))) as c:
        port = int(c.url.rstrip("/").rsplit(":", 1)[1])
        status, page = call(port, "GET", "/")
        token = page.decode().split('name="slomo-token" content="')[1].split('"')[0]
        state = json.loads(call(port, "GET", "/api/state")[1])
        assert "event_biases" in state["settings"]["supported"]
        assert state["settings"]["configured_biases"] == {"ContrastThresholdOn": 3, "Other": 1}
        status, data = call(
            port, "POST", "/api/camera/settings", token, {"event_biases": "Other=seven"}
        )
        assert status == 400 and b"whole number" in data
        status, data = call(
            port, "POST", "/api/camera/settings", token, {"event_biases": "Other=7, New=-2"}
        )
        assert status == 200, data
        state = json.loads(call(port, "GET", "/api/state")[1])
        assert state["settings"]["current"]["event_biases"] == {"Other": 7, "New": -2}

        def camera_says_why(_):
            cam = json.loads(call(port, "GET", "/api/state")[1])["camera"]
            return cam["state"] != "starting" and "iniVation camera" in (cam["reason"] or "")

        wait(None, camera_says_why, 120, "the camera's own error")
