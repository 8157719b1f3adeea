"""One interface for every policy backend: tokenized observation in, action bins out.

All backends hold the same per-episode state (a KV cache of past timesteps, evicted a whole
timestep at a time), take the same :class:`TokenSequence` of one observation and decode one token
per action dimension: greedily by default (the backends then choose the same actions for the same
weights), or by sampling at ``temperature`` > 0 as Gato deploys (Sec. 3: action tokens are sampled
autoregressively), from a generator reseeded per episode (:meth:`PolicyRunner.seed`). With
``expectation`` "companded" or "physical" the motion dimensions are decoded by the expectation of
their bin distribution and the gripper, whose two modes would average to half-open, by temperature
as above. "companded" is the mean bin index (mu-law space, where the bins are uniform); "physical"
is the mean of the bins' decoded values (Gato's inverse mu-law of each bin centre), re-binned: the
estimate a regression policy trained with MSE makes. The two differ when the distribution is
spread: an even mix of 0 and +1 is +0.09 in companded space (the companding crowds bins near 0)
and +0.5 in physical space. "median" is the bin where the cumulative distribution reaches one
half: unlike either mean it does not depend on the space (the companding is monotone), and an
uneven mix of two modes decodes to the heavier one instead of a value between them (measured
worse than the companded mean: results/ablation-history.md round 9). Non-finite logits (an fp16 overflow, a damaged
export) raise instead of decoding to bin 0, so the control loop holds.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np
import torch

from ..model.config import GatoConfig
from ..model.kv_cache import NumpyKVCache, StaticKVCache
from ..model.policy import decode_actions
from ..action_spec import RGB_STACKING_ACTIONS
from ..model.rotary import RotaryEmbedding
from ..tokenizer.ids import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS
from ..tokenizer.mulaw import BIN_VALUES, continuous_to_bins
from ..tokenizer.sequence import TokenSequence
from .decoding import EXPECTATIONS, check_expectation, check_temperature  # noqa: F401 (re-exported)


MOTION_DIMS = tuple(i for i, name in enumerate(RGB_STACKING_ACTIONS.names) if name != "gripper")
"""Action dimensions decoded by expectation when asked: all but the (bimodal) gripper."""


def check_logits(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"policy produced non-finite action logits ({int(np.sum(~np.isfinite(logits)))} of "
                         f"{logits.size}): refusing to decode an action")
    return logits


def choose_bin(logits: np.ndarray, temperature: float, rng: np.random.Generator, expectation: str = "off") -> int:
    """Greedy (``temperature`` 0) or sampled from softmax(logits / temperature); with
    ``expectation`` "companded" the rounded mean bin of softmax(logits), with "physical" the bin
    holding the mean decoded value of softmax(logits), with "median" the first bin whose cumulative
    probability reaches 0.5 (all three ignore the temperature)."""
    logits = check_logits(logits)
    if check_expectation(expectation) != "off":
        if len(logits) != NUM_CONTINUOUS_BINS:
            raise ValueError(f"expectation decoding needs logits over the {NUM_CONTINUOUS_BINS} bins, got {len(logits)}")
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        if expectation == "physical":
            return int(continuous_to_bins(probabilities @ BIN_VALUES))
        if expectation == "median":
            return int(min(np.searchsorted(np.cumsum(probabilities), 0.5), NUM_CONTINUOUS_BINS - 1))
        return int(np.clip(np.rint(probabilities @ np.arange(NUM_CONTINUOUS_BINS)), 0, NUM_CONTINUOUS_BINS - 1))
    if check_temperature(temperature) == 0:
        return int(np.argmax(logits))
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max())
    return int(rng.choice(len(probabilities), p=probabilities / probabilities.sum()))


class PolicyRunner(ABC):
    """Backend-neutral policy: ``reset()`` at episode start, ``act()`` once per control tick."""

    backend: str = "abstract"

    def __init__(self, config: GatoConfig, temperature: float = 0.0, expectation: str = "off", batch_size: int = 1):
        """``batch_size`` rows act in lockstep (:meth:`act_batch`), row i seeded with i until :meth:`seed`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.batch_size = batch_size
        self.temperature = check_temperature(temperature)
        self.expectation = check_expectation(expectation)
        order = config.timestep.action_token_order
        self.expectation_dims = (tuple(i for i, dim in enumerate(order) if dim in MOTION_DIMS)
                                 if expectation != "off" else ())
        """Action token positions decoded by expectation (the motion dimensions, wherever they sit)."""
        self.seed(*range(batch_size))
        self.stage_seconds: dict[str, float] = {"prefill": 0.0, "decode": 0.0}
        """Wall time of the last act()'s stages, for the benchmarks."""

    def decoding_of(self, token: int) -> str:
        """The expectation decoding of action token ``token`` ("off": by temperature)."""
        return self.expectation if token in self.expectation_dims else "off"

    @abstractmethod
    def reset(self) -> None:
        """Forget past timesteps (new episode)."""

    @abstractmethod
    def act(self, observation: TokenSequence) -> np.ndarray:
        """Observation tokens of this timestep -> action bins (action_dim,) int64 in [0, 1024)."""

    def act_batch(self, observations: list[TokenSequence]) -> np.ndarray:
        """Batch-1 form of :meth:`act` (backends that batch override it): (1, action_dim)."""
        if len(observations) != 1:
            raise ValueError(f"the {self.backend} backend acts on one observation at a time, got {len(observations)}")
        return self.act(observations[0])[None]

    def seed(self, *seeds: int) -> None:
        """Reseed action sampling, one seed per batch row (an episode's seed makes its actions
        reproducible, on every backend: they share :func:`choose_bin` and numpy generators)."""
        self.rngs = [np.random.default_rng(seed) for seed in seeds]

    def check_observation(self, observation: TokenSequence) -> None:
        expected = self.config.timestep.observation_tokens
        if len(observation) != expected:
            raise ValueError(f"observation has {len(observation)} tokens; the policy's layout expects {expected}")


