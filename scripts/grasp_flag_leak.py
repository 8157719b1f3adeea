"""How much of the expert's gripper label the grasp flag gives away: over the recorded timesteps,
how often the flag (the rule of every training window, ``proprio.grasp_flags``) equals the previous
timestep's gripper label (closed or not) and this timestep's. Where it equals this timestep's
everywhere but the keyframes (grasps and releases), "copy the flag" is the whole gripper answer
but for those few targets: the copycat shortcut, measured in the data (results/ablation-history.md,
rounds 28 and 31).

    .venv/bin/python scripts/grasp_flag_leak.py --store ../data/mujoco-dart-g --episodes 150
"""

from __future__ import annotations

import argparse

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.data.dataset import RECORDING_ARM, gripper_keyframe_mask
from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.proprio import PROPRIO_OFFSETS, grasp_flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--episodes", type=int, default=150)
    args = parser.parse_args()
    gripper = RGB_STACKING_ACTIONS.names.index("gripper")
    counts = {"timesteps": 0, "flag on": 0, "flag == previous label closed": 0, "flag == this label closed": 0,
              "keyframes (grasps and releases)": 0}
    for meta in EpisodeStore(args.store).episodes(0.8)[:args.episodes]:
        with EpisodeReader(meta.path) as reader:
            widths = reader.proprio()[:, PROPRIO_OFFSETS["gripper_width"]]
            labels = reader.actions()[:, gripper]
        flags = grasp_flags(widths, labels, RECORDING_ARM.max_gripper_width_m) > 0
        previous = np.concatenate([[-1.0], labels[:-1]]) > 0  # open before an episode
        counts["timesteps"] += len(labels)
        counts["flag on"] += int(flags.sum())
        counts["flag == previous label closed"] += int((flags == previous).sum())
        counts["flag == this label closed"] += int((flags == (labels > 0)).sum())
        counts["keyframes (grasps and releases)"] += int(gripper_keyframe_mask(labels, -1.0).sum())
    total = counts.pop("timesteps")
    print(f"{total} timesteps of {args.store} (first {args.episodes} episodes kept by the return filter)")
    for name, count in counts.items():
        print(f"  {name:35s} {count:6d}  {count / total:.4f}")


if __name__ == "__main__":
    main()
