"""The action path, shared by the simulators and the real arm:

    detokenized action (normalized) -> Cartesian TCP velocity (base frame) -> joint position targets

Damped least-squares differential IK on the robot's URDF (Pinocchio):
``dq = J^T (J J^T + lambda^2 I)^-1 [v; w]``, where ``v`` is the commanded TCP linear velocity
(m/s, clipped to keep the TCP inside the workspace box) and ``w`` (rad/s) turns the gripper toward
"pointing down at the commanded yaw": the commanded yaw rate integrates a yaw target that stays
within +-pi/2 of the home yaw, and roll/pitch errors are corrected at the same time. With a
``posture_gain`` k > 0 (1/s), ``(I - J+ J) k (q_home - q)`` is added: a pull toward the home
posture in the null space of the TCP task, so the redundant elbow does not drift to its limits
over a long episode while the TCP motion is unchanged (to first order). Joint targets
``q + dq * dt`` are clamped to the URDF's velocity and position limits. The gripper command in
[-1, 1] (-1 open, +1 closed) maps linearly to a finger width in [max_width, 0].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..observation import JointCommand
from .description import DATASHEETS, PANDA, ArmDescription
from ..task import RGB_STACKING


@dataclass(frozen=True)
class Workspace:
    """Box the TCP must stay in, base frame, metres (RGB stacking: 0.25 x 0.25 x 0.2 m)."""

    low: tuple[float, float, float] = (0.375, -0.125, 0.015)
    high: tuple[float, float, float] = (0.625, 0.125, 0.215)

    def contains(self, position: np.ndarray, tolerance: float = 1e-6) -> bool:
        return bool(np.all(position >= np.asarray(self.low) - tolerance)
                    and np.all(position <= np.asarray(self.high) + tolerance))


@dataclass(frozen=True)
class ActionPathConfig:
    control_period_s: float = RGB_STACKING.control_period_s
    damping: float = 0.05  # DLS lambda
    orientation_gain: float = 0.5  # fraction of the orientation error removed per tick
    yaw_limit_rad: float = np.pi / 2  # wrist yaw relative to home
    workspace: Workspace = Workspace()
    velocity_limit_scale: float = 0.9  # fraction of the URDF joint velocity limits used
    max_tracking_error_rad: float = 0.05  # how far the IK linearization point may lead the measurement
    posture_gain: float = 0.0  # 1/s: null-space pull toward the home joints (0: off, as the training data were made)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.posture_gain) and 0.0 <= self.posture_gain * self.control_period_s <= 1.0):
            raise ValueError(f"posture_gain must be in [0, 1 / control_period_s] (1/s), got {self.posture_gain}")


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw (rad) of a gripper pointing down: the angle of its x axis in the base xy-plane."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def wrap_angle(angle: float) -> float:
    """Angle (rad) wrapped into [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class ArmKinematics:
    """Pinocchio model of the arm with the fingers locked: forward kinematics and the TCP Jacobian."""

    def __init__(self, arm: ArmDescription = PANDA):
        full = pin.buildModelFromUrdf(str(arm.resolved_urdf()))
        missing = [name for name in (*arm.arm_joints, *arm.finger_joints) if not full.existJointName(name)]
        if missing:
            raise ValueError(f"URDF {arm.resolved_urdf()} has no joint(s) {missing}")
        locked = [full.getJointId(name) for name in arm.finger_joints]
        self.model = pin.buildReducedModel(full, locked, pin.neutral(full))
        movable = list(self.model.names[1:])  # after "universe", in the model's (URDF chain) order
        if movable != list(arm.arm_joints):  # commands and limits are indexed in this order
            raise ValueError(f"arm_joints {list(arm.arm_joints)} must be the URDF's movable joints other than the "
                             f"fingers, in chain order: {movable}")
        self.data = self.model.createData()
        if not self.model.existFrame(arm.tcp_frame):
            raise ValueError(f"URDF {arm.resolved_urdf()} has no frame {arm.tcp_frame!r}")
        self.tcp = self.model.getFrameId(arm.tcp_frame)
        self.arm = arm
        self.lower = self.model.lowerPositionLimit.copy()
        self.upper = self.model.upperPositionLimit.copy()
        self.velocity_limit = self.model.velocityLimit.copy()
        self.acceleration_limit: np.ndarray | None = None  # rad/s^2; a URDF states none
        if arm.datasheet:  # never wider than the manufacturer's limits
            sheet = DATASHEETS[arm.datasheet]
            self.lower = np.maximum(self.lower, sheet.lower)
            self.upper = np.minimum(self.upper, sheet.upper)
            self.velocity_limit = np.minimum(self.velocity_limit, sheet.velocity)
            self.acceleration_limit = np.asarray(sheet.acceleration, dtype=np.float64)

    def tcp_transform(self, q: np.ndarray) -> pin.SE3:
        pin.framesForwardKinematics(self.model, self.data, np.asarray(q, dtype=np.float64))
        return self.data.oMf[self.tcp]

    def tcp_pose(self, q: np.ndarray) -> np.ndarray:
        """TCP position (m) and quaternion (x, y, z, w) in the base frame, shape (7,).

        The quaternion's sign is chosen so x >= 0: a downward gripper within +-pi/2 of zero yaw has
        w ~ 0 and |x| >= 0.7, so this keeps the value continuous where "w >= 0" would flip it."""
        transform = self.tcp_transform(q)
        quaternion = pin.Quaternion(transform.rotation).coeffs()  # x, y, z, w
        if quaternion[0] < 0:
            quaternion = -quaternion
        return np.concatenate([transform.translation, quaternion])

    def jacobian(self, q: np.ndarray) -> tuple[np.ndarray, pin.SE3]:
        """6 x 7 TCP Jacobian in the base-aligned frame at the TCP (linear rows first), and the TCP
        transform, from one kinematics pass."""
        q = np.asarray(q, dtype=np.float64)
        pin.computeJointJacobians(self.model, self.data, q)  # also runs forward kinematics
        pin.updateFramePlacements(self.model, self.data)
        jacobian = pin.getFrameJacobian(self.model, self.data, self.tcp, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        return jacobian, self.data.oMf[self.tcp]


class CartesianActionMapper:
    """Physical 5-D action (m/s, rad/s, gripper) + measured joint positions -> :class:`JointCommand`."""

    def __init__(self, arm: ArmDescription = PANDA, config: ActionPathConfig = ActionPathConfig(),
                 spec: ActionSpec = RGB_STACKING_ACTIONS):
        self.kinematics = ArmKinematics(arm)
        self.config, self.spec, self.arm = config, spec, arm
        home = self.kinematics.tcp_transform(np.asarray(arm.home_joint_positions)).rotation
        self.home_yaw = yaw_of(home)
        self._down = pin.utils.rpyToMatrix(0.0, 0.0, -self.home_yaw) @ home  # home orientation at zero yaw
        self._home = np.asarray(arm.home_joint_positions, dtype=np.float64)

    def tcp_pose(self, q: np.ndarray) -> np.ndarray:
        return self.kinematics.tcp_pose(q)

    def target_rotation(self, yaw: float) -> np.ndarray:
        return pin.utils.rpyToMatrix(0.0, 0.0, yaw) @ self._down

    def anchor(self, measured: np.ndarray, last_command: np.ndarray | None) -> np.ndarray:
        """Linearization point for the next step: the last joint command, pulled to within
        ``max_tracking_error_rad`` of the measured joints. Integrating from the command (as a
        forward position controller does) makes the TCP move at the commanded speed despite
        controller lag; the bound keeps a blocked arm from winding the command up."""
        measured = np.asarray(measured, dtype=np.float64)
        if last_command is None:
            return measured
        bound = self.config.max_tracking_error_rad
        return measured + np.clip(np.asarray(last_command, dtype=np.float64) - measured, -bound, bound)

    def workspace_velocity(self, position: np.ndarray, velocity: np.ndarray, dt: float | None = None) -> np.ndarray:
        """Clip a TCP velocity (m/s) so one control period (``dt`` s; default the configured one)
        ends inside the workspace box."""
        dt, box = dt or self.config.control_period_s, self.config.workspace
        bound = self.spec.bounds[0]
        low = np.clip((np.asarray(box.low) - position) / dt, -bound, bound)
        high = np.clip((np.asarray(box.high) - position) / dt, -bound, bound)
        return np.clip(velocity, np.minimum(low, high), np.maximum(low, high))

    def __call__(self, q: np.ndarray, action: np.ndarray, dt: float | None = None) -> JointCommand:
        """The joint command that executes ``action`` for ``dt`` seconds (default: the configured
        control period; the real-arm loop passes the measured one)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.arm.arm_joints),) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions: expected {len(self.arm.arm_joints)} finite values (rad), got {q}")
        action = np.clip(np.asarray(action, dtype=np.float64), -np.asarray(self.spec.bounds), self.spec.bounds)
        cfg, dt = self.config, dt or self.config.control_period_s
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"control period must be a positive number of seconds, got {dt}")
        jacobian, transform = self.kinematics.jacobian(q)
        velocity = self.workspace_velocity(transform.translation, action[:3], dt)

        yaw = yaw_of(transform.rotation)
        relative = wrap_angle(yaw - self.home_yaw)
        target_relative = np.clip(relative + action[3] * dt, -cfg.yaw_limit_rad, cfg.yaw_limit_rad)
        target = self.target_rotation(self.home_yaw + target_relative)
        rotation_error = pin.log3(target @ transform.rotation.T)  # base frame, radians
        # Roll/pitch errors decay by `orientation_gain` per tick; the yaw step to the target is taken in full.
        angular = rotation_error * cfg.orientation_gain / dt
        angular[2] = rotation_error[2] / dt

        twist = np.concatenate([velocity, angular])
        gram = jacobian @ jacobian.T + cfg.damping ** 2 * np.eye(6)
        dq = jacobian.T @ np.linalg.solve(gram, twist) * dt  # joint step (rad) over one period
        if cfg.posture_gain > 0:
            pull = cfg.posture_gain * dt * (self._home - q)
            dq += pull - jacobian.T @ np.linalg.solve(gram, jacobian @ pull)  # (I - J+ J) pull
        max_step = self.kinematics.velocity_limit * cfg.velocity_limit_scale * dt
        dq = np.clip(dq, -max_step, max_step)
        targets = np.clip(q + dq, self.kinematics.lower, self.kinematics.upper)
        width = self.arm.max_gripper_width_m * (1.0 - action[4]) / 2.0
        return JointCommand(targets, float(np.clip(width, 0.0, self.arm.max_gripper_width_m)))
