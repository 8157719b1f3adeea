"""Run episodes: environment factory, agents (scripted expert or Gato policy), one-episode loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gato_robot.proprio import proprio_vector
from gato_robot.runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE

from .env_base import RGBStackingEnv
from .expert import ExpertConfig, ScriptedExpert
from .scene import DEFAULT_SCENE, SceneSpec

ENGINES = ("mujoco", "pybullet")


def make_env(engine: str, triplet="train", render_cameras: bool = True, scene: SceneSpec = DEFAULT_SCENE) -> RGBStackingEnv:
    if engine == "mujoco":
        from .mujoco_env import MujocoRGBStacking

        return MujocoRGBStacking(triplet=triplet, scene=scene, render_cameras=render_cameras)
    if engine == "pybullet":
        from .pybullet_env import PybulletRGBStacking

        return PybulletRGBStacking(triplet=triplet, scene=scene, render_cameras=render_cameras)
    raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")


class Agent(Protocol):
    """``act`` returns the action to execute. An agent that demonstrates (the expert) also sets
    ``last_label``: the action to record for training, when it differs from the executed one."""

    needs_cameras: bool

    def reset(self, env: RGBStackingEnv, seed: int) -> None: ...

    def act(self, observation: dict, info: dict) -> np.ndarray: ...


class ExpertAgent:
    needs_cameras = False

    def __init__(self, config: ExpertConfig = ExpertConfig()):
        self.config = config
        self.expert: ScriptedExpert | None = None
        self.last_label: np.ndarray | None = None

    def reset(self, env: RGBStackingEnv, seed: int) -> None:
        top = env.scene.action_path.workspace.high[2]
        self.expert = ScriptedExpert(env.triplet, top, self.config, np.random.default_rng([seed, 11]))

    def act(self, observation: dict, info: dict) -> np.ndarray:
        """Executes the perturbed action; ``last_label`` keeps the clean one (DART)."""
        self.last_label = self.expert.act(observation, info["objects"])
        return self.expert.perturb(self.last_label)


class PolicyAgent:
    """A trained policy (any kind and backend: :func:`gato_robot.deploy.policy.load_policy`) acting
    through the environment's own action path, for data collection (DAgger, the policy's rollouts for
    CRR). `sim eval` scores ``policy`` through the deployment loop instead
    (:func:`gato_robot.sim.closed_loop.run_control_loop_episodes`)."""

    needs_cameras = True

    def __init__(self, path: str, backend: str = "torch", temperature: float = DEPLOYED_TEMPERATURE,
                 expectation: str = DEPLOYED_EXPECTATION, batch_size: int = 1):
        from gato_robot.deploy.policy import load_policy

        from .env_base import INSTRUCTION

        self.policy = load_policy(path, backend, INSTRUCTION, temperature, expectation, batch_size)
        self.batch_size = batch_size

    def _encode(self, observation: dict):
        from gato_robot.observation import Observation

        from .env_base import INSTRUCTION

        return self.policy.encode(Observation.from_sensors(observation, self.policy.inputs.camera_names, INSTRUCTION))

    def reset(self, env: RGBStackingEnv, seed: int) -> None:
        self.reset_batch([env], [seed])

    def act(self, observation: dict, info: dict) -> np.ndarray:
        return self.act_batch([observation], [info])[0]

    def reset_batch(self, envs: list[RGBStackingEnv], seeds: list[int]) -> None:
        self.policy.reset()
        self.policy.seed(*seeds)

    def act_batch(self, observations: list[dict], infos: list[dict]) -> np.ndarray:
        return self.policy.act_batch([self._encode(observation) for observation in observations])

    def act_each_fresh(self, observations: list[dict]) -> np.ndarray:
        """Physical actions (N, 5) on unrelated observations (offline probes), each from a fresh
        context, in lockstep batches of the policy's batch size (the last one padded)."""
        batch, out = self.batch_size, []
        for start in range(0, len(observations), batch):
            chunk = observations[start:start + batch]
            padded = chunk + [chunk[-1]] * (batch - len(chunk))  # a lockstep batch is always full
            self.reset_batch([None] * batch, list(range(start, start + batch)))
            out.append(self.act_batch(padded, [{}] * batch)[:len(chunk)])
        return np.concatenate(out)


