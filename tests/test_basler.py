"""Basler driver against pylon's camera emulator (PYLON_CAMEMU).

pylon reads PYLON_CAMEMU once, when its transport layer factory is created, so it is
set here before anything imports pypylon.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")

import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pypylon  # noqa: F401,E402  (a dev dependency: its absence must fail, not skip)
import pytest  # noqa: E402

from rig.base import SourceError  # noqa: E402
from rig.basler import BaslerConfig, BaslerFrameSource, to_rgb  # noqa: E402

W, H = 64, 48


@pytest.fixture
def image_dir(tmp_path):
    """Three distinct images; the emulator cycles the folder in sorted order."""
    rng = np.random.default_rng(0)
    imgs = []
    for i in range(3):
        rgb = rng.integers(0, 256, (H, W, 3), np.uint8)
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), rgb[:, :, ::-1])
        imgs.append(rgb)
    return tmp_path, imgs


def _read_n(src: BaslerFrameSource, n: int, timeout_s: float = 5.0) -> list:
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        f = src.read(0.5)
        if f is not None:
            out.append(f)
    return out


def test_find_lists_emulated_cameras():
    found = BaslerFrameSource.find()
    serials = {d.serial for d in found}
    assert {"0815-0000", "0815-0001"} <= serials
    assert all(d.backend == "basler" and d.kind == "frames" for d in found)


@pytest.mark.parametrize("fmt", ["RGB8", "BGR8"])
def test_rgb_round_trip_exact(image_dir, fmt):
    folder, imgs = image_dir
    cfg = BaslerConfig(
        serial="0815-0001",
        pixel_format=fmt,
        roi=(0, 0, W, H),
        exposure_us=1000,
        frame_rate=200,
        emulator_image_dir=str(folder),
    )
    with BaslerFrameSource(cfg) as src:
        assert src.resolution == (W, H)
        frames = _read_n(src, 4)
        assert src.serial == "0815-0001"
        assert src.timestamp_source == "host"  # emulator: TimeStamp is always 0
        assert any("monotonic" in n for n in src.notes)
    assert len(frames) == 4
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert f.exposure_us == 1000
        assert f.image.tolist() == imgs[f.index % 3].tolist()
    t = [f.timestamp_us for f in frames]
    assert all(b > a for a, b in zip(t, t[1:], strict=False))


def test_mono_round_trip(tmp_path):
    grey = np.tile(np.arange(W, dtype=np.uint8)[None, :] * 3, (H, 1))
    cv2.imwrite(str(tmp_path / "a.png"), grey)
    cfg = BaslerConfig(pixel_format="Mono8", roi=(0, 0, W, H), emulator_image_dir=str(tmp_path))
    with BaslerFrameSource(cfg) as src:
        (f,) = _read_n(src, 1)
    assert np.array_equal(f.image[:, :, 0], grey)
    assert np.array_equal(f.image[:, :, 0], f.image[:, :, 2])


@pytest.mark.parametrize("fmt", ["BayerRG8", "BayerBG8", "BayerGR8", "BayerGB8"])
def test_bayer_flat_colours(tmp_path, fmt):
    colours = [(200, 30, 90), (10, 220, 120)]
    for i, c in enumerate(colours):
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = c
        cv2.imwrite(str(tmp_path / f"{i}.png"), img[:, :, ::-1])
    cfg = BaslerConfig(pixel_format=fmt, roi=(0, 0, W, H), emulator_image_dir=str(tmp_path))
    with BaslerFrameSource(cfg) as src:
        frames = _read_n(src, 2)
    for f in frames:
        inner = f.image[2:-2, 2:-2].reshape(-1, 3)
        assert (inner == colours[f.index % 2]).all(), fmt


def test_to_rgb_deep_formats():
    a = np.full((4, 4), 4095, np.uint16)
    assert to_rgb(a, "Mono12").max() == 255
    assert to_rgb(np.full((4, 4), 1023, np.uint16), "Mono10")[0, 0].tolist() == [255] * 3


def test_software_trigger(image_dir):
    folder, imgs = image_dir
    cfg = BaslerConfig(
        trigger="software", roi=(0, 0, W, H), exposure_us=500, emulator_image_dir=str(folder)
    )
    with BaslerFrameSource(cfg) as src:
        assert src.read(0.3) is None  # nothing without a trigger
        got = []
        for _ in range(3):
            src.trigger()
            got.append(src.read(2.0))
        assert src.read(0.2) is None
    assert [f.index for f in got] == [0, 1, 2]
    assert got[1].image.tolist() == imgs[1].tolist()


def test_hardware_features_absent_are_reported(image_dir):
    folder, _ = image_dir
    cfg = BaslerConfig(roi=(0, 0, W, H), chunk_timestamps=True, emulator_image_dir=str(folder))
    with BaslerFrameSource(cfg) as src:
        assert src.timestamp_source in ("grab_result", "host")  # chunks never on emulator
        assert isinstance(src.stats()["notes"], list)


def test_skipped_frames_counted(image_dir):
    """A reader that cannot keep up: with 'latest' the driver reports skipped images;
    with a tiny queue the overflow is counted. Either way nothing is silent."""
    folder, _ = image_dir
    cfg = BaslerConfig(
        roi=(0, 0, W, H),
        exposure_us=100,
        frame_rate=1000,
        queue_size=2,
        num_buffers=3,
        emulator_image_dir=str(folder),
    )
    with BaslerFrameSource(cfg) as src:
        _wait_until(lambda: src.queue_overflow > 0, "the queue to overflow")
        first = src.read(1.0)
        assert first is not None
        skipped = src.skipped_frames
        assert skipped > 0 and src.queue_overflow > 0
    assert src.stats()["queue_overflow"] == src.queue_overflow


def test_skipped_images_from_driver(image_dir, monkeypatch):
    folder, _ = image_dir
    cfg = BaslerConfig(
        roi=(0, 0, W, H),
        exposure_us=100,
        frame_rate=1000,
        grab_strategy="latest",
        num_buffers=3,
        emulator_image_dir=str(folder),
    )
    src = BaslerFrameSource(cfg)
    orig = src._on_grabbed

    def slow(result):  # a slow pylon callback lets images pile up in the driver
        time.sleep(0.02)
        orig(result)

    monkeypatch.setattr(src, "_on_grabbed", slow)
    with src:
        _wait_until(lambda: src.driver_skipped > 0, "the driver to skip images")
    assert src.driver_skipped > 0
    assert src.skipped_frames >= src.driver_skipped


def _wait_until(condition, what: str, timeout_s: float = 120.0) -> None:
    """Wait on a condition, not on the machine's speed."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_unknown_serial():
    with pytest.raises(SourceError, match="No Basler camera with serial 9999.*0815-0000"):
        BaslerFrameSource(BaslerConfig(serial="9999-9999")).open()


def test_closed_mid_recording(image_dir):
    folder, _ = image_dir
    src = BaslerFrameSource(BaslerConfig(roi=(0, 0, W, H), emulator_image_dir=str(folder)))
    src.open()
    assert src.read(2.0) is not None
    src._cam.Close()  # what an unplug looks like from here: the device goes away
    with pytest.raises(SourceError, match="closed|disconnected|gone"):
        for _ in range(200):
            src.read(0.05)
    src.close()
    with pytest.raises(SourceError, match="not open"):
        src.read(0.1)


def test_roi_too_large():
    with pytest.raises(SourceError, match="does not fit"):
        BaslerFrameSource(BaslerConfig(roi=(0, 0, 100_000, 10))).open()


@pytest.mark.parametrize(
    "kw",
    [
        {"pixel_format": "YUV"},
        {"roi": (0, 0, -1, 5)},
        {"exposure_us": 0},
        {"trigger": "line"},
        {"gain_db": 99},
        {"frame_rate": 0},
    ],
)
def test_config_validation(kw):
    with pytest.raises(ValueError, match="BaslerConfig"):
        BaslerConfig(**kw)
