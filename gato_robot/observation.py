"""What a robot (real or simulated) hands the policy at one control tick, and what the control loop
sends back: light types (numpy only), importable without Pinocchio, torch or rclpy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from .proprio import GRASP_SENSOR, proprio_vector


@dataclass(frozen=True)
class Observation:
    """One timestep of sensor input.

    images: camera name -> uint8 HxWx3 RGB image.
    proprio: 1-D float vector in SI units (radians, rad/s, metres; poses in the robot base frame),
        laid out as the environment's ``proprio_layout`` says (joint angles, joint velocities,
        gripper width, TCP position and quaternion for RGB stacking).
    instruction: task text, e.g. "stack the red object on the blue object".
    extras: sensor values beyond the proprioception layout, by name: ``gripper_grasp`` (1,), the
        grasp flag (:func:`gato_robot.proprio.grasp_detected`).
    """

    images: Mapping[str, np.ndarray]
    proprio: np.ndarray
    instruction: str = ""
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_sensors(cls, sensors: Mapping[str, np.ndarray], camera_names: tuple[str, ...],
                     instruction: str) -> "Observation":
        """The one way a live observation is built (simulators, the control loop, the node): a
        sensors dict holding each camera's image by name and the proprioception parts of
        :data:`gato_robot.proprio.PROPRIO_LAYOUT`, and the grasp flag (``gripper_grasp``) where the
        robot gives one (it goes to ``extras``). A missing camera raises KeyError naming it."""
        missing = [name for name in camera_names if name not in sensors]
        if missing:
            raise KeyError(f"no image from camera(s) {missing}; the policy's cameras are {list(camera_names)}")
        extras = {GRASP_SENSOR: np.asarray(sensors[GRASP_SENSOR], np.float64).reshape(-1)} if GRASP_SENSOR in sensors else {}
        return cls({name: sensors[name] for name in camera_names}, proprio_vector(sensors), instruction, extras)

    def grasp_flag(self) -> np.ndarray:
        """The grasp flag (``gripper_grasp``) as a (1,) float64 array, 0.0 or 1.0 as
        :func:`gato_robot.proprio.grasp_detected` gives it; the one check every policy that reads it
        (Gato's tokenizer, BC-IMP) applies. Missing, or any other value: ValueError naming it."""
        if GRASP_SENSOR not in self.extras:
            raise ValueError(f"observation has no '{GRASP_SENSOR}' value; this policy reads the grasp flag "
                             "(gato_robot.proprio.grasp_detected)")
        flag = np.asarray(self.extras[GRASP_SENSOR], dtype=np.float64).reshape(-1)
        if flag.shape != (1,) or flag[0] not in (0.0, 1.0):
            raise ValueError(f"'{GRASP_SENSOR}' must be one value, 0 or 1 (the grasp flag), got {flag.tolist()}")
        return flag


@dataclass(frozen=True)
class JointSample:
    """Measured arm state: positions (rad) and velocities (rad/s) in URDF joint order, gripper width
    (m), and the time it was measured (seconds, the loop's clock)."""

    positions: np.ndarray
    velocities: np.ndarray
    gripper_width: float
    stamp_s: float
    received_s: float | None = None  # when the adapter received it (same clock); None: same as stamp_s
    unchanged_since_s: float | None = None  # receive time of the first sample with these exact values
    # (set by :func:`newest`; the watchdog finds a driver re-stamping frozen data by it)

    def same_values(self, other: "JointSample") -> bool:
        return (np.array_equal(self.positions, other.positions) and np.array_equal(self.velocities, other.velocities)
                and self.gripper_width == other.gripper_width)


@dataclass(frozen=True)
class Frame:
    """One camera image (uint8 HxWx3 RGB) and the time it was captured (seconds)."""

    image: np.ndarray
    stamp_s: float
    received_s: float | None = None  # when the adapter received it (same clock); None: same as stamp_s
    unchanged_since_s: float | None = None  # receive time of the first frame with these exact pixels

    def same_values(self, other: "Frame") -> bool:
        return np.array_equal(self.image, other.image)


def newest(sample: Frame | JointSample, previous: Frame | JointSample | None) -> Frame | JointSample | None:
    """``sample`` as the newest of its source (a camera, the joint states), after ``previous``: None
    when it is stamped before ``previous`` (out of order: drop it); else with ``unchanged_since_s``
    carried over from ``previous`` when its values are identical, or its own receive time."""
    if previous is not None and sample.stamp_s < previous.stamp_s:
        return None
    if previous is not None and sample.same_values(previous):
        return replace(sample, unchanged_since_s=previous.unchanged_since_s)
    return replace(sample, unchanged_since_s=sample.received_s if sample.received_s is not None else sample.stamp_s)


@dataclass(frozen=True)
class JointCommand:
    """Joint position targets (radians, arm joints in URDF order) and finger width (metres)."""

    arm_positions: np.ndarray
    gripper_width: float
