"""The safety layer between the policy and the arm: limits, watchdog and hold.

Every joint command passes :meth:`SafetyLimits.filter` before it reaches an arm: joint positions
are clamped to the URDF limits, the change per control tick to the URDF velocity limits (scaled),
and the gripper width to [0, max]; a non-finite command is refused (the caller holds).
:class:`Watchdog` decides whether sensor inputs are fit to act on (present, fresh, finite, the
right shape and encoding); anything else means hold the last safe command and report why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .actions import JointCommand


class UnsafeCommand(ValueError):
    """A command that cannot be made safe by clamping (NaN/Inf, wrong size)."""


@dataclass(frozen=True)
class SafetyLimits:
    """Joint limits in radians (arm joints, URDF order), rad/s, metres."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    control_period_s: float = 0.05
    velocity_scale: float = 0.9
    max_gripper_width_m: float = 0.08

    @classmethod
    def from_kinematics(cls, kinematics, control_period_s: float = 0.05, velocity_scale: float = 0.9,
                        max_gripper_width_m: float = 0.08) -> "SafetyLimits":
        return cls(kinematics.lower.copy(), kinematics.upper.copy(), kinematics.velocity_limit.copy(),
                   control_period_s, velocity_scale, max_gripper_width_m)

    @property
    def max_step(self) -> np.ndarray:
        """Largest change of each joint target per tick (rad)."""
        return self.velocity * self.velocity_scale * self.control_period_s

    def filter(self, command: JointCommand, previous: JointCommand) -> tuple[JointCommand, list[str]]:
        """Clamp ``command`` against the limits and the ``previous`` command; returns the safe command
        and the list of limits that were hit (empty if none)."""
        positions = np.asarray(command.arm_positions, dtype=np.float64)
        if positions.shape != self.lower.shape:
            raise UnsafeCommand(f"command has {positions.size} joint targets, the arm has {self.lower.size}")
        if not np.all(np.isfinite(positions)) or not np.isfinite(command.gripper_width):
            raise UnsafeCommand(f"non-finite command: joints {positions}, gripper {command.gripper_width}")
        hits = []
        clamped = np.clip(positions, self.lower, self.upper)
        if np.any(clamped != positions):
            hits.append("joint position limit")
        step = np.clip(clamped - previous.arm_positions, -self.max_step, self.max_step)
        if np.any(previous.arm_positions + step != clamped):
            hits.append("joint velocity limit")
        width = float(np.clip(command.gripper_width, 0.0, self.max_gripper_width_m))
        if width != command.gripper_width:
            hits.append("gripper width limit")
        return JointCommand(np.clip(previous.arm_positions + step, self.lower, self.upper), width), hits


@dataclass(frozen=True)
class JointSample:
    """Measured arm state: positions (rad) and velocities (rad/s) in URDF joint order, gripper width
    (m), and the time it was measured (seconds, the loop's clock)."""

    positions: np.ndarray
    velocities: np.ndarray
    gripper_width: float
    stamp_s: float


@dataclass(frozen=True)
class Frame:
    """One camera image (uint8 HxWx3 RGB) and the time it was captured (seconds)."""

    image: np.ndarray
    stamp_s: float


@dataclass(frozen=True)
class WatchdogConfig:
    max_image_age_s: float = 0.25
    max_joint_state_age_s: float = 0.1
    image_shape: tuple[int, int, int] = (128, 128, 3)
    joint_count: int = 7


class Watchdog:
    """Checks sensor inputs; returns the reason to hold, or None when they are fit to act on."""

    def __init__(self, config: WatchdogConfig, camera_names: tuple[str, ...]):
        self.config, self.camera_names = config, camera_names

    def joint_problem(self, joints: JointSample | None, now_s: float) -> str | None:
        cfg = self.config
        if joints is None:
            return "no joint state received"
        age = now_s - joints.stamp_s
        if age > cfg.max_joint_state_age_s:
            return f"joint state is stale: {age * 1e3:.0f} ms old (max {cfg.max_joint_state_age_s * 1e3:.0f} ms)"
        positions, velocities = np.asarray(joints.positions), np.asarray(joints.velocities)
        if positions.shape != (cfg.joint_count,) or velocities.shape != (cfg.joint_count,):
            return (f"joint state: expected {cfg.joint_count} positions and velocities, "
                    f"got {positions.shape} and {velocities.shape}")
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(velocities)) and np.isfinite(joints.gripper_width)):
            return "joint state contains NaN/Inf"
        return None

    def image_problem(self, frames: dict[str, Frame], now_s: float) -> str | None:
        cfg = self.config
        for name in self.camera_names:
            frame = frames.get(name)
            if frame is None:
                return f"camera '{name}': no image received"
            age = now_s - frame.stamp_s
            if age > cfg.max_image_age_s:
                return f"camera '{name}' is stale: {age * 1e3:.0f} ms old (max {cfg.max_image_age_s * 1e3:.0f} ms)"
            image = frame.image
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != cfg.image_shape:
                shape = getattr(image, "shape", None)
                dtype = getattr(image, "dtype", type(image).__name__)
                expected = "x".join(map(str, cfg.image_shape))
                return f"camera '{name}': expected {expected} uint8, got {shape} {dtype}"
        return None
