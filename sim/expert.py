"""Scripted expert: grasp red, lift, place it on blue, release, through the same 5-D Cartesian
action interface the policy uses (m/s, rad/s, gripper), from privileged object poses.

A phase machine with proportional control; the gripper closes across the object's y axis (the
shapes guarantee that extent fits). If red slips out of the gripper on the way, the expert goes
back to grasping it. Gaussian action noise (``noise_std``, in units of each action bound) makes the
demonstrations diverse, as the benchmark's data-collecting agents are. The noise is applied to the
*executed* action only; the recorded label is the clean expert action for the state reached (DART,
Laskey et al. 2017): the data covers the states a slightly-off policy visits, and the labels say
how to recover from them instead of teaching the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS

from .env_base import ObjectPose
from .triplets import Triplet


class Phase(Enum):
    APPROACH = "approach"
    DESCEND = "descend"
    GRASP = "grasp"
    LIFT = "lift"
    CARRY = "carry"
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"


@dataclass(frozen=True)
class ExpertConfig:
    position_gain: float = 4.0  # 1/s
    yaw_gain: float = 3.0  # 1/s
    position_tolerance_m: float = 0.006
    yaw_tolerance_rad: float = 0.05
    clearance_m: float = 0.05  # height above objects while moving
    grasp_steps: int = 8
    release_steps: int = 6
    noise_std: float = 0.0
    gripper_flip_probability: float = 0.0  # per tick: start executing the opposite gripper command
    gripper_flip_steps: int = 4  # ticks each gripper perturbation lasts (0.2 s at 20 Hz)


def _yaw_from_quaternion(quaternion: np.ndarray) -> float:
    return ObjectPose(np.zeros(3), np.asarray(quaternion)).yaw()


def _wrap_half_pi(angle: float) -> float:
    """Wrap to [-pi/2, pi/2): a parallel gripper is symmetric under a half turn."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


