"""The example rig configurations in examples/ load with the real parser (rig/config.py)
and build their sources, so a copied example fails only on what the operator's rig
differs in (serial numbers, wiring), never on a stale key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.config import RigConfig, open_sources

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECTED = {
    "basler-davis346-trigger.toml": ("trigger", "inivation", "basler"),
    "basler-prophesee.toml": ("trigger", "prophesee", "basler"),
    "software-sync.toml": ("software", "inivation", "basler"),
    "sim.toml": ("trigger", "sim", "sim"),
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads_and_builds_its_sources(name: str):
    cfg = RigConfig.load(EXAMPLES / name)
    wiring, events, frames = EXPECTED[name]
    assert (cfg.wiring, cfg.events.backend, cfg.frames.backend) == (wiring, events, frames)
    ev, fr = open_sources(cfg)  # built, not opened: no camera or SDK needed
    assert not ev.is_open and not fr.is_open
    if frames == "basler":
        assert fr.config.pixel_format in ("BayerRG8", "RGB8")
    if wiring == "trigger" and frames == "basler":
        assert fr.config.sync_output_line == "Line2"  # the wire's end on the Basler


def test_trigger_examples_listen_for_the_wire():
    davis = RigConfig.load(EXAMPLES / "basler-davis346-trigger.toml")
    assert davis.events.settings["detect_triggers"] is True
    prophesee = RigConfig.load(EXAMPLES / "basler-prophesee.toml")
    assert prophesee.events.settings["trigger_in"] is True
    software = RigConfig.load(EXAMPLES / "software-sync.toml")
    assert software.events.settings["detect_triggers"] is False


def test_docker_docs_point_to_examples_that_exist():
    import re

    text = (EXAMPLES.parent / "docs" / "docker.md").read_text()
    named = set(re.findall(r"examples/([\w.-]+\.toml)", text)) | set(
        re.findall(r"`([\w-]+\.toml)`", text)
    )
    named -= {"rig.toml", "pyproject.toml"}  # the operator's own copy; the project file
    assert named and all((EXAMPLES / n).is_file() for n in named), named
