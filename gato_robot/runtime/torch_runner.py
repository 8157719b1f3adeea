"""PyTorch backend: the eager :class:`GatoPolicy` with its in-place KV cache (CPU or CUDA).

It also runs B episodes in lockstep (``batch_size``): one batched prefill and decode per control
tick, each row with its own KV cache rows and its own sampling generator, so a row decodes exactly
the actions a batch-1 runner seeded the same way would (up to float rounding of batched matmuls).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import load_checkpoint
from ..model.policy import GatoPolicy, batch_to_torch
from ..tokenizer.sequence import TokenSequence, stack_sequences
from .base import PolicyRunner, choose_bin


class TorchRunner(PolicyRunner):
    backend = "torch"

    def __init__(self, policy: GatoPolicy, device: str | torch.device = "cpu", temperature: float = 0.0,
                 expectation: str = "off", batch_size: int = 1):
        super().__init__(policy.config, temperature, expectation, batch_size)
        self.device = torch.device(device)
        self.policy = policy.to(self.device).eval()
        self.cache = self.policy.new_cache(batch_size, device=self.device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", temperature: float = 0.0,
                        expectation: str = "off", batch_size: int = 1) -> "TorchRunner":
        return cls(load_checkpoint(checkpoint), device, temperature, expectation, batch_size)

    def reset(self) -> None:
        self.cache.reset()

    def _choose(self, logits: torch.Tensor, dimension: int) -> torch.Tensor:
        """The shared sampler (:func:`choose_bin`), row by row with each row's generator."""
        host = logits.float().cpu().numpy()
        expectation = self.decoding_of(dimension)
        bins = [choose_bin(row, self.temperature, rng, expectation) for row, rng in zip(host, self.rngs)]
        return torch.tensor(bins, dtype=torch.long, device=logits.device)

    def act(self, observation: TokenSequence) -> np.ndarray:
        return self.act_batch([observation])[0]

    def act_batch(self, observations: list[TokenSequence]) -> np.ndarray:
        """One observation per row -> action bins (B, action_dim)."""
        if len(observations) != self.batch_size:
            raise ValueError(f"expected {self.batch_size} observations (one per row), got {len(observations)}")
        for observation in observations:
            self.check_observation(observation)
        batch = batch_to_torch(stack_sequences(observations), self.device)
        return self.policy.act(batch, self.cache, self._choose, self.stage_seconds).cpu().numpy()
