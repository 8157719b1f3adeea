"""Token embeddings (Reed et al. 2022, Sec. 2.2 and Appendix C.3).

- Text, discrete, continuous, separator and padding ids: one learned lookup table (Gato's,
  ``continuous_embedding="table"``). With ``"table_fourier"`` a continuous token's row also gets a
  learned linear map of Fourier features of its bin's companded value, so neighbouring bins embed
  alike by construction and a value between seen bins still has a sensible embedding (the table
  alone learns each of the 1024 rows on its own: a proprioceptive reading is an unordered symbol).
  With ``"value_mlp"`` a continuous token has no table row at all: its embedding is a small MLP of
  the same features, a function of the value alone, so a bin no training state reached (the closed
  width of a gripper around a held-out object) still embeds like its neighbours.
- Image patches: a single ResNet v2 (pre-activation) block per patch, GroupNorm with 32 groups and
  GELU, flattened and projected to the model width (``image_encoder="patch_resnet"``, the paper's);
  or a convolutional stem over each whole image whose stride-16 output cell (i, j) becomes the
  token of patch (i, j) (``"conv_stem"``: it sees across patch borders); plus learned row and
  column patch position embeddings (quantized normalized intervals, 128 bins) either way. With
  ``"conv_stem_global"`` every token of an image also gets one code of the whole image: a 1x1 conv
  and a linear map over the flattened feature grid (the BC-IMP encoder's head), so where things are
  reaches the model as weights on grid cells, not only through attention over position embeddings.
  ``"conv_stem_whole"`` keeps the whole-image code only (every token of an image carries it).
  ``"conv_stem_keypoints"`` adds to that code the image's spatial-softmax keypoints (Levine et al.
  2016): where each of 32 learned feature channels peaks, as coordinates with sub-cell precision.
- Learned local observation position embeddings, added to observation tokens only (index 0 of
  the table is a fixed zero vector for tokens without a position: actions and padding).
- Action tokens (continuous ids without an observation position) embed their bin, Gato's
  autoregressive inputs; with ``action_inputs="query"`` one learned query vector instead, so no
  action dimension is predicted from the value decoded for another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer.ids import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS
from ..tokenizer.image import PIXEL_SCALE
from .config import GatoConfig

GROUPNORM_GROUPS = 32
CONV_STEM_GROUPS = 8
KEYPOINT_CHANNELS = 32  # channels of the whole-image code's grid (BC-IMP's keypoint_channels)


class PatchResNetV2Block(nn.Module):
    """(N, 3, 16, 16) normalized pixels -> (N, n_embd): stem conv, one pre-activation residual block.

    Pre-activation (ResNet v2, He et al. 2016): GroupNorm -> GELU -> conv inside the residual
    branch only; the identity path from the stem is left unnormalized, so a patch's colour reaches
    the projection. (Normalizing after the sum, with one channel per group on a 4x4 map, would
    subtract every channel's mean: a red patch and a grey one would embed alike.)"""

    def __init__(self, config: GatoConfig):
        super().__init__()
        channels, stride = config.patch_channels, config.patch_stem_stride
        self.stem = nn.Conv2d(3, channels, kernel_size=stride, stride=stride)
        self.norm1 = nn.GroupNorm(GROUPNORM_GROUPS, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPNORM_GROUPS, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        side = config.patch_size // stride
        self.proj = nn.Linear(channels * side * side, config.n_embd)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P, 3, 16, 16) -> (B, P, n_embd), each patch on its own."""
        batch, num_patches = patches.shape[:2]
        h = self.stem(patches.flatten(0, 1))
        residual = self.conv1(F.gelu(self.norm1(h)))
        residual = self.conv2(F.gelu(self.norm2(residual)))
        return self.proj((h + residual).flatten(1)).view(batch, num_patches, -1)


class ConvStemEncoder(nn.Module):
    """(B, P, 3, 16, 16) patches of whole images -> (B, P, n_embd), seeing across patch borders.

    The patches of each image (raster order, as the tokenizer lays them out) are put back together,
    four stride-2 3x3 convolutions (GroupNorm + GELU) reduce the image by 16 (receptive field 31 px,
    as the BC-IMP encoder's), and output cell (i, j) is projected to the token of patch (i, j). The
    image is shifted by half a patch first, so cell (i, j) is centred on patch (i, j): it sees pixels
    16i-7 .. 16i+23 (the patch and half of each neighbour) instead of the patch and the one before.
    """

    def __init__(self, config: GatoConfig):
        super().__init__()
        layers, previous = [], 3
        for width in config.conv_stem_channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(CONV_STEM_GROUPS, width),
                       nn.GELU()]
            previous = width
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(previous, config.n_embd)
        spec = config.timestep
        self.rows, self.cols = spec.image_height // config.patch_size, spec.image_width // config.patch_size

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, num_patches = patches.shape[:2]
        return self.tokens(self.features(patches)).reshape(batch, num_patches, -1)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P, 3, 16, 16) patches -> feature grids (B * P / (rows * cols), C, rows, cols), one per image."""
        num_patches, channels, height, width = patches.shape[1:]
        if num_patches % (self.rows * self.cols):
            raise ValueError(f"conv_stem encoder: {num_patches} patches is not a whole number of "
                             f"{self.rows}x{self.cols}-patch images")
        images = (patches.reshape(-1, self.rows, self.cols, channels, height, width)
                  .permute(0, 3, 1, 4, 2, 5).reshape(-1, channels, self.rows * height, self.cols * width))
        half = height // 2
        centred = F.pad(images[..., half:, half:] * PIXEL_SCALE, (0, half, 0, half))  # [-1, 1] pixels, 0 outside
        return self.body(centred)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Feature grids (N, C, rows, cols) -> one token per cell (N, rows * cols, n_embd)."""
        return self.proj(features.flatten(2).transpose(1, 2))


class GlobalConvStemEncoder(ConvStemEncoder):
    """The conv stem, plus one code per image added to each of its tokens: a 1x1 conv to
    ``KEYPOINT_CHANNELS`` and a linear map over the whole flattened grid, as the BC-IMP encoder
    (``baselines/bc_imp.py``), so an object's absolute position survives as the weight it meets."""

    def __init__(self, config: GatoConfig):
        super().__init__(config)
        self.squeeze = nn.Sequential(nn.Conv2d(config.conv_stem_channels[-1], KEYPOINT_CHANNELS, 1), nn.GELU())
        self.whole = nn.Linear(KEYPOINT_CHANNELS * self.rows * self.cols, config.n_embd)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        return super().tokens(features) + self.whole_image(features)

    def whole_image(self, features: torch.Tensor) -> torch.Tensor:
        """Feature grids (N, C, rows, cols) -> one code per image (N, 1, n_embd)."""
        return self.whole(self.squeeze(features).flatten(1)).unsqueeze(1)


def spatial_soft_argmax(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Feature grids (N, K, rows, cols) -> (N, 2K) keypoints: per channel the softmax-weighted mean
    row and column over the grid, each in [-1, 1] (cell centres evenly spaced, -1 the top / left
    cell). The spatial soft-argmax of Levine et al. 2016 (Sec. 4.1)."""
    rows, cols = logits.shape[-2:]
    weights = (logits.flatten(2) / temperature).softmax(-1).view_as(logits)
    row_grid = torch.linspace(-1.0, 1.0, rows, dtype=logits.dtype, device=logits.device)
    col_grid = torch.linspace(-1.0, 1.0, cols, dtype=logits.dtype, device=logits.device)
    return torch.cat([(weights.sum(-1) * row_grid).sum(-1), (weights.sum(-2) * col_grid).sum(-1)], dim=-1)


class KeypointConvStemEncoder(GlobalConvStemEncoder):
    """The conv stem and whole-image code, plus the image's spatial-softmax keypoints (a 1x1 conv to
    ``KEYPOINT_CHANNELS`` logit maps, :func:`spatial_soft_argmax` with a learned temperature, a
    linear map to the model width) added to that code: where the objects and the gripper are reach
    the policy as coordinates that interpolate between grid cells, as in the visuomotor policies of
    Levine et al. 2016 and robomimic's image encoder, not only as weights on 8x8 cells."""

    def __init__(self, config: GatoConfig):
        super().__init__(config)
        self.keypoint_logits = nn.Conv2d(config.conv_stem_channels[-1], KEYPOINT_CHANNELS, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.keypoints = nn.Linear(2 * KEYPOINT_CHANNELS, config.n_embd)

    def whole_image(self, features: torch.Tensor) -> torch.Tensor:
        points = spatial_soft_argmax(self.keypoint_logits(features), self.log_temperature.exp())
        return super().whole_image(features) + self.keypoints(points).unsqueeze(1)


class WholeImageConvStemEncoder(GlobalConvStemEncoder):
    """Only the whole-image code: every token of an image is that image's code (the patch position
    embeddings still tell the tokens apart), so the policy sees a camera exactly as the BC-IMP
    encoder's head does, with no per-patch appearance to key on. Shapes unchanged; the per-cell
    projection is unused."""

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        return self.whole_image(features).expand(-1, self.rows * self.cols, -1)


class ContinuousValueEmbedding(nn.Module):
    """Token ids (B, L) -> (B, L, n_embd): for continuous ids (mu-law bins, Gato Sec. 2.1) a linear
    map of [c, sin(pi 2^k c), cos(pi 2^k c)] for k < ``frequencies``, c the bin centre's companded
    value in [-1, 1] (the finest period spans 2^(11 - frequencies) bins), or an MLP of them with
    ``hidden`` > 0 units; zero for every other id."""

    def __init__(self, n_embd: int, frequencies: int = 8, hidden: int = 0):
        super().__init__()
        self.register_buffer("scales", torch.pi * 2.0 ** torch.arange(frequencies), persistent=False)
        features = 1 + 2 * frequencies
        self.linear = (nn.Linear(features, n_embd, bias=False) if hidden == 0 else
                       nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, n_embd)))

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        bins = token_ids - CONTINUOUS_OFFSET
        continuous = (bins >= 0) & (bins < NUM_CONTINUOUS_BINS)
        companded = ((2.0 * bins.to(self.scales.dtype) + 1.0) / NUM_CONTINUOUS_BINS - 1.0).unsqueeze(-1)
        angles = companded * self.scales
        features = torch.cat([companded, torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.linear(features) * continuous.unsqueeze(-1)


class GatoEmbedding(nn.Module):
    def __init__(self, config: GatoConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.n_embd)
        hidden = {"table": None, "table_fourier": 0, "value_mlp": config.n_embd}[config.continuous_embedding]
        self.value = None if hidden is None else ContinuousValueEmbedding(config.n_embd, config.fourier_frequencies, hidden)
        self.value_only = config.continuous_embedding == "value_mlp"  # continuous ids: no table row
        encoders = {"patch_resnet": PatchResNetV2Block, "conv_stem": ConvStemEncoder,
                    "conv_stem_global": GlobalConvStemEncoder, "conv_stem_whole": WholeImageConvStemEncoder,
                    "conv_stem_keypoints": KeypointConvStemEncoder}
        self.patch_encoder = encoders[config.image_encoder](config)
        self.patch_row = nn.Embedding(config.num_position_bins, config.n_embd)
        self.patch_col = nn.Embedding(config.num_position_bins, config.n_embd)
        self.obs_position = nn.Embedding(config.max_obs_positions + 1, config.n_embd, padding_idx=0)
        self.vocab_size = config.vocab_size
        self.action_query = None
        if config.action_inputs == "query":
            self.action_query = nn.Parameter(torch.randn(config.n_embd) * 0.02)

    def forward(self, token_ids: torch.Tensor, obs_positions: torch.Tensor, patch_rows: torch.Tensor,
                patch_cols: torch.Tensor, image_index: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Shapes: ids/positions/index (B, L) int64, patches (B, P, 3, 16, 16) float -> (B, L, n_embd)."""
        x = self.token(token_ids.clamp(0, self.vocab_size - 1))
        continuous = (token_ids >= CONTINUOUS_OFFSET) & (token_ids < CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS)
        if self.value_only:
            x = torch.where(continuous.unsqueeze(-1), self.value(token_ids).to(x.dtype), x)
        elif self.value is not None:
            x = x + self.value(token_ids).to(x.dtype)
        if self.action_query is not None:  # action tokens: continuous ids without an observation position
            action = continuous & (obs_positions < 0)
            x = torch.where(action.unsqueeze(-1), self.action_query.to(x.dtype), x)
        if patches.shape[1] > 0:
            encoded = self.patch_encoder(patches)
            gather_index = image_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, x.shape[-1])
            image_x = torch.gather(encoded, 1, gather_index) + self.patch_row(patch_rows) + self.patch_col(patch_cols)
            x = torch.where((image_index >= 0).unsqueeze(-1), image_x, x)
        return x + self.obs_position(obs_positions + 1)
