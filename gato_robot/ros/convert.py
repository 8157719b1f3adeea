"""sensor_msgs/Image and sensor_msgs/JointState <-> numpy, without cv_bridge.

Works on any object with the message's fields (rclpy messages and rosbags' deserialized messages
alike), so the node and rosbag2 replay share it. Encodings: rgb8, bgr8, rgba8, bgra8, mono8 and
their 16-bit forms (rgb16, bgr16, mono16; byte order from ``is_bigendian``, scaled to 8 bits).
Rows may be padded (``step`` > width x pixel size). :func:`fit_image` brings a camera of another
size to the policy's input size.
"""

from __future__ import annotations

import numpy as np

from ..observation import JointSample

ENCODINGS = {  # encoding -> (channels, bytes per channel, channel order to RGB)
    "rgb8": (3, 1, (0, 1, 2)), "bgr8": (3, 1, (2, 1, 0)), "rgba8": (4, 1, (0, 1, 2)), "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, (0, 0, 0)), "rgb16": (3, 2, (0, 1, 2)), "bgr16": (3, 2, (2, 1, 0)), "mono16": (1, 2, (0, 0, 0)),
}


class MessageError(ValueError):
    """A message the stack cannot use; the text names the field and what was expected."""


def stamp_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def image_to_rgb(message) -> np.ndarray:
    """sensor_msgs/Image -> uint8 HxWx3 RGB (a new array)."""
    encoding = str(message.encoding).lower()
    if encoding not in ENCODINGS:
        raise MessageError(f"image encoding '{message.encoding}' is not supported; use one of {sorted(ENCODINGS)}")
    channels, depth, order = ENCODINGS[encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    if height < 1 or width < 1:
        raise MessageError(f"image is {width}x{height} pixels: empty")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise MessageError(f"image step {step} is smaller than width x pixel size = {row_bytes} bytes")
    data = np.frombuffer(bytes(message.data) if not isinstance(message.data, np.ndarray) else message.data.tobytes(),
                         dtype=np.uint8)
    if data.size < step * height:
        raise MessageError(f"image data has {data.size} bytes, expected step x height = {step * height}")
    rows = data[:step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = ">u2" if message.is_bigendian else "<u2"
        pixels = (np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels) >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)
    return np.ascontiguousarray(pixels[..., list(order)])


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """RGB image of any size -> ``height`` x ``width``, as the training cameras see: the largest
    centred crop of the target aspect ratio (the optical axis stays in the middle), then an area
    resize (OpenCV INTER_AREA, which averages rather than aliases when shrinking). An image of the
    target size is returned as it is."""
    rows, cols = image.shape[:2]
    if (rows, cols) == (height, width):
        return image
    crop_rows, crop_cols = min(rows, round(cols * height / width)), min(cols, round(rows * width / height))
    top, left = (rows - crop_rows) // 2, (cols - crop_cols) // 2
    import cv2

    cropped = image[top:top + crop_rows, left:left + crop_cols]
    interpolation = cv2.INTER_AREA if crop_rows >= height else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(cropped), (width, height), interpolation=interpolation)


def fitted_fovy_deg(camera_matrix: np.ndarray, rows: int, cols: int, height: int, width: int) -> float:
    """Vertical field of view (degrees) of a ``rows`` x ``cols`` camera with the 3x3 pinhole
    ``camera_matrix`` (pixels) after :func:`fit_image` to ``height`` x ``width``: the centred crop
    keeps fy and shortens the image, the resize scales both alike."""
    fy = float(np.asarray(camera_matrix, dtype=np.float64).reshape(3, 3)[1, 1])
    if not (np.isfinite(fy) and fy > 0):
        raise MessageError(f"camera_info: focal length fy must be a positive number of pixels, got {fy}")
    crop_rows = min(rows, round(cols * height / width))
    return float(np.degrees(2 * np.arctan(crop_rows / 2 / fy)))


def rgb_to_image_fields(image: np.ndarray) -> dict:
    """uint8 HxWx3 RGB -> the fields of an rgb8 sensor_msgs/Image (without header)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width, _ = image.shape
    return {"height": height, "width": width, "encoding": "rgb8", "is_bigendian": 0, "step": width * 3,
            "data": image.tobytes()}


def joint_state_to_sample(message, arm_joints: tuple[str, ...], finger_joints: tuple[str, ...],
                          stamp_s: float, received_s: float | None = None) -> JointSample:
    """sensor_msgs/JointState -> :class:`JointSample`, joints matched by name (any order, extra
    joints ignored); gripper width = sum of the finger joint positions (metres)."""
    names = list(message.name)
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in (*arm_joints, *finger_joints) if name not in index]
    if missing:
        raise MessageError(f"joint state lacks joint(s) {missing}; it has {names}")
    positions = np.asarray(message.position, dtype=np.float64)
    if positions.size != len(names):
        raise MessageError(f"joint state has {len(names)} names but {positions.size} positions")
    velocities = np.asarray(message.velocity, dtype=np.float64)
    if velocities.size not in (0, len(names)):
        raise MessageError(f"joint state has {len(names)} names but {velocities.size} velocities")
    arm = np.array([positions[index[n]] for n in arm_joints])
    arm_velocity = (np.array([velocities[index[n]] for n in arm_joints]) if velocities.size
                    else np.zeros(len(arm_joints)))
    width = float(sum(positions[index[n]] for n in finger_joints))
    return JointSample(arm, arm_velocity, width, stamp_s, received_s)
