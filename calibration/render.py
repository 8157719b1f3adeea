"""Ground truth for the calibration tools: a checkerboard rendered by MuJoCo from known cameras.

The board is a textured quad on a mocap body; the camera rides another mocap body. Given a
camera pose and intrinsics (pinhole, square pixels, principal point at the image centre: what
MuJoCo renders) and a board pose, it renders exactly what that camera would see, optionally with
sensor noise, blur and the board partly out of view.

Conventions: poses are 4x4 homogeneous transforms; camera frames follow OpenCV (x right, y down,
z forward). Pixel centres sit at integer coordinates (OpenCV), so the principal point of a W x H
MuJoCo camera is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2  # noqa: E402
import mujoco  # noqa: E402

from .board import Checkerboard  # noqa: E402

CV_TO_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> MuJoCo camera axes


def rotation_to_quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    quaternion = np.zeros(4)
    mujoco.mju_mat2Quat(quaternion, np.ascontiguousarray(rotation, dtype=np.float64).reshape(-1))
    return quaternion


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 world <- OpenCV-camera transform of a camera at ``position`` looking at ``target``."""
    position, target = np.asarray(position, float), np.asarray(target, float)
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    transform = np.eye(4)
    transform[:3, :3] = np.stack([right, down, forward], axis=1)
    transform[:3, 3] = position
    return transform


@dataclass(frozen=True)
class PinholeCamera:
    width: int = 640
    height: int = 480
    fovy_deg: float = 45.0

    @property
    def focal_px(self) -> float:
        return self.height / 2 / np.tan(np.radians(self.fovy_deg) / 2)

    def matrix(self) -> np.ndarray:
        return np.array([[self.focal_px, 0, (self.width - 1) / 2], [0, self.focal_px, (self.height - 1) / 2], [0, 0, 1]])


class BoardRenderer:
    def __init__(self, board: Checkerboard, camera: PinholeCamera):
        self.board, self.camera = board, camera
        spec = mujoco.MjSpec()
        spec.visual.global_.offwidth, spec.visual.global_.offheight = camera.width, camera.height
        spec.visual.headlight.ambient = [0.9, 0.9, 0.9]
        spec.visual.headlight.diffuse = [0.1, 0.1, 0.1]
        spec.visual.map.znear = 0.001
        spec.compiler.balanceinertia = True  # the flat board quad has a degenerate inertia
        with tempfile.TemporaryDirectory() as tmp:
            texture_path = Path(tmp) / "board.png"
            cv2.imwrite(str(texture_path), board.picture())
            spec.add_texture(name="board", type=mujoco.mjtTexture.mjTEXTURE_2D, file=str(texture_path))
            width, height = board.extent_m()
            ox, oy = board.corner_origin_m()
            x0, y0, x1, y1 = -ox, -oy, width - ox, height - oy
            mesh = spec.add_mesh(name="board")
            mesh.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL  # a flat quad has no volume
            mesh.uservert = [x0, y0, 0, x1, y0, 0, x1, y1, 0, x0, y1, 0]
            mesh.usertexcoord = [0, 1, 1, 1, 1, 0, 0, 0]
            mesh.userface = [0, 2, 1, 0, 3, 2, 0, 1, 2, 0, 2, 3]  # both windings: visible from either side
            mesh.userfacetexcoord = [0, 2, 1, 0, 3, 2, 0, 1, 2, 0, 2, 3]
            spec.add_material(name="board", textures=["", "board"])
            board_body = spec.worldbody.add_body(name="board", mocap=True)
            board_body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname="board", material="board",
                                contype=0, conaffinity=0)
            camera_body = spec.worldbody.add_body(name="camera", mocap=True)
            camera_body.add_camera(name="camera", fovy=camera.fovy_deg)
            self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, camera.height, camera.width)

    def render(self, world_from_camera: np.ndarray, world_from_board: np.ndarray, noise_std: float = 0.0,
               blur_sigma: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """uint8 HxWx3 image of the board at ``world_from_board`` seen from ``world_from_camera``."""
        self.data.mocap_pos[0], self.data.mocap_quat[0] = world_from_board[:3, 3], rotation_to_quaternion_wxyz(world_from_board[:3, :3])
        self.data.mocap_pos[1] = world_from_camera[:3, 3]
        self.data.mocap_quat[1] = rotation_to_quaternion_wxyz(world_from_camera[:3, :3] @ CV_TO_MUJOCO_CAMERA)
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera="camera")
        image = self.renderer.render().astype(np.float32)
        if blur_sigma:
            image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
        if noise_std:
            image += (rng or np.random.default_rng(0)).normal(0.0, noise_std, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)

    def close(self) -> None:
        self.renderer.close()
