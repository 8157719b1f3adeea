"""One engine-neutral description of the RGB-stacking cell; both simulators build from it.

Frames: the world frame is the robot base frame (x forward toward the basket, z up), metres.
Physics: ``timestep_s`` * ``substeps`` = one 20 Hz control period in both engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gato_robot.robot.action_path import ActionPathConfig
from gato_robot.robot.description import PANDA, ArmDescription
from gato_robot.task import RGB_STACKING

COLORS = {"red": (0.85, 0.1, 0.1, 1.0), "green": (0.1, 0.7, 0.15, 1.0), "blue": (0.1, 0.2, 0.85, 1.0)}
ROBOT_RGBA = (0.75, 0.75, 0.75, 1.0)
FLOOR_RGBA = (0.45, 0.42, 0.38, 1.0)
BASKET_RGBA = (0.3, 0.3, 0.32, 1.0)


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera looking from ``position`` at ``target`` (world frame, metres); ``fovy_deg`` is
    the vertical field of view. Image convention: row 0 at the top, OpenCV-style."""

    name: str
    position: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fovy_deg: float = 45.0
    width: int = RGB_STACKING.image_width
    height: int = RGB_STACKING.image_height
    near_m: float = 0.01
    far_m: float = 5.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors of the camera in the world frame."""
        forward = np.asarray(self.target, float) - np.asarray(self.position, float)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(self.up, float))
        right /= np.linalg.norm(right)
        return right, np.cross(right, forward), forward

    def intrinsics(self) -> np.ndarray:
        """3x3 OpenCV camera matrix (pixels; pixel centres at integer coordinates)."""
        fy = self.height / 2 / np.tan(np.radians(self.fovy_deg) / 2)
        return np.array([[fy, 0, (self.width - 1) / 2], [0, fy, (self.height - 1) / 2], [0, 0, 1.0]])

    @classmethod
    def from_calibration(cls, name: str, camera_matrix: np.ndarray, image_height: int,
                         base_from_camera: np.ndarray, width: int = 128, height: int = 128) -> "CameraSpec":
        """A simulated camera placed where a calibrated one is: pose from the extrinsics (base <-
        OpenCV camera), vertical field of view from fy and the calibrated image height. The
        simulators render ideal pinholes (square pixels, centred principal point, no distortion);
        rectify real images with the calibrated model before comparing them."""
        fovy = float(np.degrees(2 * np.arctan(image_height / 2 / camera_matrix[1, 1])))
        rotation, position = base_from_camera[:3, :3], base_from_camera[:3, 3]
        forward, down = rotation[:, 2], rotation[:, 1]
        return cls(name, position=tuple(float(v) for v in position),
                   target=tuple(float(v) for v in position + forward), up=tuple(float(v) for v in -down),
                   fovy_deg=fovy, width=width, height=height)

    def world_to_camera(self) -> np.ndarray:
        """4x4 transform from world to the OpenCV camera frame (x right, y down, z forward)."""
        right, up, forward = self.axes()
        rotation = np.stack([right, -up, forward])
        transform = np.eye(4)
        transform[:3, :3] = rotation
        transform[:3, 3] = -rotation @ np.asarray(self.position, float)
        return transform

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2) as (u = column, v = row)."""
        points = np.c_[points_world, np.ones(len(points_world))] @ self.world_to_camera().T
        pixels = points[:, :3] @ self.intrinsics().T
        return pixels[:, :2] / pixels[:, 2:3]


FRONT_LEFT = CameraSpec("front_left", position=(0.88, 0.26, 0.34), target=(0.5, 0.0, 0.02))
FRONT_RIGHT = CameraSpec("front_right", position=(0.88, -0.26, 0.34), target=(0.5, 0.0, 0.02))


@dataclass(frozen=True)
class PhysicsSpec:
    timestep_s: float = 0.005
    substeps: int = 10  # 10 x 5 ms = 50 ms = one control period at 20 Hz
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    object_density: float = 600.0  # kg/m^3
    friction: float = 1.0
    settle_steps: int = 40  # physics steps to let dropped objects come to rest at reset


@dataclass(frozen=True)
class SceneSpec:
    arm: ArmDescription = PANDA
    cameras: tuple[CameraSpec, ...] = (FRONT_LEFT, FRONT_RIGHT)
    physics: PhysicsSpec = PhysicsSpec()
    action_path: ActionPathConfig = ActionPathConfig()
    basket_center: tuple[float, float] = (0.5, 0.0)
    basket_half_extent_m: float = 0.2
    basket_wall_height_m: float = 0.04
    basket_wall_thickness_m: float = 0.01
    spawn_low: tuple[float, float] = (0.43, -0.09)
    spawn_high: tuple[float, float] = (0.57, 0.09)
    min_separation_m: float = 0.085
    episode_steps: int = RGB_STACKING.episode_steps
    success_hold_steps: int = 10  # success must hold this long (0.5 s) to end an episode early
    object_names: tuple[str, ...] = field(default=("red", "green", "blue"))

    @property
    def control_period_s(self) -> float:
        return self.physics.timestep_s * self.physics.substeps

    def basket_walls(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(centre, half-extents) of the four basket walls."""
        cx, cy = self.basket_center
        h, t, z = self.basket_half_extent_m, self.basket_wall_thickness_m / 2, self.basket_wall_height_m / 2
        return [(np.array([cx + h, cy, z]), np.array([t, h, z])), (np.array([cx - h, cy, z]), np.array([t, h, z])),
                (np.array([cx, cy + h, z]), np.array([h, t, z])), (np.array([cx, cy - h, z]), np.array([h, t, z]))]


def scene_with_calibrated_cameras(directory, scene: "SceneSpec | None" = None) -> "SceneSpec":
    """The scene with each camera replaced by ``<name>.camera_info.yaml`` + ``<name>.extrinsics.yaml``
    from ``directory`` (as `gato-robot calibrate` writes them); cameras without files stay as they are."""
    from dataclasses import replace
    from pathlib import Path

    from gato_robot.calibration.files import read_camera_info, read_extrinsics

    scene = scene or SceneSpec()
    cameras = []
    for camera in scene.cameras:
        info_path = Path(directory) / f"{camera.name}.camera_info.yaml"
        extrinsics_path = Path(directory) / f"{camera.name}.extrinsics.yaml"
        if info_path.is_file() and extrinsics_path.is_file():
            info, extrinsics = read_camera_info(info_path), read_extrinsics(extrinsics_path)
            cameras.append(CameraSpec.from_calibration(camera.name, info.camera_matrix, info.height,
                                                       extrinsics.transform, camera.width, camera.height))
        else:
            cameras.append(camera)
    return replace(scene, cameras=tuple(cameras))


DEFAULT_SCENE = SceneSpec()
