"""Decoder-only transformer blocks (pre-LayerNorm, GELU MLP), nanoGPT style, with a KV cache hook.

Gato (Sec. 2.3) uses a standard decoder-only transformer; sizes are in :mod:`.config`.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import GatoConfig
from .rotary import apply_rotary


class KVCacheLike(Protocol):
    """What attention needs from a cache: append this layer's new keys/values, get all of them."""

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GatoConfig, layer_index: int):
        super().__init__()
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.dropout = config.dropout
        self.layer_index = layer_index

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                cache: KVCacheLike | None, last_only: bool = False) -> torch.Tensor:
        """``last_only``: keys/values for every token, the output for the last query only."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)
        if last_only:
            q, mask = q[:, :, -1:], mask[-1:]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, q.shape[2], width))


class MLP(nn.Module):
    def __init__(self, config: GatoConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.d_ff)
        self.proj = nn.Linear(config.d_ff, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GatoConfig, layer_index: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer_index)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache=None, last_only: bool = False):
        attended = self.attn(self.ln_1(x), cos, sin, mask, cache, last_only)
        x = (x[:, -1:] if last_only else x) + attended
        return x + self.mlp(self.ln_2(x))


def causal_mask(past: int | torch.Tensor, length: int, device: torch.device) -> torch.Tensor:
    """Boolean (length, past + length) mask: query i (at position past + i) sees keys 0 .. past + i."""
    keys = torch.arange(length, device=device) + past
    return torch.arange(length + past, device=device).unsqueeze(0) <= keys.unsqueeze(1)
