"""Diagnosis (issue "A Gato policy that stacks", results/ablation-history.md round 8): is the closed-gripper
width of the held-out objects, never seen in training, what breaks a policy on the test triplets?

Runs every held-out test triplet twice on the same seeds: with the measured gripper width as it
is, and with closed widths mapped into the range the training episodes cover (0.05-0.072 m ->
0.047 m, below 1 mm -> 1 mm; training closes on 0.04-0.05 m objects, the test objects are up to
0.07 m wide). Only the policy's input changes, never the simulation. Prints successes per triplet.

    MUJOCO_GL=egl .venv/bin/python scripts/gripper_width_probe.py --policy gato-cpu-small --episodes 10
"""

from __future__ import annotations

import argparse

import numpy as np

from gato_robot.sim.rollout import PolicyAgent, make_env, run_episodes_batched
from gato_robot.sim.triplets import TEST_TRIPLETS


def training_range_width(width_m: float) -> float:
    """A closed width the training episodes contain, for one they do not."""
    if 0.05 <= width_m <= 0.072:
        return 0.047
    return max(width_m, 0.001)


class WidthMappedAgent:
    """``agent`` seeing :func:`training_range_width` of the measured gripper width."""

    def __init__(self, agent: PolicyAgent):
        self.agent = agent

    def reset_batch(self, envs, seeds) -> None:
        self.agent.reset_batch(envs, seeds)

    def act_batch(self, observations: list[dict], infos: list[dict]) -> np.ndarray:
        mapped = [{**o, "gripper_width": np.array([training_range_width(float(np.ravel(o["gripper_width"])[0]))])}
                  for o in observations]
        return self.agent.act_batch(mapped, infos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="gato-cpu-small")
    parser.add_argument("--episodes", type=int, default=10, help="per triplet, seeds 0..N-1 (as sim eval --seed 0)")
    args = parser.parse_args()
    policy = PolicyAgent(args.policy, batch_size=args.episodes)
    for label, agent in (("measured width", policy), ("width mapped into the training range", WidthMappedAgent(policy))):
        total = 0
        for triplet in TEST_TRIPLETS:
            envs = [make_env("mujoco", triplet.name) for _ in range(args.episodes)]
            successes = sum(r.success for r in run_episodes_batched(envs, agent, list(range(args.episodes))))
            total += successes
            print(f"{label}: {triplet.name} {successes}/{args.episodes}", flush=True)
        print(f"{label}: {total}/{len(TEST_TRIPLETS) * args.episodes}")


if __name__ == "__main__":
    main()
