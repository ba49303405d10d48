"""Prophesee event cameras: live through Metavision HAL, and RAW (EVT2/EVT3) files.

Live: the Metavision SDK / OpenEB Python bindings are not on PyPI, so they are imported
only when a live camera is opened. Files: faery decodes RAW exactly; its low-level
`faery.evt.Decoder` is used because the high-level reader drops the trigger words that
carry the frame camera's exposure edges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.base import DeviceInfo, EventSource, SdkMissingError, SourceError
from rig.types import EventBatch, EventSlice

OPENEB_HINT = (
    "The Metavision SDK Python bindings are not on PyPI: install Prophesee's Metavision "
    "SDK (https://docs.prophesee.ai, apt packages metavision-*) or build OpenEB from "
    "source (https://github.com/prophesee-ai/openeb, cmake -DCOMPILE_PYTHON3_BINDINGS=ON) "
    "and put its python packages on PYTHONPATH. To replay recordings without it, use the "
    "'prophesee-raw' backend."
)


def _hal():
    try:
        import metavision_hal  # type: ignore[import-not-found]
    except ImportError as e:
        raise SdkMissingError("prophesee", "metavision_hal", OPENEB_HINT) from e
    return metavision_hal


@dataclass
class PropheseeConfig:
    """serial: "" opens the first camera. biases: name -> value (e.g. bias_diff_on),
    set through I_LL_Biases. trigger_in: enable the external trigger input (the frame
    camera's exposure-active line). erc_rate: event-rate control limit in events/s, or
    None to leave ERC off. trigger_channel: "main" (the usual sync connector) or "aux"."""

    serial: str = ""
    biases: dict[str, int] = field(default_factory=dict)
    trigger_in: bool = True
    trigger_channel: str = "main"
    erc_rate: float | None = None

    def __post_init__(self) -> None:
        if self.trigger_channel not in ("main", "aux", "loopback"):
            raise ValueError(
                f"PropheseeConfig.trigger_channel must be main, aux or loopback, got {self.trigger_channel!r}"
            )
        if self.erc_rate is not None and self.erc_rate <= 0:
            raise ValueError(f"PropheseeConfig.erc_rate must be > 0 events/s, got {self.erc_rate}")
        for k, v in self.biases.items():
            if not isinstance(v, int):
                raise ValueError(f"PropheseeConfig.biases[{k!r}] must be an integer, got {v!r}")


class PropheseeEventSource(EventSource):
    """A live Prophesee camera (EVK, Gen3/Gen4/IMX636) through Metavision HAL."""

    backend = "prophesee"

    def __init__(self, config: PropheseeConfig | None = None) -> None:
        super().__init__()
        self.config = config or PropheseeConfig()
        self.resolution = (0, 0)
        self.notes: list[str] = []
        self._device: Any = None
        self._stream: Any = None
        self._decoder: Any = None
        self._cd: list[np.ndarray] = []
        self._trig: list[np.ndarray] = []

    @classmethod
    def find(cls) -> list[DeviceInfo]:
        hal = _hal()
        return [
            DeviceInfo("prophesee", "Prophesee", str(s), "events")
            for s in hal.DeviceDiscovery.list()
        ]

    def open(self) -> None:
        if self._open:
            return
        hal = _hal()
        try:
            dev = hal.DeviceDiscovery.open(self.config.serial)
        except Exception as e:
            dev = None
            err = e
        else:
            err = None
        if dev is None:
            what = f"with serial {self.config.serial}" if self.config.serial else ""
            raise SourceError(
                f"No Prophesee camera {what} could be opened{f' ({err})' if err else ''}: "
                "check the USB cable, that the serial is right ('slomo-rig devices'), "
                "and that Metavision Studio is not holding it."
            )
        self._device = dev
        geom = dev.get_i_geometry()
        self.resolution = (int(geom.get_width()), int(geom.get_height()))
        cfg = self.config
        if cfg.biases:
            biases = dev.get_i_ll_biases()
            if biases is None:
                raise SourceError("This Prophesee camera exposes no biases; remove 'biases'.")
            known = biases.get_all_biases()
            for name, value in cfg.biases.items():
                if name not in known:
                    raise SourceError(
                        f"Unknown Prophesee bias {name!r}; this sensor has {sorted(known)}"
                    )
                if not biases.set(name, int(value)):
                    raise SourceError(f"The camera refused bias {name}={value}")
        if cfg.trigger_in:
            trig = dev.get_i_trigger_in()
            if trig is None:
                self.notes.append("this camera has no trigger input: use software sync")
            else:
                channel = getattr(trig.Channel, cfg.trigger_channel.upper())
                if not trig.enable(channel):
                    raise SourceError(f"could not enable trigger input {cfg.trigger_channel}")
        if cfg.erc_rate is not None:
            erc = dev.get_i_erc_module()
            if erc is None:
                self.notes.append("this camera has no event-rate control (ERC)")
            else:
                erc.set_cd_event_rate(int(cfg.erc_rate))
                erc.enable(True)
        self._decoder = dev.get_i_events_stream_decoder()
        cd = dev.get_i_event_cd_decoder()
        cd.add_event_buffer_callback(lambda ev: self._cd.append(ev.copy()))
        ext = dev.get_i_event_ext_trigger_decoder()
        if ext is not None:
            ext.add_event_buffer_callback(lambda ev: self._trig.append(ev.copy()))
        self._stream = dev.get_i_events_stream()
        self._stream.start()
        self._open = True

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        if not self._open:
            raise SourceError("the Prophesee camera is not open: call open() first")
        deadline = time.monotonic() + timeout_s
        while not self._cd and not self._trig:
            wait = self._stream.wait_next_buffer()
            if wait < 0:
                raise SourceError(
                    "the Prophesee camera stopped streaming (unplugged?): reconnect it and "
                    "restart the recording"
                )
            if wait > 0:
                self._decoder.decode(self._stream.get_latest_raw_data())
            if time.monotonic() >= deadline:
                break
        if not self._cd and not self._trig:
            return None
        cd, self._cd = self._cd, []
        trig, self._trig = self._trig, []
        events = EventBatch.empty()
        if cd:
            a = np.concatenate(cd)
            events = EventBatch(
                a["t"].astype(np.int64),
                a["x"].astype(np.int16),
                a["y"].astype(np.int16),
                a["p"].astype(np.int8),
            )
        rising = np.empty(0, np.int64)
        if trig:
            t = np.concatenate(trig)
            rising = t["t"][t["p"] == 1].astype(np.int64)
        return EventSlice(events, rising)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
            except Exception:
                pass
        self._stream = self._device = self._decoder = None
        self._open = False


def _faery_evt():
    try:
        import faery
    except ImportError as e:
        raise SdkMissingError("prophesee-raw", "faery") from e
    return faery.evt


class RawFileEventSource(EventSource):
    """A Prophesee RAW recording (EVT2 or EVT3) with its trigger events.

    Trigger words with `rising` set are the exposure edges (trigger_id selects the
    channel, None keeps all). A truncated file is read up to the cut, then EOFError.
    Words that cannot be decoded raise SourceError after everything before them was
    delivered; `damaged` keeps the message.
    """

    backend = "prophesee-raw"

    def __init__(
        self,
        path: str | Path,
        resolution: tuple[int, int] | None = None,
        version: str | None = None,
        trigger_id: int | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self._dims_fallback = resolution
        self._version_fallback = version
        self.trigger_id = trigger_id
        self.resolution = resolution or (0, 0)
        self.version = ""
        self.damaged: str | None = None
        self._decoder: Any = None
        self._iter: Any = None
        self._last_t = -1

    def open(self) -> None:
        if self._open:
            return
        evt = _faery_evt()
        if not self.path.is_file():
            raise SourceError(f"RAW file {self.path} does not exist (check the path).")
        with open(self.path, "rb") as fh:
            head = fh.read(2)
        if head != b"% ":
            raise SourceError(
                f"{self.path} is not a Prophesee RAW file: it has no '% ' text header "
                "(EVT2/EVT3 recordings start with one)."
            )
        try:
            self._decoder = evt.Decoder(self.path, self._dims_fallback, self._version_fallback)
            self._decoder.__enter__()
            self._iter = iter(self._decoder)
        except Exception as e:
            raise SourceError(
                f"Cannot decode {self.path} as Prophesee RAW: {e}. If the header lacks the "
                "format, pass resolution=(w, h) and version='evt3' (or 'evt2')."
            ) from e
        self.resolution = tuple(self._decoder.dimensions)  # type: ignore[assignment]
        self.version = self._decoder.version
        self._open = True

    def read(self, timeout_s: float = 1.0) -> EventSlice | None:
        if not self._open:
            raise SourceError(f"{self.path} is not open: call open() first")
        while True:
            try:
                packet = next(self._iter)
            except StopIteration:
                raise EOFError(f"end of {self.path}") from None
            except Exception as e:
                self.damaged = f"{self.path} is damaged after t={self._last_t} µs: {e}"
                raise SourceError(
                    self.damaged + ". The events before that point were delivered; "
                    "re-export the recording or cut the file before the damage."
                ) from e
            events = EventBatch.empty()
            trig = np.empty(0, np.int64)
            if "events" in packet and len(packet["events"]):
                a = packet["events"]
                events = EventBatch(
                    a["t"].astype(np.int64),
                    a["x"].astype(np.int16),
                    a["y"].astype(np.int16),
                    a["on"].astype(np.int8),
                )
                self._last_t = int(events.t[-1])
            if "triggers" in packet and len(packet["triggers"]):
                tr = packet["triggers"]
                keep = tr["rising"].astype(bool)
                if self.trigger_id is not None:
                    keep &= tr["source"] == self.trigger_id
                trig = tr["t"][keep].astype(np.int64)
            if len(events) or len(trig):
                return EventSlice(events, trig)

    def close(self) -> None:
        if self._decoder is not None:
            try:
                self._decoder.__exit__(None, None, None)
            except Exception:
                pass
        self._decoder = self._iter = None
        self._open = False


ProphesseeEventSource = PropheseeEventSource  # the spelling used in the project brief
