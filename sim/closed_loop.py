"""Drive a simulator with :class:`gato_robot.deploy.control.ControlLoop` as if it were the real arm:
sim camera frames and joint states (stamped with sim time) in, joint commands out.

:func:`run_control_loop_episodes` is how `sim eval` scores a policy (Gato or BC-IMP): B
environments in lockstep, one :class:`ControlLoop` each (its own watchdog, action path state and
SafetyLimits), and one batched policy call per tick for all of them, so an episode's score is that of the commands the
arm would be sent. A tick that holds ends its episode as a failure, with the reason kept: a hold
would restart the policy's context, which a batched policy cannot do for one row alone.

``faults`` lets tests (and people checking a set-up) corrupt what the loop sees at chosen ticks:
freeze a camera, drop joint states, inject NaNs, swap in wrong-shaped images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gato_robot.deploy.control import ControlConfig, ControlLoop, LoopState, PendingTick, TickResult
from gato_robot.observation import Frame, JointSample
from gato_robot.deploy.policy import DeployedPolicy

from .env_base import INSTRUCTION, RGBStackingEnv
from .rollout import EpisodeResult

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


def loop_for(env: RGBStackingEnv, policy: DeployedPolicy) -> ControlLoop:
    """The loop the arm would run, for this scene: its action path, its control rate."""
    return ControlLoop(policy, env.mapper, ControlConfig(rate_hz=1.0 / env.scene.control_period_s,
                                                         instruction=INSTRUCTION))


def run_control_loop_episodes(envs: list[RGBStackingEnv], policy: DeployedPolicy, seeds: list[int],
                              record_frames: bool = False, timing: dict[str, float] | None = None) -> list[EpisodeResult]:
    """``len(seeds)`` episodes in lockstep, one env and one :class:`ControlLoop` each, sharing
    ``policy`` (batch size ``len(envs)``; row i's sampling generator seeded with ``seeds[i]``).
    An episode that ended keeps its row on its last input (its action is discarded). ``timing``
    accumulates "policy_s" (the policy call), "loop_s" (the loops' own work: watchdog, encoding,
    action path, SafetyLimits) and "env_s" (physics and rendering)."""
    if len(envs) != len(seeds):
        raise ValueError(f"{len(envs)} environments for {len(seeds)} seeds")
    timing = {} if timing is None else timing
    for key in ("policy_s", "loop_s", "env_s"):
        timing.setdefault(key, 0.0)
    loops = [loop_for(env, policy) for env in envs]
    readings = []
    for env, loop, seed in zip(envs, loops, seeds):
        observation, _ = env.reset(seed=seed)
        readings.append(sensors(env, observation))
        loop.enable(readings[-1][1])
    policy.reset()
    policy.seed(*seeds)
    episodes = [EpisodeResult(env.engine, env.triplet.name, seed, False, 0, 0.0) for env, seed in zip(envs, seeds)]
    live, last_inputs = [True] * len(envs), [None] * len(envs)
    for _ in range(envs[0].scene.episode_steps):
        started, env_s = time.perf_counter(), 0.0
        pending: dict[int, PendingTick] = {}
        for row in (r for r in range(len(envs)) if live[r]):
            frames, joints = readings[row]
            if record_frames:
                episodes[row].frames.append(np.concatenate([frames[c.name].image for c in envs[row].scene.cameras], axis=1))
            begun = loops[row].begin_tick(envs[row].sim_time_s, frames, joints)
            if isinstance(begun, TickResult):
                episodes[row].held, live[row] = begun.reason, False
                continue
            pending[row], last_inputs[row] = begun, begun.encoded
        if not pending:
            break
        acting = time.perf_counter()
        actions = policy.act_batch([last_inputs[row] if last_inputs[row] is not None
                                    else next(iter(pending.values())).encoded for row in range(len(envs))])
        acted = time.perf_counter()
        for row, begun in pending.items():
            result = loops[row].end_tick(begun, actions[row])
            if result.state is not LoopState.ACTIVE:
                episodes[row].held, live[row] = result.reason, False
                continue
            episodes[row].limited_ticks += bool(result.limits_hit)
            stepping = time.perf_counter()
            observation, reward, terminated, truncated, info = envs[row].step_joint_command(result.command)
            readings[row] = sensors(envs[row], observation)
            env_s += time.perf_counter() - stepping
            episode = episodes[row]
            episode.steps, episode.episode_return = episode.steps + 1, episode.episode_return + reward
            episode.success = bool(terminated)
            live[row] = not (terminated or truncated)
        timing["policy_s"] += acted - acting
        timing["env_s"] += env_s
        timing["loop_s"] += (acting - started) + (time.perf_counter() - acted) - env_s
    return episodes
