"""Where each policy closes its gripper on the red object and what follows: the tool centre point's
offset from red's centre in red's own frame, the yaw error to red's nearest face pair (wrapped to
+-45 deg), the TCP height above red's bottom, how many ticks the command stays closed, the finger
width once closed, and whether red was then lifted level or tipped.

A diagnostic of the flat triplet (#12; results/ablation-history.md, "Round 27"): the flat red block
is 7 x 6 x 2.5 cm, 6 cm across the fingers against training objects' 4-5.5 cm. The policies drive
through the environment's Cartesian action path (as `sim dagger` does), decoded as deployed;
`sim eval` scores them through the deployment loop, so success rates here are a reading, not the
policy's score. ``--gripper-hold N`` latches a closed gripper until the policy has asked for open
N ticks running: whether a grasp held for the policy would let it lift. ``--closed-width-scale S``
shows the policy the finger width times S while its gripper is commanded closed (a probe of what the
width reading causes; the fingers themselves are untouched). ``--oracle-yaw`` replaces the policy's
wrist yaw rate by the scripted expert's label for the state (``ScriptedExpert.label``, the DAgger
labeller): what a policy that perceived red's yaw perfectly would gain.

    MUJOCO_GL=egl .venv/bin/python scripts/grasp_alignment.py --triplet test-4-flat --episodes 16 \
        --policy gato-cpu-small --policy bc-imp --policy expert
"""

from __future__ import annotations

import argparse

import numpy as np
from gato_robot.sim.env_base import ObjectPose
from gato_robot.sim.evaluate import triplet_names
from gato_robot.sim.rollout import ExpertAgent, PolicyAgent, make_env, run_episodes_batched

CLOSE = 0.0  # gripper command above this closes the fingers (the action spec's sign convention)
LIFTED_M = 0.02  # red counts as lifted once its centre is this far above where it rested


class RecordingAgent:
    """Delegates to a :class:`PolicyAgent` and keeps, per row and tick, the TCP position and yaw,
    red's pose, the gripper command sent and the finger width (m); applies the three probes
    (``hold_ticks``, ``closed_width_scale``, ``oracle_yaw``) when they are set."""

    def __init__(self, agent: PolicyAgent, hold_ticks: int = 0, closed_width_scale: float = 1.0,
                 oracle_yaw: bool = False):
        self.agent, self.ticks, self.hold_ticks, self.closed_width_scale = agent, [], hold_ticks, closed_width_scale
        self.oracle_yaw, self.labellers = oracle_yaw, []
        self.closed, self.opening = np.zeros(0, bool), np.zeros(0, int)

    def reset_batch(self, envs, seeds) -> None:
        self.ticks = [[] for _ in envs]
        self.closed, self.opening = np.zeros(len(envs), bool), np.zeros(len(envs), int)
        self.agent.reset_batch(envs, seeds)
        if self.oracle_yaw:
            self.labellers = [ExpertAgent() for _ in envs]
            for labeller, env, seed in zip(self.labellers, envs, seeds):
                labeller.reset(env, seed)

    def act_batch(self, observations: list[dict], infos: list[dict]) -> np.ndarray:
        seen = [{**o, "gripper_width": o["gripper_width"] * self.closed_width_scale} if closed else o
                for o, closed in zip(observations, self.closed)]  # the counterfactual width, while closed
        actions = self.agent.act_batch(seen, infos)
        for row, labeller in enumerate(self.labellers):  # --oracle-yaw
            actions[row, 3] = labeller.expert.label(observations[row], infos[row]["objects"])[0][3]
        if self.hold_ticks:  # a closed gripper opens only after the policy asked for it hold_ticks ticks running
            wants_open = actions[:, 4] <= CLOSE
            self.opening = np.where(self.closed & wants_open, self.opening + 1, 0)
            keep = self.closed & wants_open & (self.opening < self.hold_ticks)
            actions[keep, 4] = 1.0
        self.closed = actions[:, 4] > CLOSE
        for row, (observation, info, action) in enumerate(zip(observations, infos, actions)):
            red = info["objects"]["red"]
            tcp = observation["tcp_pose"]
            self.ticks[row].append((tcp[:3].copy(), ObjectPose(np.zeros(3), tcp[3:]).yaw(), red, float(action[4]),
                                    float(observation["gripper_width"][0])))
        return actions


class ExpertRows:
    """The scripted expert, noise-free, one per batch row, in the batched agent's interface
    (``--policy expert``: the expert's own close, measured the same way)."""

    def __init__(self, batch: int):
        self.rows = [ExpertAgent() for _ in range(batch)]

    def reset_batch(self, envs, seeds) -> None:
        for row, env, seed in zip(self.rows, envs, seeds):
            row.reset(env, seed)

    def act_batch(self, observations: list[dict], infos: list[dict]) -> np.ndarray:
        return np.stack([row.act(o, i) for row, o, i in zip(self.rows, observations, infos)])


