"""Who owns the cameras: the idle monitor (previews only) or a recording.

Recording is `pipeline.live.run_live`, the very path `slomo-rig record` takes, in a
child process of its own (so the web server's work never competes with capture for
one interpreter), with the preview tap pointed at the console's hub. When nothing is
recorded, a small monitor process reads the same sources and feeds the same tap, so
the operator can check focus, exposure and alignment before pressing record.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import multiprocessing as mp
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BIAS_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Event cameras whose driver takes named integer biases from the rig config's
# [events.settings] biases (rig/inivation.py: dv-processing setters, rig/prophesee.py:
# Metavision I_LL_Biases); the camera itself says which names it knows when opened.
BIAS_BACKENDS = ("inivation", "prophesee")
CONSOLE_MODELS = ("integration", "flow", "blend", "timelens", "fusion")


class FormError(ValueError):
    """A bad value from the browser; the message is shown next to the form."""


@dataclass
class CameraSettings:
    """What the operator may change at the rig; None keeps the configured value."""

    exposure_us: float | None = None
    frame_rate: float | None = None
    gain_db: float | None = None
    # An event-camera bias: the simulated sensor's contrast threshold (log-intensity
    # step per event; higher: fewer events, less noise).
    contrast_threshold: float | None = None
    # A real event camera's biases (name -> integer, as the rig config's
    # [events.settings] biases): merged over the configured ones when the cameras open.
    event_biases: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.exposure_us is not None and not 1 <= self.exposure_us <= 1_000_000:
            raise FormError(f"exposure {self.exposure_us} µs: give 1 to 1000000 µs")
        if self.frame_rate is not None and not 1 <= self.frame_rate <= 1000:
            raise FormError(f"frame rate {self.frame_rate}: give 1 to 1000 frames per second")
        if self.gain_db is not None and not 0 <= self.gain_db <= 48:
            raise FormError(f"gain {self.gain_db} dB: give 0 to 48 dB")
        c = self.contrast_threshold
        if c is not None and not 0.05 <= c <= 2:
            raise FormError(
                f"event contrast threshold {c}: give 0.05 to 2 (log-intensity step per event)"
            )
        for name, value in (self.event_biases or {}).items():
            if not isinstance(name, str) or not BIAS_NAME_RE.match(name):
                raise FormError(
                    f"event bias name {name!r}: letters, digits and _ (e.g. bias_diff_on, "
                    "ContrastThresholdOn)"
                )
            if isinstance(value, bool) or not isinstance(value, int):
                raise FormError(f"event bias {name}={value!r}: give a whole number")
            if not -(2**31) <= value < 2**31:
                raise FormError(f"event bias {name}={value}: out of range for a bias")


def parse_biases(text: str) -> dict[str, int]:
    """'name=value, name=value' (commas, semicolons or new lines between) from the page
    into a dict; an empty text is no change."""
    out: dict[str, int] = {}
    for item in re.split(r"[,;\n]", text):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise FormError(f"event biases: {item!r} is not name=value (e.g. bias_diff_on=10)")
        try:
            out[name] = int(value, 0)
        except ValueError:
            raise FormError(f"event bias {name}={value!r}: give a whole number") from None
    CameraSettings(event_biases=out)  # the same checks as any setting
    return out


@dataclass
class RigSpec:
    """How to open the rig, picklable for the child processes."""

    config: Path | None = None  # None: the simulated rig
    calibration: Path | None = None
    seed: int = 0
    settings: CameraSettings = field(default_factory=CameraSettings)
    unplug_after: int | None = None  # simulated rig: the event camera "unplugged" (tests)

    def supported_settings(self) -> list[str]:
        if self.config is None:
            return ["exposure_us", "frame_rate", "contrast_threshold"]
        from rig.config import RigConfig

        rc = RigConfig.load(self.config)
        keys = {
            "basler": ["exposure_us", "frame_rate", "gain_db"],
            "sim": ["exposure_us", "frame_rate"],
        }.get(rc.frames.backend, [])
        if rc.events.backend == "sim":
            return [*keys, "contrast_threshold"]
        if rc.events.backend in BIAS_BACKENDS:
            return [*keys, "event_biases"]
        return keys

    def configured_biases(self) -> dict[str, int] | None:
        """The event camera's biases in the rig config (None: no such setting here)."""
        if self.config is None:
            return None
        from rig.config import RigConfig

        rc = RigConfig.load(self.config)
        if rc.events.backend not in BIAS_BACKENDS:
            return None
        return dict(rc.events.settings.get("biases", {}))


