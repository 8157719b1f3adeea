"""Model configuration and presets (Reed et al. 2022, Sec. 2.3 and Table 6).

Gato's three sizes (layers / heads / width / feed-forward), context 1024 tokens:
79M = 8 / 24 / 768 / 3072, 364M = 12 / 12 / 1536 / 6144, 1.18B = 24 / 16 / 2048 / 8192.
The ``cpu-*`` presets are small enough to train and run at 20 Hz on a 2-core CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from ..tokenizer.ids import VOCAB_SIZE
from ..tokenizer.image import NUM_POSITION_BINS, PATCH_SIZE
from ..tokenizer.sequence import TimestepSpec

IMAGE_ENCODERS = ("patch_resnet", "conv_stem", "conv_stem_global", "conv_stem_whole", "conv_stem_keypoints")
ACTION_LOSSES = ("vocab_ce", "hl_gauss")
CONTINUOUS_EMBEDDINGS = ("table", "table_fourier", "value_mlp")
ACTION_HEADS = ("tied", "untied")
ACTION_INPUTS = ("tokens", "query")


@dataclass(frozen=True)
class GatoConfig:
    """Transformer and embedding sizes.

    patch_channels / patch_stem_stride: the ResNet v2 patch block runs on a
    (patch_channels, 16/stride, 16/stride) feature map; GroupNorm uses 32 groups (Gato App. C.3).
    max_obs_positions: size of the local observation position table.
    context_tokens: attention window in tokens (Gato: 1024).
    image_encoder: "patch_resnet", Gato's single ResNet v2 block per 16x16 patch (App. C.3; it sees
        one patch at a time), or "conv_stem", strided 3x3 convolutions over each whole image whose
        stride-16 output grid maps 1:1 onto the patch grid (receptive field 31 px, across patch
        borders); or "conv_stem_global", the conv stem plus one whole-image code (flatten + linear, as
        BC-IMP's encoder) added to each of the image's tokens; or "conv_stem_whole", that code alone as
        every token of the image (BC-IMP's visual pathway, no per-patch appearance); or
        "conv_stem_keypoints", "conv_stem_global" with the image's spatial-softmax keypoints (32
        soft-argmax coordinates, Levine et al. 2016) mapped into its code; tokens, positions and the exported
        graphs keep their shapes every way.
    conv_stem_channels: widths of the four stride-2 convolutions of "conv_stem" and "conv_stem_global".
    action_loss: "vocab_ce", Gato's one-hot cross-entropy over the whole vocabulary on text and
        action targets (Eq. 2), or "hl_gauss", cross-entropy over the 1024 action bins only, on
        action targets only, against a Gaussian of ``hl_gauss_sigma_bins`` bins integrated over
        each bin (HL-Gauss, Imani & White 2018; Farebrother et al. 2024): an ordinal loss over the
        same mu-law bins and token ids, so "two bins off" costs less than "two hundred bins off".
    expectation_mse_weight: with "hl_gauss", adds this weight times the squared error between the
        expectation of the bin distribution in physical space (the mean of the bins' decoded values,
        normalized action units) and the target bin's value: the MSE that BC-IMP minimizes, taken
        through the same 1024-bin head, so the distribution's physical mean (what ``--expectation
        physical`` decodes) is itself trained. 0 (default): HL-Gauss alone.
    action_head: "tied", the action logits are the final hidden state times the token embedding
        table's 1024 continuous rows (the one table Gato embeds and predicts with), so each bin's
        row serves both as the embedding of proprioceptive readings in that bin and as the
        classifier of actions in it; or "untied", a linear layer of its own over the same 1024 bins
        (as BC-IMP's head), so the ordinal action targets do not shape how proprioception embeds.
        Token ids, logits shape and graphs are the same either way ("untied" needs "hl_gauss").
    action_inputs: "tokens", Gato's autoregressive action tokens (Sec. 2.1 and 3): each action token
        embeds the bin chosen for it, so dimension i + 1 is predicted given the values decoded for
        dimensions 0..i; or "query", every action token position embeds one learned query vector
        instead of its bin, so each dimension is predicted from the observation alone (factored, as
        BC-IMP's head): a motion value decoded by expectation, which the expert never emits, cannot
        steer the dimensions after it. The token layout, the decode loop and the exported graphs are
        unchanged (the fed bins are simply not looked at).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    d_ff: int = 512
    context_tokens: int = 1024
    vocab_size: int = VOCAB_SIZE
    dropout: float = 0.0
    patch_size: int = PATCH_SIZE
    patch_channels: int = 32
    patch_stem_stride: int = 4
    num_position_bins: int = NUM_POSITION_BINS
    max_obs_positions: int = 512
    rope_base: float = 10_000.0
    timestep: TimestepSpec = TimestepSpec()
    image_encoder: str = "patch_resnet"
    conv_stem_channels: tuple[int, ...] = (32, 64, 64, 128)
    action_loss: str = "vocab_ce"
    hl_gauss_sigma_bins: float = 2.0
    expectation_mse_weight: float = 0.0
    continuous_embedding: str = "table"
    fourier_frequencies: int = 8
    action_head: str = "tied"
    action_inputs: str = "tokens"
    kind: str = "gato"  # what a checkpoint is (gato_robot.deploy.policy.POLICY_LOADERS); BC-IMP's says "bc_imp"

    def __post_init__(self) -> None:
        if self.kind != "gato":
            raise ValueError(f"a GatoConfig's kind is 'gato', got {self.kind!r}")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"unknown image_encoder {self.image_encoder!r}; choose one of {IMAGE_ENCODERS}")
        if self.action_loss not in ACTION_LOSSES:
            raise ValueError(f"unknown action_loss {self.action_loss!r}; choose one of {ACTION_LOSSES}")
        if self.continuous_embedding not in CONTINUOUS_EMBEDDINGS:
            raise ValueError(f"unknown continuous_embedding {self.continuous_embedding!r}; "
                             f"choose one of {CONTINUOUS_EMBEDDINGS}")
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"unknown action_head {self.action_head!r}; choose one of {ACTION_HEADS}")
        if self.action_inputs not in ACTION_INPUTS:
            raise ValueError(f"unknown action_inputs {self.action_inputs!r}; choose one of {ACTION_INPUTS}")
        if self.action_head == "untied" and self.action_loss != "hl_gauss":
            raise ValueError("action_head 'untied' needs action_loss 'hl_gauss' (vocab_ce predicts every token "
                             "through the embedding table)")
        if not 1 <= self.fourier_frequencies <= 10:
            raise ValueError(f"fourier_frequencies must be in [1, 10] (2^10 periods span one bin), "
                             f"got {self.fourier_frequencies}")
        if 2 ** len(self.conv_stem_channels) != self.patch_size:
            raise ValueError(f"conv_stem_channels needs log2(patch_size) = {self.patch_size.bit_length() - 1} "
                             f"stride-2 layers, got {len(self.conv_stem_channels)}")
        if self.hl_gauss_sigma_bins <= 0:
            raise ValueError(f"hl_gauss_sigma_bins must be > 0, got {self.hl_gauss_sigma_bins}")
        if not self.expectation_mse_weight >= 0:
            raise ValueError(f"expectation_mse_weight must be >= 0, got {self.expectation_mse_weight}")
        if self.expectation_mse_weight and self.action_loss != "hl_gauss":
            raise ValueError("expectation_mse_weight needs action_loss 'hl_gauss' (logits over the action bins)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size {self.n_embd // self.n_head} must be even for rotary embeddings")
        if self.patch_channels % 32:
            raise ValueError(f"patch_channels ({self.patch_channels}) must be a multiple of 32 (GroupNorm, 32 groups)")
        if self.patch_size % self.patch_stem_stride:
            raise ValueError(f"patch_stem_stride {self.patch_stem_stride} must divide patch_size {self.patch_size}")
        if self.timestep.observation_tokens > self.max_obs_positions:
            raise ValueError(f"a timestep has {self.timestep.observation_tokens} observation tokens; "
                             f"max_obs_positions is {self.max_obs_positions}")
        if self.timestep.timestep_tokens > self.context_tokens:
            raise ValueError(f"one timestep ({self.timestep.timestep_tokens} tokens) does not fit the "
                             f"context of {self.context_tokens} tokens")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def timesteps_in_context(self) -> int:
        return self.context_tokens // self.timestep.timestep_tokens

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "GatoConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GatoConfig fields {unknown}")
        data = dict(data)
        if "conv_stem_channels" in data:
            data["conv_stem_channels"] = tuple(data["conv_stem_channels"])
        if "timestep" in data and isinstance(data["timestep"], dict):
            spec = dict(data["timestep"])
            spec["camera_names"] = tuple(spec.get("camera_names", TimestepSpec.camera_names))
            data["timestep"] = TimestepSpec(**spec)
        return cls(**data)


PRESETS: dict[str, GatoConfig] = {
    # Unit tests and CI smoke runs.
    "tiny": GatoConfig(n_layer=2, n_head=2, n_embd=64, d_ff=256, context_tokens=512),
    # Shipped CPU policy: trains on 2 cores, runs well inside 50 ms.
    "cpu-small": GatoConfig(n_layer=4, n_head=4, n_embd=128, d_ff=512),
    "cpu-base": GatoConfig(n_layer=6, n_head=8, n_embd=256, d_ff=1024),
    # The paper's sizes (Gato Table 6); patch encoder widened for the larger widths.
    "gato-79m": GatoConfig(n_layer=8, n_head=24, n_embd=768, d_ff=3072, patch_channels=64, patch_stem_stride=2),
    "gato-364m": GatoConfig(n_layer=12, n_head=12, n_embd=1536, d_ff=6144, patch_channels=64, patch_stem_stride=2),
    "gato-1.18b": GatoConfig(n_layer=24, n_head=16, n_embd=2048, d_ff=8192, patch_channels=64, patch_stem_stride=2),
}


def preset(name: str, **overrides) -> GatoConfig:
    """A preset by name, with optional field overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