def _tilt_deg(pose: ObjectPose) -> float:
    """Angle between the object's z axis and the world's (deg)."""
    return float(np.degrees(np.arccos(np.clip(pose.rotation()[2, 2], -1.0, 1.0))))


def first_close(ticks: list, red_height: float) -> dict | None:
    """The first tick the command turns to closed; what followed within 40 ticks (2 s)."""
    for t in range(1, len(ticks)):
        if ticks[t][3] > CLOSE >= ticks[t - 1][3]:
            tcp, tcp_yaw, red = ticks[t][:3]
            offset, red_yaw = tcp - red.position, red.yaw()
            c, s = np.cos(-red_yaw), np.sin(-red_yaw)
            along, across = c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]
            yaw_error = (tcp_yaw - red_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
            lifted = [k[2] for k in ticks[t:t + 40] if k[2].position[2] > red.position[2] + LIFTED_M]
            held = next((k for k in range(t, len(ticks)) if ticks[k][3] <= CLOSE), len(ticks)) - t
            return {"tick": t, "along_m": along, "across_m": across, "yaw_deg": float(np.degrees(yaw_error)),
                    "above_bottom_m": float(tcp[2] - (red.position[2] - red_height / 2)),
                    "lifted": bool(lifted), "tilt_deg": _tilt_deg(lifted[-1]) if lifted else float("nan"),
                    "held_ticks": held, "width_m": ticks[min(t + 10, len(ticks) - 1)][4]}
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", action="append", required=True,
                        help="a checkpoint or preset, or \"expert\" (the scripted expert, noise-free); repeatable")
    parser.add_argument("--triplet", default="test-4-flat")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--gripper-hold", type=int, default=0,
                        help="ticks the policy must ask for open before a closed gripper opens (0: as deployed)")
    parser.add_argument("--closed-width-scale", type=float, default=1.0,
                        help="while the gripper is commanded closed the policy reads the finger width times this "
                             "(1: as deployed; a counterfactual probe, never a deployment option)")
    parser.add_argument("--oracle-yaw", action="store_true",
                        help="the wrist yaw rate from the scripted expert's label for the state instead of the "
                             "policy (a counterfactual probe, never a deployment option)")
    args = parser.parse_args()
    name = triplet_names(args.triplet)[0]
    envs = [make_env("mujoco", name) for _ in range(args.batch)]
    print(f"{name}: per policy, {args.episodes} episodes from seed {args.seed}; "
          "at the first close: |offset| along/across red's axes (mm), |yaw error| (deg), TCP above red's bottom (mm); "
          "then ticks until the command opens again and the finger width; medians [quartiles]")
    for path in args.policy:
        inner = ExpertRows(args.batch) if path == "expert" else PolicyAgent(path, batch_size=args.batch)
        agent = RecordingAgent(inner, args.gripper_hold, args.closed_width_scale, args.oracle_yaw)
        closes, successes = [], 0
        for start in range(args.seed, args.seed + args.episodes, args.batch):
            seeds = list(range(start, min(start + args.batch, args.seed + args.episodes)))
            seeds += [seeds[-1]] * (args.batch - len(seeds))
            results = run_episodes_batched(envs, agent, seeds)
            for row in range(len(set(seeds))):
                successes += results[row].success
                closes.append(first_close(agent.ticks[row], envs[row].triplet.red.size[2]))
        found = [c for c in closes if c is not None]

        def quartiles(key: str, scale: float = 1.0, absolute: bool = True) -> str:
            values = np.array([abs(c[key]) if absolute else c[key] for c in found]) * scale
            q1, q2, q3 = np.percentile(values, [25, 50, 75])
            return f"{q2:.1f} [{q1:.1f}, {q3:.1f}]"

        lifted = [c for c in found if c["lifted"]]
        tilts = np.array([c["tilt_deg"] for c in lifted])
        print(f"{path}: stacked {successes}/{args.episodes}; closed {len(found)}; along {quartiles('along_m', 1e3)} "
              f"across {quartiles('across_m', 1e3)} yaw {quartiles('yaw_deg')} height "
              f"{quartiles('above_bottom_m', 1e3, absolute=False)}; lifted after the first close {len(lifted)}, "
              f"of them tilted > 20 deg {int((tilts > 20).sum())}; closed for {quartiles('held_ticks')} ticks before "
              f"the first re-open; finger width 10 ticks after the close {quartiles('width_m', 1e3)} mm")


if __name__ == "__main__":
    main()
