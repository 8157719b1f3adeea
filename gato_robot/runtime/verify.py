"""Check an ONNX export against the PyTorch policy it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bench.policy_latency import random_observation
from ..model.checkpoint import load_checkpoint
from ..model.policy import INPUT_NAMES, batch_to_torch
from ..tokenizer.sequence import GatoTokenizer, stack_sequences
from .onnx_runner import OnnxRunner
from .torch_runner import TorchRunner


@dataclass(frozen=True)
class ExportReport:
    observations: int
    matching_actions: int
    max_logit_diff: float
    distinct_actions: int


def verify_export(checkpoint: str | Path, export_dir: str | Path, observations: int = 1000, seed: int = 0,
                  episode_steps: int = 10) -> ExportReport:
    """Run both backends over random observations (episodes of ``episode_steps``, so the cache
    fills and slides) and compare action tokens; also compare first-token logits."""
    policy = load_checkpoint(checkpoint)
    torch_runner, onnx_runner = TorchRunner(policy), OnnxRunner(export_dir)
    tokenizer = GatoTokenizer(policy.config.timestep)
    rng = np.random.default_rng(seed)
    matching, max_diff, seen = 0, 0.0, set()
    for step in range(observations):
        if step % episode_steps == 0:
            torch_runner.reset()
            onnx_runner.reset()
            tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
            with torch.no_grad():
                batch = batch_to_torch(stack_sequences([tokens]))
                reference = policy.action_logits(policy.hidden(*(batch[n] for n in INPUT_NAMES))[:, -1])[0]
            logits = onnx_runner._prefill([tokens])[0][0]
            max_diff = max(max_diff, float(np.abs(logits - reference.numpy()).max()))
            onnx_runner.reset()
        else:
            tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
        expected = torch_runner.act(tokens)
        matching += int(np.array_equal(expected, onnx_runner.act(tokens)))
        seen.add(tuple(expected.tolist()))
    return ExportReport(observations, matching, max_diff, len(seen))
