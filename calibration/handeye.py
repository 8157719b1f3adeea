"""Hand-eye calibration from robot poses and board detections (OpenCV ``calibrateHandEye``).

- eye-to-hand (fixed cameras, board held by the gripper): returns base <- camera.
- eye-in-hand (camera on the wrist, board fixed): returns tcp <- camera.

Robot poses are base <- tcp transforms from forward kinematics; board poses are camera <- board
from PnP with the calibrated intrinsics. Degenerate motion (too little rotation, or rotation
about one axis only) makes the problem unobservable and is refused with what to capture next.
The residual reports how consistently the solution maps every view (board pose spread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .errors import CalibrationError

METHODS = {"tsai": cv2.CALIB_HAND_EYE_TSAI, "park": cv2.CALIB_HAND_EYE_PARK, "horaud": cv2.CALIB_HAND_EYE_HORAUD,
           "andreff": cv2.CALIB_HAND_EYE_ANDREFF, "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS}


@dataclass(frozen=True)
class HandEyeResult:
    transform: np.ndarray  # base <- camera (eye-to-hand) or tcp <- camera (eye-in-hand)
    mode: str
    translation_spread_m: float
    rotation_spread_deg: float


def _invert(transform: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = transform[:3, :3].T
    inverse[:3, 3] = -transform[:3, :3].T @ transform[:3, 3]
    return inverse


def _angle_deg(rotation: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(rotation)[0])))


def check_motion(robot_poses: Sequence[np.ndarray], min_views: int = 6, min_rotation_deg: float = 15.0) -> None:
    """Refuse motion sets that leave hand-eye unobservable."""
    if len(robot_poses) < min_views:
        raise CalibrationError(f"only {len(robot_poses)} robot poses (need {min_views}); capture more poses, "
                               "rotating the wrist about different axes between them")
    axes, largest = [], 0.0
    for a in robot_poses:
        for b in robot_poses:
            relative = _invert(a) @ b
            vector = cv2.Rodrigues(relative[:3, :3])[0].reshape(3)
            angle = np.degrees(np.linalg.norm(vector))
            largest = max(largest, angle)
            if angle > min_rotation_deg / 2:
                axes.append(vector / np.linalg.norm(vector))
    if largest < min_rotation_deg:
        raise CalibrationError(f"degenerate motion: the largest rotation between poses is {largest:.1f} degrees "
                               f"(need >= {min_rotation_deg}); rotate the gripper more between captures")
    singular = np.linalg.svd(np.asarray(axes), compute_uv=False) if len(axes) >= 2 else np.zeros(3)
    if len(singular) < 2 or singular[1] < 0.2 * singular[0]:
        raise CalibrationError("degenerate motion: all rotations are about one axis; also tilt the gripper about "
                               "a second, different axis (e.g. roll and pitch, not only yaw)")


def calibrate_hand_eye(robot_poses: Sequence[np.ndarray], board_poses: Sequence[np.ndarray],
                       mode: str = "eye-to-hand", method: str = "park") -> HandEyeResult:
    """``robot_poses``: base <- tcp; ``board_poses``: camera <- board, one per view."""
    if len(robot_poses) != len(board_poses):
        raise CalibrationError(f"{len(robot_poses)} robot poses but {len(board_poses)} board detections: "
                               "every view needs both")
    if mode not in ("eye-to-hand", "eye-in-hand"):
        raise ValueError(f"mode: expected 'eye-to-hand' or 'eye-in-hand', got {mode!r}")
    check_motion(robot_poses)
    # OpenCV solves eye-in-hand (gripper <- camera) from gripper->base motions; passing the
    # inverse robot poses turns the same solver into eye-to-hand (base <- camera).
    grippers = [np.asarray(p) for p in robot_poses] if mode == "eye-in-hand" else [_invert(p) for p in robot_poses]
    rotation, translation = cv2.calibrateHandEye(
        [g[:3, :3] for g in grippers], [g[:3, 3] for g in grippers],
        [b[:3, :3] for b in board_poses], [b[:3, 3] for b in board_poses], method=METHODS[method])
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, translation.reshape(3)
    # Consistency: the board's pose in the gripper (eye-to-hand) or base (eye-in-hand) frame
    # should be the same in every view.
    fixed = [g @ transform @ b for g, b in zip(grippers, board_poses)]
    positions = np.array([f[:3, 3] for f in fixed])
    mean = fixed[0][:3, :3]
    return HandEyeResult(transform, mode, float(np.max(np.linalg.norm(positions - positions.mean(0), axis=1))),
                         max(_angle_deg(mean.T @ f[:3, :3]) for f in fixed))
