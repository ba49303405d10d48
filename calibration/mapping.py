"""Event-to-RGB mapping applied to every event on the live path.

A lookup table per event-sensor pixel gives its sub-pixel position in the RGB grid,
so mapping is two gathers and a mask: no per-event projective maths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rig.types import EventBatch

LUT_FORMAT = "slomo-rig/event-to-frame-lut/1"


class EventToFrameMap:
    def __init__(self, lut_x: np.ndarray, lut_y: np.ndarray, frame_size: tuple[int, int]) -> None:
        """lut_x/lut_y: float32 [event_h, event_w], RGB-grid position of each event pixel
        (NaN where the pixel has no valid position). frame_size: (width, height)."""
        if lut_x.shape != lut_y.shape or lut_x.ndim != 2:
            raise ValueError("lut_x and lut_y must be 2-D and equal in shape")
        w, h = frame_size
        valid = np.isfinite(lut_x) & np.isfinite(lut_y)
        valid &= (lut_x >= -0.5) & (lut_x < w - 0.5) & (lut_y >= -0.5) & (lut_y < h - 0.5)
        self.lut_x = np.where(valid, lut_x, 0).astype(np.float32).ravel()
        self.lut_y = np.where(valid, lut_y, 0).astype(np.float32).ravel()
        self.valid = valid.ravel()
        self.event_size = (lut_x.shape[1], lut_x.shape[0])
        self.frame_size = (w, h)

    @classmethod
    def identity(cls, size: tuple[int, int]) -> EventToFrameMap:
        w, h = size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return cls(xs, ys, size)

    @classmethod
    def from_homography(
        cls, h_event_to_frame: np.ndarray, event_size: tuple[int, int], frame_size: tuple[int, int]
    ) -> EventToFrameMap:
        ew, eh = event_size
        ys, xs = np.mgrid[0:eh, 0:ew].astype(np.float64)
        pts = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ np.asarray(h_event_to_frame).T
        with np.errstate(divide="ignore", invalid="ignore"):
            fx = pts[..., 0] / pts[..., 2]
            fy = pts[..., 1] / pts[..., 2]
        return cls(fx.astype(np.float32), fy.astype(np.float32), frame_size)

    def __call__(self, events: EventBatch) -> EventBatch:
        """Events in the RGB grid (float32 x, y); events that fall outside are dropped.

        int32 indices, one unsigned compare per axis and `take` keep this at several
        tens of M ev/s on one core; when every event maps (the usual case) t and p are
        passed through without copying."""
        ew, eh = self.event_size
        x = events.x.astype(np.int32)
        y = events.y.astype(np.int32)
        idx = y * np.int32(ew)
        idx += x
        inside = (x.view(np.uint32) < ew) & (y.view(np.uint32) < eh)
        all_inside = bool(inside.all())
        if not all_inside:
            np.putmask(idx, ~inside, 0)
        keep = self.valid.take(idx)
        if not all_inside:
            keep &= inside
        if keep.all():
            return EventBatch(events.t, self.lut_x.take(idx), self.lut_y.take(idx), events.p)
        idx = idx[keep]
        return EventBatch(
            events.t[keep], self.lut_x.take(idx), self.lut_y.take(idx), events.p[keep]
        )

    def luts(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D float32 tables with NaN where a pixel has no position (constructor form)."""
        ew, eh = self.event_size
        lx = np.where(self.valid, self.lut_x, np.nan).astype(np.float32).reshape(eh, ew)
        ly = np.where(self.valid, self.lut_y, np.nan).astype(np.float32).reshape(eh, ew)
        return lx, ly

    def save(self, path: str | Path) -> None:
        """An .npz the pipeline loads without recomputing the calibration geometry."""
        lx, ly = self.luts()
        with open(path, "wb") as f:
            np.savez(
                f,
                format=np.array(LUT_FORMAT),
                lut_x=lx,
                lut_y=ly,
                frame_size=np.array(self.frame_size, np.int64),
            )

    @classmethod
    def load(cls, path: str | Path) -> EventToFrameMap:
        """Raises CalibrationError naming the file when it is missing or not a LUT."""
        from calibration.errors import CalibrationError

        todo = "re-run `slomo-rig calibrate`, or delete the .npz to recompute it from the JSON."
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != LUT_FORMAT:
                    raise CalibrationError(
                        f"Unknown lookup-table format {z['format']!s}", str(path), todo
                    )
                lx, ly, fs = z["lut_x"], z["lut_y"], z["frame_size"]
        except FileNotFoundError:
            raise CalibrationError("Event-to-RGB lookup table not found", str(path), todo) from None
        except CalibrationError:
            raise
        except Exception as e:  # zip, key or format damage all mean the same to the user
            raise CalibrationError(
                f"Event-to-RGB lookup table is unreadable ({type(e).__name__}: {e})",
                str(path),
                todo,
            ) from None
        if lx.ndim != 2 or lx.shape != ly.shape or fs.shape != (2,):
            raise CalibrationError("Event-to-RGB lookup table has wrong shapes", str(path), todo)
        return cls(lx, ly, (int(fs[0]), int(fs[1])))
