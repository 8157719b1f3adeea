"""The Gato policy: embeddings + decoder, the masked next-token loss, and ``act()``.

Loss (Gato Eq. 2): next-token cross-entropy, masked so only text and action targets count
(``action_loss="vocab_ce"``); or the ordinal HL-Gauss cross-entropy over the 1024 action bins on
action targets only (``"hl_gauss"``, optionally plus the squared error of the distribution's physical
expectation, see :class:`GatoConfig`).
``act()`` prefills one timestep's observation tokens (closed by the separator) into the KV cache
and then decodes one token per action dimension autoregressively (Gato Sec. 3, "Deployment";
:func:`decode_actions`, the loop the compiled runners run too), choosing among the 1024
continuous bins only: greedily by default, or by the runner's sampler
(:func:`gato_robot.runtime.base.choose_bin`, the one every backend uses).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.ids import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS
from ..tokenizer.mulaw import BIN_VALUES
from ..tokenizer.sequence import Modality
from .config import GatoConfig
from .embedding import GatoEmbedding
from .kv_cache import StaticKVCache
from .rotary import RotaryEmbedding
from .transformer import Block, KVCacheLike, causal_mask

BinChooser = Callable[[torch.Tensor, int], torch.Tensor]
"""(logits (B, 1024), action dimension) -> bins (B,) int64."""


def decode_actions(logits, feed: Callable, choose: Callable, action_dim: int) -> list:
    """Gato's autoregressive action decoding (Sec. 3), the one loop every backend runs: choose the
    bins of dimension i from ``logits`` (``choose(logits, i)``), then ``feed`` them back as action
    tokens, which caches them and returns the logits of dimension i + 1. The last dimension is fed
    too, so the next timestep's context holds the whole action. Framework-neutral: the eager policy
    passes tensors, the compiled runners numpy arrays. Returns the bins of each dimension."""
    chosen = []
    for i in range(action_dim):
        chosen.append(choose(logits, i))
        logits = feed(chosen[-1])
    return chosen


def greedy(logits: torch.Tensor, dimension: int) -> torch.Tensor:
    """Argmax bins; non-finite logits raise (argmax would decode an all-NaN row to bin 0)."""
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("policy produced non-finite action logits: refusing to decode an action")
    return logits.argmax(dim=-1)


INPUT_NAMES = ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index", "patches")
"""Model inputs, as produced by :func:`gato_robot.tokenizer.sequence.stack_sequences`."""


class GatoPolicy(nn.Module):
    def __init__(self, config: GatoConfig):
        super().__init__()
        self.config = config
        self.embed = GatoEmbedding(config)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.action_head = (nn.Linear(config.n_embd, NUM_CONTINUOUS_BINS, bias=False)
                            if config.action_head == "untied" else None)
        self.rotary = RotaryEmbedding(config.head_dim, config.context_tokens, config.rope_base)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight") and "patch" not in name:  # GPT-2 scaled residual init
                nn.init.normal_(param, mean=0.0, std=0.02 / (2 * config.n_layer) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- core ----------------------------------------------------------------------------------
    def hidden(self, token_ids, obs_positions, patch_rows, patch_cols, image_index, patches,
               cache: KVCacheLike | None = None, past: int | torch.Tensor = 0,
               mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Final-layer hidden states (B, L, n_embd), or (B, 1, n_embd) of the last token if ``last_only``
        (the last layer then skips attention outputs and MLP of the other tokens; every layer's
        keys and values still go into the cache).

        With a cache, ``past`` tokens precede these (their rotary positions start at ``past``).
        ``mask`` (L, keys) overrides the default causal mask over ``past + L`` keys, for caches
        that hand attention a differently laid out key set (the exported ONNX graphs do).
        """
        x = self.embed(token_ids, obs_positions, patch_rows, patch_cols, image_index, patches)
        length = x.shape[1]
        if isinstance(past, int) and past + length > self.config.context_tokens:
            raise ValueError(f"sequence of {past} cached + {length} new tokens exceeds the context of "
                             f"{self.config.context_tokens} tokens")
        cos, sin = self.rotary(past, length)
        if mask is None:
            mask = causal_mask(past, length, x.device)
        last_layer = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, cache, last_only=last_only and index == last_layer)
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary; the output head is tied to the token embedding."""
        return F.linear(hidden, self.embed.token.weight)

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the 1024 continuous bins only (action tokens are continuous in RGB stacking):
        through the embedding table's continuous rows, or the head of their own (``action_head``)."""
        if self.action_head is not None:
            return self.action_head(hidden)
        weight = self.embed.token.weight[CONTINUOUS_OFFSET:CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS]
        return F.linear(hidden, weight)

    def forward(self, token_ids, obs_positions, patch_rows, patch_cols, image_index, patches) -> torch.Tensor:
        return self.logits(self.hidden(token_ids, obs_positions, patch_rows, patch_cols, image_index, patches))

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of ``config.action_loss``.

        "vocab_ce": masked next-token cross-entropy (Gato Eq. 2), target l counts iff
        loss_mask[l] > 0, over the whole vocabulary. "hl_gauss": action targets only, logits over
        the 1024 bins, HL-Gauss soft targets, plus ``expectation_mse_weight`` x the squared error of
        the distribution's physical expectation (normalized action units). Logits are only computed
        where a target counts, which saves the output projection on the ~90% of positions that are
        image or proprio tokens. Both are means weighted by ``loss_mask`` (1 on every target but the
        gripper keyframes of :class:`~gato_robot.data.dataset.EpisodeWindows`).
        """
        hidden = self.hidden(*(batch[name] for name in INPUT_NAMES))[:, :-1]
        targets = batch["token_ids"][:, 1:]
        mask = batch["loss_mask"][:, 1:] > 0
        if self.config.action_loss == "hl_gauss":
            mask = mask & (batch["modality"][:, 1:] == int(Modality.ACTION))
        if not mask.any():
            raise ValueError("batch has no text or action targets: the masked loss is undefined")
        weights = batch["loss_mask"][:, 1:][mask].float()
        if self.config.action_loss == "vocab_ce":
            per_target = F.cross_entropy(self.logits(hidden[mask]), targets[mask], reduction="none")
            return (weights * per_target).sum() / weights.sum()
        bins = targets[mask] - CONTINUOUS_OFFSET
        log_p = F.log_softmax(self.action_logits(hidden[mask]).float(), dim=-1)
        loss = hl_gauss_cross_entropy(log_p, bins, self.config.hl_gauss_sigma_bins, weights)
        if self.config.expectation_mse_weight:
            values = torch.as_tensor(BIN_VALUES, dtype=log_p.dtype, device=log_p.device)
            expected = log_p.exp() @ values
            loss = loss + self.config.expectation_mse_weight * F.mse_loss(expected, values[bins])
        return loss


    # -- acting --------------------------------------------------------------------------------
    def new_cache(self, batch_size: int = 1, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> StaticKVCache:
        reference = self.embed.token.weight
        c = self.config
        return StaticKVCache(c.n_layer, batch_size, c.n_head, c.context_tokens, c.head_dim, self.rotary,
                             device or reference.device, dtype or reference.dtype)

    def _action_token_inputs(self, action_token: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Model inputs for one action token per batch row: no observation position, no image."""
        batch = action_token.shape[0]
        zeros = torch.zeros_like(action_token)
        patches = torch.zeros(batch, 0, 3, self.config.patch_size, self.config.patch_size,
                              device=action_token.device, dtype=self.embed.token.weight.dtype)
        return action_token, zeros - 1, zeros, zeros, zeros - 1, patches

    @torch.inference_mode()
    def act(self, observation: Mapping[str, torch.Tensor], cache: StaticKVCache, choose: BinChooser = greedy,
            stage_seconds: dict[str, float] | None = None) -> torch.Tensor:
        """Append one timestep to ``cache`` and return its action bins (B, action_dim) in [0, 1024).

        ``observation`` holds the timestep's observation tokens (through the separator); previous
        timesteps (observations and chosen actions) live in the cache. ``choose(logits, i)`` picks
        the bins (B,) of action dimension i from its logits (B, 1024). ``stage_seconds``, if given,
        receives the wall time of the "prefill" and "decode" stages.
        """
        action_dim = self.config.timestep.action_dim
        length = observation["token_ids"].shape[1]
        start = time.perf_counter()
        cache.make_room(length + action_dim, evict_multiple=self.config.timestep.timestep_tokens)
        hidden = self.hidden(*(observation[name] for name in INPUT_NAMES), cache=cache, past=cache.length,
                             last_only=True)
        cache.advance()
        last = hidden[:, -1]
        prefilled = time.perf_counter()

        def feed(bins: torch.Tensor) -> torch.Tensor:
            token = (bins + CONTINUOUS_OFFSET).unsqueeze(1)
            hidden = self.hidden(*self._action_token_inputs(token), cache=cache, past=cache.length, last_only=True)
            cache.advance()
            return self.action_logits(hidden[:, -1])

        bins = torch.stack(decode_actions(self.action_logits(last), feed, choose, action_dim), dim=1)
        if stage_seconds is not None:
            stage_seconds["prefill"] = prefilled - start
            stage_seconds["decode"] = time.perf_counter() - prefilled
        return bins

    @torch.inference_mode()
    def act_uncached(self, context: Mapping[str, torch.Tensor], choose: BinChooser = greedy) -> torch.Tensor:
        """Same decision as :meth:`act` without a cache: the whole context (past timesteps and this
        observation) is recomputed for every action token. Used to check and benchmark the cache."""
        inputs = [context[name] for name in INPUT_NAMES]
        action_dim = self.config.timestep.action_dim
        bins = torch.empty(inputs[0].shape[0], action_dim, dtype=torch.long, device=inputs[0].device)
        for i in range(action_dim):
            last = self.hidden(*inputs, last_only=True)[:, -1]
            bins[:, i] = choose(self.action_logits(last), i)
            token_inputs = self._action_token_inputs((bins[:, i] + CONTINUOUS_OFFSET).unsqueeze(1))
            inputs = [torch.cat([a, b], dim=1) if a.dim() == 2 else a for a, b in zip(inputs, token_inputs)]
        return bins


