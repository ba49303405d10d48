"""A slomo-rig session folder: raw.aedat4 (events on the event sensor's pixels, frames
on the rig clock with their exposure) plus session.json and, when recorded, the
calibration that was used.

A session recorded without a trigger wire may carry a clock correction from
`slomo-rig sync` (``clock_correction`` in session.json): keyframe times are mapped
through it here, so the raw file stays as recorded and a new `sync` never stacks.

The event->frame mapping, in order of preference: --calibration, the session's own
calibration file, the simulated rig's known geometry (rig section of session.json),
the identity when both sensors have one size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.aedat4file import Aedat4File
from pipeline.inputs.base import InputError, Keyframe, file_fingerprint
from pipeline.inputs.davis import Aedat4Source, pick_streams
from pipeline.inputs.mapping import load_mapper
from pipeline.session import CALIBRATION_FILE, RAW_FILE, Session, SessionError
from rig.sync import ClockMapping


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


def clock_correction(manifest: dict[str, Any], path: Path) -> ClockMapping | None:
    """The stored-time -> rig-time mapping `slomo-rig sync` left in session.json, if any."""
    section = manifest.get("clock_correction")
    if section is None:
        return None
    mapping = section.get("mapping") if isinstance(section, dict) else None
    try:
        if not isinstance(mapping, dict):
            raise TypeError("no mapping")
        scale, offset = float(mapping["scale"]), float(mapping["offset_us"])
        if not (np.isfinite(scale) and np.isfinite(offset) and scale > 0):
            raise ValueError("not finite")
        return ClockMapping.from_dict(mapping)
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"session {path}: its clock_correction in session.json is unreadable: run "
            f"'slomo-rig sync {path}' again"
        ) from None


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
        src.event_to_frame = mapper
        src.clock_correction = clock_correction(manifest, session.path)
        if src.clock_correction is not None:
            src.notes.append(src._clock_text())
        return src

    session_path: Path
    manifest: dict
    mapping_from: str
    event_to_frame: Any  # EventToFrameMap, or None where events are in the frame grid
    clock_correction: ClockMapping | None

    def keyframes(self) -> Iterator[Keyframe]:
        fix = self.clock_correction
        for kf in super().keyframes():
            yield kf if fix is None else Keyframe(kf.index, kf.image, fix.to_rig(kf.t_us))

    def fingerprint(self) -> list[dict[str, Any]]:
        # A correction moves every keyframe: a replay started before `sync` must not resume.
        fp = [file_fingerprint(self.path)]
        if self.clock_correction is not None:
            fp.append({"clock_correction": self.clock_correction.to_dict()})
        return fp

    def describe(self) -> dict[str, Any]:
        live = self.manifest.get("output", {})
        return {
            **super().describe(),
            "session": str(self.session_path),
            "mapping": self.mapping_from,
            "clock": self._clock_text(),
            "live_intervals_skipped": live.get("intervals_skipped"),
        }

    def _clock_text(self) -> str:
        fix = self.clock_correction
        if fix is None:
            return "as recorded"
        # With drift, offset_us is the correction at device time 0, not a useful figure.
        how = (
            f"{fix.offset_us / 1e3:+.2f} ms"
            if fix.scale == 1.0
            else f"{fix.drift_ppm:+.1f} ppm drift"
        )
        return f"software clock correction from 'slomo-rig sync' applied ({how})"
