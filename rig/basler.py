"""Basler cameras through pypylon.

Frames are grabbed on pylon's own thread (an ImageEventHandler) into a bounded queue,
so a slow consumer never stalls the camera's buffers: overflow is counted and the
oldest frame dropped. Hardware features (trigger input, exposure-active output, chunk
timestamps) are set only where the camera has them; what could not be set is listed
in `notes`, because the emulator and some models lack them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.base import DeviceInfo, FrameSource, SdkMissingError, SourceError
from rig.types import Frame

PIXEL_FORMATS = (
    "RGB8",
    "BGR8",
    "Mono8",
    "Mono10",
    "Mono12",
    "Mono16",
    "BayerRG8",
    "BayerBG8",
    "BayerGR8",
    "BayerGB8",
    "BayerRG12",
    "BayerBG12",
    "BayerGR12",
    "BayerGB12",
)
TRIGGER_MODES = ("free", "software", "hardware")
# Basler names the Bayer pattern by the top-left 2x2; OpenCV by the second row's
# pixels, so each name maps to its vertical mirror (BayerRG -> COLOR_Bayer BG).
_BAYER_TO_CV = {"RG": "BG", "BG": "RG", "GR": "GB", "GB": "GR"}


def _pylon():
    try:
        from pypylon import genicam, pylon
    except ImportError as e:
        raise SdkMissingError(
            "basler",
            "pypylon",
            "Install it with: pip install pypylon (it bundles the pylon runtime).",
        ) from e
    return pylon, genicam


@dataclass
class BaslerConfig:
    """What to set on the camera. Sizes in pixels, times in µs, gain in dB.

    roi: (offset_x, offset_y, width, height) or None for the full sensor.
    trigger: "free" (camera runs at frame_rate), "software" (`trigger()` fires each
    frame) or "hardware" (FrameStart on trigger_line).
    sync_output_line: line that carries ExposureActive to the event camera, or None.
    queue_size: frames held for the reader; when full the oldest is dropped (counted).
    grab_strategy: "one_by_one" (never lose buffered frames) or "latest" (live preview).
    """

    serial: str | None = None
    pixel_format: str = "RGB8"
    roi: tuple[int, int, int, int] | None = None
    exposure_us: float = 2000.0
    gain_db: float | None = None
    frame_rate: float | None = None
    trigger: str = "free"
    trigger_line: str = "Line1"
    sync_output_line: str | None = "Line2"
    chunk_timestamps: bool = True
    queue_size: int = 64
    grab_strategy: str = "one_by_one"
    num_buffers: int = 16
    emulator_image_dir: str | None = None

    def __post_init__(self) -> None:
        if self.pixel_format not in PIXEL_FORMATS:
            raise ValueError(
                f"BaslerConfig.pixel_format must be one of {PIXEL_FORMATS}, got {self.pixel_format!r}"
            )
        if self.roi is not None:
            try:
                roi = tuple(int(v) for v in self.roi)
            except (TypeError, ValueError):
                raise ValueError(f"BaslerConfig.roi must be 4 integers, got {self.roi!r}") from None
            if len(roi) != 4 or roi[0] < 0 or roi[1] < 0 or roi[2] < 1 or roi[3] < 1:
                raise ValueError(
                    "BaslerConfig.roi must be (offset_x >= 0, offset_y >= 0, width >= 1, "
                    f"height >= 1), got {self.roi!r}"
                )
            self.roi = roi  # type: ignore[assignment]
        if not (1 <= self.exposure_us <= 10_000_000):
            raise ValueError(
                f"BaslerConfig.exposure_us must be in [1, 1e7], got {self.exposure_us}"
            )
        if self.gain_db is not None and not (0 <= self.gain_db <= 48):
            raise ValueError(f"BaslerConfig.gain_db must be in [0, 48] dB, got {self.gain_db}")
        if self.frame_rate is not None and not (0 < self.frame_rate <= 10_000):
            raise ValueError(
                f"BaslerConfig.frame_rate must be in (0, 10000], got {self.frame_rate}"
            )
        if self.trigger not in TRIGGER_MODES:
            raise ValueError(
                f"BaslerConfig.trigger must be one of {TRIGGER_MODES}, got {self.trigger!r}"
            )
        if self.queue_size < 1 or self.num_buffers < 1:
            raise ValueError("BaslerConfig.queue_size and num_buffers must be >= 1")
        if self.grab_strategy not in ("one_by_one", "latest"):
            raise ValueError(
                f"BaslerConfig.grab_strategy must be 'one_by_one' or 'latest', got {self.grab_strategy!r}"
            )


def to_rgb(array: np.ndarray, pixel_format: str) -> np.ndarray:
    """Camera buffer -> HxWx3 uint8 RGB (deeper formats are scaled down to 8 bits)."""
    import cv2

    bits = 8
    for b in (16, 12, 10):
        if pixel_format.endswith(str(b)):
            bits = b
            break
    if bits > 8:
        array = (array >> (bits - 8)).astype(np.uint8)
    if pixel_format.startswith("Mono"):
        return np.repeat(array[:, :, None], 3, axis=2)
    if pixel_format.startswith("Bayer"):
        code = getattr(cv2, f"COLOR_Bayer{_BAYER_TO_CV[pixel_format[5:7]]}2BGR")
        return cv2.cvtColor(cv2.cvtColor(array, code), cv2.COLOR_BGR2RGB)
    if pixel_format.startswith("BGR"):
        return np.ascontiguousarray(array[:, :, ::-1])
    return array


def _pfnc_name(fmt: str, symbolics: tuple[str, ...]) -> str:
    """Our names follow PFNC (RGB8); older cameras and the emulator say RGB8Packed."""
    for cand in (fmt, fmt + "Packed"):
        if cand in symbolics:
            return cand
    raise SourceError(
        f"The Basler camera does not offer pixel format {fmt}; it offers {', '.join(symbolics)}."
    )


class BaslerFrameSource(FrameSource):
    """A Basler camera. Timestamps are the camera's clock (chunk or GrabResult
    timestamp) in µs, or the host's monotonic clock when the camera gives none
    (`timestamp_source` says which)."""

    backend = "basler"

    def __init__(self, config: BaslerConfig | None = None) -> None:
        super().__init__()
        self.config = config or BaslerConfig()
        self.notes: list[str] = []
        self.timestamp_source = "none"
        self.resolution = (0, 0)
        self.model = ""
        self.serial = ""
        self._cam: Any = None
        self._handler: Any = None
        self._queue: queue.Queue = queue.Queue(maxsize=self.config.queue_size)
        self._lock = threading.Lock()
        self._error: str | None = None
        self._tick_ns = 1.0
        self._pixel_format = self.config.pixel_format
        self._exposure_us = int(round(self.config.exposure_us))
        self.driver_skipped = 0
        self.queue_overflow = 0
        self.failed_grabs = 0
        self.frames_grabbed = 0

    # -- discovery -------------------------------------------------------------------
    @classmethod
    def find(cls) -> list[DeviceInfo]:
        pylon, _ = _pylon()
        out = []
        for d in pylon.TlFactory.GetInstance().EnumerateDevices():
            note = "emulated" if d.GetDeviceClass() == "BaslerCamEmu" else d.GetDeviceClass()
            out.append(DeviceInfo("basler", d.GetModelName(), d.GetSerialNumber(), "frames", note))
        return out

    # -- open ------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        pylon, genicam = _pylon()
        tlf = pylon.TlFactory.GetInstance()
        devices = tlf.EnumerateDevices()
        if not devices:
            hint = (
                " (PYLON_CAMEMU is set, but it must be set before pypylon is first used)"
                if os.environ.get("PYLON_CAMEMU")
                else ""
            )
            raise SourceError(
                "No Basler camera found" + hint + ": check the USB3/GigE cable and power, "
                "and that no other program (pylon Viewer) holds the camera; "
                "'slomo-rig devices' lists what is visible."
            )
        if self.config.serial:
            match = [d for d in devices if d.GetSerialNumber() == self.config.serial]
            if not match:
                seen = ", ".join(d.GetSerialNumber() for d in devices)
                raise SourceError(
                    f"No Basler camera with serial {self.config.serial}; found: {seen}. "
                    "Fix 'serial' in the rig configuration."
                )
            dev_info = match[0]
        else:
            dev_info = devices[0]
        try:
            cam = pylon.InstantCamera(tlf.CreateDevice(dev_info))
            cam.Open()
        except genicam.GenericException as e:
            raise SourceError(
                f"Could not open Basler camera {dev_info.GetSerialNumber()}: {e}. "
                "Is another program using it?"
            ) from e
        self._cam = cam
        self.model = dev_info.GetModelName()
        self.serial = dev_info.GetSerialNumber()
        try:
            self._configure(genicam)
            self._start(pylon)
        except BaseException:
            self._teardown()
            raise
        self._open = True

    # -- node helpers ----------------------------------------------------------------
    def _node(self, name: str):
        from pypylon import genicam

        try:
            node = self._cam.GetNodeMap().GetNode(name)
        except genicam.GenericException:
            return None
        if node is None or not genicam.IsAvailable(node):
            return None
        return node

    def _set(self, name: str, value: Any, required: bool = False) -> bool:
        from pypylon import genicam

        node = self._node(name)
        if node is None or not genicam.IsWritable(node):
            msg = f"{name} is not available on {self.model} {self.serial}"
            if required:
                raise SourceError(msg + ": this camera cannot do what the configuration asks.")
            self.notes.append(msg)
            return False
        try:
            node.SetValue(value)
        except genicam.GenericException as e:
            raise SourceError(f"Could not set {name}={value!r} on the Basler camera: {e}") from e
        return True

    def _configure(self, genicam) -> None:
        cfg = self.config
        cam = self._cam
        if cfg.emulator_image_dir is not None:
            self._set("TestImageSelector", "Off", required=True)
            self._set("ImageFileMode", "On", required=True)
            self._set("ImageFilename", str(cfg.emulator_image_dir), required=True)
        # Pixel format and ROI first: they bound what the rest may be.
        fmt_node = self._node("PixelFormat")
        self._pixel_format = cfg.pixel_format
        if fmt_node is not None:
            self._set("PixelFormat", _pfnc_name(cfg.pixel_format, fmt_node.GetSymbolics()))
        if cfg.roi is not None:
            ox, oy, w, h = cfg.roi
            wmax, hmax = cam.WidthMax.Value, cam.HeightMax.Value
            if ox + w > wmax or oy + h > hmax:
                raise SourceError(
                    f"ROI {cfg.roi} does not fit the sensor ({wmax}x{hmax}); "
                    "shrink it in the rig configuration."
                )
            self._set("OffsetX", 0)
            self._set("OffsetY", 0)
            try:
                cam.Width.Value = w
                cam.Height.Value = h
            except genicam.GenericException as e:
                raise SourceError(
                    f"ROI size {w}x{h} rejected by the camera ({e}); widths and heights "
                    f"must be multiples of {cam.Width.Inc}x{cam.Height.Inc}."
                ) from e
            self._set("OffsetX", ox)
            self._set("OffsetY", oy)
        self.resolution = (int(cam.Width.Value), int(cam.Height.Value))
        # Exposure: ExposureTime (SFNC) or ExposureTimeAbs (older GigE).
        self._set("ExposureAuto", "Off")
        if not self._set("ExposureTime", float(cfg.exposure_us)):
            self._set("ExposureTimeAbs", float(cfg.exposure_us), required=True)
        self._exposure_us = int(round(cfg.exposure_us))
        if cfg.gain_db is not None:
            self._set("GainAuto", "Off")
            if not self._set("Gain", float(cfg.gain_db)):
                self.notes.append("gain not set (camera has no Gain in dB)")
        if cfg.frame_rate is not None:
            self._set("AcquisitionFrameRateEnable", True)
            if not self._set("AcquisitionFrameRate", float(cfg.frame_rate)):
                self._set("AcquisitionFrameRateAbs", float(cfg.frame_rate))
        else:
            self._set("AcquisitionFrameRateEnable", False)
        # Trigger input.
        self._set("TriggerSelector", "FrameStart")
        if cfg.trigger == "free":
            self._set("TriggerMode", "Off")
        else:
            source = "Software" if cfg.trigger == "software" else cfg.trigger_line
            self._set("TriggerMode", "On", required=True)
            self._set("TriggerSource", source, required=True)
            if cfg.trigger == "hardware":
                self._set("TriggerActivation", "RisingEdge")
        # Exposure-active output to the event camera's trigger input.
        if cfg.sync_output_line:
            if self._set("LineSelector", cfg.sync_output_line):
                self._set("LineMode", "Output")
                self._set("LineSource", "ExposureActive")
        # Timestamps: chunk timestamps, where they work; otherwise GrabResult.TimeStamp,
        # and if that is 0 (emulator) the host's monotonic clock.
        self.timestamp_source = "grab_result"
        if cfg.chunk_timestamps and self.model != "Emulation":
            if (
                self._set("ChunkModeActive", True)
                and self._set("ChunkSelector", "Timestamp")
                and self._set("ChunkEnable", True)
            ):
                self.timestamp_source = "chunk"
        freq = self._node("GevTimestampTickFrequency")
        if freq is not None and genicam.IsReadable(freq):
            self._tick_ns = 1e9 / float(freq.GetValue())
        cam.MaxNumBuffer.Value = self.config.num_buffers

    # -- grabbing --------------------------------------------------------------------
    def _start(self, pylon) -> None:
        source = self

        class _Handler(pylon.ImageEventHandler):
            def OnImageGrabbed(self, camera, result) -> None:  # noqa: N802 (pylon API)
                source._on_grabbed(result)

            def OnImagesSkipped(self, camera, count) -> None:  # noqa: N802
                with source._lock:
                    source.driver_skipped += int(count)

        class _Removal(pylon.ConfigurationEventHandler):
            def OnCameraDeviceRemoved(self, camera) -> None:  # noqa: N802
                source._error = (
                    f"the Basler camera {source.serial} was disconnected: check its cable"
                )

        self._handler = _Handler()
        self._removal = _Removal()
        self._cam.RegisterImageEventHandler(
            self._handler, pylon.RegistrationMode_ReplaceAll, pylon.Cleanup_None
        )
        self._cam.RegisterConfiguration(
            self._removal, pylon.RegistrationMode_Append, pylon.Cleanup_None
        )
        strategy = (
            pylon.GrabStrategy_OneByOne
            if self.config.grab_strategy == "one_by_one"
            else pylon.GrabStrategy_LatestImageOnly
        )
        self._cam.StartGrabbing(strategy, pylon.GrabLoop_ProvidedByInstantCamera)

    def _on_grabbed(self, result) -> None:
        """Runs on pylon's thread: copy the image out and return quickly."""
        try:
            if not result.GrabSucceeded():
                with self._lock:
                    self.failed_grabs += 1
                return
            skipped = int(result.NumberOfSkippedImages)
            ts = self._timestamp_us(result)
            image = to_rgb(result.Array, self._pixel_format)
            index = int(result.ImageNumber) - 1
        except Exception as e:  # never let an exception escape into pylon's thread
            self._error = f"grabbing failed: {e}"
            return
        frame = Frame(image, index, ts, self._exposure_us)
        with self._lock:
            self.frames_grabbed += 1
            # OnImagesSkipped reports the same skips in callback mode; count once.
            if skipped and self.config.grab_strategy == "one_by_one":
                self.driver_skipped += skipped
            while True:
                try:
                    self._queue.put_nowait(frame)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.queue_overflow += 1
                    except queue.Empty:
                        pass

    def _timestamp_us(self, result) -> int:
        if self.timestamp_source == "chunk":
            try:
                return int(result.ChunkTimestamp.Value * self._tick_ns) // 1000
            except Exception:
                self.timestamp_source = "grab_result"
        if self.timestamp_source == "grab_result":
            ts = int(result.TimeStamp)
            if ts:
                return int(ts * self._tick_ns) // 1000
            self.timestamp_source = "host"
            self.notes.append(
                "the camera gives no timestamps (GrabResult.TimeStamp is 0): using the host's "
                "monotonic clock at frame arrival, which adds transfer jitter; wire the "
                "trigger for accurate sync"
            )
        return time.monotonic_ns() // 1000

    # -- FrameSource -----------------------------------------------------------------
    def trigger(self, timeout_s: float = 1.0) -> None:
        """Fire one frame in software-trigger mode."""
        if self.config.trigger != "software":
            raise SourceError("trigger() needs BaslerConfig(trigger='software')")
        self._check_alive()
        pylon, genicam = _pylon()
        try:
            if self._cam.WaitForFrameTriggerReady(
                int(timeout_s * 1000), pylon.TimeoutHandling_Return
            ):
                self._cam.ExecuteSoftwareTrigger()
            else:
                raise SourceError("the Basler camera was not ready for a trigger in time")
        except genicam.GenericException as e:
            raise SourceError(
                f"software trigger failed: {e}; is the camera still connected?"
            ) from e

    def _check_alive(self) -> None:
        if not self._open:
            raise SourceError("the Basler camera is not open: call open() first")
        if self._error is None and self._cam is not None:
            try:
                alive = self._cam.IsOpen() and self._cam.IsGrabbing()
                if alive and self._cam.IsCameraDeviceRemoved():
                    self._error = f"the Basler camera {self.serial} was disconnected"
                elif not alive:
                    self._error = f"the Basler camera {self.serial} was closed or stopped grabbing"
            except Exception as e:
                self._error = f"the Basler camera {self.serial} is gone ({e})"
        if self._error is not None and self._queue.empty():
            raise SourceError(
                f"{self._error}. Frames up to here were delivered; reconnect and restart "
                "the recording."
            )

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            try:
                return self._queue.get(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None

    @property
    def skipped_frames(self) -> int:
        return self.driver_skipped + self.queue_overflow + self.failed_grabs

    def stats(self) -> dict:
        return {
            "model": self.model,
            "serial": self.serial,
            "frames_grabbed": self.frames_grabbed,
            "driver_skipped": self.driver_skipped,
            "queue_overflow": self.queue_overflow,
            "failed_grabs": self.failed_grabs,
            "timestamp_source": self.timestamp_source,
            "notes": list(self.notes),
        }

    def _teardown(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            if cam.IsGrabbing():
                cam.StopGrabbing()
            if self._handler is not None:
                cam.DeregisterImageEventHandler(self._handler)
            cam.Close()
            cam.DestroyDevice()
        except Exception:
            pass  # closing a vanished camera must not raise

    def close(self) -> None:
        self._teardown()
        self._open = False
