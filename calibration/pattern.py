"""The blinking checkerboard for the event camera, shown full screen on a monitor: the
event camera only sees what changes, so the board must blink for it to appear."""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.errors import CalibrationError

WINDOW = "slomo-rig calibration pattern"


def pattern_image(board: BoardSpec, size: tuple[int, int] = (1920, 1080)) -> np.ndarray:
    """The board (cols+1 x rows+1 squares) centred with a white margin, grey uint8."""
    w, h = size
    nx, ny = board.cols + 1, board.rows + 1
    sq = int(min(w / (nx + 2), h / (ny + 2)))
    img = np.full((h, w), 255, np.uint8)
    x0, y0 = (w - nx * sq) // 2, (h - ny * sq) // 2
    for j in range(ny):
        for i in range(nx):
            if (i + j) % 2 == 0:
                img[y0 + j * sq : y0 + (j + 1) * sq, x0 + i * sq : x0 + (i + 1) * sq] = 0
    return img


def display_available() -> str | None:
    """None when a window can be opened, else the reason it cannot."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY / WAYLAND_DISPLAY not set)"
    info = cv2.getBuildInformation()
    gui = [ln for ln in info.splitlines() if ln.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        return "this OpenCV has no GUI support (opencv-python-headless)"
    return None


class BlinkingPattern:
    """Alternates the board and a white screen every half period. Call `tick()` from the
    capture loop (it pumps the window's events and flips when due)."""

    def __init__(self, board: BoardSpec, period_s: float = 0.2) -> None:
        why = display_available()
        if why:
            raise CalibrationError(
                f"Cannot show the blinking pattern: {why}",
                "--show-pattern",
                "run on the machine with the monitor, install opencv-python (with GUI) "
                "in place of the headless build, or show the saved pattern image "
                "(calibration.pattern.pattern_image) blinking with any full-screen viewer.",
            )
        self.board_img = pattern_image(board)
        self.white = np.full_like(self.board_img, 255)
        self.half = period_s / 2
        self._last = 0.0
        self._on = False
        try:
            cv2.namedWindow(WINDOW, cv2.WND_PROP_FULLSCREEN)
            cv2.setWindowProperty(WINDOW, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        except cv2.error as e:
            raise CalibrationError(
                f"Cannot open a full-screen window ({e.err})", "--show-pattern"
            ) from None

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.half:
            self._on = not self._on
            self._last = now
            cv2.imshow(WINDOW, self.board_img if self._on else self.white)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)
