"""`gato-robot demo`: the tokenizer -> policy -> detokenizer path on synthetic sensor input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from .action_spec import RGB_STACKING_ACTIONS
from .deploy.policy import physical_action
from .bench.policy_latency import random_observation
from .bench.stats import LatencyStats
from .model.checkpoint import load_checkpoint
from .model.config import preset
from .model.policy import GatoPolicy, batch_to_torch
from .tokenizer.sequence import GatoTokenizer, stack_sequences


def run_demo(checkpoint: Path | None, steps: int, seed: int, console: Console) -> np.ndarray:
    """Run ``steps`` ticks; returns the decoded physical actions (steps, action_dim): m/s, rad/s, gripper."""
    torch.manual_seed(seed)
    if checkpoint is None:
        policy, source = GatoPolicy(preset("cpu-small")).eval(), "random cpu-small weights (no checkpoint given)"
    else:
        policy, source = load_checkpoint(checkpoint), str(checkpoint)
    tokenizer = GatoTokenizer(policy.config.timestep)
    rng = np.random.default_rng(seed)
    cache = policy.new_cache()
    actions, latencies = [], []
    for _ in range(steps):
        start = time.perf_counter()
        tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
        bins = policy.act(batch_to_torch(stack_sequences([tokens])), cache)
        actions.append(physical_action(tokenizer, bins[0].numpy()))
        latencies.append(time.perf_counter() - start)
    actions = np.stack(actions)
    spec = policy.config.timestep
    table = Table(title=f"policy: {source}; {spec.timestep_tokens} tokens per timestep")
    table.add_column("tick", justify="right")
    for name, unit in zip(RGB_STACKING_ACTIONS.names, RGB_STACKING_ACTIONS.units):
        table.add_column(f"{name} [{unit}]", justify="right")
    for tick in range(min(steps, 5)):
        table.add_row(str(tick), *(f"{v:+.4f}" for v in actions[tick]))
    console.print(table)
    stats = LatencyStats.of(latencies)
    console.print(f"observation -> action, {steps} ticks: median {stats.median_ms:.1f} ms, p99 {stats.p99_ms:.1f} ms "
                  f"(20 Hz budget: 50 ms)")
    return actions
