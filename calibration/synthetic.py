"""Synthetic calibration captures with exact ground truth, rendered in MuJoCo (tests, demos).

Eye-to-hand set-up: a fixed camera at ``base_from_camera``; the board is held by the gripper at
``tcp_from_board``; for each view the board is placed in the camera's view (random distance,
tilt and in-plane rotation) and the matching robot TCP pose is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .board import Checkerboard
from .render import BoardRenderer, PinholeCamera


@dataclass
class SyntheticCapture:
    images: dict[str, np.ndarray]
    robot_poses: dict[str, np.ndarray]  # base <- tcp
    camera: PinholeCamera
    base_from_camera: np.ndarray
    tcp_from_board: np.ndarray


def default_tcp_from_board(board: Checkerboard) -> np.ndarray:
    """Board centred 5 cm below the TCP, face down (the camera sees it from the front/below)."""
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_euler("x", 180, degrees=True).as_matrix()
    columns, rows = board.inner_corners
    centre = np.array([(columns - 1) * board.square_m / 2, (rows - 1) * board.square_m / 2, 0.0])
    transform[:3, 3] = -transform[:3, :3] @ centre + np.array([0.0, 0.0, 0.05])
    return transform


def capture(base_from_camera: np.ndarray, camera: PinholeCamera, board: Checkerboard, views: int = 20,
            seed: int = 0, noise_std: float = 0.0, blur_sigma: float = 0.0, partial_views: int = 0,
            tcp_from_board: np.ndarray | None = None, distance_m: tuple[float, float] = (0.35, 0.6),
            max_tilt_deg: float = 35.0) -> SyntheticCapture:
    rng = np.random.default_rng(seed)
    tcp_from_board = default_tcp_from_board(board) if tcp_from_board is None else tcp_from_board
    renderer = BoardRenderer(board, camera)
    board_centre = np.array([(board.inner_corners[0] - 1) * board.square_m / 2,
                             (board.inner_corners[1] - 1) * board.square_m / 2, 0.0])
    images, poses = {}, {}
    for index in range(views + partial_views):
        partial = index >= views
        distance = rng.uniform(*distance_m)
        # Where the board centre sits in the image (normalized); partial views push it off the edge.
        offset = rng.uniform(-0.25, 0.25, 2)
        if partial:  # centre the board near a left/right edge: part of it leaves the image
            offset[0] = rng.choice([-1, 1]) * rng.uniform(0.85, 1.0)
        offset = offset * np.array([camera.width, camera.height]) / 2 / camera.focal_px
        centre_camera = np.array([offset[0] * distance, offset[1] * distance, distance])
        tilt = Rotation.from_euler("xyz", [*rng.uniform(-max_tilt_deg, max_tilt_deg, 2), rng.uniform(-30, 30)],
                                   degrees=True).as_matrix()
        camera_from_board = np.eye(4)
        camera_from_board[:3, :3] = tilt  # board z (into the board) points away from the camera
        camera_from_board[:3, 3] = centre_camera - tilt @ board_centre
        base_from_board = base_from_camera @ camera_from_board
        name = f"view{index:03d}{'-partial' if partial else ''}"
        images[name] = renderer.render(base_from_camera, base_from_board, noise_std, blur_sigma, rng)
        poses[name] = base_from_board @ np.linalg.inv(tcp_from_board)
    renderer.close()
    return SyntheticCapture(images, poses, camera, base_from_camera, tcp_from_board)