def configured_rig(spec: RigSpec):
    """The rig config file with the page's camera settings applied (a RigConfig; the
    file itself is not changed). Only for a config file (spec.config)."""
    from rig.config import RigConfig

    assert spec.config is not None
    rc = RigConfig.load(spec.config)
    changes = {k: v for k, v in asdict(spec.settings).items() if v is not None}
    biases = changes.pop("event_biases", None)
    if biases and rc.events.backend in BIAS_BACKENDS:
        rc.events.settings["biases"] = {**rc.events.settings.get("biases", {}), **biases}
    if rc.frames.backend == "sim" or rc.events.backend == "sim":
        rc.sim.update({"fps": changes.get("frame_rate", rc.sim.get("fps", 50.0))})
        if "exposure_us" in changes:
            rc.sim["exposure_us"] = int(changes["exposure_us"])
        if "contrast_threshold" in changes and rc.events.backend == "sim":
            rc.sim["contrast_threshold"] = changes["contrast_threshold"]
    elif rc.frames.backend == "basler":
        changes.pop("contrast_threshold", None)
        rc.frames.settings.update(changes)
    return rc


def open_rig(spec: RigSpec):
    """(events, frames, mapper, rig info, wiring), built as `slomo-rig record` does."""
    from calibration.mapping import EventToFrameMap
    from pipeline.cli import CliError, _checked_map

    calibration = None
    if spec.calibration is not None:
        from calibration import load_calibration

        calibration = load_calibration(spec.calibration)
    s = spec.settings
    if spec.config is None:
        from rig.sim.config import SimConfig
        from rig.sim.rig import SimulatedRig

        kw: dict[str, Any] = {"seed": spec.seed, "realtime": True}
        if s.frame_rate is not None:
            kw["fps"] = s.frame_rate
        if s.exposure_us is not None:
            kw["exposure_us"] = int(s.exposure_us)
        if s.contrast_threshold is not None:
            kw["contrast_threshold"] = s.contrast_threshold
        try:
            cfg = SimConfig(**kw)
        except ValueError as exc:
            raise FormError(str(exc)) from None
        rig = SimulatedRig(cfg)
        events, frames = rig.sources()
        if spec.unplug_after is not None:
            events = _Unplugging(events, spec.unplug_after)
        mapper: Any = EventToFrameMap.from_homography(
            rig.h_event_to_frame, cfg.event_size, cfg.frame_size
        )
        if calibration is not None:
            mapper = _checked_map(calibration, events, frames)
        return events, frames, mapper, {"backend": "sim", "sim": cfg.to_dict()}, "trigger"
    from rig.config import open_sources

    rc = configured_rig(spec)
    events, frames = open_sources(rc)

    def mapper_for(ev, fr):
        if calibration is not None:
            return _checked_map(calibration, ev, fr)
        if tuple(ev.resolution) != tuple(fr.resolution):
            raise CliError(
                "the event and frame cameras differ in size: start the console with "
                "--calibration from 'slomo-rig calibrate'"
            )
        return EventToFrameMap.identity(tuple(ev.resolution))

    return events, frames, mapper_for, {"config_file": str(spec.config)}, rc.wiring


class _Unplugging:
    """The simulated event camera, unplugged after `good` deliveries: what a real
    driver does when its cable is pulled (raises), for the tests of the console."""

    def __init__(self, source: Any, good: int) -> None:
        self._source, self._good = source, good

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def __enter__(self) -> _Unplugging:
        self._source.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._source.__exit__(*exc)

    def read(self, timeout_s: float = 1.0) -> Any:
        from rig.base import SourceError

        item = self._source.read(timeout_s=timeout_s)
        if item is not None:
            if self._good <= 0:
                raise SourceError("event camera disconnected (USB transfer failed): plug it in")
            self._good -= 1
        return item


