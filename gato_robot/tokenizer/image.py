"""Image tokenization (Reed et al. 2022, Sec. 2.1 and Appendix C.3).

Gato: 'Images are first transformed into sequences of non-overlapping 16 x 16 patches in raster
order, as done in ViT. Each pixel in the image patches is then normalized between [-1, 1] and
divided by the square-root of the patch size (i.e. sqrt(16) = 4).'

Patch position encodings (Appendix C.3, Fig. 15): each patch's row and column pixel interval is
normalized by the image size and quantized to ``NUM_POSITION_BINS`` = 128 bins. The model then adds
a learned row and a learned column embedding. In training the bin index is drawn uniformly from
the patch's quantized interval; in evaluation it is the rounded mean of that interval.

For the RGB-stacking cameras (128 x 128 RGB) a 16 x 16 patch grid gives 8 x 8 = 64 patches.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import TokenizationError

PATCH_SIZE = 16
NUM_POSITION_BINS = 128
PIXEL_SCALE = math.sqrt(PATCH_SIZE)  # 4.0: Gato divides normalized pixels by sqrt(patch size)


def validate_image(image: np.ndarray, name: str, expected_hw: tuple[int, int] | None = None) -> None:
    """Raise :class:`TokenizationError` unless ``image`` is uint8 HxWx3 (of ``expected_hw`` if given)."""
    if not isinstance(image, np.ndarray):
        raise TokenizationError(f"camera '{name}': expected a numpy uint8 HxWx3 array, got {type(image).__name__}")
    expected = f"{expected_hw[0]}x{expected_hw[1]}x3" if expected_hw else "HxWx3"
    if image.ndim != 3 or image.shape[2] != 3:
        raise TokenizationError(f"camera '{name}': expected {expected} uint8, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TokenizationError(f"camera '{name}': expected {expected} uint8, got dtype {image.dtype}")
    if expected_hw is not None and image.shape[:2] != tuple(expected_hw):
        shape = "x".join(map(str, image.shape))
        raise TokenizationError(f"camera '{name}': expected {expected} uint8, got {shape}")
    height, width = image.shape[:2]
    if height % PATCH_SIZE or width % PATCH_SIZE:
        raise TokenizationError(
            f"camera '{name}': height and width must be multiples of {PATCH_SIZE}, got {height}x{width}"
        )


def image_to_patches(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 HxWx3 image -> float32 patches (H/16 * W/16, 3, 16, 16) in raster order.

    Pixels map to [-1, 1] (0 -> -1, 255 -> 1) and are then divided by sqrt(16) = 4.
    """
    validate_image(image, name)
    height, width, channels = image.shape
    rows, cols = height // PATCH_SIZE, width // PATCH_SIZE
    scaled = (image.astype(np.float32) * (2.0 / 255.0) - 1.0) / PIXEL_SCALE
    patches = scaled.reshape(rows, PATCH_SIZE, cols, PATCH_SIZE, channels)
    return np.ascontiguousarray(patches.transpose(0, 2, 4, 1, 3).reshape(rows * cols, channels, PATCH_SIZE, PATCH_SIZE))


def patch_position_intervals(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantized [start, end) bin intervals of each patch's rows and columns, raster order.

    Returns ``(row_intervals, col_intervals)``, each int64 of shape (num_patches, 2); a patch covering
    pixel rows [r0, r1) of an image of height H spans bins [floor(r0/H*128), floor(r1/H*128)).
    """
    rows, cols = height // PATCH_SIZE, width // PATCH_SIZE

    def intervals(count: int, size: int) -> np.ndarray:
        starts = np.arange(count) * PATCH_SIZE
        lo = np.floor(starts / size * NUM_POSITION_BINS).astype(np.int64)
        hi = np.floor((starts + PATCH_SIZE) / size * NUM_POSITION_BINS).astype(np.int64)
        return np.stack([lo, np.maximum(hi, lo + 1)], axis=1)

    row_iv = np.repeat(intervals(rows, height), cols, axis=0)
    col_iv = np.tile(intervals(cols, width), (rows, 1))
    return row_iv, col_iv


def sample_patch_positions(
    intervals: np.ndarray, rng: np.random.Generator | None
) -> np.ndarray:
    """Bin index per patch: uniform within the interval when ``rng`` is given (training),
    otherwise the rounded mean of the interval (evaluation). ``intervals`` is (N, 2) [start, end)."""
    lo, hi = intervals[:, 0], intervals[:, 1]
    if rng is None:
        # Mean of the integer bins in [lo, hi) is (lo + hi - 1) / 2; round half up.
        return np.floor((lo + hi - 1) / 2.0 + 0.5).astype(np.int64)
    return rng.integers(lo, hi).astype(np.int64)
