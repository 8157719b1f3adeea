"""Key/value caches for incremental decoding.

:class:`StaticKVCache` preallocates (n_layer, B, H, capacity, head_dim) buffers once and writes new
keys/values in place, so the control loop allocates nothing per step for the cache. When a new
timestep would overflow the context, whole timesteps are evicted from the front and the remaining
keys are re-rotated by the evicted offset (rotary embeddings compose), so positions stay in
[0, context) exactly as in training windows that start at a timestep boundary.

:class:`NumpyKVCache` is the same cache over numpy arrays, for backends (ONNX Runtime) whose hot
path should not wake torch's thread pool.
"""

from __future__ import annotations

import numpy as np
import torch

from .rotary import RotaryEmbedding


class StaticKVCache:
    def __init__(self, n_layer: int, batch_size: int, n_head: int, capacity: int, head_dim: int,
                 rotary: RotaryEmbedding, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, capacity, head_dim)
        self.keys, self.values = self._allocate(shape, device, dtype)
        self.capacity = capacity
        self.length = 0
        self._pending = 0
        self._rotary = rotary

    # -- array hooks (overridden by NumpyKVCache) ----------------------------------------------------
    def _allocate(self, shape, device, dtype):
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def _shift(self, keys, offset: int):
        return self._rotary.shift(keys, offset)

    @staticmethod
    def _copy(array):
        return array.clone()

    # -- cache operations ---------------------------------------------------------------------------
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

    def append(self, new_keys, new_values) -> None:
        """Copy keys/values of new tokens, (n_layer, B, H, L, D) for all layers, after the cached ones."""
        new = new_keys.shape[3]
        if self.length + new > self.capacity:
            raise RuntimeError(f"KV cache overflow: {self.length} cached + {new} new > capacity {self.capacity}")
        self.keys[:, :, :, self.length:self.length + new] = new_keys
        self.values[:, :, :, self.length:self.length + new] = new_values
        self.length += new

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
        self.keys[:, :, :, :keep] = self._shift(self.keys[:, :, :, evict:self.length], -evict)
        self.values[:, :, :, :keep] = self._copy(self.values[:, :, :, evict:self.length])
        self.length = keep
        return evict


class NumpyKVCache(StaticKVCache):
    """The same cache over float32 numpy arrays."""

    def __init__(self, n_layer: int, batch_size: int, n_head: int, capacity: int, head_dim: int,
                 rotary: RotaryEmbedding):
        super().__init__(n_layer, batch_size, n_head, capacity, head_dim, rotary)
        self._inv_freq = rotary.inv_freq.cpu().numpy().astype(np.float64)

    def _allocate(self, shape, device, dtype):
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def _shift(self, keys: np.ndarray, offset: int) -> np.ndarray:
        angle = self._inv_freq * offset
        cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
        half = keys.shape[-1] // 2
        x1, x2 = keys[..., :half], keys[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    @staticmethod
    def _copy(array: np.ndarray) -> np.ndarray:
        return array  # numpy assignment handles overlapping source and destination itself
