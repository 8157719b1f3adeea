"""Key/value caches for incremental decoding.

:class:`StaticKVCache` preallocates (n_layer, B, H, capacity, head_dim) buffers once and writes new
keys/values in place, so the control loop allocates nothing per step for the cache. When a new
timestep would overflow the context, whole timesteps are evicted from the front and the remaining
keys are re-rotated by the evicted offset (rotary embeddings compose), so positions stay in
[0, context) exactly as in training windows that start at a timestep boundary.
"""

from __future__ import annotations

import torch

from .rotary import RotaryEmbedding


class StaticKVCache:
    def __init__(self, n_layer: int, batch_size: int, n_head: int, capacity: int, head_dim: int,
                 rotary: RotaryEmbedding, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.capacity = capacity
        self.length = 0
        self._pending = 0
        self._rotary = rotary

    def reset(self) -> None:
        self.length = 0
        self._pending = 0

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (B, H, L, D) new keys/values after the cached ones; return all of them for attention."""
        new = keys.shape[2]
        end = self.length + new
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {self.length} cached + {new} new > capacity {self.capacity}")
        self.keys[layer, :, :, self.length:end] = keys
        self.values[layer, :, :, self.length:end] = values
        self._pending = new
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self) -> None:
        """Commit the tokens written by the forward pass that just ran."""
        self.length += self._pending
        self._pending = 0

    def make_room(self, tokens: int, evict_multiple: int) -> int:
        """Evict from the front, in multiples of ``evict_multiple`` tokens (one timestep), until
        ``tokens`` more fit. Returns the number of tokens evicted."""
        overflow = self.length + tokens - self.capacity
        if overflow <= 0:
            return 0
        evict = -(-overflow // evict_multiple) * evict_multiple
        if evict > self.length:
            raise RuntimeError(f"cannot fit {tokens} tokens into a KV cache of capacity {self.capacity}")
        keep = self.length - evict
        shifted = self._rotary.shift(self.keys[:, :, :, evict:self.length], -evict)
        self.keys[:, :, :, :keep] = shifted
        self.values[:, :, :, :keep] = self.values[:, :, :, evict:self.length].clone()
        self.length = keep
        return evict
