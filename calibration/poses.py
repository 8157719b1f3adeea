"""Robot pose lists for hand-eye calibration: YAML mapping view name -> base <- tcp pose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from gato_robot.errors import read_yaml_mapping

from .errors import CalibrationError


def write_poses(poses: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    document = {name: {"translation": [float(v) for v in pose[:3, 3]],
                       "rotation_xyzw": [float(v) for v in Rotation.from_matrix(pose[:3, :3]).as_quat()]}
                for name, pose in poses.items()}
    path.write_text(yaml.safe_dump(document, sort_keys=True))
    return path


def read_poses(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"robot pose file not found: {path}")
    poses = {}
    for name, entry in read_yaml_mapping(path, "robot pose file").items():
        try:
            pose = np.eye(4)
            pose[:3, :3] = Rotation.from_quat(entry["rotation_xyzw"]).as_matrix()
            pose[:3, 3] = entry["translation"]
        except (KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"{path}: pose '{name}' needs translation [x, y, z] and rotation_xyzw") from error
        poses[str(name)] = pose
    if not poses:
        raise CalibrationError(f"{path}: no robot poses (expected view name -> translation, rotation_xyzw)")
    return poses
