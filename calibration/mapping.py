"""Event-to-RGB mapping applied to every event on the live path.

A lookup table per event-sensor pixel gives its sub-pixel position in the RGB grid,
so mapping is two gathers and a mask: no per-event projective maths.
"""

from __future__ import annotations

import numpy as np

from rig.types import EventBatch


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
        """Events in the RGB grid (float32 x, y); events that fall outside are dropped."""
        ew, eh = self.event_size
        x = events.x.astype(np.intp)
        y = events.y.astype(np.intp)
        inside = (x >= 0) & (x < ew) & (y >= 0) & (y < eh)
        idx = np.where(inside, y * ew + x, 0)
        keep = inside & self.valid[idx]
        idx = idx[keep]
        return EventBatch(events.t[keep], self.lut_x[idx], self.lut_y[idx], events.p[keep])
