"""Robot pose lists for hand-eye calibration: YAML, `views: N` first, then view name -> base <- tcp pose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from gato_robot.errors import read_yaml_mapping

from .errors import CalibrationError


VIEWS_KEY = "views"
"""The count written first in a pose file, so a truncated file is refused rather than read short."""


def write_poses(poses: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    document = {VIEWS_KEY: len(poses)}  # first, so a file cut short keeps it and is caught
    document.update({name: {"translation": [float(v) for v in poses[name][:3, 3]],
                            "rotation_xyzw": [float(v) for v in Rotation.from_matrix(poses[name][:3, :3]).as_quat()]}
                     for name in sorted(poses)})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def read_poses(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"robot pose file not found: {path}")
    document = read_yaml_mapping(path, "robot pose file")
    views = document.pop(VIEWS_KEY, None)
    if not isinstance(views, int) or isinstance(views, bool):
        raise CalibrationError(f"{path}: no '{VIEWS_KEY}: N' line (the number of poses in the file, first; "
                               "write_poses writes it) so a file cut short cannot be told from a whole one")
    poses = {}
    for name, entry in document.items():
        try:
            translation = np.asarray(entry["translation"], dtype=np.float64)
            quaternion = np.asarray(entry["rotation_xyzw"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"{path}: pose '{name}' needs translation [x, y, z] and rotation_xyzw") from error
        if (translation.shape != (3,) or quaternion.shape != (4,) or not np.all(np.isfinite(translation))
                or not np.all(np.isfinite(quaternion)) or np.linalg.norm(quaternion) < 1e-6):
            raise CalibrationError(f"{path}: pose '{name}' needs translation [x, y, z] and a unit rotation_xyzw "
                                   f"[x, y, z, w], got {entry['translation']!r} and {entry['rotation_xyzw']!r}")
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
        pose[:3, 3] = translation
        poses[str(name)] = pose
    if not poses:
        raise CalibrationError(f"{path}: no robot poses (expected view name -> translation, rotation_xyzw)")
    if len(poses) != views:
        raise CalibrationError(f"{path}: {len(poses)} poses where '{VIEWS_KEY}' says {views}: the file is incomplete")
    return poses
