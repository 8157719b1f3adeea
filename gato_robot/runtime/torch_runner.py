"""PyTorch backend: the eager :class:`GatoPolicy` with its in-place KV cache (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import load_checkpoint
from ..model.policy import GatoPolicy, batch_to_torch
from ..tokenizer.sequence import TokenSequence, stack_sequences
from .base import PolicyRunner


class TorchRunner(PolicyRunner):
    backend = "torch"

    def __init__(self, policy: GatoPolicy, device: str | torch.device = "cpu"):
        super().__init__(policy.config)
        self.device = torch.device(device)
        self.policy = policy.to(self.device).eval()
        self.cache = self.policy.new_cache(device=self.device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu") -> "TorchRunner":
        return cls(load_checkpoint(checkpoint), device)

    def reset(self) -> None:
        self.cache.reset()

    def act(self, observation: TokenSequence) -> np.ndarray:
        self.check_observation(observation)
        batch = batch_to_torch(stack_sequences([observation]), self.device)
        return self.policy.act(batch, self.cache, stage_seconds=self.stage_seconds)[0].cpu().numpy()
