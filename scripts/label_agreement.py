"""Diagnosis (issue "A Gato policy that stacks", results/ablation-history.md round 22): do DAgger's labels say what the
demonstrations say in the same state?

The training demonstrations are labelled by the scripted expert's phase machine (its clean action
for the state reached, under DART noise: Laskey et al. 2017); DAgger labels the states a policy
visits with `ScriptedExpert.label`, which reads the phase off the state. Where the two disagree on
the demonstrator's own states, a DAgger round trains the policy against its demonstrations. This
drives the expert as `sim generate` does (action noise and gripper flips), labels every state both
ways, and prints per demonstrated phase the mean |difference| / action bound (x, y, z, yaw, gripper)
and the share of states where the two point opposite ways (a motion dimension, both beyond a
quarter of its bound; or the gripper), over the successful episodes (the ones training keeps) and
over all episodes (a policy's rollouts look more like the failed ones: odd grasps, drops).

    MUJOCO_GL=egl .venv/bin/python scripts/label_agreement.py --episodes 40 --seed 1000000
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.sim.expert import ExpertConfig
from gato_robot.sim.relabel import DemonstrationLabelsAgent
from gato_robot.sim.rollout import make_env, run_episode


def compare(demonstrated: np.ndarray, label: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """|difference| / bound per dimension, then 1.0 where a motion dimension points the other way
    (both beyond a quarter of the bound), then 1.0 where the gripper commands differ in sign."""
    opposite = ((np.sign(demonstrated) != np.sign(label)) & (np.abs(demonstrated) > 0.25 * bound)
                & (np.abs(label) > 0.25 * bound))
    return np.r_[np.abs(demonstrated - label) / bound, float(opposite[:4].any()),
                 float(np.sign(demonstrated[4]) != np.sign(label[4]))]


def print_table(title: str, rows: dict[str, list[np.ndarray]]) -> None:
    print(f"\n{title}")
    print(f"{'phase':9s} {'states':>6s}  mean |demo - label| / bound: x     y     z     yaw   grip"
          "   opposite: motion gripper")
    every = []
    for phase, values in rows.items():
        values = np.array(values)
        every.append(values)
        print(f"{phase:9s} {len(values):6d}  " + " ".join(f"{v:5.3f}" for v in values.mean(0)[:5])
              + f"   {values[:, 5].mean():14.3f} {values[:, 6].mean():7.3f}")
    values = np.concatenate(every)
    print(f"{'all':9s} {len(values):6d}  " + " ".join(f"{v:5.3f}" for v in values.mean(0)[:5])
          + f"   {values[:, 5].mean():14.3f} {values[:, 6].mean():7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000000, help="first episode seed (the training store's)")
    parser.add_argument("--noise", type=float, default=0.2, help="expert action noise, as `sim generate --noise`")
    parser.add_argument("--gripper-noise", type=float, default=0.01, help="as `sim generate --gripper-noise`")
    args = parser.parse_args()
    bound = np.asarray(RGB_STACKING_ACTIONS.bounds, dtype=np.float64)
    env = make_env("mujoco", "train", render_cameras=False)
    successful, everything = defaultdict(list), defaultdict(list)
    agent = DemonstrationLabelsAgent(ExpertConfig(noise_std=args.noise, gripper_flip_probability=args.gripper_noise))
    stacked = 0
    for seed in range(args.seed, args.seed + args.episodes):
        success = run_episode(env, agent, seed).success
        stacked += success
        for demonstrated, label, phase in agent.pairs:
            values = compare(demonstrated, label, bound)
            everything[phase.value].append(values)
            if success:
                successful[phase.value].append(values)
    env.close()
    print(f"{args.episodes} expert episodes from seed {args.seed} (noise {args.noise}, gripper flips "
          f"{args.gripper_noise} per tick), {stacked} stacked")
    print_table("successful episodes (what training keeps)", successful)
    print_table("all episodes", everything)


if __name__ == "__main__":
    main()
