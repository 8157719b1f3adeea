"""`gato-robot` commands: Camera calibration: intrinsics, hand-eye, rendered ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import typer

from ..errors import DamagedFileError
from .common import _clear_errors, console

calibrate_app = typer.Typer(help="Camera calibration: intrinsics, hand-eye, rendered ground truth.", no_args_is_help=True)


def _load_images(directory: Path) -> dict:
    import cv2

    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise FileNotFoundError(f"no .png/.jpg images in {directory}")
    images = {}
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:  # OpenCV returns None for an unreadable, truncated or mislabelled file
            raise DamagedFileError(path, "not a readable image (OpenCV could not decode it)")
        images[path.stem] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return images


@calibrate_app.command("render-board")
def calibrate_render_board(out: Path = typer.Option(..., help="Directory for images, robot poses and ground truth."),
                           camera: str = typer.Option("front_left", help="Scene camera whose pose to use."),
                           views: int = typer.Option(20, min=1, help="Views with the whole board visible."),
                           partial: int = typer.Option(0, help="Extra views with the board partly out of view."),
                           noise: float = typer.Option(2.0, help="Pixel noise standard deviation (0-255 scale)."),
                           blur: float = typer.Option(0.7, help="Gaussian blur sigma (pixels)."),
                           width: int = 640, height: int = 480, seed: int = 0) -> None:
    """Render a checkerboard held by the gripper, seen by a scene camera (exact ground truth)."""
    import cv2

    from gato_robot.calibration.board import Checkerboard
    from gato_robot.calibration.files import CameraInfo, Extrinsics, write_camera_info, write_extrinsics
    from gato_robot.calibration.poses import write_poses
    from gato_robot.calibration.render import PinholeCamera, look_at
    from gato_robot.calibration.synthetic import capture
    from gato_robot.sim.scene import DEFAULT_SCENE

    spec = next((c for c in DEFAULT_SCENE.cameras if c.name == camera), None)
    if spec is None:
        console.print(f"[red]error:[/red] unknown camera {camera!r}; scene cameras: {[c.name for c in DEFAULT_SCENE.cameras]}")
        raise typer.Exit(2)
    pinhole = PinholeCamera(width, height, spec.fovy_deg)
    base_from_camera = look_at(spec.position, spec.target, spec.up)
    result = capture(base_from_camera, pinhole, Checkerboard(), views, seed, noise, blur, partial)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, image in result.images.items():
        cv2.imwrite(str(out / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    write_poses(result.robot_poses, out / "robot_poses.yaml")
    write_camera_info(CameraInfo(camera, width, height, pinhole.matrix(), np.zeros(5)), out / "truth.camera_info.yaml")
    write_extrinsics(Extrinsics(camera, "base", base_from_camera), out / "truth.extrinsics.yaml")
    console.print(f"wrote {len(result.images)} images, robot_poses.yaml and ground truth to {out}")


@calibrate_app.command("intrinsics")
def calibrate_intrinsics_command(images: Path = typer.Option(..., exists=True, help="Directory of board images."),
                                 out: Path = typer.Option(..., help="camera_info YAML to write."),
                                 board: str = typer.Option("9x6", help="Inner corners, COLUMNSxROWS."),
                                 square: float = typer.Option(0.02, help="Square size (metres)."),
                                 camera_name: str = typer.Option("camera", help="camera_name in the YAML."),
                                 plot: Path = typer.Option(None, help="PNG of per-view reprojection errors."),
                                 min_views: int = typer.Option(8, min=1, help="Fewest usable views accepted.")) -> None:
    """Intrinsics from checkerboard images, with outlier rejection; writes ROS camera_info YAML."""
    from gato_robot.calibration.board import Checkerboard
    from gato_robot.calibration.files import CameraInfo, write_camera_info
    from gato_robot.calibration.intrinsics import calibrate_intrinsics, plot_errors

    with _clear_errors():  # CalibrationError is a ValueError: what to capture next, in one line
        target = Checkerboard.parse(board, square)
        result = calibrate_intrinsics(_load_images(images), target, min_views=min_views)
    width, height = result.image_size
    write_camera_info(CameraInfo(camera_name, width, height, result.camera_matrix, result.distortion), out)
    k = result.camera_matrix
    console.print(f"fx {k[0, 0]:.2f} fy {k[1, 1]:.2f} cx {k[0, 2]:.2f} cy {k[1, 2]:.2f} px; RMS {result.rms_px:.3f} px "
                  f"over {len(result.per_view_rms_px)} views -> {out}")
    for name, reason in result.rejected.items():
        console.print(f"rejected {name}: {reason}")
    if plot:
        plot_errors(result, plot)
        console.print(f"plot: {plot}")


@calibrate_app.command("handeye")
def calibrate_handeye_command(images: Path = typer.Option(..., exists=True, help="Directory of board images."),
                              poses: Path = typer.Option(..., exists=True,
                                                         help="YAML of base <- tcp poses, one per image name."),
                              intrinsics: Path = typer.Option(..., exists=True,
                                                              help="camera_info YAML of this camera."),
                              out: Path = typer.Option(..., help="Extrinsics YAML to write."),
                              mode: str = typer.Option("eye-to-hand",
                                                       help="eye-to-hand (fixed camera) or eye-in-hand."),
                              board: str = typer.Option("9x6", help="Inner corners, COLUMNSxROWS."),
                              square: float = typer.Option(0.02, help="Square size (metres)."),
                              method: str = typer.Option("park",
                                                         help="tsai, park, horaud, andreff, daniilidis.")) -> None:
    """Camera pose from robot poses + board detections (cv2.calibrateHandEye); writes extrinsics YAML."""
    import cv2

    from gato_robot.calibration.board import Checkerboard
    from gato_robot.calibration.detect import detect_corners
    from gato_robot.calibration.files import Extrinsics, read_camera_info, write_extrinsics
    from gato_robot.calibration.handeye import calibrate_hand_eye
    from gato_robot.calibration.poses import read_poses

    with _clear_errors():
        target = Checkerboard.parse(board, square)
        info, robot, pictures = read_camera_info(intrinsics), read_poses(poses), _load_images(images)
        robot_poses, board_poses = [], []
        for name, image in pictures.items():
            corners = detect_corners(image, target)
            if corners is None or name not in robot:
                console.print(f"skipped {name}: {'board not found' if corners is None else 'no robot pose'}")
                continue
            ok, rvec, tvec = cv2.solvePnP(target.object_points(), corners, info.camera_matrix, info.distortion)
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
            robot_poses.append(robot[name])
            board_poses.append(pose)
        result = calibrate_hand_eye(robot_poses, board_poses, mode, method)
    parent = "base" if mode == "eye-to-hand" else "tcp"
    write_extrinsics(Extrinsics(info.camera_name, parent, result.transform), out)
    console.print(f"{parent} <- camera: translation {np.round(result.transform[:3, 3], 4).tolist()} m; consistency "
                  f"{1000 * result.translation_spread_m:.2f} mm / {result.rotation_spread_deg:.2f} deg over "
                  f"{len(robot_poses)} views -> {out}")