def _monitor_main(spec: RigSpec, endpoint: str, stop: Any, conn: Any) -> None:
    """Child process: read both cameras for the previews only (nothing is written)."""
    from calibration.mapping import EventToFrameMap
    from pipeline.console.tap import PreviewTap

    try:
        events, frames, mapper, _, _ = open_rig(spec)
        with events, frames:
            if not isinstance(mapper, EventToFrameMap):
                mapper = mapper(events, frames)
            n_ev = n_fr = 0
            with PreviewTap(endpoint, events.resolution) as tap:
                conn.send(("started", None))
                next_health = 0.0
                while not stop.is_set():
                    sl = events.read(0.005)
                    if sl is not None and len(sl.events):
                        n_ev += len(sl.events)
                        tap.events(sl.events, mapper(sl.events))
                    fr = frames.read(0.005)
                    if fr is not None:
                        n_fr += 1
                        tap.frame(fr)
                    if time.monotonic() > next_health:
                        next_health = time.monotonic() + 0.5
                        tap.health(
                            {
                                "mode": "monitor",
                                "wall": time.time(),
                                "events": n_ev,
                                "frames": n_fr,
                                "camera_skipped_frames": int(frames.skipped_frames),
                            }
                        )
        conn.send(("stopped", None))
    except KeyboardInterrupt:  # Ctrl-C in the console's terminal reaches us too
        return
    except EOFError:
        conn.send(("failed", "the camera stream ended"))
    except Exception as exc:  # shown to the operator as the camera's state
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))


