"""How action tokens are decoded, and the decoding the shipped policy is deployed with.

Kept free of torch so the CLI, the node's parameter table and the launch file can name the
defaults without loading a model.
"""

from __future__ import annotations

EXPECTATIONS = ("off", "companded", "physical", "median")
"""Decodings of the motion dimensions: by temperature ("off"), the expectation of their bin
distribution in mu-law companded space or in physical (normalized action) space, or its median
(the same bin in both spaces: the companding is monotone)."""

DEPLOYED_TEMPERATURE = 0.0
"""Tokens not decoded by expectation (the gripper): argmax. Sampled at T=1, as the paper's Gato
deploys (Sec. 3), the shipped policy stacked 0/50 (results/ablation-history.md, recipe ablation rounds 2 and 5)."""
DEPLOYED_EXPECTATION = "physical"
"""Motion dimensions by the mean decoded value of their bin distribution (what an MSE regressor
predicts). The shipped policy predicts each action dimension from the observation alone
(``action_inputs="query"``): 35/50 training-distribution episodes this way against 3/50 by the
mean bin ("companded"), as BC-IMP's binned head (28/50 against 1/50; results/ablation-history.md, rounds 12 and 13).
(The autoregressive recipe before it stacked more by the mean bin: 25/50 against 11/50, round 5.)
Every runner, `sim eval` and the node default to this pair, so simulation scores what the arm runs."""


def check_temperature(temperature: float) -> float:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    return temperature


def check_expectation(expectation: str) -> str:
    if expectation not in EXPECTATIONS:
        raise ValueError(f"expectation must be one of {EXPECTATIONS}, got {expectation!r}")
    return expectation