class GraphRunner(PolicyRunner):
    """Shared logic of the compiled backends, which run the exported prefill/decode graphs.

    The runner owns the KV cache (fixed buffers, ``batch_size`` rows in lockstep); a graph call
    returns the keys/values of the tokens it added and the runner appends them. Subclasses
    implement the two graph calls.
    """

    def __init__(self, config: GatoConfig, device: str | torch.device | None = None, temperature: float = 0.0,
                 expectation: str = "off", batch_size: int = 1):
        """``device`` None: the cache is numpy (CPU backends); otherwise torch tensors on ``device``."""
        super().__init__(config, temperature, expectation, batch_size)
        c = config
        rotary = RotaryEmbedding(c.head_dim, c.context_tokens, c.rope_base)
        shape = (c.n_layer, batch_size, c.n_head, c.context_tokens, c.head_dim)
        self.cache = (NumpyKVCache(*shape, rotary) if device is None
                      else StaticKVCache(*shape, rotary.to(device), device))

    def reset(self) -> None:
        self.cache.reset()

    @abstractmethod
    def _prefill(self, observations: list[TokenSequence]):
        """Run the prefill graph on one observation per row at past length ``self.cache.length``:
        (logits (B, 1024), new keys, new values), arrays of the cache's kind (numpy or torch)."""

    @abstractmethod
    def _decode(self, token_ids: np.ndarray):
        """Run the decode graph for one action token per row, (B,) int64, at past length
        ``self.cache.length``."""

    def act(self, observation: TokenSequence) -> np.ndarray:
        return self.act_batch([observation])[0]

    def act_batch(self, observations: list[TokenSequence]) -> np.ndarray:
        """One observation per row -> action bins (B, action_dim); row i samples from its own
        generator, so it decodes what a batch-1 runner seeded the same way would."""
        if len(observations) != self.batch_size:
            raise ValueError(f"expected {self.batch_size} observations (one per row), got {len(observations)}")
        for observation in observations:
            self.check_observation(observation)
        spec = self.config.timestep
        start = time.perf_counter()
        self.cache.make_room(len(observations[0]) + spec.action_dim, evict_multiple=spec.timestep_tokens)
        logits, keys, values = self._prefill(observations)
        self.cache.append(keys, values)
        prefilled = time.perf_counter()

        def feed(bins: np.ndarray):
            logits, keys, values = self._decode(bins + CONTINUOUS_OFFSET)
            self.cache.append(keys, values)
            return logits

        def choose(logits, i: int) -> np.ndarray:
            host = logits if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()
            return np.array([choose_bin(row, self.temperature, rng, self.decoding_of(i))
                             for row, rng in zip(host, self.rngs)], dtype=np.int64)

        bins = np.stack(decode_actions(logits, feed, choose, spec.action_dim), axis=1)
        self.stage_seconds["prefill"] = prefilled - start
        self.stage_seconds["decode"] = time.perf_counter() - prefilled
        return bins