def hl_gauss_targets(bins: torch.Tensor, num_bins: int, sigma_bins: float) -> torch.Tensor:
    """(N,) target bins -> (N, num_bins) probabilities: a Gaussian centred on each target bin's
    centre with standard deviation ``sigma_bins`` (in bins, i.e. in mu-law companded space, where
    the bins are uniform), integrated over every bin and renormalized to the bin range."""
    edges = torch.arange(num_bins + 1, device=bins.device, dtype=torch.float32)
    centres = bins.to(torch.float32).unsqueeze(-1) + 0.5
    cdf = 0.5 * (1.0 + torch.erf((edges - centres) / (sigma_bins * 2.0 ** 0.5)))
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / mass.sum(dim=-1, keepdim=True)


def hl_gauss_cross_entropy(log_p: torch.Tensor, bins: torch.Tensor, sigma_bins: float,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of log-probabilities (N, 1024) over the continuous bins against the
    HL-Gauss targets of the target bins (N,); weighted by ``weights`` (N,) when given."""
    per_target = -(hl_gauss_targets(bins, log_p.shape[-1], sigma_bins) * log_p).sum(-1)
    return per_target.mean() if weights is None else (weights * per_target).sum() / weights.sum()


def batch_to_torch(arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Arrays from :func:`~gato_robot.tokenizer.sequence.stack_sequences` -> tensors on ``device``."""
    return {name: torch.as_tensor(array, device=device) for name, array in arrays.items()}
