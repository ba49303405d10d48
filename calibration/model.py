"""The calibration the pipeline consumes: both cameras, the rig geometry, and how events
are mapped into the RGB grid. One object, whichever file it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.align import MappingSpec, build_map, homography, map_event_points, parallax_px
from calibration.board import BoardSpec
from calibration.camera import CameraModel
from calibration.mapping import EventToFrameMap

RIG_TYPES = ("beam_splitter", "side_by_side")


@dataclass
class Calibration:
    """r, t: X_event = R X_rgb + T (OpenCV's stereoCalibrate convention, RGB first);
    DV's JSON stores the inverse, the event camera's transformationToC0."""

    rgb: CameraModel
    events: CameraModel
    r: np.ndarray
    t: np.ndarray
    rig_type: str = "beam_splitter"
    mapping: MappingSpec = field(default_factory=MappingSpec)
    board: BoardSpec | None = None
    stereo_rms_px: float = float("nan")
    path: Path | None = None  # the file it was loaded from or saved to
    lut: EventToFrameMap | None = field(default=None, repr=False)

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.t))

    def event_to_frame_map(self) -> EventToFrameMap:
        """The per-event-pixel lookup into the RGB grid (loaded or computed once)."""
        if self.lut is None:
            self.lut = build_map(self.events, self.rgb, self.r, self.t, self.mapping)
        return self.lut

    def map_points(self, uv: np.ndarray, depth_m: float | None = None) -> np.ndarray:
        """Sub-pixel event positions -> RGB pixels, on the mapping's surface unless a
        depth is given (verification uses this for exact corner positions)."""
        d = depth_m if depth_m is not None else self.mapping.depth_m
        if depth_m is None and self.mapping.method == "infinite":
            d = None
        return map_event_points(self.events, self.rgb, self.r, self.t, uv, d)

    def homography(self) -> np.ndarray:
        """Event->RGB homography between undistorted grids (for tools that want one)."""
        return homography(self.events, self.rgb, self.r, self.t, self.mapping)

    def expected_parallax_px(self, depth_m: float) -> float:
        return parallax_px(self.rgb, self.t, self.mapping, depth_m)

    def parallax_table(self, depths_m=(0.5, 1.0, 2.0, 5.0, 10.0, float("inf"))):
        return [(d, self.expected_parallax_px(d)) for d in depths_m]

    def digest(self) -> str:
        """Fingerprint of everything the lookup table depends on, at file precision, so a
        table saved for a different calibration is recognised."""
        parts = [
            self.rgb.size,
            self.events.size,
            self.rgb.k,
            self.rgb.dist,
            self.events.k,
            self.events.dist,
            self.r,
            self.t,
            self.mapping.label,
        ]
        text = "|".join(
            " ".join(f"{v:.4g}" for v in np.ravel(p)) if not isinstance(p, str) else p
            for p in parts
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]