def make_agent(policy: str, backend: str = "torch", expert_noise: float = 0.0,
               temperature: float = DEPLOYED_TEMPERATURE, gripper_noise: float = 0.0,
               expectation: str = DEPLOYED_EXPECTATION, batch_size: int = 1) -> Agent:
    """'expert' (the scripted expert, with ``expert_noise`` as a fraction of the bounds and
    ``gripper_noise`` as its per-tick probability of a gripper flip) or a policy
    (decoding its action tokens greedily, or sampled at ``temperature`` > 0)."""
    if policy == "expert":
        return ExpertAgent(ExpertConfig(noise_std=expert_noise, gripper_flip_probability=gripper_noise))
    return PolicyAgent(policy, backend, temperature, expectation, batch_size)


@dataclass
class EpisodeResult:
    engine: str
    triplet: str
    seed: int
    success: bool
    steps: int
    episode_return: float
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    held: str = ""  # through a ControlLoop: why a tick held and ended the episode ("" if none did)
    limited_ticks: int = 0  # through a ControlLoop: ticks whose command SafetyLimits changed


def run_episode(env: RGBStackingEnv, agent: Agent, seed: int, writer=None, record_frames: bool = False) -> EpisodeResult:
    """One episode until success holds (terminated) or 400 steps (truncated); optionally every
    timestep goes to an :class:`~gato_robot.data.episodes.EpisodeWriter` and frames to a video."""
    observation, info = env.reset(seed=seed)
    agent.reset(env, seed)
    total, frames, terminated = 0.0, [], False
    for _ in range(env.scene.episode_steps):
        if record_frames:
            frames.append(np.concatenate([observation[c.name] for c in env.scene.cameras], axis=1))
        action = agent.act(observation, info)
        next_observation, reward, terminated, truncated, info = env.step(action)
        if writer is not None:
            images = {c.name: observation[c.name] for c in env.scene.cameras}
            label = getattr(agent, "last_label", None)
            writer.add(images, proprio_vector(observation), action if label is None else label, reward)
        total += reward
        observation = next_observation
        if terminated or truncated:
            break
    return EpisodeResult(env.engine, env.triplet.name, seed, bool(terminated), env.steps, total, frames)


def run_episodes_batched(envs: list[RGBStackingEnv], agent: PolicyAgent, seeds: list[int],
                         record_frames: bool = False, timing: dict[str, float] | None = None,
                         writers: list | None = None) -> list[EpisodeResult]:
    """``len(seeds)`` episodes in lockstep, one per env, with one batched policy call per control
    tick. Each episode sees exactly what :func:`run_episode` would give it (same env seed, same
    sampling seed); an episode that has ended keeps its row in the batch on its last observation
    (its action is discarded) until the last one ends. ``timing``, if given, accumulates the
    seconds spent in the policy ("policy_s") and in the environments ("env_s"). ``writers`` (one
    per row) record every live row's timesteps, with the agent's ``last_labels`` as the actions
    when it keeps labels (DAgger), as :func:`run_episode` does for one episode."""
    timing = {} if timing is None else timing
    timing.setdefault("policy_s", 0.0)
    timing.setdefault("env_s", 0.0)
    if len(envs) != len(seeds):
        raise ValueError(f"{len(envs)} environments for {len(seeds)} seeds")
    observations, infos = (list(column) for column in zip(*(env.reset(seed=seed) for env, seed in zip(envs, seeds))))
    agent.reset_batch(envs, list(seeds))
    live, totals = [True] * len(envs), [0.0] * len(envs)
    terminated, frames = [False] * len(envs), [[] for _ in envs]
    for _ in range(envs[0].scene.episode_steps):
        if record_frames:
            for row in (r for r in range(len(envs)) if live[r]):
                frames[row].append(np.concatenate([observations[row][c.name] for c in envs[row].scene.cameras], axis=1))
        started = time.perf_counter()
        actions = agent.act_batch(observations, infos)
        acted = time.perf_counter()
        labels = getattr(agent, "last_labels", None)
        for row, env in enumerate(envs):
            if not live[row]:
                continue
            previous = observations[row]
            observations[row], reward, terminated[row], truncated, infos[row] = env.step(actions[row])
            if writers is not None:
                images = {c.name: previous[c.name] for c in env.scene.cameras}
                label = actions[row] if labels is None else labels[row]
                writers[row].add(images, proprio_vector(previous), label, reward)
            totals[row] += reward
            live[row] = not (terminated[row] or truncated)
        timing["policy_s"] += acted - started
        timing["env_s"] += time.perf_counter() - acted
        if not any(live):
            break
    return [EpisodeResult(env.engine, env.triplet.name, seed, bool(done), env.steps, total, episode_frames)
            for env, seed, done, total, episode_frames in zip(envs, seeds, terminated, totals, frames)]