class ScriptedExpert:
    def __init__(self, triplet: Triplet, workspace_top_m: float, config: ExpertConfig = ExpertConfig(),
                 rng: np.random.Generator | None = None):
        self.triplet, self.workspace_top_m, self.config = triplet, workspace_top_m, config
        self.rng = rng or np.random.default_rng(0)
        self.phase = Phase.APPROACH
        self._timer = 0
        self._grasp_offset = np.zeros(3)
        self._flip_left = 0
        self._red_rest_z: float | None = None  # red's height at the first labelled state (m)

    def _move(self, tcp: np.ndarray, target: np.ndarray, target_yaw: float, tcp_yaw: float, gripper: float):
        cfg, bound = self.config, RGB_STACKING_ACTIONS.bounds
        velocity = np.clip(cfg.position_gain * (target - tcp), -bound[0], bound[0])
        yaw_error = _wrap_half_pi(target_yaw - tcp_yaw)
        yaw_rate = float(np.clip(cfg.yaw_gain * yaw_error, -bound[3], bound[3]))
        arrived = np.linalg.norm(target - tcp) < cfg.position_tolerance_m and abs(yaw_error) < cfg.yaw_tolerance_rad
        return np.array([*velocity, yaw_rate, gripper]), arrived

    def _heights(self, objects: dict[str, ObjectPose]) -> tuple[float, float]:
        """(grasp z, carry z) in the base frame (m) for the objects where they are now."""
        red, blue = objects["red"], objects["blue"]
        red_size, blue_size = self.triplet.red.size, self.triplet.blue.size
        grasp_z = red.position[2] + min(0.0, 0.015 - red_size[2] / 2)
        grasp_z = max(grasp_z, red.position[2] - red_size[2] / 2 + 0.012)
        # Carry height: red's bottom clears blue's top (and the others) by `clearance_m`; inside the box.
        tallest = max(p.size[2] for p in self.triplet.objects().values())
        travel_z = min(max(blue.position[2] + blue_size[2] / 2, tallest) + red_size[2] / 2 + self.config.clearance_m,
                       self.workspace_top_m - 0.01)
        return grasp_z, travel_z

    def label(self, observation: dict, objects: dict[str, ObjectPose]) -> tuple[np.ndarray, Phase]:
        """The expert's clean action for a state it did not drive to (DAgger labelling), with the
        phase read off the state instead of remembered: whether red is held (lifted, between the
        fingers, fingers closed), on blue, or where the TCP is relative to it. The phase machine of
        :meth:`act` assumes its own actions ran (a timed grasp, "arrived at carry height" before a
        descent), so it mislabels the states a policy visits (README, recipe ablation round 6).
        Does not change the machine's state."""
        action, phase = self._label_phase(observation, objects)
        return self._clip(action), phase

    def _label_phase(self, observation: dict, objects: dict[str, ObjectPose]) -> tuple[np.ndarray, Phase]:
        """:meth:`label` before the final clip to the action bounds."""
        tcp = np.asarray(observation["tcp_pose"][:3])
        tcp_yaw = _yaw_from_quaternion(observation["tcp_pose"][3:])
        red, blue = objects["red"], objects["blue"]
        red_size, blue_size = self.triplet.red.size, self.triplet.blue.size
        grasp_z, travel_z = self._heights(objects)
        width = float(np.asarray(observation["gripper_width"]).reshape(-1)[0])
        if self._red_rest_z is None:  # the first labelled state is the episode's start: red on the table
            self._red_rest_z = float(red.position[2])
        offset = red.position - tcp
        between_fingers = np.linalg.norm(offset[:2]) < 0.02 and abs(offset[2]) < red_size[2] / 2 + 0.01
        # Closed on red, not shut on air: a deformed red (bevels, holes, slants) stops the fingers well
        # inside its nominal size, so only an upper bound on the width says "closed".
        closed_on_red = 0.005 < width < red_size[1] + 0.004
        on_blue_z = blue.position[2] + blue_size[2] / 2 + red_size[2] / 2
        lifted = red.position[2] > self._red_rest_z + 0.01 and abs(red.position[2] - on_blue_z) > 0.01
        over_blue = np.linalg.norm(red.position[:2] - blue.position[:2]) < 0.015
        # Red in the air between the fingers is held even while a perturbation opens them: close again,
        # as the machine's label does (it keeps "close" through the gripper flips of the demonstrations).
        if between_fingers and (closed_on_red or lifted) and (lifted or not over_blue):
            target_xy = blue.position[:2] - offset[:2]
            to_target = np.linalg.norm(target_xy - tcp[:2])
            below_travel = tcp[2] < travel_z - 0.005
            # Once lowering beside blue, keep lowering while correcting xy (the machine's LOWER), rather
            # than going back up to carry height for a few millimetres of drift.
            if to_target > self.config.position_tolerance_m and not (below_travel and to_target < 0.02):
                phase = Phase.LIFT if below_travel else Phase.CARRY
                target = np.array([*(tcp[:2] if phase is Phase.LIFT else target_xy), travel_z])
                return self._move(tcp, target, tcp_yaw, tcp_yaw, 1.0)[0], phase
            place_z = on_blue_z + 0.008 - offset[2]
            action, arrived = self._move(tcp, np.array([*target_xy, place_z]), tcp_yaw, tcp_yaw, 1.0)
            if not arrived:
                return action, Phase.LOWER
            return self._move(tcp, tcp, tcp_yaw, tcp_yaw, -1.0)[0], Phase.RELEASE
        # On blue as the benchmark's success test counts it (within 5 cm in xy), resting at its height.
        stacked = (np.linalg.norm(red.position[:2] - blue.position[:2]) < 0.05
                   and abs(red.position[2] - on_blue_z) < 0.02)
        if stacked:  # let go (hold still while the fingers open off red), then clear
            if between_fingers and width < red_size[1] + 0.012:
                return self._move(tcp, tcp, tcp_yaw, tcp_yaw, -1.0)[0], Phase.RELEASE
            target = np.array([tcp[0], tcp[1], travel_z + 0.03])
            return self._move(tcp, target, tcp_yaw, tcp_yaw, -1.0)[0], Phase.RETREAT
        xy_error = np.linalg.norm(offset[:2])
        grasp_target = np.array([red.position[0], red.position[1], grasp_z])
        # Descend once above red and turned to it at carry height (the machine's arrival test), and keep
        # descending below carry height while within 1 cm (correcting xy and yaw on the way), then close.
        at_travel = tcp[2] > travel_z - 0.01
        arrived_above = self._move(tcp, np.array([*red.position[:2], travel_z]), red.yaw(), tcp_yaw, -1.0)[1]
        if (arrived_above if at_travel else xy_error < 0.01):
            action, arrived = self._move(tcp, grasp_target, red.yaw(), tcp_yaw, -1.0)
            if arrived:
                return self._move(tcp, tcp, tcp_yaw, tcp_yaw, 1.0)[0], Phase.GRASP
            return action, Phase.DESCEND
        # Approach: far off or above carry height, to carry height; within 4 cm, or above red but not
        # yet turned to it, align at the present height (never below grasp).
        z = travel_z if xy_error > 0.04 else float(np.clip(tcp[2], grasp_z, travel_z))
        target = np.array([red.position[0], red.position[1], z])
        return self._move(tcp, target, red.yaw(), tcp_yaw, -1.0)[0], Phase.APPROACH

    def act(self, observation: dict, objects: dict[str, ObjectPose]) -> np.ndarray:
        """Clean physical action for this tick; ``objects`` are the privileged poses from ``info``."""
        cfg = self.config
        tcp = observation["tcp_pose"][:3]
        tcp_yaw = _yaw_from_quaternion(observation["tcp_pose"][3:])
        red, blue = objects["red"], objects["blue"]
        red_size, blue_size = self.triplet.red.size, self.triplet.blue.size
        red_yaw = red.yaw()
        grasp_z, travel_z = self._heights(objects)
        holding = self.phase in (Phase.LIFT, Phase.CARRY, Phase.LOWER)
        if holding and np.linalg.norm(red.position - tcp - self._grasp_offset) > 0.03:
            self.phase = Phase.APPROACH  # red slipped: grasp again

        if self.phase == Phase.APPROACH:
            target = np.array([red.position[0], red.position[1], travel_z])
            action, arrived = self._move(tcp, target, red_yaw, tcp_yaw, -1.0)
            if arrived:
                self.phase = Phase.DESCEND
        elif self.phase == Phase.DESCEND:
            target = np.array([red.position[0], red.position[1], grasp_z])
            action, arrived = self._move(tcp, target, red_yaw, tcp_yaw, -1.0)
            if arrived:
                self.phase, self._timer = Phase.GRASP, 0
        elif self.phase == Phase.GRASP:
            action, _ = self._move(tcp, tcp, tcp_yaw, tcp_yaw, 1.0)
            self._timer += 1
            if self._timer >= cfg.grasp_steps:
                self.phase, self._grasp_offset = Phase.LIFT, red.position - tcp
        elif self.phase == Phase.LIFT:
            action, arrived = self._move(tcp, np.array([tcp[0], tcp[1], travel_z]), tcp_yaw, tcp_yaw, 1.0)
            if arrived or tcp[2] > travel_z - 0.005:
                self.phase = Phase.CARRY
        elif self.phase == Phase.CARRY:
            target = np.array([*(blue.position[:2] - self._grasp_offset[:2]), travel_z])
            action, arrived = self._move(tcp, target, tcp_yaw, tcp_yaw, 1.0)
            if arrived:
                self.phase = Phase.LOWER
        elif self.phase == Phase.LOWER:
            place_z = blue.position[2] + blue_size[2] / 2 + red_size[2] / 2 + 0.008 - self._grasp_offset[2]
            target = np.array([*(blue.position[:2] - self._grasp_offset[:2]), place_z])
            action, arrived = self._move(tcp, target, tcp_yaw, tcp_yaw, 1.0)
            if arrived:
                self.phase, self._timer = Phase.RELEASE, 0
        elif self.phase == Phase.RELEASE:
            action, _ = self._move(tcp, tcp, tcp_yaw, tcp_yaw, -1.0)
            self._timer += 1
            if self._timer >= cfg.release_steps:
                self.phase = Phase.RETREAT
        else:  # RETREAT
            action, _ = self._move(tcp, np.array([tcp[0], tcp[1], travel_z + 0.03]), tcp_yaw, tcp_yaw, -1.0)
        return self._clip(action)

    def perturb(self, action: np.ndarray) -> np.ndarray:
        """The action to execute: ``action`` plus Gaussian noise on the four motion dimensions and,
        with ``gripper_flip_probability`` per tick, the opposite gripper command for
        ``gripper_flip_steps`` ticks (a missed or dropped grasp the expert then recovers from; the
        recorded label stays the clean action, DART)."""
        cfg = self.config
        executed = np.array(action, dtype=np.float64)
        if cfg.noise_std:
            executed[:4] += self.rng.normal(0.0, cfg.noise_std, 4) * np.asarray(RGB_STACKING_ACTIONS.bounds[:4])
        if cfg.gripper_flip_probability:
            if self._flip_left == 0 and self.rng.random() < cfg.gripper_flip_probability:
                self._flip_left = cfg.gripper_flip_steps
            if self._flip_left:
                executed[4] = -action[4]
                self._flip_left -= 1
        return self._clip(executed)

    @staticmethod
    def _clip(action: np.ndarray) -> np.ndarray:
        return np.clip(action, -np.asarray(RGB_STACKING_ACTIONS.bounds), RGB_STACKING_ACTIONS.bounds)
