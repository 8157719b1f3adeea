"""What would the expert have done? Expert relabelling of a policy's own rollout (the labelling
step of DAgger, Ross et al. 2011).

The policy drives; in every state it visits, the scripted expert (privileged object poses) computes
the action it would take there, with its phase read off that state (:meth:`ScriptedExpert.label`),
not carried over from states it never drove to. Where the two disagree, and how far the gripper is from the red
object at that moment, says what a learned policy has not learned: to locate the object (wrong
translation signs far from it), to align finely (right signs, no progress near it), or when to
grasp and lift (gripper disagreement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gato_robot.action_spec import RGB_STACKING_ACTIONS

from .env_base import RGBStackingEnv
from .expert import Phase, ScriptedExpert
from .rollout import Agent, ExpertAgent

SIGN_THRESHOLD = 0.1  # fraction of the bound: smaller expert velocities have no meaningful sign


@dataclass(frozen=True)
class RelabelledStep:
    step: int
    phase: str  # the expert's phase in this state (APPROACH, DESCEND, ...)
    red_offset: np.ndarray  # red object position minus TCP position, base frame (m)
    action: np.ndarray  # the policy's action (m/s, m/s, m/s, rad/s, gripper)
    label: np.ndarray  # the expert's action in the same state, same units


class RelabellingAgent:
    """Wraps the agent that drives; keeps one :class:`RelabelledStep` per step in ``steps`` and the
    expert's action as ``last_label``, so an episode writer records it (DAgger's aggregated data)."""

    def __init__(self, policy: Agent):
        self.policy, self.labeller = policy, ExpertAgent()
        self.needs_cameras = policy.needs_cameras
        self.steps: list[RelabelledStep] = []
        self.last_label: np.ndarray | None = None

    def reset(self, env: RGBStackingEnv, seed: int) -> None:
        self.policy.reset(env, seed)
        self.labeller.reset(env, seed)
        self.steps = []

    def act(self, observation: dict, info: dict) -> np.ndarray:
        label, phase = self.labeller.expert.label(observation, info["objects"])
        action = np.asarray(self.policy.act(observation, info), dtype=np.float64)
        red = np.asarray(info["objects"]["red"].position) - np.asarray(observation["tcp_pose"][:3])
        self.steps.append(RelabelledStep(len(self.steps), phase.name, red, action, label))
        self.last_label = label
        return action


class BatchRelabellingAgent:
    """DAgger collection for a batched policy: each row's scripted expert labels the state that
    row's policy visits; ``last_labels`` holds them for the episode writers."""

    def __init__(self, policy):
        self.policy = policy
        self.labellers: list[ExpertAgent] = []
        self.last_labels: list[np.ndarray] | None = None

    def reset_batch(self, envs: list[RGBStackingEnv], seeds: list[int]) -> None:
        self.policy.reset_batch(envs, seeds)
        self.labellers = [ExpertAgent() for _ in envs]
        for labeller, env, seed in zip(self.labellers, envs, seeds):
            labeller.reset(env, seed)

    def act_batch(self, observations: list[dict], infos: list[dict]) -> np.ndarray:
        self.last_labels = [labeller.expert.label(observation, info["objects"])[0]
                            for labeller, observation, info in zip(self.labellers, observations, infos)]
        return self.policy.act_batch(observations, infos)


class DemonstrationLabelsAgent(ExpertAgent):
    """The scripted expert drives as it does for demonstrations (its configured DART noise and
    gripper flips); every state it reaches is also labelled as DAgger labels a policy's states
    (:meth:`ScriptedExpert.label`, by a second expert). ``pairs`` holds, per step, the
    demonstration's clean label, the state-based label and the demonstrator's phase: where the two
    labels disagree, a DAgger round trains the policy against its demonstrations."""

    def reset(self, env: RGBStackingEnv, seed: int) -> None:
        super().reset(env, seed)
        self.labeller = ScriptedExpert(env.triplet, env.scene.action_path.workspace.high[2])
        self.pairs: list[tuple[np.ndarray, np.ndarray, Phase]] = []

    def act(self, observation: dict, info: dict) -> np.ndarray:
        phase = self.expert.phase
        executed = super().act(observation, info)
        self.pairs.append((self.last_label, self.labeller.label(observation, info["objects"])[0], phase))
        return executed


def agreement(steps: list[RelabelledStep]) -> dict[str, float]:
    """Fraction of steps where the policy's translation has the expert's sign (per axis, counting
    only steps where the expert's velocity exceeds 10% of the bound), and where the gripper
    command has the expert's sign; plus the mean and final horizontal distance to red (m)."""
    if not steps:
        raise ValueError("no relabelled steps: run an episode first")
    actions = np.array([s.action for s in steps]) / np.asarray(RGB_STACKING_ACTIONS.bounds)
    labels = np.array([s.label for s in steps]) / np.asarray(RGB_STACKING_ACTIONS.bounds)
    summary = {}
    for axis, name in enumerate(RGB_STACKING_ACTIONS.names[:3]):
        counted = np.abs(labels[:, axis]) > SIGN_THRESHOLD
        summary[f"{name}_sign_agreement"] = (float(np.mean(np.sign(actions[counted, axis]) == np.sign(labels[counted, axis])))
                                             if counted.any() else float("nan"))
    summary["gripper_agreement"] = float(np.mean(np.sign(actions[:, 4]) == np.sign(labels[:, 4])))
    horizontal = np.array([np.linalg.norm(s.red_offset[:2]) for s in steps])
    summary["mean_red_distance_xy"] = float(horizontal.mean())
    summary["final_red_distance_xy"] = float(horizontal[-1])
    return summary
