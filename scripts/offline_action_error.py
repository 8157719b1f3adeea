"""Offline action error of policies on a store's expert states (held-out seeds ideally).

Every 3rd timestep of every episode; each policy acts from a fresh context, as the 1-timestep
policies deploy. Prints per-dimension mean |policy - expert| / bound, the sign agreement where the
expert's command exceeds 30% of its bound, and the correlation per dimension.

    .venv/bin/python scripts/offline_action_error.py --store ../data/heldout \\
        --policy bc-imp --policy gato-cpu-small:expectation --policy ../runs/ablation/all/checkpoint:expectation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gato_robot.sim.rollout import PolicyAgent

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.policies.golden import sensors_at

BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--policy", action="append", required=True,
                        help="POLICY[:expectation|:physical|:sampled] (default decoding: argmax; expectation = companded)")
    parser.add_argument("--every", type=int, default=3)
    args = parser.parse_args()
    sensors, labels = [], []
    for meta in EpisodeStore(args.store).episodes():
        with EpisodeReader(meta.path) as reader:
            images, proprio = reader.images(0, meta.steps), reader.proprio(0, meta.steps)
            actions = reader.actions(0, meta.steps)
        for t in range(0, meta.steps, args.every):
            sensors.append(sensors_at(images, proprio, t))
            labels.append(actions[t])
    bounds = np.asarray(RGB_STACKING_ACTIONS.bounds)
    expert = np.stack(labels) / bounds
    print(f"{len(sensors)} expert states")
    for spec in args.policy:
        path, _, decoding = spec.partition(":")
        agent = PolicyAgent(path, temperature=1.0 if decoding == "sampled" else 0.0,
                            expectation={"expectation": "companded", "physical": "physical"}.get(decoding, "off"), batch_size=BATCH)
        policy = agent.act_each_fresh(sensors) / bounds
        error = np.abs(policy - expert).mean(axis=0)
        sign = [np.mean(np.sign(policy[m, d]) == np.sign(expert[m, d]))
                for d in range(4) for m in [np.abs(expert[:, d]) > 0.3]]
        correlation = [np.corrcoef(policy[:, d], expert[:, d])[0, 1] for d in range(5)]
        print(f"{spec}: |error|/bound {np.round(error, 3).tolist()}; sign agreement (|expert| > 0.3) "
              f"{np.round(sign, 2).tolist()}; correlation {np.round(correlation, 2).tolist()}")


if __name__ == "__main__":
    main()