def _record_main(spec: RigSpec, live: dict[str, Any], notes: str, stop: Any, conn: Any) -> None:
    """Child process: `run_live`, exactly as `slomo-rig record` runs it."""
    from pipeline.live import LiveOptions, run_live
    from pipeline.session import Session

    stop_flag = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), stop_flag.set()), daemon=True).start()
    session_path = Path(live["out"]) / live["session_name"]
    try:
        events, frames, mapper, info, wiring = open_rig(spec)
        opts = LiveOptions(**live, wiring=wiring, calibration=spec.calibration, progress=False)

        def started(_procs: dict) -> None:
            Session(session_path).update(operator_notes=notes, recorded_by="console")
            conn.send(("started", str(session_path)))

        result = run_live(events, frames, mapper, info, opts, on_started=started, stop=stop_flag)
        m = result.manifest
        conn.send(
            (
                "done",
                {"status": m.get("status"), "error": m.get("error"), "path": str(session_path)},
            )
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the page, session kept
        conn.send(
            ("failed", {"error": str(exc).split("\nSession so far")[0], "path": str(session_path)})
        )


class RigController:
    """State machine for the page: idle / starting / recording / stopping / failed."""

    def __init__(self, spec: RigSpec, sessions: Path, endpoint: str, on_switch=None) -> None:
        self.spec = spec
        self.sessions = sessions
        self.endpoint = endpoint
        self.on_switch = on_switch or (lambda: None)
        self._ctx = mp.get_context("spawn")
        self._lock = threading.RLock()
        self.state: dict[str, Any] = {"state": "idle", "reason": None, "session": None}
        self.camera: dict[str, Any] = {"state": "off", "reason": None}
        self._monitor: tuple[Any, Any, Any] | None = None
        self._record: tuple[Any, Any, Any] | None = None
        self._outcome: dict[str, Any] | None = None  # how the recording ended, once it has
        self._watch = threading.Thread(target=self._watch_loop, daemon=True)
        self._closing = False
        self.busy_reason: str | None = None  # e.g. the calibration wizard holds the cameras

    def start(self) -> None:
        self.start_monitor()
        self._watch.start()

    # -- monitor -----------------------------------------------------------------------
    def start_monitor(self) -> None:
        with self._lock:
            if self._monitor is not None or self._record is not None or self.busy_reason:
                return
            stop = self._ctx.Event()
            parent, child = self._ctx.Pipe(duplex=False)
            p = self._ctx.Process(
                target=_monitor_main, args=(self.spec, self.endpoint, stop, child), daemon=True
            )
            p.start()
            child.close()
            self._monitor = (p, stop, parent)
            self.camera = {"state": "starting", "reason": None}
            self.on_switch()

    def stop_monitor(self) -> None:
        with self._lock:
            mon, self._monitor = self._monitor, None
        if mon is not None:
            p, stop, _ = mon
            stop.set()
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)

    def apply_settings(self, settings: CameraSettings) -> None:
        with self._lock:
            if self._record is not None:
                raise FormError("camera settings cannot change while recording: stop first")
            self.spec = dataclasses.replace(self.spec, settings=settings)
        self.stop_monitor()
        self.start_monitor()

    # -- recording ---------------------------------------------------------------------
    def start_recording(
        self, name: str, notes: str, model: str, factor: int, workers: int = 1
    ) -> str:
        name = name.strip() or _dt.datetime.now().strftime("session-%Y%m%d-%H%M%S")
        if not NAME_RE.match(name):
            raise FormError(
                f"session name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
            )
        if (self.sessions / name).exists():
            raise FormError(f"a session named {name!r} already exists: choose another name")
        if model not in CONSOLE_MODELS:
            raise FormError(f"model {model!r}: choose one of {', '.join(CONSOLE_MODELS)}")
        if not 2 <= factor <= 64:
            raise FormError(f"factor {factor}: give a slow-motion factor from 2 to 64")
        if len(notes) > 4000:
            raise FormError("notes are limited to 4000 characters")
        with self._lock:
            if self._record is not None:
                raise FormError("a recording is already running: stop it first")
            if self.busy_reason:
                raise FormError(f"the cameras are busy: {self.busy_reason}")
        self.stop_monitor()
        live = {
            "out": self.sessions,
            "session_name": name,
            "factor": factor,
            "model": model,
            "workers": workers,
            "preview_endpoint": self.endpoint,
        }
        stop = self._ctx.Event()
        parent, child = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=_record_main, args=(self.spec, live, notes, stop, child))
        with self._lock:
            p.start()
            child.close()
            self._record = (p, stop, parent)
            self.state = {
                "state": "starting",
                "reason": None,
                "session": name,
                "since": time.time(),
                "model": model,
                "factor": factor,
            }
            self.camera = {"state": "recording", "reason": None}
        self.on_switch()
        return name

    def stop_recording(self) -> None:
        with self._lock:
            if self._record is None:
                raise FormError("nothing is being recorded")
            self._record[1].set()
            self.state = {**self.state, "state": "stopping"}

    # -- watching the children ---------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._closing:
            with self._lock:
                mon, rec = self._monitor, self._record
            if rec is not None:
                self._watch_record(*rec)
            if mon is not None:
                self._watch_monitor(*mon)
            time.sleep(0.1)

    def _watch_monitor(self, p, stop, conn) -> None:
        while conn.poll():
            try:
                what, arg = conn.recv()
            except EOFError:
                break
            if what == "started":
                self.camera = {"state": "live", "reason": None}
            elif what == "failed":
                self.camera = {"state": "disconnected", "reason": arg}
        if not p.is_alive() and self._monitor is not None and self._monitor[0] is p:
            with self._lock:
                self._monitor = None
            if self.camera["state"] != "disconnected":
                self.camera = {"state": "off", "reason": f"preview process ended ({p.exitcode})"}

    def _watch_record(self, p, stop, conn) -> None:
        while conn.poll():
            try:
                what, arg = conn.recv()
            except EOFError:
                break
            with self._lock:
                if what == "started":
                    if self.state["state"] == "starting":
                        self.state = {**self.state, "state": "recording"}
                elif what == "done":
                    ok = arg["status"] == "complete"
                    self._outcome = {
                        "state": "idle" if ok else "failed",
                        "reason": arg.get("error"),
                    }
                    self.state = {**self.state, "state": "stopping", "last": arg}
                elif what == "failed":
                    self._outcome = {"state": "failed", "reason": arg["error"]}
                    self.state = {**self.state, "state": "stopping", "last": arg}
        if not p.is_alive():
            # Idle only once the process is gone: its cameras are free for the next start.
            p.join()
            with self._lock:
                self._record = None
                if self._outcome is not None:
                    self.state = {**self.state, **self._outcome}
                    self._outcome = None
                elif self.state["state"] in ("starting", "recording", "stopping"):
                    self.state = {
                        **self.state,
                        "state": "failed",
                        "reason": f"the recording process died (exit code {p.exitcode}); what was written is kept",
                    }
                self.camera = {"state": "off", "reason": None}
            self.on_switch()
            if not self._closing:
                self.start_monitor()

    def close(self) -> None:
        self._closing = True
        with self._lock:
            rec = self._record
        if rec is not None:
            rec[1].set()
            rec[0].join(120)
        self.stop_monitor()
