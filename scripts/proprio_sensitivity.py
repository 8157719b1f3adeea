"""How smoothly a policy's motion responds to the measured TCP position, on a store's expert states.

Every ``--every``-th timestep of every episode; the TCP x (or y) in the proprioception is moved by
-2 .. +2 mm in 0.5 mm steps with everything else held, and the policy acts from a fresh context
(motion by physical expectation, gripper by argmax: deterministic). Printed per policy, for the
commanded velocity along the moved axis, in units of its bound:
- slope: the mean change per mm (what alignment needs: the expert's gain is ~0.1 per mm);
- roughness: the mean |second difference| over the mean |first difference| (0 for a straight
  response, ~2 for steps that flip sign every 0.5 mm): a policy that jumps as the reading crosses a
  mu-law bin edge has spurious stopping points near the object.

    .venv/bin/python scripts/proprio_sensitivity.py --store ../data/heldout \\
        --policy bc-imp --policy gato-cpu-small --policy ../runs/ablation/all-novel-gf-fourier/checkpoint
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gato_robot.sim.rollout import PolicyAgent

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.policies.golden import store_states

OFFSETS_MM = np.arange(-2.0, 2.01, 0.5)
BATCH = 9  # one state's offsets per batched call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--policy", action="append", required=True)
    parser.add_argument("--axis", type=int, default=0, choices=(0, 1), help="0: x, 1: y (base frame)")
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    states = store_states(args.store, args.every)
    bound = RGB_STACKING_ACTIONS.bounds[args.axis]
    print(f"{len(states)} expert states, TCP {'xy'[args.axis]} moved by {OFFSETS_MM.tolist()} mm")
    for spec in args.policy:
        agent = PolicyAgent(spec, temperature=0.0, expectation="physical", batch_size=BATCH)
        responses = []
        for index, sensors in enumerate(states):
            moved = []
            for offset in OFFSETS_MM:
                pose = sensors["tcp_pose"].copy()
                pose[args.axis] += offset * 1e-3
                moved.append({**sensors, "tcp_pose": pose})
            agent.reset_batch([None] * BATCH, [index] * BATCH)
            responses.append(agent.act_batch(moved, [{}] * BATCH)[:, args.axis] / bound)
        responses = np.stack(responses)  # states x offsets
        first, second = np.diff(responses, axis=1), np.diff(responses, n=2, axis=1)
        slope = np.mean((responses[:, -1] - responses[:, 0]) / (OFFSETS_MM[-1] - OFFSETS_MM[0]))
        roughness = np.abs(second).mean() / max(np.abs(first).mean(), 1e-12)
        print(f"{spec}: slope {slope:+.4f} per mm, mean |step| {np.abs(first).mean():.4f} per 0.5 mm, "
              f"roughness {roughness:.2f}")


if __name__ == "__main__":
    main()
