"""iniVation cameras through dv-processing: USB cameras and live DV network streams.

A DV network stream carries one stream per port (events, triggers and frames each on
their own), which is how DV serves a live camera; `DvNetworkEventSource` joins the
event and trigger ports into one `EventSlice` stream. dv readers never block, so
`read` polls with short sleeps until its timeout.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rig.base import DeviceInfo, EventSource, FrameSource, SdkMissingError, SourceError
from rig.types import EventBatch, EventSlice, Frame

_POLL_S = 0.002


def _dv():
    try:
        import dv_processing as dv
    except ImportError as e:
        raise SdkMissingError("inivation", "dv-processing") from e
    return dv


def _store_to_batch(store) -> EventBatch:
    a = store.numpy()
    return EventBatch(
        a["timestamp"].astype(np.int64, copy=False),
        a["x"].astype(np.int16, copy=False),
        a["y"].astype(np.int16, copy=False),
        a["polarity"].astype(np.int8, copy=False),
    )


def _rising(dv, triggers) -> np.ndarray:
    """Rising edges of the external signal (the frame camera's exposure start)."""
    keep = (dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE, dv.TriggerType.EXTERNAL_SIGNAL_PULSE)
    return np.array([t.timestamp for t in triggers if t.type in keep], np.int64)


@dataclass
class InivationConfig:
    """serial: None opens the first camera. biases: setter name without 'set' ->
    value, e.g. {"ContrastThresholdOn": 3} on a DVXplorer; applied as-is so every
    model's own knobs work. detect_triggers: enable the SIGNAL_IN detector (rising
    edges). generator_high_us / generator_low_us: run the PWM generator (drives a
    frame camera's trigger input) when both are set."""

    serial: str | None = None
    biases: dict[str, Any] = field(default_factory=dict)
    detect_triggers: bool = True
    generator_high_us: int | None = None
    generator_low_us: int | None = None

    def __post_init__(self) -> None:
        gen = (self.generator_high_us, self.generator_low_us)
        if (gen[0] is None) != (gen[1] is None):
            raise ValueError(
                "InivationConfig: set both generator_high_us and generator_low_us, or neither"
            )
        if gen[0] is not None and (gen[0] < 1 or gen[1] < 1):  # type: ignore[operator]
            raise ValueError(f"InivationConfig: generator times must be >= 1 µs, got {gen}")


class InivationEventSource(EventSource):
    """A DVXplorer / DAVIS on USB."""

    backend = "inivation"

    def __init__(self, config: InivationConfig | None = None) -> None:
        super().__init__()
        self.config = config or InivationConfig()
        self.resolution = (0, 0)
        self.name = ""
        self._cam: Any = None

    @classmethod
    def find(cls) -> list[DeviceInfo]:
        dv = _dv()
        out = []
        for d in dv.io.camera.discover():
            name = getattr(d, "cameraModel", None) or getattr(d, "name", "")
            serial = getattr(d, "serialNumber", "") or str(d)
            out.append(DeviceInfo("inivation", str(name), str(serial), "events"))
        return out

    def open(self) -> None:
        if self._open:
            return
        dv = _dv()
        serial = self.config.serial
        try:
            cam = dv.io.camera.open(serial) if serial else dv.io.camera.open()
        except (IndexError, RuntimeError) as e:
            if serial:
                msg = f"No iniVation camera with serial {serial}"
            else:
                msg = "No iniVation camera found"
            raise SourceError(
                f"{msg}: check the USB cable and the udev rules (dv-processing's "
                "'65-inivation.rules'), and that DV is not holding it; "
                "'slomo-rig devices' lists what is visible."
            ) from e
        self._cam = cam
        self.name = cam.getCameraName()
        res = cam.getEventResolution()
        if res is None:
            raise SourceError(f"iniVation camera {self.name} has no event stream")
        self.resolution = (int(res[0]), int(res[1]))
        self._configure(dv)
        self._open = True

    def _call(self, name: str, *args) -> None:
        fn = getattr(self._cam, name, None)
        if fn is None:
            raise SourceError(f"{self.name} has no setting {name[3:]!r}: remove it from the config")
        try:
            fn(*args)
        except (TypeError, RuntimeError, ValueError) as e:
            raise SourceError(f"{self.name}: {name}{args} failed: {e}") from e

    def _configure(self, dv) -> None:
        cfg = self.config
        for name, value in cfg.biases.items():
            self._call("set" + name, value)
        if cfg.detect_triggers:
            self._call("setDetectorRisingEdges", True)
            self._call("setDetectorFallingEdges", False)
            self._call("setDetectorRunning", True)
        if cfg.generator_high_us is not None:
            self._call(
                "setGeneratorHighTime", datetime.timedelta(microseconds=cfg.generator_high_us)
            )
            self._call("setGeneratorLowTime", datetime.timedelta(microseconds=cfg.generator_low_us))
            self._call("setGeneratorRunning", True)

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        if not self._open:
            raise SourceError("the iniVation camera is not open: call open() first")
        dv = _dv()
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._cam.isRunning():
                raise SourceError(
                    f"the iniVation camera {self.name} stopped (unplugged?): reconnect it and "
                    "restart the recording"
                )
            ev = self._cam.getNextEventBatch()
            tr = self._cam.getNextTriggerBatch() if self._cam.isTriggerStreamAvailable() else None
            if ev is not None or tr is not None:
                events = _store_to_batch(ev) if ev is not None else EventBatch.empty()
                triggers = _rising(dv, tr) if tr is not None else np.empty(0, np.int64)
                return EventSlice(events, triggers)
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL_S)

    def close(self) -> None:
        self._cam = None  # dv closes the device when the object goes
        self._open = False


