"""Rotary position embeddings over the token index within the context window.

Gato does not spell out a global position scheme beyond its local observation encodings; rotary
embeddings give the decoder token order (needed to tell the action dimensions apart) while
keeping attention a function of relative offsets only, which is what lets the KV cache slide.
"""

from __future__ import annotations

import torch
from torch import nn


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., L, D) by angles whose cos/sin are (L, D/2) (GPT-NeoX half-split layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_positions: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)
        self.register_buffer("cos_table", angles.cos().float(), persistent=False)
        self.register_buffer("sin_table", angles.sin().float(), persistent=False)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, start: int | torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin (length, D/2) for positions start .. start + length - 1."""
        positions = torch.arange(length, device=self.cos_table.device) + start
        return self.cos_table[positions], self.sin_table[positions]

    def shift(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """Re-rotate already-rotated keys (..., L, D) by ``offset`` positions (may be negative)."""
        angle = self.inv_freq * offset
        return apply_rotary(x, angle.cos().to(x.dtype), angle.sin().to(x.dtype))
