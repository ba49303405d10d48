"""The calibration target: a checkerboard (inner-corner count + square size) and its
detection, shared by the RGB and the event images so both cameras see the same points."""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.errors import CalibrationError


@dataclass(frozen=True)
class BoardSpec:
    """cols x rows counts INNER corners (a board of 10x7 squares is 9x6)."""

    cols: int = 9
    rows: int = 6
    square_m: float = 0.025

    @classmethod
    def parse(cls, text: str, square_mm: float = 25.0) -> BoardSpec:
        m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text or "")
        if not m:
            raise CalibrationError(
                f"Board size '{text}' is not COLSxROWS",
                "--board",
                "give the inner-corner count, e.g. --board 9x6 for a board of 10x7 squares.",
            )
        cols, rows = int(m.group(1)), int(m.group(2))
        if cols < 3 or rows < 3 or cols == rows:
            raise CalibrationError(
                f"Board {cols}x{rows} cannot be calibrated with",
                "--board",
                "use at least 3x3 inner corners and different counts (e.g. 9x6) so the "
                "board's orientation is unambiguous.",
            )
        if not square_mm > 0:
            raise CalibrationError(f"Square size {square_mm} mm is not positive", "--square-mm")
        return cls(cols, rows, square_mm / 1000.0)

    @property
    def pattern_size(self) -> tuple[int, int]:
        return (self.cols, self.rows)

    @property
    def label(self) -> str:
        return f"{self.cols}x{self.rows}"

    def object_points(self) -> np.ndarray:
        """Inner corners on the board plane (z = 0), metres, OpenCV's row-major order."""
        gx, gy = np.meshgrid(np.arange(self.cols), np.arange(self.rows))
        pts = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])
        return (pts * self.square_m).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    corners: np.ndarray  # Nx2 float32 pixel positions, object_points() order
    sharpness_px: float  # mean edge width across the board; larger is blurrier


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def detect(image: np.ndarray, board: BoardSpec) -> Detection | None:
    """Inner corners of the board in one image, or None when the whole board is not seen.

    The sector-based detector (findChessboardCornersSB) is used because it is
    sub-pixel accurate on small, low-resolution event images as well.
    """
    gray = _gray(image)
    flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
    ok, corners = cv2.findChessboardCornersSB(gray, board.pattern_size, flags=flags)
    if not ok or corners is None:
        return None
    corners = corners.reshape(-1, 2).astype(np.float32)
    corners = _canonical_order(corners, board)
    # the sector detector is robust but leaves ~0.15 px of error; the classic gradient
    # refinement, with a window well inside one square, removes most of it
    d = np.linalg.norm(np.diff(corners.reshape(board.rows, board.cols, 2), axis=1), axis=2)
    win = int(np.clip(np.min(d) / 3.0, 2, 6))
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    refined = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2).copy(), (win, win), (-1, -1), crit)
    refined = refined.reshape(-1, 2)
    if np.abs(refined - corners).max() < 1.0:
        corners = refined
    sharp = cv2.estimateChessboardSharpness(gray, board.pattern_size, corners.reshape(-1, 1, 2))
    return Detection(corners, float(sharp[0][0]))


def _canonical_order(corners: np.ndarray, board: BoardSpec) -> np.ndarray:
    """A checkerboard is symmetric under a 180-degree turn, so a detector may return the
    corners either way round; pick the order whose first corner is top-left-most in the
    image, so two cameras seeing the same board agree on which corner is which."""
    if corners[0].sum() > corners[-1].sum():
        return corners[::-1].copy()
    return corners


def image_sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian after a light smoothing (so sensor noise does not count
    as detail): below BLURRY the image is defocused or motion-blurred. Used for advice
    when no board is found at all."""
    smooth = cv2.GaussianBlur(_gray(image), (0, 0), 1.0)
    return float(cv2.Laplacian(smooth, cv2.CV_64F).var())


BLURRY = 5.0


def guess_board_size(images: list[np.ndarray], board: BoardSpec) -> BoardSpec | None:
    """When the given size is never found, try nearby sizes, so the advice can say which
    size the images actually show (the common mistake is counting squares, not corners)."""
    cands: list[tuple[int, int]] = []
    for dc in (-1, 0, 1, -2, 2):
        for dr in (-1, 0, 1, -2, 2):
            c, r = board.cols + dc, board.rows + dr
            if (dc, dr) != (0, 0) and c >= 3 and r >= 3 and c != r:
                cands.append((c, r))
    # Largest first: a detector can lock onto part of a bigger board, never onto more
    # than is there, so the largest size found is the board's size.
    cands.sort(key=lambda cr: (-cr[0] * cr[1], abs(cr[0] - board.cols) + abs(cr[1] - board.rows)))
    for img in images[:2]:
        gray = _gray(img)
        for c, r in cands:
            ok, _ = cv2.findChessboardCorners(gray, (c, r), flags=cv2.CALIB_CB_FAST_CHECK)
            if ok:
                return BoardSpec(c, r, board.square_m)
    return None
