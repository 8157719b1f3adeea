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

    def __init__(self, policy: GatoPolicy, device: str | torch.device = "cpu", temperature: float = 0.0):
        super().__init__(policy.config, temperature)
        self.device = torch.device(device)
        self.policy = policy.to(self.device).eval()
        self.cache = self.policy.new_cache(device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(0)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", temperature: float = 0.0) -> "TorchRunner":
        return cls(load_checkpoint(checkpoint), device, temperature)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def reset(self) -> None:
        self.cache.reset()

    def act(self, observation: TokenSequence) -> np.ndarray:
        self.check_observation(observation)
        batch = batch_to_torch(stack_sequences([observation]), self.device)
        return self.policy.act(batch, self.cache, sample=self.temperature > 0, temperature=self.temperature or 1.0,
                               generator=self.generator, stage_seconds=self.stage_seconds)[0].cpu().numpy()
