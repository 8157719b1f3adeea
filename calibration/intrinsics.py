"""Camera intrinsics from checkerboard views (OpenCV ``calibrateCamera``) with outlier rejection.

Views whose RMS reprojection error exceeds ``outlier_factor`` x the median (and at least
``outlier_floor_px``) are dropped and the camera is re-calibrated, until none is left or too few
views remain. Every image is accounted for in the result: used, or rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import cv2
import numpy as np
from tqdm import tqdm

from .board import Checkerboard
from .detect import detect_corners
from .errors import CalibrationError


@dataclass
class IntrinsicsResult:
    camera_matrix: np.ndarray  # 3x3, pixels
    distortion: np.ndarray  # plumb_bob k1 k2 p1 p2 k3
    image_size: tuple[int, int]  # width, height
    rms_px: float
    per_view_rms_px: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)
    board_poses: dict[str, np.ndarray] = field(default_factory=dict)  # camera <- board, 4x4


def _pose(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = cv2.Rodrigues(rvec)[0]
    transform[:3, 3] = np.asarray(tvec).reshape(3)
    return transform


def view_rms(object_points, image_points, rvec, tvec, camera_matrix, distortion) -> float:
    projected, _ = cv2.projectPoints(object_points, rvec, tvec, camera_matrix, distortion)
    return float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - image_points) ** 2, axis=1))))


def calibrate_intrinsics(images: Mapping[str, np.ndarray], board: Checkerboard, min_views: int = 8,
                         outlier_factor: float = 3.0, outlier_floor_px: float = 0.5,
                         flags: int = cv2.CALIB_FIX_K3) -> IntrinsicsResult:
    if not images:
        raise CalibrationError("no images given: capture at least "
                               f"{min_views} views of the {board.inner_corners[0]}x{board.inner_corners[1]} board")
    sizes = {image.shape[:2] for image in images.values()}
    if len(sizes) != 1:
        raise CalibrationError(f"images have different sizes {sorted(sizes)}: calibrate one camera mode at a time")
    height, width = sizes.pop()
    detections, rejected = {}, {}
    for name, image in tqdm(images.items(), desc="detecting corners", unit="image"):
        corners = detect_corners(image, board)
        if corners is None:
            rejected[name] = "board not found (whole board must be visible, in focus, not over-exposed)"
        else:
            detections[name] = corners
    object_points = board.object_points()
    while True:
        if len(detections) < min_views:
            raise CalibrationError(
                f"only {len(detections)} usable views of {len(images)} (need {min_views}); capture "
                f"{min_views - len(detections)} more with the whole board visible, tilted up to ~45 degrees "
                "in different directions, near the image corners and at several distances")
        names = list(detections)
        rms, matrix, distortion, rvecs, tvecs = cv2.calibrateCamera(
            [object_points] * len(names), [detections[n] for n in names], (width, height), None, None, flags=flags)
        per_view = {n: view_rms(object_points, detections[n], r, t, matrix, distortion)
                    for n, r, t in zip(names, rvecs, tvecs)}
        threshold = max(outlier_factor * float(np.median(list(per_view.values()))), outlier_floor_px)
        outliers = [n for n, e in per_view.items() if e > threshold]
        if not outliers:
            poses = {n: _pose(r, t) for n, r, t in zip(names, rvecs, tvecs)}
            return IntrinsicsResult(matrix, distortion.reshape(-1), (width, height), float(rms), per_view, rejected,
                                    poses)
        for name in outliers:
            rejected[name] = f"outlier: {per_view[name]:.2f} px RMS > {threshold:.2f} px (motion blur or bad detection)"
            detections.pop(name)


def plot_errors(result: IntrinsicsResult, path) -> None:
    """Bar chart of per-view RMS reprojection error (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.per_view_rms_px)
    figure, axis = plt.subplots(figsize=(max(6, len(names) * 0.35), 3.5))
    axis.bar(range(len(names)), [result.per_view_rms_px[n] for n in names], color="tab:blue")
    axis.axhline(result.rms_px, color="tab:red", linestyle="--", label=f"overall RMS {result.rms_px:.3f} px")
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_ylabel("RMS reprojection error (px)")
    axis.set_title(f"{len(names)} views used, {len(result.rejected)} rejected")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
