"""What each camera sees while calibrating, with the board detection drawn on it.

An operator who only reads "RGB 0" cannot tell a board out of view from a wrong board
size or a defocused lens; one look at the picture can. Where a display exists (and
OpenCV was built with a GUI) the picture is a window; otherwise every capture is written
as an image into the calibration folder as it happens (views/live.jpg is always the
newest), so it can be opened on another screen or over the network."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from calibration.board import Detection

PANEL_HEIGHT = 360
MAX_FILES = 500  # a long live session keeps live.jpg fresh but stops adding files here
MODES = ("auto", "window", "files", "none")
_GREEN, _RED = (40, 200, 60), (230, 50, 50)


def _panel(image: np.ndarray, det: Detection | None, title: str) -> np.ndarray:
    """One camera's picture scaled to PANEL_HEIGHT, corners joined in board order."""
    rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    scale = PANEL_HEIGHT / rgb.shape[0]
    out = cv2.resize(rgb, (max(1, int(round(rgb.shape[1] * scale))), PANEL_HEIGHT))
    colour = _GREEN if det is not None else _RED
    if det is not None:
        pts = np.round(det.corners * scale).astype(np.int32)
        cv2.polylines(out, [pts.reshape(-1, 1, 2)], False, (255, 200, 0), 1, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(out, (int(x), int(y)), 3, colour, -1, cv2.LINE_AA)
        cv2.circle(out, tuple(int(v) for v in pts[0]), 6, (255, 0, 255), 2, cv2.LINE_AA)
    label = f"{title}: {'board found' if det is not None else 'board NOT found'}"
    cv2.rectangle(out, (0, 0), (out.shape[1], 24), (0, 0, 0), -1)
    cv2.putText(out, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), colour, 2)
    return out


def capture_picture(
    rgb: np.ndarray,
    event_image: np.ndarray,
    det_rgb: Detection | None,
    det_events: Detection | None,
    caption: str,
) -> np.ndarray:
    """Both cameras side by side with their detections and a caption (RGB uint8)."""
    a = _panel(rgb, det_rgb, "RGB camera")
    b = _panel(event_image, det_events, "event camera (blink image)")
    row = np.hstack([a, np.full((PANEL_HEIGHT, 6, 3), 255, np.uint8), b])
    bar = np.full((28, row.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return np.vstack([row, bar])


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Atomic: a viewer reloading live.jpg never catches half a file."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


class LivePreview:
    """Shows each capture in a window, or writes it into `folder` (mode auto picks the
    window only when a display exists and OpenCV can open one)."""

    def __init__(self, folder: Path | None, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"preview mode must be one of {MODES}, got {mode!r}")
        self.folder = folder
        self.window = False
        self.files_written = 0
        self.note = ""
        if mode in ("auto", "window") and (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            try:
                cv2.namedWindow("slomo-rig calibrate", cv2.WINDOW_NORMAL)
                self.window = True
            except cv2.error:
                self.note = "OpenCV has no GUI here (headless build): "
        self.enabled = mode != "none" and (self.window or folder is not None)
        if self.enabled and not self.window and folder is not None:
            self.note += f"live pictures of both cameras go to {folder}/ (live.jpg is the newest)"
        elif self.window:
            self.note = "live pictures of both cameras in the window 'slomo-rig calibrate'"

    def show(self, index: int, picture: np.ndarray) -> None:
        if not self.enabled:
            return
        if self.window:
            cv2.imshow("slomo-rig calibrate", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
            return
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        write_image(self.folder / "live.jpg", picture)
        if self.files_written < MAX_FILES:
            write_image(self.folder / f"capture-{index:04d}.jpg", picture)
            self.files_written += 1

    def close(self) -> None:
        if self.window:
            cv2.destroyAllWindows()
