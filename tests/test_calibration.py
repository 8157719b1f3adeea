"""Calibration tools against boards rendered in MuJoCo with exact ground truth."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from gato_robot.calibration.board import Checkerboard
from gato_robot.calibration.errors import CalibrationError
from gato_robot.calibration.files import (CameraInfo, Extrinsics, read_camera_info, read_extrinsics, write_camera_info,
                               write_extrinsics)
from gato_robot.calibration.handeye import calibrate_hand_eye
from gato_robot.calibration.intrinsics import calibrate_intrinsics
from gato_robot.calibration.render import PinholeCamera, look_at
from gato_robot.calibration.synthetic import capture
from gato_robot.cli import app
from gato_robot.sim.scene import DEFAULT_SCENE, scene_with_calibrated_cameras

BOARD = Checkerboard()
CAMERA = PinholeCamera(640, 480, DEFAULT_SCENE.cameras[0].fovy_deg)
TRUE_POSE = look_at(DEFAULT_SCENE.cameras[0].position, DEFAULT_SCENE.cameras[0].target)


@pytest.fixture(scope="module")
def noisy_capture():
    return capture(TRUE_POSE, CAMERA, BOARD, views=18, seed=1, noise_std=3.0, blur_sigma=0.8, partial_views=2)


@pytest.fixture(scope="module")
def intrinsics(noisy_capture):
    return calibrate_intrinsics(noisy_capture.images, BOARD)


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(a.T @ b)[0])))


def test_intrinsics_recover_the_rendered_camera(intrinsics):
    truth = CAMERA.matrix()
    k = intrinsics.camera_matrix
    assert abs(k[0, 0] / truth[0, 0] - 1) < 0.01 and abs(k[1, 1] / truth[1, 1] - 1) < 0.01
    assert np.linalg.norm(k[:2, 2] - truth[:2, 2]) < 2.0
    assert intrinsics.rms_px < 0.5
    assert set(intrinsics.rejected) == {"view018-partial", "view019-partial"}
    assert all("board not found" in reason for reason in intrinsics.rejected.values())


def test_outlier_views_are_rejected(noisy_capture):
    images = dict(noisy_capture.images)
    # A view whose corners are detected but geometrically inconsistent: warp it with a shear.
    images["view003"] = cv2.warpAffine(images["view003"], np.float32([[1, 0.08, 0], [0, 1, 0]]), (640, 480))
    result = calibrate_intrinsics(images, BOARD)
    assert "view003" in result.rejected and "outlier" in result.rejected["view003"]
    assert result.rms_px < 0.5


def test_hand_eye_recovers_the_camera_pose(noisy_capture, intrinsics):
    names = list(intrinsics.board_poses)
    result = calibrate_hand_eye([noisy_capture.robot_poses[n] for n in names],
                                [intrinsics.board_poses[n] for n in names], mode="eye-to-hand")
    assert np.linalg.norm(result.transform[:3, 3] - TRUE_POSE[:3, 3]) < 0.005
    assert rotation_error_deg(result.transform[:3, :3], TRUE_POSE[:3, :3]) < 1.0
    assert result.translation_spread_m < 0.005


def test_eye_in_hand_recovers_the_wrist_camera():
    rng = np.random.default_rng(3)
    tcp_from_camera = np.eye(4)
    tcp_from_camera[:3, :3] = Rotation.from_euler("xyz", [5, -8, 90], degrees=True).as_matrix()
    tcp_from_camera[:3, 3] = [0.05, -0.02, 0.03]
    base_from_board = np.eye(4)
    base_from_board[:3, 3] = [0.5, 0.0, 0.0]
    robot, boards = [], []
    for _ in range(12):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-30, 30, 3), degrees=True).as_matrix()
        pose[:3, 3] = [0.5, 0.0, 0.4] + rng.uniform(-0.1, 0.1, 3)
        robot.append(pose)
        boards.append(np.linalg.inv(pose @ tcp_from_camera) @ base_from_board)
    result = calibrate_hand_eye(robot, boards, mode="eye-in-hand")
    np.testing.assert_allclose(result.transform, tcp_from_camera, atol=1e-6)


def test_bad_captures_fail_with_what_to_capture_next(noisy_capture):
    few = dict(list(noisy_capture.images.items())[:5])
    with pytest.raises(CalibrationError, match="capture 3 more"):
        calibrate_intrinsics(few, BOARD)
    blank = {f"blank{i}": np.zeros((480, 640, 3), np.uint8) for i in range(10)}
    with pytest.raises(CalibrationError, match="only 0 usable views"):
        calibrate_intrinsics(blank, BOARD)
    poses = [np.eye(4) for _ in range(8)]
    for i, pose in enumerate(poses):  # rotations about z only
        pose[:3, :3] = Rotation.from_euler("z", 10 * i, degrees=True).as_matrix()
    with pytest.raises(CalibrationError, match="about one axis"):
        calibrate_hand_eye(poses, poses)
    tiny = [np.eye(4) for _ in range(8)]
    for i, pose in enumerate(tiny):
        pose[:3, :3] = Rotation.from_euler("xy", [i * 0.5, i * 0.4], degrees=True).as_matrix()
    with pytest.raises(CalibrationError, match="degenerate motion: the largest rotation"):
        calibrate_hand_eye(tiny, tiny)
    with pytest.raises(CalibrationError, match="only 3 robot poses"):
        calibrate_hand_eye(tiny[:3], tiny[:3])


def test_calibration_files_round_trip(tmp_path):
    info = CameraInfo("front_left", 640, 480, CAMERA.matrix(), np.array([0.01, -0.02, 0.0, 0.0, 0.0]))
    loaded = read_camera_info(write_camera_info(info, tmp_path / "c.yaml"))
    np.testing.assert_allclose(loaded.camera_matrix, info.camera_matrix)
    assert (loaded.width, loaded.height, loaded.camera_name) == (640, 480, "front_left")
    extrinsics = read_extrinsics(write_extrinsics(Extrinsics("front_left", "base", TRUE_POSE), tmp_path / "e.yaml"))
    np.testing.assert_allclose(extrinsics.transform, TRUE_POSE, atol=1e-12)
    (tmp_path / "bad.yaml").write_text("camera_name: x\n")
    with pytest.raises(CalibrationError, match="not a camera_info file"):
        read_camera_info(tmp_path / "bad.yaml")


def test_calibrate_to_yaml_to_sim_camera_reproduces_the_view(tmp_path):
    """render boards -> `gato-robot calibrate intrinsics/handeye` -> YAML -> sim camera placed from
    it -> the same world points land within 1 px of where the original camera sees them."""
    runner = CliRunner()
    data = tmp_path / "capture"
    assert runner.invoke(app, ["calibrate", "render-board", "--out", str(data), "--views", "14"]).exit_code == 0
    calibrated = tmp_path / "calibrated"
    result = runner.invoke(app, ["calibrate", "intrinsics", "--images", str(data / "images"), "--camera-name",
                                 "front_left", "--out", str(calibrated / "front_left.camera_info.yaml"),
                                 "--plot", str(tmp_path / "errors.png")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["calibrate", "handeye", "--images", str(data / "images"), "--poses",
                                 str(data / "robot_poses.yaml"), "--intrinsics",
                                 str(calibrated / "front_left.camera_info.yaml"), "--out",
                                 str(calibrated / "front_left.extrinsics.yaml")])
    assert result.exit_code == 0, result.output
    plot = cv2.imread(str(tmp_path / "errors.png"))  # a real plot: decodes, and is not one flat colour
    assert plot is not None and plot.shape[1] > 300 and plot.std() > 10
    original = DEFAULT_SCENE.cameras[0]
    placed = scene_with_calibrated_cameras(calibrated).cameras[0]
    assert placed.name == "front_left" and scene_with_calibrated_cameras(calibrated).cameras[1] == DEFAULT_SCENE.cameras[1]
    points = np.array([[x, y, z] for x in (0.4, 0.5, 0.6) for y in (-0.1, 0.0, 0.1) for z in (0.0, 0.1)])
    assert np.max(np.linalg.norm(placed.project(points) - original.project(points), axis=1)) < 1.0


def test_sim_renders_the_calibrated_camera_like_the_original(tmp_path):
    from gato_robot.sim.rollout import make_env

    original = DEFAULT_SCENE.cameras[0]
    recovered = original.__class__.from_calibration(original.name, CAMERA.matrix(), 480, TRUE_POSE)
    write_camera_info(CameraInfo("front_left", 640, 480, CAMERA.matrix(), np.zeros(5)), tmp_path / "front_left.camera_info.yaml")
    write_extrinsics(Extrinsics("front_left", "base", TRUE_POSE), tmp_path / "front_left.extrinsics.yaml")
    scene = scene_with_calibrated_cameras(tmp_path)
    assert np.allclose(scene.cameras[0].position, recovered.position)
    images = []
    for spec in (DEFAULT_SCENE, scene):
        env = make_env("mujoco", "test-2-holes", scene=spec)
        observation, _ = env.reset(seed=5)
        images.append(observation["front_left"])
        env.close()
    red = [np.argwhere((im[..., 0] > 120) & (im[..., 1] < 70) & (im[..., 2] < 70)).mean(axis=0) for im in images]
    assert np.linalg.norm(red[0] - red[1]) < 1.0
