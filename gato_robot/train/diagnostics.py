"""Does a policy read its observations, or copy its own (previous) actions?

Behaviour cloning on observation histories is prone to the "copycat" shortcut (Wen et al. 2020,
"Fighting Copycat Agents in Behavioral Cloning from Observation Histories"): expert actions change
slowly, so the previous timestep's action tokens predict the next ones well, and a small model fit
on little data learns that instead of locating the objects in the image patches. In closed loop it
then repeats its own (wrong) actions. The symptom is measurable offline: the action-token loss at
the first timestep of a window (no history) is far worse than at the later ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..data.dataset import RECORDING_ARM, EpisodeWindows
from ..data.episodes import EpisodeReader
from ..model.policy import INPUT_NAMES, GatoPolicy, batch_to_torch
from ..observation import Observation
from ..proprio import GRASP_SENSOR, PROPRIO_OFFSETS, grasp_flags
from ..runtime.base import MOTION_DIMS, choose_bin
from ..tokenizer.ids import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS
from ..tokenizer.sequence import GatoTokenizer, stack_sequences


@dataclass(frozen=True)
class WindowPositionLoss:
    position: int  # timestep index inside the window (0 = no history)
    cross_entropy: float  # mean action-token cross-entropy (nats), over the 1024 continuous bins
    bin_error: float  # mean |argmax bin - expert bin|
    targets: int  # action tokens measured


@torch.inference_mode()
def action_loss_by_window_position(policy: GatoPolicy, windows: EpisodeWindows, batches: int = 12,
                                   batch_size: int = 8, seed: int = 12345) -> list[WindowPositionLoss]:
    """Action-token loss per timestep position of ``windows`` (teacher-forced, as in training)."""
    spec = policy.config.timestep
    if windows.window * spec.timestep_tokens > policy.config.context_tokens:
        raise ValueError(f"windows of {windows.window} timesteps exceed the policy's context of "
                         f"{policy.config.timesteps_in_context} timesteps")
    policy.eval()
    sums = np.zeros((windows.window, 3))
    for step in range(batches):
        batch = batch_to_torch(windows.batch(seed, step, batch_size))
        hidden = policy.hidden(*(batch[name] for name in INPUT_NAMES))
        for position in range(windows.window):
            for dim in range(spec.action_dim):
                target_index = position * spec.timestep_tokens + spec.observation_tokens + dim
                if target_index >= batch["token_ids"].shape[1]:
                    continue
                valid = batch["loss_mask"][:, target_index] > 0  # windows cut short by an episode end are padded
                if not valid.any():
                    continue
                logits = policy.action_logits(hidden[valid, target_index - 1])
                target = batch["token_ids"][valid, target_index] - CONTINUOUS_OFFSET
                sums[position] += (F.cross_entropy(logits, target, reduction="sum").item(),
                                   (logits.argmax(-1) - target).abs().sum().item(), int(valid.sum()))
    return [WindowPositionLoss(position, s[0] / s[2], s[1] / s[2], int(s[2])) for position, s in enumerate(sums)
            if s[2] > 0]


@dataclass(frozen=True)
class GraspDecision:
    states: int  # grasp-trigger timesteps measured
    close_probability_teacher: float  # mean P(gripper closes), motion tokens = the expert's
    close_probability_own: float  # mean P(gripper closes), motion tokens = the policy's own (expectation)
    closes_own: float  # fraction of those states where the policy, decoding its own motion, would close


@torch.inference_mode()
def grasp_decision(policy: GatoPolicy, episodes: list, spec: ActionSpec = RGB_STACKING_ACTIONS) -> GraspDecision:
    """Does the policy decide to grasp where the expert does?

    Measured at every grasp-trigger timestep of ``episodes`` (the expert's label closes the gripper
    while it is still open: one or two ticks per episode), the probability the gripper token puts on
    "close" (bins above the middle) when the motion tokens before it are the expert's (teacher
    forcing, as in training) and when they are the policy's own (decoded by expectation, as
    deployed). A large gap means the gripper reads the decision off the motion tokens (the expert's
    grasp is the one state where all four are exactly zero) instead of off the observation.
    """
    policy.eval()
    tokenizer = GatoTokenizer(policy.config.timestep)
    order = policy.config.timestep.action_token_order
    gripper_token = order.index(spec.names.index("gripper"))
    rng = np.random.default_rng(0)
    teacher, own = [], []
    for meta in episodes:
        with EpisodeReader(meta.path) as reader:
            actions, proprio = reader.actions(0, meta.steps), reader.proprio(0, meta.steps)
            width = proprio[:, PROPRIO_OFFSETS["gripper_width"]]
            triggers = np.flatnonzero((actions[:, -1] > 0) & (width > width.max() - 0.002))
            grasp = grasp_flags(width, actions[:, -1], RECORDING_ARM.max_gripper_width_m)
            for t in triggers:
                images = {name: frames[0] for name, frames in reader.images(int(t), int(t) + 1).items()}
                observation = Observation(images, proprio[t].astype(np.float64), meta.instruction,
                                          {GRASP_SENSOR: grasp[t:t + 1]})
                tokens = batch_to_torch(stack_sequences([tokenizer.encode_observation(observation)]))
                expert_bins = tokenizer.encode_action(spec.normalize(actions[t])).token_ids - CONTINUOUS_OFFSET
                for forced, out in ((True, teacher), (False, own)):
                    def choose(logits: torch.Tensor, token: int) -> torch.Tensor:
                        if token == gripper_token:
                            out.append(float(torch.softmax(logits.float(), -1)[0, NUM_CONTINUOUS_BINS // 2:].sum()))
                        if forced:
                            return torch.tensor([int(expert_bins[token])])
                        return torch.tensor([choose_bin(logits[0].float().numpy(), 0.0, rng,
                                                        expectation="companded" if order[token] in MOTION_DIMS else "off")])
                    policy.act(tokens, policy.new_cache(1), choose)
    if not teacher:
        raise ValueError("no grasp-trigger timesteps in these episodes (none closes the gripper)")
    return GraspDecision(len(teacher), float(np.mean(teacher)), float(np.mean(own)), float(np.mean(np.array(own) > 0.5)))
