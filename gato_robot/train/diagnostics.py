"""Does a policy read its observations, or copy its own previous actions?

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

from ..data.dataset import EpisodeWindows
from ..model.policy import INPUT_NAMES, GatoPolicy, batch_to_torch
from ..tokenizer.ids import CONTINUOUS_OFFSET


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
