"""Calibration files: ROS ``camera_info`` YAML (as camera_calibration_parsers writes it) and an
extrinsics YAML (parent frame <- camera, OpenCV optical frame). The ROS node and the simulators
read both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from gato_robot.errors import read_yaml_mapping

from .errors import CalibrationError


@dataclass(frozen=True)
class CameraInfo:
    camera_name: str
    width: int
    height: int
    camera_matrix: np.ndarray  # 3x3
    distortion: np.ndarray  # plumb_bob: k1 k2 p1 p2 k3

    def projection_matrix(self) -> np.ndarray:
        return np.c_[self.camera_matrix, np.zeros(3)]


def _matrix(rows: int, cols: int, values: np.ndarray) -> dict:
    return {"rows": rows, "cols": cols, "data": [float(v) for v in np.asarray(values).reshape(-1)]}


def write_camera_info(info: CameraInfo, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "image_width": info.width, "image_height": info.height, "camera_name": info.camera_name,
        "camera_matrix": _matrix(3, 3, info.camera_matrix), "distortion_model": "plumb_bob",
        "distortion_coefficients": _matrix(1, len(info.distortion), info.distortion),
        "rectification_matrix": _matrix(3, 3, np.eye(3)),
        "projection_matrix": _matrix(3, 4, info.projection_matrix()),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _read_matrix(document: dict, key: str, path: Path) -> np.ndarray:
    try:
        entry = document[key]
        matrix = np.asarray(entry["data"], dtype=np.float64).reshape(entry["rows"], entry["cols"])
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f"{path}: missing or malformed '{key}' (expected rows, cols, data)") from error
    if not np.all(np.isfinite(matrix)):
        raise CalibrationError(f"{path}: '{key}' holds non-finite values")
    return matrix


def read_camera_info(path: str | Path) -> CameraInfo:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera_info file not found: {path}")
    document = read_yaml_mapping(path, "camera_info file")
    for key in ("image_width", "image_height", "camera_matrix", "distortion_coefficients"):
        if key not in document:
            raise CalibrationError(f"{path}: not a camera_info file (no '{key}')")
    # Not used here (derived from the camera matrix), but a file cut short ends in them: a
    # camera_info file (ours or ROS's camera_calibration_parsers') always holds both, whole.
    for key, shape in (("rectification_matrix", (3, 3)), ("projection_matrix", (3, 4))):
        if _read_matrix(document, key, path).shape != shape:
            raise CalibrationError(f"{path}: '{key}' must be {shape[0]}x{shape[1]}")
    try:
        width, height = int(document["image_width"]), int(document["image_height"])
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"{path}: image_width and image_height must be integers") from error
    return CameraInfo(str(document.get("camera_name", path.stem)), width, height,
                      _read_matrix(document, "camera_matrix", path),
                      _read_matrix(document, "distortion_coefficients", path).reshape(-1))


@dataclass(frozen=True)
class Extrinsics:
    """``parent_frame`` <- camera optical frame (OpenCV axes: x right, y down, z forward), metres."""

    camera_name: str
    parent_frame: str
    transform: np.ndarray  # 4x4

    def quaternion_xyzw(self) -> np.ndarray:
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(self.transform[:3, :3]).as_quat()


def write_extrinsics(extrinsics: Extrinsics, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"camera_name": extrinsics.camera_name, "parent_frame": extrinsics.parent_frame,
                "child_frame": f"{extrinsics.camera_name}_optical_frame",
                "translation": [float(v) for v in extrinsics.transform[:3, 3]],
                "rotation_xyzw": [float(v) for v in extrinsics.quaternion_xyzw()]}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def read_extrinsics(path: str | Path) -> Extrinsics:
    from scipy.spatial.transform import Rotation

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extrinsics file not found: {path}")
    document = read_yaml_mapping(path, "extrinsics file")
    try:
        transform = np.eye(4)
        transform[:3, :3] = Rotation.from_quat(document["rotation_xyzw"]).as_matrix()
        transform[:3, 3] = document["translation"]
        return Extrinsics(str(document["camera_name"]), str(document.get("parent_frame", "base")), transform)
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f"{path}: expected camera_name, translation [x, y, z] and rotation_xyzw") from error
