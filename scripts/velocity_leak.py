"""How much of the expert's action a linear map of the proprioception explains (held-out R^2),
with and without the joint velocities: the copycat shortcut measured in the data itself.

    .venv/bin/python scripts/velocity_leak.py --store ../data/mujoco-dart-g --episodes 150
"""

from __future__ import annotations

import argparse

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.data.episodes import EpisodeReader, EpisodeStore

GROUPS = {"joint velocities only": list(range(7, 14)),
          "joint angles + gripper + TCP pose (no velocities)": list(range(7)) + list(range(14, 22)),
          "all 22 proprioception values": list(range(22))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--episodes", type=int, default=150)
    args = parser.parse_args()
    proprio, actions = [], []
    for meta in EpisodeStore(args.store).episodes(0.8)[:args.episodes]:
        with EpisodeReader(meta.path) as reader:
            proprio.append(reader.proprio())
            actions.append(reader.actions())
    proprio = np.concatenate(proprio)
    actions = np.concatenate(actions) / np.asarray(RGB_STACKING_ACTIONS.bounds)
    order = np.random.default_rng(0).permutation(len(proprio))
    train, test = order[:len(order) * 4 // 5], order[len(order) * 4 // 5:]
    print(f"{len(proprio)} timesteps; held-out R^2 of a least-squares linear map, per action dimension "
          f"({', '.join(RGB_STACKING_ACTIONS.names)})")
    for name, columns in GROUPS.items():
        features = np.c_[proprio[:, columns], np.ones(len(proprio))]
        weights, *_ = np.linalg.lstsq(features[train], actions[train], rcond=None)
        residual = ((features[test] @ weights - actions[test]) ** 2).sum(0)
        r2 = 1 - residual / ((actions[test] - actions[test].mean(0)) ** 2).sum(0)
        print(f"  {name:50s} {np.array2string(r2, precision=2)}")


if __name__ == "__main__":
    main()
