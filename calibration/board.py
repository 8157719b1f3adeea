"""Calibration targets: a checkerboard (OpenCV's inner-corner convention), drawable and printable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Checkerboard:
    """``inner_corners`` = (columns, rows) of inner corners; squares of ``square_m`` metres.

    Board frame: origin at the first inner corner, x along a row, y down the columns, z into the
    board (OpenCV's object-point convention)."""

    inner_corners: tuple[int, int] = (9, 6)
    square_m: float = 0.02
    margin_squares: int = 1

    @classmethod
    def parse(cls, text: str, square_m: float) -> "Checkerboard":
        """'9x6' -> 9 x 6 inner corners."""
        try:
            columns, rows = (int(v) for v in text.lower().split("x"))
        except ValueError as error:
            raise ValueError(f"board: expected COLUMNSxROWS of inner corners like '9x6', got {text!r}") from error
        return cls((columns, rows), square_m)

    def object_points(self) -> np.ndarray:
        """(N, 3) float32 corner positions in the board frame, in OpenCV's detection order."""
        columns, rows = self.inner_corners
        grid = np.mgrid[0:columns, 0:rows].T.reshape(-1, 2).astype(np.float32) * self.square_m
        return np.c_[grid, np.zeros(len(grid), np.float32)]

    @property
    def squares(self) -> tuple[int, int]:
        return self.inner_corners[0] + 1, self.inner_corners[1] + 1

    def extent_m(self) -> tuple[float, float]:
        """Printed width and height including the white margin."""
        columns, rows = self.squares
        return ((columns + 2 * self.margin_squares) * self.square_m, (rows + 2 * self.margin_squares) * self.square_m)

    def corner_origin_m(self) -> tuple[float, float]:
        """Position of the first inner corner from the printed area's top-left corner."""
        return (self.margin_squares + 1) * self.square_m, (self.margin_squares + 1) * self.square_m

    def picture(self, pixels_per_square: int = 64) -> np.ndarray:
        """uint8 RGB image of the board with its white margin (row 0 = the board's top edge)."""
        columns, rows = self.squares
        margin = self.margin_squares
        image = np.full(((rows + 2 * margin) * pixels_per_square, (columns + 2 * margin) * pixels_per_square), 255,
                        np.uint8)
        for r in range(rows):
            for c in range(columns):
                if (r + c) % 2 == 0:
                    y, x = (r + margin) * pixels_per_square, (c + margin) * pixels_per_square
                    image[y:y + pixels_per_square, x:x + pixels_per_square] = 0
        return np.repeat(image[..., None], 3, axis=2)
