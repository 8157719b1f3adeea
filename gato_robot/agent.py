"""The policy as an agent: observation dict (cameras + proprioception) in, physical action out.

observation -> Observation -> GatoTokenizer -> PolicyRunner -> action tokens -> detokenize ->
denormalize (m/s, rad/s, gripper). Simulators and evaluation use it directly; the real-arm control
loop wraps the same steps with its safety layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .action_spec import RGB_STACKING_ACTIONS, ActionSpec
from .observation import Observation
from .runtime.base import PolicyRunner
from .runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE
from .runtime.factory import load_runner
from .tokenizer.ids import CONTINUOUS_OFFSET
from .tokenizer.sequence import GatoTokenizer


def physical_action(tokenizer: GatoTokenizer, bins: np.ndarray, spec: ActionSpec = RGB_STACKING_ACTIONS) -> np.ndarray:
    """Action bins in [0, 1024) from a runner -> physical action (m/s, rad/s, gripper): detokenize
    (bin centre, inverse mu-law) and scale by the action bounds, clipping anything outside them."""
    return spec.denormalize(tokenizer.decode_action(np.asarray(bins) + CONTINUOUS_OFFSET))


class GatoAgent:
    def __init__(self, runner: PolicyRunner, instruction: str, spec: ActionSpec = RGB_STACKING_ACTIONS):
        self.runner, self.instruction, self.spec = runner, instruction, spec
        self.tokenizer = GatoTokenizer(runner.config.timestep)

    @classmethod
    def load(cls, path: str | Path, instruction: str, backend: str = "torch",
             temperature: float = DEPLOYED_TEMPERATURE, expectation: str = DEPLOYED_EXPECTATION,
             batch_size: int = 1) -> "GatoAgent":
        """``temperature`` 0 decodes action tokens greedily; > 0 samples them, as Gato deploys;
        ``expectation`` ("companded", "physical", "median") decodes the motion dimensions by that
        statistic of their bins. ``batch_size`` > 1 (torch only) acts for that many episodes at once
        (:meth:`act_batch`)."""
        return cls(load_runner(backend, path, temperature=temperature, expectation=expectation,
                               batch_size=batch_size), instruction)

    def reset(self, *seeds: int) -> None:
        """New episode (one per batch row): forget past timesteps; ``seeds`` reseed action sampling."""
        self.runner.reset()
        if seeds:
            self.runner.seed(*seeds)

    def observation(self, sensors: Mapping[str, np.ndarray]) -> Observation:
        return Observation.from_sensors(sensors, self.tokenizer.spec.camera_names, self.instruction)

    def act(self, sensors: Mapping[str, np.ndarray]) -> np.ndarray:
        tokens = self.tokenizer.encode_observation(self.observation(sensors))
        return physical_action(self.tokenizer, self.runner.act(tokens), self.spec)

    def act_batch(self, sensors: list[Mapping[str, np.ndarray]]) -> np.ndarray:
        """One sensors dict per episode of a batched runner -> physical actions (B, action_dim)."""
        tokens = [self.tokenizer.encode_observation(self.observation(s)) for s in sensors]
        return physical_action(self.tokenizer, self.runner.act_batch(tokens), self.spec)
