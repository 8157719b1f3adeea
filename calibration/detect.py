"""Checkerboard corner detection with a fixed corner order.

OpenCV may return the corners of a checkerboard starting from either end. Our boards have an odd
number of inner-corner columns and an even number of rows (or the reverse), so the pattern is not
symmetric under a half turn: the square diagonally outside the first corner is black on the
printed board. We read that square's brightness and reverse the order when it is white, so corner
i is always object point i; hand-eye calibration needs that consistency across views.
"""

from __future__ import annotations

import cv2
import numpy as np

from .board import Checkerboard


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _outer_square_brightness(gray: np.ndarray, corners: np.ndarray, columns: int) -> float:
    first, along_row, along_column = corners[0], corners[1], corners[columns]
    centre = first - 0.5 * (along_row - first) - 0.5 * (along_column - first)
    x, y = int(round(centre[0])), int(round(centre[1]))
    if not (0 <= x < gray.shape[1] and 0 <= y < gray.shape[0]):
        return float("nan")
    return float(gray[y, x])


def detect_corners(image: np.ndarray, board: Checkerboard) -> np.ndarray | None:
    """(N, 2) float32 sub-pixel corner positions in object-point order, or None if not found."""
    gray = _to_gray(image)
    found, corners = cv2.findChessboardCornersSB(gray, board.inner_corners,
                                                 flags=cv2.CALIB_CB_ACCURACY | cv2.CALIB_CB_EXHAUSTIVE)
    if not found:
        return None
    corners = corners.reshape(-1, 2)
    columns, rows = board.inner_corners
    if (columns + rows) % 2 == 1:  # half-turn asymmetric: the order can be made unique
        start = _outer_square_brightness(gray, corners, columns)
        end = _outer_square_brightness(gray, corners[::-1], columns)
        if np.isnan(start) or (not np.isnan(end) and start > end):
            corners = corners[::-1].copy()
    return corners.astype(np.float32)
