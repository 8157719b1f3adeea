"""Which input a policy's motion depends on: its actions on a store's expert states, with the
camera images (or the proprioception, or the joint velocities alone) taken from another state of
the store, or the joint velocities set to zero (what a policy that copies its previous command reads
once it has stopped).

Every ``--every``-th timestep of every episode; each policy acts from a fresh context, decoded as
deployed (Gato: the physical expectation of the motion bins + argmax gripper; BC-IMP: its head).
For each swap and each motion dimension, R^2 of the swapped actions against the unswapped ones:
near 1, the policy ignores the swapped input; near 0 or below, it relies on it. A policy that
reads depth from the cameras loses its x command when the images are swapped. First, per policy, R^2
of the unswapped actions against the expert's recorded labels for the same states: how much of each
motion dimension the policy predicts at all (round 35: yaw 0.14 for both Gato and BC-IMP).

    .venv/bin/python scripts/input_reliance.py --store ../data/heldout --policy bc-imp --policy gato-cpu-small
    .venv/bin/python scripts/input_reliance.py --store ../data/heldout --policy bc-imp \
        --policy ../runs/ablation/all-gf-global-query/checkpoint   # round 24: how far each follows the velocities
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gato_robot.sim.rollout import PolicyAgent

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.policies.golden import store_states
from gato_robot.proprio import PROPRIO_LAYOUT

BATCH = 16
MOTION = ("x", "y", "z", "yaw")


def actions_of(agent: PolicyAgent, sensors: list[dict]) -> np.ndarray:
    """Normalized actions (N, 5), each state from a fresh context."""
    return agent.act_each_fresh(sensors) / np.asarray(RGB_STACKING_ACTIONS.bounds)


def store_labels(store: Path, every: int) -> np.ndarray:
    """The expert's recorded actions (N, 5), normalized by the bounds, for the states of
    :func:`store_states` with the same ``every``, in the same order."""
    labels = []
    for meta in EpisodeStore(store).episodes():
        with EpisodeReader(meta.path) as reader:
            labels.append(reader.actions(0, meta.steps)[::every])
    return np.concatenate(labels) / np.asarray(RGB_STACKING_ACTIONS.bounds)


def r_squared(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column: 1 - SS(predicted - reference) / SS(reference - mean)."""
    residual = ((predicted - reference) ** 2).sum(0)
    total = ((reference - reference.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--policy", action="append", required=True)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="of the permutation that picks the donor states")
    args = parser.parse_args()
    states = store_states(args.store, args.every)
    labels = store_labels(args.store, args.every)
    donor = np.random.default_rng(args.seed).permutation(len(states))
    proprio_keys = {key for key, _ in PROPRIO_LAYOUT}
    swapped = {
        "images swapped": [{**{k: v for k, v in states[j].items() if k not in proprio_keys},
                            **{k: v for k, v in s.items() if k in proprio_keys}} for s, j in zip(states, donor)],
        "proprio swapped": [{**{k: v for k, v in s.items() if k not in proprio_keys},
                             **{k: v for k, v in states[j].items() if k in proprio_keys}} for s, j in zip(states, donor)],
        "joint velocities swapped": [{**s, "joint_velocities": states[j]["joint_velocities"]} for s, j in zip(states, donor)],
        "joint velocities zero (an arm at rest)": [{**s, "joint_velocities": np.zeros_like(s["joint_velocities"])}
                                                   for s in states],
    }
    print(f"{len(states)} expert states of {args.store}; R^2 of the swapped actions against the unswapped, "
          f"per motion dimension {MOTION}")
    for path in args.policy:
        agent = PolicyAgent(path, batch_size=BATCH)
        reference = actions_of(agent, states)[:, :4]
        print(f"{path}: fit to the expert's labels: {np.round(r_squared(reference, labels[:, :4]), 2).tolist()}")
        for name, inputs in swapped.items():
            print(f"{path}: {name}: {np.round(r_squared(actions_of(agent, inputs)[:, :4], reference), 2).tolist()}")


if __name__ == "__main__":
    main()
