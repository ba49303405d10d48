"""The official TimeLens tool's folder layout, also used by HS-ERGB and BS-ERGB:

    SEQ/images/*.png + SEQ/images/timestamp.txt (one time per image)
    SEQ/events/%06d.npz   (keys x, y, t, p; one file per interval)

HS-ERGB names the folders images_corrected / events_aligned and stores x, y as floats
scaled by 32 (sub-pixel positions); BS-ERGB uses scaled integers. The events are
already aligned to the images. Which file holds which interval, the coordinate scale
and the time unit are found from the data (the first intervals with events) and can be
overridden; what was chosen goes into the replay summary.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inputs.base import (
    FileEventSource,
    Gap,
    InputError,
    Keyframe,
    MissingEvents,
    ReplaySource,
    file_fingerprint,
)
from pipeline.inputs.pair import list_images, read_timestamps_file
from pipeline.intervals import as_grid
from rig.types import EventBatch

IMAGE_DIRS = ("images", "images_corrected")
EVENT_DIRS = ("events", "events_aligned")
TIMESTAMP_FILES = ("timestamp.txt", "timestamps.txt")
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)  # file detection needs only times and indices


def find_layout(path: Path) -> tuple[Path, Path, Path] | None:
    """(images folder, events folder, timestamps file) if path is such a sequence."""
    if not path.is_dir():
        return None
    imgs = next((path / d for d in IMAGE_DIRS if (path / d).is_dir()), None)
    evs = next((path / d for d in EVENT_DIRS if (path / d).is_dir()), None)
    if imgs is None or evs is None:
        return None
    for folder in (imgs, path):
        for name in TIMESTAMP_FILES:
            if (folder / name).is_file():
                return imgs, evs, folder / name
    raise InputError(
        f"{path} looks like a TimeLens sequence ({imgs.name}/ and {evs.name}/) but has no "
        f"timestamp.txt in {imgs.name}/ or in the folder itself"
    )


class TimeLensFolderSource(ReplaySource):
    kind = "timelens-folder"

    def __init__(
        self,
        path: Path,
        coord_scale: float | None = None,
        timestamps_unit: str = "auto",
        file_offset: int | None = None,
    ) -> None:
        super().__init__(path)
        layout = find_layout(path)
        if layout is None:
            raise InputError(f"{path} is not a TimeLens folder (images/ + events/)")
        self.images_dir, self.events_dir, self.timestamps_path = layout
        self.images = list_images(self.images_dir)
        if not self.images:
            raise InputError(f"{self.images_dir} holds no images")
        self.times, self.unit = read_timestamps_file(self.timestamps_path, timestamps_unit)
        if len(self.times) != len(self.images) and not all(f.stem.isdigit() for f in self.images):
            self.problem(
                "timestamp_count",
                f"{len(self.times)} timestamps for {len(self.images)} images: only the first "
                f"{min(len(self.times), len(self.images))} are used",
            )
        import cv2

        first = None
        for f in self.images[:10]:
            first = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if first is not None:
                break
        if first is None:
            raise InputError(f"the first images in {self.images_dir} cannot be read")
        self.frame_size = (first.shape[1], first.shape[0])
        self.coord_scale = coord_scale
        self.coord_scale_given = coord_scale is not None
        self.time_factor: float | None = None
        self.file_offset = file_offset
        self.events_read = 0
        self.events_outside = 0  # in a file but outside its interval (per-interval reading)
        self._stream: FileEventSource | None = None

    # -- keyframes -----------------------------------------------------------------
    def _indexed_images(self) -> list[tuple[int, Path | None]]:
        """(timestamp index, image file or None when missing). Numbered file names
        (000000.png ...) give the index, so a missing file shifts nothing; other
        names are taken in sorted order."""
        stems = [f.stem for f in self.images]
        if all(s.isdigit() for s in stems):
            nums = [int(s) for s in stems]
            base = 1 if max(nums) >= len(self.times) and min(nums) >= 1 else 0
            by_index = {n - base: f for n, f in zip(nums, self.images, strict=True)}
            return [(i, by_index.get(i)) for i in range(len(self.times))]
        return list(enumerate(self.images[: len(self.times)]))

    def keyframes(self) -> Iterator[Keyframe]:
        import cv2

        w, h = self.frame_size
        for i, f in self._indexed_images():
            if f is None:
                self.problem(
                    "missing_frame", f"image {i} is missing from {self.images_dir.name}/", frame=i
                )
                continue
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                self.problem("unreadable_frame", f"{f.name} cannot be read: dropped", frame=i)
                continue
            if img.shape[:2] != (h, w):
                self.problem("frame_size", f"{f.name} is not {w}x{h}: dropped", frame=i)
                continue
            yield Keyframe(i, img[:, :, ::-1].copy(), int(self.times[i]))

    def expected_keyframes(self) -> int | None:
        return min(len(self.images), len(self.times))

    # -- events --------------------------------------------------------------------
    def _file(self, n: int) -> Path:
        return self.events_dir / f"{n:06d}.npz"

    def _load(self, n: int) -> dict[str, np.ndarray]:
        path = self._file(n)
        if not path.exists():
            raise MissingEvents(f"events file {path.name} is missing")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("x", "y", "t", "p") if k not in z.files]
                if missing:
                    raise MissingEvents(f"events file {path.name} has no {', '.join(missing)}")
                d = {k: np.asarray(z[k]).ravel() for k in ("x", "y", "t", "p")}
        except MissingEvents:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise MissingEvents(
                f"events file {path.name} is unreadable ({type(exc).__name__}: {exc})"
            ) from None
        if not (len(d["x"]) == len(d["y"]) == len(d["t"]) == len(d["p"])):
            raise MissingEvents(f"events file {path.name}: x, y, t, p differ in length")
        return d

    def _detect(self, k0: Keyframe, k1: Keyframe) -> None:
        """File offset (file n = interval n-1 .. n, or n .. n+1) and time unit, from
        the first interval whose files hold events."""
        t0, t1 = k0.t_us, k1.t_us
        best = None
        for off in (1, 0) if self.file_offset is None else (self.file_offset,):
            try:
                d = self._load(k0.index + off)
            except MissingEvents:
                continue
            t = d["t"].astype(np.float64)
            if not len(t):
                continue
            for factor in (1.0, 1e6, 1e3, 1e-3):
                ts = t * factor
                inside = float(np.mean((ts >= t0 - 1) & (ts <= t1 + 1)))
                if best is None or inside > best[0]:
                    best = (inside, off, factor)
        if best is None:
            return
        inside, off, factor = best
        self.file_offset, self.time_factor = off, factor
        if inside < 0.5:
            self.problem(
                "event_times",
                f"events in {self._file(k0.index + off).name} do not fall between their "
                f"images' times ({t0}..{t1} µs) in any time unit tried: check timestamp.txt",
            )
        self.notes.append(
            f"events/{k0.index + off:06d}.npz holds the events after image {k0.index} "
            f"(file offset {off}); event time unit factor {factor:g} to µs"
        )

    def _scale_for(self, x: np.ndarray, y: np.ndarray) -> float:
        if self.coord_scale is None:
            w, h = self.frame_size
            mx, my = float(x.max(initial=0)), float(y.max(initial=0))
            scale = 1.0
            while (mx / scale > w or my / scale > h) and scale < 1024:
                scale *= 2
            self.coord_scale = scale
            self.notes.append(
                f"event coordinates divided by {scale:g} (detected: max x {mx:g}, max y {my:g} "
                f"for {w}x{h} images; override with --event-coord-scale)"
            )
        return self.coord_scale

    def event_source(self) -> tuple[FileEventSource, Callable[[EventBatch], EventBatch]]:
        """The files one after another as one event stream (x, y already divided by the
        coordinate scale); a missing or unreadable file is a gap of its interval's span."""
        if self._stream is None:
            self._stream = FileEventSource(self._event_chunks(), lambda: True)
        return self._stream, as_grid

    def _event_chunks(self) -> Iterator[EventBatch | Gap]:
        times = self.times
        for n in range(min(len(times), len(self.images)) - 1):
            lo, hi = sorted((int(times[n]), int(times[n + 1])))
            if self.file_offset is None or self.time_factor is None:
                self._detect(Keyframe(n, _NO_IMAGE, lo), Keyframe(n + 1, _NO_IMAGE, hi))
                if self.file_offset is None:
                    name = self._file(n + 1).name
                    yield Gap(f"no events file for the interval after image {n} ({name})", lo, hi)
                    continue
            try:
                d = self._load(n + self.file_offset)
            except MissingEvents as exc:
                yield Gap(str(exc), lo, hi)
                continue
            yield self._batch([d])

    def _batch(self, parts: list[dict[str, np.ndarray]]) -> EventBatch:
        """Events of some files in the frame grid and in µs, sorted by time."""
        assert self.time_factor is not None
        x = np.concatenate([d["x"] for d in parts]).astype(np.float64)
        y = np.concatenate([d["y"] for d in parts]).astype(np.float64)
        t = np.round(np.concatenate([d["t"] for d in parts]).astype(np.float64) * self.time_factor)
        p = np.concatenate([d["p"] for d in parts])
        if len(x):
            s = self._scale_for(x, y)
            x, y = x / s, y / s
        order = np.argsort(t, kind="stable")
        self.events_read += len(t)
        return EventBatch(
            t[order].astype(np.int64),
            x[order].astype(np.float32),
            y[order].astype(np.float32),
            (p[order] > 0).astype(np.int8),
        )

    def events(self, k0: Keyframe, k1: Keyframe) -> EventBatch:
        if self.file_offset is None or self.time_factor is None:
            self._detect(k0, k1)
            if self.file_offset is None:
                raise MissingEvents(
                    f"no events file for the interval after image {k0.index} "
                    f"({self._file(k0.index + 1).name})"
                )
        ev = self._batch([self._load(n + self.file_offset) for n in range(k0.index, k1.index)])
        inside = ev.time_slice(k0.t_us, k1.t_us)
        self.events_outside += len(ev) - len(inside)
        return inside

    def fingerprint(self) -> list[dict[str, Any]]:
        return [file_fingerprint(self.timestamps_path), {"images": len(self.images)}]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "images": str(self.images_dir),
            "events": str(self.events_dir),
            "timestamps": str(self.timestamps_path),
            "timestamps_unit": self.unit,
            "event_coord_scale": self.coord_scale,
            "event_file_offset": self.file_offset,
            "event_time_factor": self.time_factor,
            "events_read": self.events_read,
            "events_outside_their_interval": self.events_outside,
        }
