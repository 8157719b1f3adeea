"""`gato-robot bench eval`: evaluation throughput (episodes per minute) per backend and lockstep
batch size, with the split between policy and environment time, measured in one run so the
ratios to batch 1 hold on a noisy machine.

Each configuration runs ``batch_size`` environments for ``steps`` control ticks (a truncated
episode, so every row stays live) through the deployment loop `sim eval` scores every policy with
(:func:`gato_robot.sim.closed_loop.run_control_loop_episodes`), on one process with one compute thread, as
one evaluation worker does; episodes per minute are quoted for full 400-tick episodes. A baseline
(BC-IMP) is measured in the same run, so Gato's cost per episode reads as a ratio to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .closed_loop import run_control_loop_episodes
from .rollout import make_env
from .scene import DEFAULT_SCENE


@dataclass(frozen=True)
class EvalRate:
    policy: str
    backend: str
    batch_size: int
    ticks: int  # episode-ticks measured (batch x steps)
    policy_s: float  # the policy call (Gato: runner + detokenize)
    loop_s: float  # ControlLoop: watchdog, encoding (Gato: tokenizer), action path, SafetyLimits
    env_s: float  # physics and rendering

    @property
    def seconds_per_tick(self) -> float:
        return (self.policy_s + self.loop_s + self.env_s) / self.ticks

    def episodes_per_minute(self, episode_ticks: int = DEFAULT_SCENE.episode_steps) -> float:
        return 60.0 / (self.seconds_per_tick * episode_ticks)


def _measure(name: str, path: str, backend: str, batch_size: int, steps: int, engine: str, seed: int) -> EvalRate:
    from gato_robot.deploy.policy import load_policy

    policy = load_policy(path, backend, batch_size=batch_size)  # decoded as shipped
    envs = [make_env(engine, "train", scene=replace(DEFAULT_SCENE, episode_steps=steps)) for _ in range(batch_size)]
    run_control_loop_episodes(envs, policy, [seed + i for i in range(batch_size)])  # warm-up
    timing: dict[str, float] = {}
    run_control_loop_episodes(envs, policy, [seed + 100 + i for i in range(batch_size)], timing=timing)
    for env in envs:
        env.close()
    return EvalRate(Path(name).name, backend, batch_size, batch_size * steps, timing["policy_s"], timing["loop_s"], timing["env_s"])


def bench_eval(policy: str, batch_sizes: tuple[int, ...] = (1, 4, 8, 16), backends: tuple[str, ...] = ("torch",
               "onnxruntime"), steps: int = 40, engine: str = "mujoco", seed: int = 0,
               baseline: str | None = "bc-imp") -> list[EvalRate]:
    """Rates for torch and onnxruntime (a checkpoint's cached export) at every batch size; then
    ``baseline`` (torch) at every batch size."""
    from gato_robot.deploy.policy import GATO_KIND, checkpoint_kind
    from gato_robot.policies import resolve_policy

    torch.set_num_threads(1)
    checkpoint = resolve_policy(policy)
    rates = []
    for backend in backends:
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"bench eval measures the torch and onnxruntime backends, not {backend!r} "
                             "(TensorRT latency: `gato-robot bench runtime`)")
        if backend != "torch" and checkpoint_kind(checkpoint) != GATO_KIND:
            raise ValueError(f"{policy!r} runs on torch only; compiled backends run Gato policies")
        for batch_size in batch_sizes:
            rates.append(_measure(policy, checkpoint, backend, batch_size, steps, engine, seed))
    for batch_size in batch_sizes if baseline else ():
        rates.append(_measure(baseline, resolve_policy(baseline), "torch", batch_size, steps, engine, seed))
    return rates
