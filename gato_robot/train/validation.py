"""Held-out metrics logged during training: action-only cross-entropy and physical action error.

Computed on a fixed set of windows from a store the run never trains on (teacher-forced, one
forward pass): the one-hot cross-entropy of the action targets over the 1024 bins (nats), and for
every action dimension the mean absolute error between the label and the policy's physical
expectation (mean decoded value of the bin distribution, :func:`~gato_robot.runtime.base.choose_bin`'s
"physical"), in units of the action bound. Teacher forcing conditions each action token on the
expert's previous tokens of the timestep, so the errors are those of one decoding step, not of the
closed loop: judge recipes by `sim eval` success, and use these to see under- or over-fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import EpisodeWindows
from ..model.policy import INPUT_NAMES, GatoPolicy, batch_to_torch
from ..tokenizer.ids import CONTINUOUS_OFFSET
from ..tokenizer.mulaw import BIN_VALUES
from ..tokenizer.sequence import Modality

HELDOUT_SEED = 20_221_112
"""Seed of the fixed held-out windows (never a training seed: training batches use the run's seed)."""


@dataclass(frozen=True)
class HeldoutMetrics:
    step: int
    action_cross_entropy: float  # nats, one-hot over the 1024 bins
    action_error: tuple[float, ...]  # per action dimension (action-vector order), |E[value] - label| / bound

    def as_dict(self) -> dict:
        return {"step": self.step, "action_cross_entropy": self.action_cross_entropy,
                "action_error": list(self.action_error)}


def heldout_batch(windows: EpisodeWindows, count: int) -> dict[str, np.ndarray]:
    """``count`` fixed windows of the held-out store (the same ones at every evaluation)."""
    if count < 1:
        raise ValueError(f"held-out window count must be >= 1, got {count}")
    return windows.batch(HELDOUT_SEED, 0, count)


@torch.no_grad()
def heldout_metrics(policy: GatoPolicy, arrays: dict[str, np.ndarray], step: int, chunk: int = 32) -> HeldoutMetrics:
    """Teacher-forced action metrics of ``policy`` on ``arrays`` (from :func:`heldout_batch`)."""
    was_training = policy.training
    policy.eval()
    device = policy.embed.token.weight.device
    values = torch.from_numpy(BIN_VALUES).float().to(device)
    order = policy.config.timestep.action_token_order
    losses, errors = [], []
    try:
        for start in range(0, len(arrays["token_ids"]), chunk):
            batch = batch_to_torch({name: array[start:start + chunk] for name, array in arrays.items()}, device)
            hidden = policy.hidden(*(batch[name] for name in INPUT_NAMES))[:, :-1]
            mask = batch["modality"][:, 1:] == int(Modality.ACTION)
            bins = batch["token_ids"][:, 1:][mask] - CONTINUOUS_OFFSET
            logits = policy.action_logits(hidden[mask]).float()
            losses.append(F.cross_entropy(logits, bins, reduction="none"))
            expected = torch.softmax(logits, dim=-1) @ values
            errors.append((expected - values[bins]).abs().view(-1, len(order)))  # timesteps x tokens
    finally:
        policy.train(was_training)
    per_token = torch.cat(errors).mean(dim=0).tolist()
    per_dimension = [0.0] * len(order)
    for token, dimension in enumerate(order):
        per_dimension[dimension] = per_token[token]
    return HeldoutMetrics(step, float(torch.cat(losses).mean()), tuple(per_dimension))
