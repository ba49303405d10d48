"""A slomo-rig session folder: raw.aedat4 (events on the event sensor's pixels, frames
on the rig clock with their exposure) plus session.json and, when recorded, the
calibration that was used.

The event->frame mapping, in order of preference: --calibration, the session's own
calibration file, the simulated rig's known geometry (rig section of session.json),
the identity when both sensors have one size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.aedat4file import Aedat4File
from pipeline.inputs.base import InputError, file_fingerprint
from pipeline.inputs.davis import Aedat4Source, pick_streams
from pipeline.inputs.mapping import load_mapper
from pipeline.session import CALIBRATION_FILE, RAW_FILE, Session, SessionError


def sim_homography(
    rig: dict[str, Any],
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]] | None:
    """Event->frame homography of a simulated-rig session, from its SimConfig."""
    if rig.get("backend") != "sim" or not isinstance(rig.get("sim"), dict):
        return None
    from rig.sim.config import SimConfig
    from rig.sim.rig import side_by_side_homography

    try:
        cfg = SimConfig(**rig["sim"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"the session's simulated rig settings are unreadable: {exc}") from None
    if cfg.event_view == "same_sensor":
        h = np.eye(3)
    else:
        h = np.linalg.inv(side_by_side_homography(cfg.frame_size, cfg.event_size))
        h /= h[2, 2]
    return h, cfg.event_size, cfg.frame_size


class SessionSource(Aedat4Source):
    kind = "session"

    @classmethod
    def open(cls, path: Path, calibration: str | Path | None = None) -> SessionSource:
        try:
            session = Session.open(path)
            manifest = session.read()
        except SessionError as exc:
            raise InputError(str(exc)) from None
        raw = session.path / manifest.get("files", {}).get("raw", RAW_FILE)
        if not raw.exists():
            raise InputError(f"session {path} has no raw recording ({raw.name} is missing)")
        file = Aedat4File(raw)
        fr, ev, _ = pick_streams(file)
        if fr is None or ev is None:
            raise InputError(
                f"{raw} holds no {'frames' if fr is None else 'events'}: nothing to replay"
            )
        assert fr.size is not None and ev.size is not None
        how = ""
        mapper = None
        own = session.path / CALIBRATION_FILE
        if calibration is not None:
            mapper, how = load_mapper(calibration, ev.size, fr.size)
        elif own.exists():
            mapper, how = load_mapper(own, ev.size, fr.size)
            how = f"the session's {CALIBRATION_FILE}"
        else:
            sim = sim_homography(manifest.get("rig", {}))
            if sim is not None:
                from calibration.mapping import EventToFrameMap

                h, esize, fsize = sim
                if tuple(esize) != tuple(ev.size) or tuple(fsize) != tuple(fr.size):
                    raise InputError(
                        f"session {path}: the recorded sizes do not match its simulated rig settings"
                    )
                if np.allclose(h, np.eye(3)):
                    mapper, how = None, "simulated rig, same sensor (identity)"
                else:
                    mapper = EventToFrameMap.from_homography(h, ev.size, fr.size)
                    how = "simulated rig geometry from session.json"
            elif ev.size == fr.size:
                mapper, how = None, "identity (no calibration in the session; sensors of one size)"
            else:
                raise InputError(
                    f"session {path} has no {CALIBRATION_FILE} and its event ({ev.size}) and "
                    f"frame ({fr.size}) sensors differ: give --calibration FILE"
                )
        src = cls(raw, fr, ev, mapper, file)
        src.session_path = session.path
        src.manifest = manifest
        src.mapping_from = how
        return src

    session_path: Path
    manifest: dict
    mapping_from: str

    def fingerprint(self) -> list[dict[str, Any]]:
        return [file_fingerprint(self.path)]

    def describe(self) -> dict[str, Any]:
        live = self.manifest.get("output", {})
        return {
            **super().describe(),
            "session": str(self.session_path),
            "mapping": self.mapping_from,
            "live_intervals_skipped": live.get("intervals_skipped"),
        }
