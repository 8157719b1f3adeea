"""Export-friendly forward passes: the two graphs every compiled backend runs.

Both graphs take the KV cache as explicit, fixed-size inputs and return only the keys/values of
the tokens they add; the runner owns the cache buffers and copies those few rows in. Shapes:

- cache_keys / cache_values: (n_layer, B, n_head, context_tokens, head_dim) float32, of which the
  first ``past_length`` rows along axis 3 are valid (every batch row has the same past length:
  episodes in lockstep).
- past_length: (1,) int64.
- prefill inputs: token_ids, obs_positions, patch_rows, patch_cols, image_index (B, L) int64 and
  patches (B, P, 3, 16, 16) float32 with B, L, P dynamic; decode input: action_token (B, 1) int64.
- outputs: action_logits (B, 1024) for the last token, new_keys / new_values
  (n_layer, B, n_head, L, head_dim).

Attention sees [cache (context_tokens rows) ; new tokens (L rows)] with a mask that admits cache
rows below ``past_length`` and new rows causally, so shapes never depend on ``past_length``: one
engine profile serves every step, and TensorRT can capture the decode step in a CUDA graph.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.policy import GatoPolicy

PREFILL_INPUTS = ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index", "patches",
                  "cache_keys", "cache_values", "past_length")
DECODE_INPUTS = ("action_token", "cache_keys", "cache_values", "past_length")
OUTPUTS = ("action_logits", "new_keys", "new_values")


class _AppendOnlyCache:
    """Attention reads [fixed cache ; new]; the new keys/values are collected as outputs."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values
        self.new_keys: list[torch.Tensor] = []
        self.new_values: list[torch.Tensor] = []

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor):
        self.new_keys.append(keys)
        self.new_values.append(values)
        return torch.cat([self.keys[layer], keys], dim=2), torch.cat([self.values[layer], values], dim=2)


def append_mask(past_length: torch.Tensor, length: int, capacity: int, device: torch.device) -> torch.Tensor:
    """(L, capacity + L) additive float mask: 0 where visible, -inf elsewhere. Cache row j is
    visible iff j < past; new row k is visible to query i iff k <= i. Additive rather than boolean:
    the exported attention is then a plain Add before the Softmax."""
    cache_visible = torch.arange(capacity, device=device).unsqueeze(0) < past_length.reshape(1, 1)
    new = torch.arange(length, device=device)
    visible = torch.cat([cache_visible.expand(length, capacity), new.unsqueeze(0) <= new.unsqueeze(1)], dim=1)
    return torch.zeros(visible.shape, device=device).masked_fill(~visible, float("-inf"))


class _CachedStep(nn.Module):
    def __init__(self, policy: GatoPolicy):
        super().__init__()
        self.policy = policy

    def _run(self, inputs, cache_keys, cache_values, past_length):
        cache = _AppendOnlyCache(cache_keys, cache_values)
        length = inputs[0].shape[1]
        mask = append_mask(past_length, length, cache_keys.shape[3], cache_keys.device)
        hidden = self.policy.hidden(*inputs, cache=cache, past=past_length, mask=mask, last_only=True)
        logits = self.policy.action_logits(hidden[:, -1])
        return logits, torch.stack(cache.new_keys), torch.stack(cache.new_values)


class PrefillGraph(_CachedStep):
    """Observation tokens of one timestep (through the separator) -> first action logits."""

    def forward(self, token_ids, obs_positions, patch_rows, patch_cols, image_index, patches,
                cache_keys, cache_values, past_length):
        inputs = (token_ids, obs_positions, patch_rows, patch_cols, image_index, patches)
        return self._run(inputs, cache_keys, cache_values, past_length)


class DecodeGraph(_CachedStep):
    """One action token -> logits of the next action dimension."""

    def forward(self, action_token, cache_keys, cache_values, past_length):
        return self._run(self.policy._action_token_inputs(action_token), cache_keys, cache_values, past_length)
