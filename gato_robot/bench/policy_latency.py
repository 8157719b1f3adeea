"""`gato-robot bench policy`: per-action latency of ``GatoPolicy.act`` with and without the KV cache.

Both paths run in steady state with a full context window: the cached path holds the previous
timesteps in the cache (evicting as it slides), the uncached path recomputes those same timesteps
for every action token. One "action" = all action tokens of one timestep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..model.config import preset
from ..model.policy import GatoPolicy, batch_to_torch
from ..observation import Observation
from ..proprio import GRASP_SENSOR
from ..task import RGB_STACKING
from ..tokenizer.ids import CONTINUOUS_OFFSET
from ..tokenizer.sequence import GatoTokenizer, Modality, TokenSequence, concat_sequences, stack_sequences
from .stats import LatencyStats


@dataclass(frozen=True)
class PolicyLatencyReport:
    preset: str
    parameters: int
    context_timesteps: int
    cached: LatencyStats
    uncached: LatencyStats
    threads: int


def random_observation(tokenizer: GatoTokenizer, rng: np.random.Generator) -> Observation:
    spec = tokenizer.spec
    images = {name: rng.integers(0, 256, (spec.image_height, spec.image_width, 3), dtype=np.uint8)
              for name in spec.camera_names}
    return Observation(images=images, proprio=rng.normal(size=spec.proprio_dim),
                       instruction=RGB_STACKING.instruction, extras={GRASP_SENSOR: np.zeros(1)})


def bench_policy(preset_name: str, steps: int = 50, seed: int = 0, threads: int | None = None) -> PolicyLatencyReport:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = preset(preset_name)
    policy = GatoPolicy(config).eval()
    tokenizer = GatoTokenizer(config.timestep)
    rng = np.random.default_rng(seed)
    cache = policy.new_cache()
    history: list[TokenSequence] = []
    window = config.timesteps_in_context
    cached_s, uncached_s = [], []
    for step in tqdm(range(window + steps), desc=f"bench policy {preset_name}", unit="step"):
        observation = tokenizer.encode_observation(random_observation(tokenizer, rng))
        obs_batch = batch_to_torch(stack_sequences([observation]))
        start = time.perf_counter()
        bins = policy.act(obs_batch, cache)
        cached_s.append(time.perf_counter() - start)
        context = batch_to_torch(stack_sequences([concat_sequences(history[-2 * (window - 1):] + [observation])]))
        start = time.perf_counter()
        policy.act_uncached(context)
        uncached_s.append(time.perf_counter() - start)
        history += [observation, TokenSequence.of_tokens(bins[0].numpy() + CONTINUOUS_OFFSET, Modality.ACTION, None)]
    return PolicyLatencyReport(preset_name, policy.num_parameters(), window,
                               LatencyStats.of(cached_s[window:]), LatencyStats.of(uncached_s[window:]),
                               torch.get_num_threads())
