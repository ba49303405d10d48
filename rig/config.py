"""The rig configuration file (TOML): which backends, which devices, how they are wired.

```toml
wiring = "trigger"            # or "software"

[events]
backend = "inivation"         # sim | inivation | dv-network | prophesee | prophesee-raw
serial = "DXA00123"           # inivation / prophesee
# host = "127.0.0.1"; port = 7777; trigger_port = 7778   (dv-network)
# path = "rec.raw"                                        (prophesee-raw)
[events.settings]             # backend specific: biases, detect_triggers, erc_rate, ...
biases = { ContrastThresholdOn = 3 }

[frames]
backend = "basler"            # sim | basler | dv-network
serial = "40012345"
[frames.settings]             # BaslerConfig fields
pixel_format = "BayerRG8"
exposure_us = 2000
frame_rate = 100
trigger = "free"

[sim]                         # SimConfig fields, when either backend is "sim"
fps = 100
```
Every key is checked on load; a mistake names the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from contracts.errors import ConfigError
from rig.base import EventSource, FrameSource, SourceError

__all__ = ["ConfigError", "RigConfig", "SourceConfig", "open_sources"]

EVENT_BACKENDS = ("sim", "inivation", "dv-network", "prophesee", "prophesee-raw")
FRAME_BACKENDS = ("sim", "basler", "dv-network")
WIRINGS = ("trigger", "software")


@dataclass
class SourceConfig:
    """One camera: backend plus how to reach it. `settings` go to the backend's own
    config dataclass (BaslerConfig, InivationConfig, PropheseeConfig)."""

    backend: str
    serial: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    trigger_port: int | None = None
    path: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class RigConfig:
    events: SourceConfig
    frames: SourceConfig
    wiring: str = "trigger"
    sim: dict[str, Any] = field(default_factory=dict)
    source_path: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> RigConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: rig configuration not found (check the path)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the rig configuration: {e}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "<rig config>") -> RigConfig:
        def err(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{where}: '{key}' {msg}")

        unknown = set(data) - {"wiring", "events", "frames", "sim"}
        if unknown:
            raise err(sorted(unknown)[0], "is not a known key (wiring, events, frames, sim)")
        wiring = data.get("wiring", "trigger")
        if wiring not in WIRINGS:
            raise err("wiring", f"must be one of {WIRINGS}, got {wiring!r}")
        sim = data.get("sim", {})
        if not isinstance(sim, dict):
            raise err("sim", "must be a table")
        srcs = {}
        for kind, allowed in (("events", EVENT_BACKENDS), ("frames", FRAME_BACKENDS)):
            srcs[kind] = _source(data.get(kind), kind, allowed, err)
        cfg = cls(srcs["events"], srcs["frames"], wiring, dict(sim), where)
        if "sim" in (cfg.events.backend, cfg.frames.backend) and sim:
            from rig.sim.config import SimConfig

            known = {f.name for f in fields(SimConfig)}
            for k in sim:
                if k not in known:
                    raise err(
                        f"sim.{k}", f"is not a simulator setting ({', '.join(sorted(known))})"
                    )
            try:
                SimConfig(**sim)
            except (TypeError, ValueError) as e:
                raise err("sim", f"is invalid: {e}") from None
        for kind in ("events", "frames"):
            _check_settings(getattr(cfg, kind), kind, err)
        return cfg


def _source(raw: Any, kind: str, allowed: tuple[str, ...], err) -> SourceConfig:
    if raw is None:
        raise err(kind, f"is missing: add a [{kind}] table with backend = one of {allowed}")
    if not isinstance(raw, dict):
        raise err(kind, "must be a table")
    known = {f.name for f in fields(SourceConfig)}
    for k in raw:
        if k not in known:
            raise err(f"{kind}.{k}", f"is not a known key ({', '.join(sorted(known))})")
    backend = raw.get("backend")
    if backend not in allowed:
        raise err(f"{kind}.backend", f"must be one of {allowed}, got {backend!r}")
    sc = SourceConfig(**raw)
    if sc.serial is not None:
        if isinstance(sc.serial, bool) or not isinstance(sc.serial, str | int):
            raise err(
                f"{kind}.serial",
                f'must be the serial number as text, e.g. "40012345", got {sc.serial!r}',
            )
        sc.serial = str(sc.serial)
    for key in ("host", "path"):
        v = getattr(sc, key)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            example = '"192.168.1.20"' if key == "host" else '"recording.raw"'
            raise err(f"{kind}.{key}", f"must be text in quotes, e.g. {key} = {example}, got {v!r}")
    for key in ("port", "trigger_port"):
        v = getattr(sc, key)
        # TOML's true is a bool, which Python counts as the int 1: never a port.
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535):
            raise err(f"{kind}.{key}", f"must be a TCP port 1-65535, got {v!r}")
    if not isinstance(sc.settings, dict):
        raise err(f"{kind}.settings", "must be a table")
    if backend == "dv-network" and sc.port is None:
        raise err(f"{kind}.port", "is required for the dv-network backend")
    if backend == "prophesee-raw":
        if not sc.path:
            raise err(f"{kind}.path", "is required for the prophesee-raw backend (the .raw file)")
    return sc


def _settings_class(backend: str):
    if backend == "basler":
        from rig.basler import BaslerConfig

        return BaslerConfig
    if backend == "inivation":
        from rig.inivation import InivationConfig

        return InivationConfig
    if backend == "prophesee":
        from rig.prophesee import PropheseeConfig

        return PropheseeConfig
    return None


def _check_settings(sc: SourceConfig, kind: str, err) -> None:
    cls = _settings_class(sc.backend)
    if cls is None:
        if sc.settings and sc.backend != "prophesee-raw":
            raise err(f"{kind}.settings", f"are not used by the {sc.backend} backend")
        return
    known = {f.name for f in fields(cls)} - {"serial"}
    for k in sc.settings:
        if k not in known:
            raise err(
                f"{kind}.settings.{k}",
                f"is not a {sc.backend} setting ({', '.join(sorted(known))})",
            )
    try:
        _build_settings(sc)
    except (TypeError, ValueError) as e:
        raise err(f"{kind}.settings", f"are invalid: {e}") from None


def _build_settings(sc: SourceConfig):
    cls = _settings_class(sc.backend)
    kw = dict(sc.settings)
    if sc.backend == "basler" and isinstance(kw.get("roi"), list):
        kw["roi"] = tuple(kw["roi"])
    if sc.backend == "prophesee":
        return cls(serial=sc.serial or "", **kw)
    return cls(serial=sc.serial, **kw)


def open_sources(cfg: RigConfig) -> tuple[EventSource, FrameSource]:
    """Build (not open) the event and frame sources the configuration names. SDKs are
    imported only for the backends used; open() them (or use `with`) to start."""
    ev_cfg, fr_cfg = cfg.events, cfg.frames
    sim_pair = None
    if "sim" in (ev_cfg.backend, fr_cfg.backend):
        sim_pair = _sim_sources(cfg)
    if ev_cfg.backend == "sim":
        events = sim_pair[0]
    elif ev_cfg.backend == "inivation":
        from rig.inivation import InivationEventSource

        events = InivationEventSource(_build_settings(ev_cfg))
    elif ev_cfg.backend == "dv-network":
        from rig.inivation import DvNetworkEventSource

        events = DvNetworkEventSource(ev_cfg.host, ev_cfg.port, ev_cfg.trigger_port)
    elif ev_cfg.backend == "prophesee":
        from rig.prophesee import PropheseeEventSource

        events = PropheseeEventSource(_build_settings(ev_cfg))
    else:
        from rig.prophesee import RawFileEventSource

        path = Path(ev_cfg.path)
        if cfg.source_path and not path.is_absolute():
            path = Path(cfg.source_path).parent / path
        events = RawFileEventSource(path, **ev_cfg.settings)
    if fr_cfg.backend == "sim":
        frames = sim_pair[1]
    elif fr_cfg.backend == "basler":
        from rig.basler import BaslerFrameSource

        frames = BaslerFrameSource(_build_settings(fr_cfg))
    else:
        from rig.inivation import DvNetworkFrameSource

        frames = DvNetworkFrameSource(fr_cfg.host, fr_cfg.port)
    return events, frames


def _sim_sources(cfg: RigConfig):
    try:
        from rig.sim.config import SimConfig
        from rig.sim.rig import SimulatedRig
    except ImportError as e:
        raise SourceError(f"the simulated rig is not available in this install: {e}") from e
    rig = SimulatedRig(SimConfig(**cfg.sim))
    try:
        return rig.sources()
    except ImportError as e:
        raise SourceError(f"the simulated rig has no sources yet: {e}") from e
