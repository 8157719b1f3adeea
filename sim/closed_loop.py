"""Drive a simulator with :class:`gato_robot.control.ControlLoop` as if it were the real arm:
sim camera frames and joint states (stamped with sim time) in, joint commands out.

``faults`` lets tests (and people checking a set-up) corrupt what the loop sees at chosen ticks:
freeze a camera, drop joint states, inject NaNs, swap in wrong-shaped images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gato_robot.control import ControlLoop, TickResult
from gato_robot.observation import Frame, JointSample

from .env_base import RGBStackingEnv

Fault = Callable[[int, dict[str, Frame], JointSample | None], tuple[dict[str, Frame], JointSample | None]]


@dataclass
class ClosedLoopTrace:
    results: list[TickResult]
    measured: list[np.ndarray]  # joint positions after each tick (rad)
    success: bool


def sensors(env: RGBStackingEnv, observation: dict) -> tuple[dict[str, Frame], JointSample]:
    now = env.sim_time_s
    frames = {c.name: Frame(observation[c.name], now) for c in env.scene.cameras}
    joints = JointSample(observation["joint_positions"], observation["joint_velocities"],
                         float(observation["gripper_width"][0]), now)
    return frames, joints


def run_closed_loop(env: RGBStackingEnv, loop: ControlLoop, steps: int, seed: int = 0,
                    fault: Fault | None = None) -> ClosedLoopTrace:
    observation, _ = env.reset(seed=seed)
    frames, joints = sensors(env, observation)
    loop.disable()
    loop.enable(joints)
    results, measured, success = [], [], False
    for tick in range(steps):
        seen_frames, seen_joints = fault(tick, frames, joints) if fault else (frames, joints)
        result = loop.tick(env.sim_time_s, seen_frames, seen_joints)
        results.append(result)
        observation, _, terminated, truncated, info = env.step_joint_command(result.command)
        success = success or info["success"]
        frames, joints = sensors(env, observation)
        measured.append(observation["joint_positions"].copy())
        if terminated or truncated:
            break
    return ClosedLoopTrace(results, measured, success)
