"""RGB-stacking task logic shared by the MuJoCo and PyBullet environments (gymnasium API).

Action: the 5-D RGB-stacking action in physical units (TCP velocity m/s, wrist yaw rate rad/s,
gripper command in [-1, 1]); it goes through :class:`gato_robot.robot.action_path.CartesianActionMapper`,
so the engines receive joint position targets exactly as the real arm does.
Observation: both cameras (uint8 HxWx3), proprioception (see :mod:`gato_robot.proprio`) and the
grasp flag ``gripper_grasp`` (:func:`gato_robot.proprio.grasp_detected` of the finger target and width).
Reward: the benchmark's sparse stacking reward (1 while red sits on blue, else 0).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.proprio import GRASP_SENSOR, grasp_detected
from gato_robot.robot.action_path import CartesianActionMapper, JointCommand
from gato_robot.task import RGB_STACKING

from .scene import DEFAULT_SCENE, SceneSpec
from .triplets import TRAINING_GRIDS, Triplet, test_triplet, training_triplet

INSTRUCTION = RGB_STACKING.instruction


@dataclass(frozen=True)
class ObjectPose:
    position: np.ndarray  # (3,) metres, world frame
    quaternion: np.ndarray  # (4,) x, y, z, w

    def rotation(self) -> np.ndarray:
        x, y, z, w = self.quaternion
        return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])

    def yaw(self) -> float:
        rotation = self.rotation()
        return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def stacked(red: ObjectPose, blue: ObjectPose, contacts) -> bool:
    """The RGB-stacking success test: red within 5 cm of blue in xy, more than 2 cm above it,
    touching blue and touching neither the ground (floor or basket) nor the robot.

    ``contacts`` is a set of unordered entity pairs, or a callable returning one: it is only
    evaluated when the geometric tests pass (contact queries are the expensive part)."""
    close = np.linalg.norm(red.position[:2] - blue.position[:2]) < 0.05
    above = red.position[2] > blue.position[2] + 0.02
    if not (close and above):
        return False
    pairs = contacts() if callable(contacts) else contacts
    touching_blue = frozenset(("red", "blue")) in pairs
    free = not any(frozenset(("red", other)) in pairs for other in ("ground", "robot"))
    return bool(touching_blue and free)


class RGBStackingEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    engine = "abstract"

    def __init__(self, triplet: Triplet | str = "train", scene: SceneSpec = DEFAULT_SCENE,
                 render_cameras: bool = True, render_mode: str | None = None):
        """``triplet``: a :class:`Triplet`, "train" or "train-wide" (a new training triplet of that
        grid per episode seed, see :mod:`.triplets`) or a test triplet's name.
        ``render_cameras=False`` skips images (scripted-expert evaluation)."""
        super().__init__()
        self.scene, self.render_cameras, self.render_mode = scene, render_cameras, render_mode
        self._triplet_choice = triplet
        self.mapper = CartesianActionMapper(scene.arm, scene.action_path)
        bounds = np.asarray(RGB_STACKING_ACTIONS.bounds, dtype=np.float32)
        self.action_space = spaces.Box(-bounds, bounds, dtype=np.float32)
        image_spaces = {c.name: spaces.Box(0, 255, (c.height, c.width, 3), np.uint8) for c in scene.cameras}
        self.observation_space = spaces.Dict({
            **image_spaces,
            "joint_positions": spaces.Box(-np.pi * 2, np.pi * 2, (7,), np.float64),
            "joint_velocities": spaces.Box(-np.inf, np.inf, (7,), np.float64),
            "gripper_width": spaces.Box(0.0, scene.arm.max_gripper_width_m, (1,), np.float64),
            "tcp_pose": spaces.Box(-np.inf, np.inf, (7,), np.float64),
            GRASP_SENSOR: spaces.Box(0.0, 1.0, (1,), np.float64),
        })
        self.triplet: Triplet | None = None
        self._steps = 0
        self._success_streak = 0
        self._gripper_target = scene.arm.max_gripper_width_m
        self._arm_command = np.asarray(scene.arm.home_joint_positions, dtype=np.float64)

    # -- engine hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _load_triplet(self, triplet: Triplet) -> None:
        """Build or swap in the three objects of ``triplet``."""

    @abstractmethod
    def _reset_state(self, arm_q: np.ndarray, gripper_width: float, object_poses: dict[str, ObjectPose]) -> None:
        """Put the arm at ``arm_q`` (rad), fingers at ``gripper_width`` (m), objects at their poses."""

    @abstractmethod
    def _apply_command(self, command: JointCommand) -> None:
        """Send joint position targets to the arm's position controllers."""

    @abstractmethod
    def _step_physics(self, steps: int) -> None: ...

    @abstractmethod
    def _arm_state(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(joint positions rad, joint velocities rad/s, gripper width m)."""

    @abstractmethod
    def object_poses(self) -> dict[str, ObjectPose]: ...

    @abstractmethod
    def contacts(self) -> set[frozenset[str]]:
        """Unordered pairs of touching entities among red, green, blue, ground, robot."""

    @abstractmethod
    def render_camera(self, name: str) -> np.ndarray:
        """uint8 HxWx3 image of the named camera."""

    # -- gymnasium API -----------------------------------------------------------------------------
    def _choose_triplet(self, seed: int, options: dict | None) -> Triplet:
        choice = (options or {}).get("triplet", self._triplet_choice)
        if isinstance(choice, Triplet):
            return choice
        if choice in TRAINING_GRIDS:
            return training_triplet(seed, TRAINING_GRIDS[choice])
        return test_triplet(choice)

    def _spawn_poses(self, triplet: Triplet) -> dict[str, ObjectPose]:
        """Objects one by one at uniform xy (metres, base frame) at least ``min_separation_m`` apart,
        yaw within +-45 deg; when the first ones leave no room for the last, start over."""
        for _ in range(100):
            poses = self._try_spawn_poses(triplet)
            if poses is not None:
                return poses
        raise RuntimeError(f"could not place {len(triplet.objects())} objects {self.scene.min_separation_m} m apart "
                           f"in the spawn region {self.scene.spawn_low}..{self.scene.spawn_high}")

    def _try_spawn_poses(self, triplet: Triplet) -> dict[str, ObjectPose] | None:
        scene, poses, placed = self.scene, {}, []
        for name, params in triplet.objects().items():
            for _ in range(1000):
                xy = self.np_random.uniform(scene.spawn_low, scene.spawn_high)
                if all(np.linalg.norm(xy - other) >= scene.min_separation_m for other in placed):
                    break
            else:
                return None
            placed.append(xy)
            yaw = self.np_random.uniform(-np.pi / 4, np.pi / 4)
            position = np.array([xy[0], xy[1], params.size[2] / 2 + 0.001])
            poses[name] = ObjectPose(position, np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]))
        return poses

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31)) if seed is None else int(seed)
        triplet = self._choose_triplet(episode_seed, options)
        if self.triplet is None or triplet != self.triplet:
            self._load_triplet(triplet)
            self.triplet = triplet
        home = np.asarray(self.scene.arm.home_joint_positions, dtype=np.float64)
        self._gripper_target = self.scene.arm.max_gripper_width_m
        self._reset_state(home, self._gripper_target, self._spawn_poses(triplet))
        self._arm_command = home
        self._apply_command(JointCommand(home, self._gripper_target))
        self._step_physics(self.scene.physics.settle_steps)
        self._steps, self._success_streak = 0, 0
        return self._observation(), self._info(False)

    @property
    def sim_time_s(self) -> float:
        return self._steps * self.scene.control_period_s

    @property
    def steps(self) -> int:
        """Control periods stepped since the last reset."""
        return self._steps

    def step(self, action: np.ndarray):
        """One control period driven by a 5-D action (m/s, rad/s, gripper) through the action path."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (5,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action: expected 5 finite values (m/s x3, rad/s, gripper), got {action}")
        q, _, _ = self._arm_state()
        return self.step_joint_command(self.mapper(self.mapper.anchor(q, self._arm_command), action))

    def step_joint_command(self, command: JointCommand):
        """One control period driven by joint position targets (radians) and a finger width (m):
        the real arm's interface, used when a :class:`gato_robot.deploy.control.ControlLoop` drives the sim."""
        self._arm_command = np.asarray(command.arm_positions, dtype=np.float64)
        self._gripper_target = command.gripper_width
        self._apply_command(command)
        self._step_physics(self.scene.physics.substeps)
        self._steps += 1
        poses = self.object_poses()
        success = stacked(poses["red"], poses["blue"], self.contacts)
        self._success_streak = self._success_streak + 1 if success else 0
        terminated = self._success_streak >= self.scene.success_hold_steps
        truncated = self._steps >= self.scene.episode_steps
        return self._observation(), float(success), terminated, truncated, self._info(success, poses)

    def is_success(self) -> bool:
        poses = self.object_poses()
        return stacked(poses["red"], poses["blue"], self.contacts)

    def _observation(self) -> dict[str, np.ndarray]:
        q, dq, width = self._arm_state()
        observation = {"joint_positions": q, "joint_velocities": dq, "gripper_width": np.array([width]),
                       "tcp_pose": self.mapper.tcp_pose(q),
                       GRASP_SENSOR: np.atleast_1d(grasp_detected(self._gripper_target, width,
                                                                  self.scene.arm.max_gripper_width_m))}
        if self.render_cameras:
            observation.update({c.name: self.render_camera(c.name) for c in self.scene.cameras})
        return observation

    def _info(self, success: bool, poses: dict[str, ObjectPose] | None = None) -> dict:
        return {"success": success, "objects": poses or self.object_poses(), "triplet": self.triplet.name,
                "instruction": INSTRUCTION, "engine": self.engine, "step": self._steps}

    def render(self):
        """Both cameras side by side (rgb_array)."""
        return np.concatenate([self.render_camera(c.name) for c in self.scene.cameras], axis=1)