def _connect(dv, host: str, port: int, what: str):
    try:
        return dv.io.NetworkReader(host, int(port))
    except RuntimeError as e:
        raise SourceError(
            f"Cannot connect to the DV {what} stream at {host}:{port} ({e}). Is DV running "
            f"with a network output (TCP server) for {what} on that port?"
        ) from e


class DvNetworkEventSource(EventSource):
    """Events (and, on a second port, triggers) from a live DV network stream."""

    backend = "dv-network"

    def __init__(self, host: str = "127.0.0.1", port: int = 7777, trigger_port: int | None = None):
        super().__init__()
        self.host, self.port, self.trigger_port = host, port, trigger_port
        self.resolution = (0, 0)
        self.camera_name = ""
        self._ev: Any = None
        self._tr: Any = None

    def open(self) -> None:
        if self._open:
            return
        dv = _dv()
        self._ev = _connect(dv, self.host, self.port, "events")
        if not self._ev.isEventStreamAvailable():
            raise SourceError(
                f"The DV stream at {self.host}:{self.port} carries no events; point 'port' at "
                "the events output."
            )
        res = self._ev.getEventResolution()
        self.resolution = (int(res[0]), int(res[1]))
        self.camera_name = self._ev.getCameraName()
        if self.trigger_port is not None:
            self._tr = _connect(dv, self.host, self.trigger_port, "triggers")
            if not self._tr.isTriggerStreamAvailable():
                raise SourceError(
                    f"The DV stream at {self.host}:{self.trigger_port} carries no triggers; "
                    "point 'trigger_port' at the triggers output."
                )
        self._open = True

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        if not self._open:
            raise SourceError("the DV network source is not open: call open() first")
        dv = _dv()
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self._ev.getNextEventBatch()
            tr = self._tr.getNextTriggerBatch() if self._tr is not None else None
            if ev is not None or tr is not None:
                return EventSlice(
                    _store_to_batch(ev) if ev is not None else EventBatch.empty(),
                    _rising(dv, tr) if tr is not None else np.empty(0, np.int64),
                )
            for reader, port in ((self._ev, self.port), (self._tr, self.trigger_port)):
                if reader is not None and not reader.isRunning():
                    raise SourceError(
                        f"The DV stream at {self.host}:{port} closed (DV stopped or the "
                        "camera was unplugged): restart it and the recording."
                    )
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL_S)

    def close(self) -> None:
        self._ev = self._tr = None
        self._open = False


class DvNetworkFrameSource(FrameSource):
    """Frames from a live DV network stream (e.g. a DAVIS's APS frames). Timestamps are
    the DV camera's clock; exposure from the frame when it has one."""

    backend = "dv-network"

    def __init__(self, host: str = "127.0.0.1", port: int = 7778):
        super().__init__()
        self.host, self.port = host, port
        self.resolution = (0, 0)
        self._r: Any = None
        self._index = 0

    def open(self) -> None:
        if self._open:
            return
        self._r = _connect(_dv(), self.host, self.port, "frames")
        if not self._r.isFrameStreamAvailable():
            raise SourceError(
                f"The DV stream at {self.host}:{self.port} carries no frames; point 'port' "
                "at the frames output."
            )
        res = self._r.getFrameResolution()
        self.resolution = (int(res[0]), int(res[1]))
        self._open = True

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        if not self._open:
            raise SourceError("the DV frame source is not open: call open() first")
        deadline = time.monotonic() + timeout_s
        while True:
            f = self._r.getNextFrame()
            if f is not None:
                img = f.image
                if img.ndim == 2:
                    img = np.repeat(img[:, :, None], 3, axis=2)
                elif img.shape[2] == 3:
                    img = np.ascontiguousarray(img[:, :, ::-1])  # dv frames are BGR
                else:
                    img = np.ascontiguousarray(img[:, :, 2::-1])  # BGRA
                exposure = int(f.exposure.total_seconds() * 1e6) if f.exposure else 0
                frame = Frame(
                    img.astype(np.uint8, copy=False), self._index, int(f.timestamp), exposure
                )
                self._index += 1
                return frame
            if not self._r.isRunning():
                raise SourceError(
                    f"The DV frame stream at {self.host}:{self.port} closed: restart DV and "
                    "the recording."
                )
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL_S)

    def close(self) -> None:
        self._r = None
        self._open = False
