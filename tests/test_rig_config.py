"""Rig configuration files, backend construction, discovery and `devices`."""

from __future__ import annotations

import argparse
import json

import pytest

from rig.base import SdkMissingError, SourceError
from rig.config import ConfigError, RigConfig, open_sources

GOOD = """
wiring = "trigger"

[events]
backend = "dv-network"
host = "127.0.0.1"
port = 7777
trigger_port = 7778

[frames]
backend = "basler"
serial = 40012345
[frames.settings]
pixel_format = "BayerRG8"
exposure_us = 2000
frame_rate = 100
roi = [0, 0, 640, 480]
"""


def _write(tmp_path, text, name="rig.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_good(tmp_path):
    cfg = RigConfig.load(_write(tmp_path, GOOD))
    assert cfg.wiring == "trigger"
    assert cfg.events.backend == "dv-network" and cfg.events.trigger_port == 7778
    assert cfg.frames.serial == "40012345"
    ev, fr = open_sources(cfg)  # built, not opened: no camera needed
    assert type(ev).__name__ == "DvNetworkEventSource" and ev.port == 7777
    assert type(fr).__name__ == "BaslerFrameSource"
    assert fr.config.serial == "40012345" and fr.config.roi == (0, 0, 640, 480)
    assert not ev.is_open and not fr.is_open


@pytest.mark.parametrize(
    "text, key",
    [
        (GOOD.replace('wiring = "trigger"', 'wiring = "radio"'), "'wiring'"),
        (GOOD.replace('backend = "dv-network"', 'backend = "kinect"'), "'events.backend'"),
        (GOOD.replace("port = 7777", "port = 99999"), "'events.port'"),
        (GOOD.replace("exposure_us = 2000", "exposure_us = -5"), "'frames.settings'"),
        (GOOD.replace("frame_rate = 100", "framerate = 100"), "'frames.settings.framerate'"),
        (GOOD.replace('host = "127.0.0.1"', 'hots = "x"'), "'events.hots'"),
        (GOOD + "\n[extra]\na = 1\n", "'extra'"),
        (GOOD.split("[frames]")[0], "'frames' is missing"),
        (GOOD.replace("port = 7777\n", ""), "'events.port' is required"),
        # wrong types are refused, never coerced (true is the int 1 to Python: port 1)
        (GOOD.replace("port = 7777", "port = true"), "'events.port' must be a TCP port"),
        (GOOD.replace("trigger_port = 7778", 'trigger_port = "7778"'), "'events.trigger_port'"),
        (GOOD.replace('host = "127.0.0.1"', "host = 12"), "'events.host' must be text"),
        (GOOD.replace('host = "127.0.0.1"', "host = [1]"), "'events.host' must be text"),
        (GOOD.replace('host = "127.0.0.1"', "path = 42"), "'events.path' must be text"),
        (GOOD.replace("serial = 40012345", "serial = true"), "'frames.serial'"),
        (GOOD.replace("serial = 40012345", "serial = [1, 2]"), "'frames.serial'"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        RigConfig.load(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_not_toml_and_missing(tmp_path):
    p = _write(tmp_path, "wiring = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RigConfig.load(p)
    with pytest.raises(ConfigError, match="not found"):
        RigConfig.load(tmp_path / "nope.toml")


def test_prophesee_raw_relative_path(tmp_path):
    text = """
wiring = "software"
[events]
backend = "prophesee-raw"
path = "rec.raw"
[frames]
backend = "dv-network"
port = 7000
"""
    cfg = RigConfig.load(_write(tmp_path, text))
    ev, fr = open_sources(cfg)
    assert ev.path == tmp_path / "rec.raw"
    with pytest.raises(SourceError, match="does not exist"):
        ev.open()


def test_prophesee_live_builds_lazily(tmp_path, monkeypatch):
    import sys

    text = """
[events]
backend = "prophesee"
serial = "P123"
[events.settings]
erc_rate = 20000000.0
[frames]
backend = "dv-network"
port = 7000
"""
    cfg = RigConfig.load(_write(tmp_path, text))
    ev, _ = open_sources(cfg)
    assert ev.config.serial == "P123"
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    with pytest.raises(SdkMissingError, match="OpenEB"):
        ev.open()


def test_sim_backend(tmp_path):
    import rig.sim.rig  # noqa: F401

    text = """
[events]
backend = "sim"
[frames]
backend = "sim"
[sim]
fps = 50
frame_size = [64, 48]
"""
    cfg = RigConfig.load(_write(tmp_path, text))
    assert cfg.sim["fps"] == 50
    try:
        ev, fr = open_sources(cfg)
    except SourceError as e:  # rig.sim.sources may not have landed yet
        assert "sim" in str(e)
        return
    assert ev is not None and fr is not None
    bad = _write(tmp_path, text.replace("fps = 50", "fsp = 50"), "bad.toml")
    with pytest.raises(ConfigError, match="'sim.fsp'"):
        RigConfig.load(bad)


def test_devices_command(capsys, monkeypatch):
    from rig import commands, discovery
    from rig.base import DeviceInfo

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    monkeypatch.setattr(discovery, "_backends", lambda: [("x", lambda: [])])
    monkeypatch.setattr(commands, "find_all", discovery.find_all)
    args = parser.parse_args(["devices"])
    assert args.func(args) == 0
    assert "No cameras found" in capsys.readouterr().out

    def missing():
        raise SdkMissingError("prophesee", "metavision_hal")

    def broken():
        raise RuntimeError("usb stack exploded")

    dev = DeviceInfo("basler", "acA1920", "40012345", "frames")
    monkeypatch.setattr(
        discovery,
        "_backends",
        lambda: [("basler", lambda: [dev]), ("prophesee", missing), ("inivation", broken)],
    )
    args = parser.parse_args(["devices", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["devices"][0]["serial"] == "40012345"
    assert any("prophesee: skipped" in n for n in out["notes"])
    assert any("usb stack exploded" in n for n in out["notes"])
    args = parser.parse_args(["devices"])
    args.func(args)
    text = capsys.readouterr().out
    assert "basler" in text and "acA1920" in text and "40012345" in text


def test_emulated_basler_listed_in_subprocess():
    """PYLON_CAMEMU must be set before pylon starts, so this runs in a fresh process."""
    import os
    import subprocess
    import sys

    import pypylon  # noqa: F401

    out = subprocess.run(
        [sys.executable, "-c", "from rig.discovery import find_all; print(find_all())"],
        env={**os.environ, "PYLON_CAMEMU": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "0815-0000" in out.stdout and "0815-0001" in out.stdout, out.stderr
