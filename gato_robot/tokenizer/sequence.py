"""Timestep layout, loss mask and local positions (Reed et al. 2022, Sec. 2.1-2.3, Appendix C.3).

One timestep is laid out as Gato does it:

    [text tokens] [image patches, camera by camera, raster order] [proprioception] | [actions]

- Observation tokens come first: text, then image patches, then continuous proprioception.
- A separator token (``SEPARATOR_ID``) follows the observation.
- Then one token per action dimension; at inference these are sampled autoregressively.
- Loss mask (Gato Eq. 2): 1 on text and action tokens only; 0 on image, proprioception,
  separator and padding tokens.
- Local observation positions: observation tokens (and the separator that closes them) are
  numbered 0, 1, 2, ... within the timestep; action tokens get none (stored as -1 and embedded
  as zero).
- Image tokens carry quantized row/column positions (see :mod:`gato_robot.tokenizer.image`).

A :class:`TokenSequence` is a struct of arrays; sequences of several timesteps are concatenated
with :func:`concat_sequences`, and the model consumes them batched by :func:`stack_sequences`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from ..observation import Observation
from ..proprio import check_proprio_keep, proprio_keep_for
from ..task import RGB_STACKING
from .errors import TokenizationError
from .ids import IMAGE_PLACEHOLDER_ID, PAD_ID, SEPARATOR_ID
from .image import PATCH_SIZE, image_to_patches, patch_position_intervals, sample_patch_positions, validate_image
from .mulaw import detokenize_continuous, tokenize_continuous
from .text import DEFAULT_TEXT_MODEL, load_text_tokenizer, portable_text_model


class Modality(IntEnum):
    TEXT = 0
    IMAGE = 1
    CONTINUOUS = 2
    DISCRETE = 3
    SEPARATOR = 4
    ACTION = 5
    PAD = 6


NO_POSITION = -1
"""Local observation position of tokens that have none (actions, padding)."""


@dataclass(frozen=True)
class TimestepSpec:
    """Shape of one timestep; the RGB-stacking defaults are two 128x128 cameras and a 5-D action.

    proprio_dim: joint angles (7) + joint velocities (7) + gripper width (1) + TCP pose (3 + 4) = 22.
    text_tokens: instruction tokens per timestep (padded with PAD_ID); 0 leaves text out.
    proprio_mean, proprio_std: per-dimension statistics of the training data (SI units). When set,
    proprioception is standardized, ``(p - mean) / std``, before mu-law tokenization: in raw SI
    units a TCP position of 0.5 m falls where one mu-law bin is ~1 cm wide, standardized it
    resolves ~1 mm. None (Gato's choice) tokenizes the raw values. They travel with the
    checkpoint's config, so every runner and the real-arm node apply the same statistics.
    proprio_keep: indices of the 22 values that become tokens (None: all, as Gato does).
    ``JOINT_VELOCITY_FREE`` leaves the joint velocities out: at 20 Hz they are nearly the previous
    action (a linear map of them explains 70-89% of the variance of the expert's translation
    commands in our data), a copycat shortcut that lets a policy imitate its own motion instead of
    looking at the scene (causal confusion, de Haan et al. 2019; Wen et al. 2020).
    action_order: the order in which the action dimensions are tokenized and decoded (None:
    0, 1, ..., as the action vector; Gato samples them autoregressively in some fixed order, Sec.
    2.1). Decoding the gripper first makes its open/close decision from the observation alone:
    decoded after the motion, it learns to read the decision off the motion tokens instead (the
    expert's grasp is the one state where all four are exactly zero), a cue the policy's own
    decoded motion never reproduces (``results/policy-diagnosis.md``).
    grasp_sensor: one more continuous token after the proprioception, the grasp flag (0 or 1:
    :func:`gato_robot.proprio.grasp_detected`, ``Observation.extras["gripper_grasp"]``), as the
    benchmark's robots report one; False (Gato's 22 values) leaves it out.
    """

    camera_names: tuple[str, ...] = RGB_STACKING.camera_names
    image_height: int = RGB_STACKING.image_height
    image_width: int = RGB_STACKING.image_width
    proprio_dim: int = 22
    action_dim: int = 5
    text_tokens: int = 8
    text_model: str = DEFAULT_TEXT_MODEL.name  # a name in tokenizer/assets, or an absolute path
    proprio_mean: tuple[float, ...] | None = None
    proprio_std: tuple[float, ...] | None = None
    proprio_keep: tuple[int, ...] | None = None
    action_order: tuple[int, ...] | None = None
    grasp_sensor: bool = False

    def __post_init__(self):
        object.__setattr__(self, "text_model", portable_text_model(self.text_model))
        if (self.proprio_mean is None) != (self.proprio_std is None):
            raise ValueError("proprio_mean and proprio_std must be given together")
        if self.proprio_mean is not None:
            mean, std = tuple(map(float, self.proprio_mean)), tuple(map(float, self.proprio_std))
            if len(mean) != self.proprio_dim or len(std) != self.proprio_dim:
                raise ValueError(f"proprio statistics must have {self.proprio_dim} values each, "
                                 f"got {len(mean)} and {len(std)}")
            if not all(np.isfinite(mean)) or not all(np.isfinite(v) and v > 0 for v in std):
                raise ValueError("proprio statistics must be finite with positive standard deviations")
            object.__setattr__(self, "proprio_mean", mean)
            object.__setattr__(self, "proprio_std", std)
        if self.proprio_keep is not None:
            object.__setattr__(self, "proprio_keep", check_proprio_keep(self.proprio_keep, self.proprio_dim))
        if self.action_order is not None:
            order = tuple(int(i) for i in self.action_order)
            if sorted(order) != list(range(self.action_dim)):
                raise ValueError(f"action_order must be a permutation of 0..{self.action_dim - 1}, got {order}")
            object.__setattr__(self, "action_order", order)

    @property
    def action_token_order(self) -> tuple[int, ...]:
        """Action dimension of each action token, in token (decoding) order."""
        return self.action_order if self.action_order is not None else tuple(range(self.action_dim))

    @property
    def proprio_tokens(self) -> int:
        kept = self.proprio_dim if self.proprio_keep is None else len(self.proprio_keep)
        return kept + int(self.grasp_sensor)

    @property
    def patches_per_image(self) -> int:
        return (self.image_height // PATCH_SIZE) * (self.image_width // PATCH_SIZE)

    @property
    def observation_tokens(self) -> int:
        """Tokens from the first text token through the separator."""
        return self.text_tokens + len(self.camera_names) * self.patches_per_image + self.proprio_tokens + 1

    @property
    def timestep_tokens(self) -> int:
        return self.observation_tokens + self.action_dim


JOINT_VELOCITY_FREE = proprio_keep_for(joint_velocities=False)
"""proprio_keep without the 7 joint velocities: joint angles, gripper width, TCP pose."""


@dataclass
class TokenSequence:
    """Struct of arrays for L tokens and the P image patches they reference.

    token_ids: int64 (L,); image tokens hold IMAGE_PLACEHOLDER_ID.
    modality: uint8 (L,), a :class:`Modality`.
    obs_positions: int64 (L,), NO_POSITION for tokens without a local observation position.
    patch_rows, patch_cols: int64 (L,), quantized position bins of image tokens (0 elsewhere).
    image_index: int64 (L,), index into ``patches`` for image tokens, -1 elsewhere.
    loss_mask: float32 (L,), 1 on text and action tokens.
    patches: float32 (P, 3, 16, 16), normalized as Gato does.
    """

    token_ids: np.ndarray
    modality: np.ndarray
    obs_positions: np.ndarray
    patch_rows: np.ndarray
    patch_cols: np.ndarray
    image_index: np.ndarray
    loss_mask: np.ndarray
    patches: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, PATCH_SIZE, PATCH_SIZE), np.float32))

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    @staticmethod
    def of_tokens(token_ids: np.ndarray, modality: Modality, obs_start: int | None) -> "TokenSequence":
        """Non-image tokens; ``obs_start`` numbers their local positions, None gives them none."""
        n = len(token_ids)
        positions = np.full(n, NO_POSITION, np.int64) if obs_start is None else np.arange(obs_start, obs_start + n)
        in_loss = modality in (Modality.TEXT, Modality.ACTION)
        return TokenSequence(
            token_ids=np.asarray(token_ids, np.int64),
            modality=np.full(n, int(modality), np.uint8),
            obs_positions=positions.astype(np.int64),
            patch_rows=np.zeros(n, np.int64),
            patch_cols=np.zeros(n, np.int64),
            image_index=np.full(n, -1, np.int64),
            loss_mask=np.full(n, 1.0 if in_loss else 0.0, np.float32),
        )


def concat_sequences(parts: list[TokenSequence]) -> TokenSequence:
    """Concatenate token sequences in order, re-indexing image patches."""
    offsets = np.cumsum([0] + [len(p.patches) for p in parts[:-1]])
    return TokenSequence(
        token_ids=np.concatenate([p.token_ids for p in parts]),
        modality=np.concatenate([p.modality for p in parts]),
        obs_positions=np.concatenate([p.obs_positions for p in parts]),
        patch_rows=np.concatenate([p.patch_rows for p in parts]),
        patch_cols=np.concatenate([p.patch_cols for p in parts]),
        image_index=np.concatenate([np.where(p.image_index >= 0, p.image_index + o, -1) for p, o in zip(parts, offsets)]),
        loss_mask=np.concatenate([p.loss_mask for p in parts]),
        patches=np.concatenate([p.patches for p in parts]),
    )


def pad_sequence(sequence: TokenSequence, length: int, num_patches: int) -> TokenSequence:
    """Right-pad to ``length`` tokens (PAD_ID, no loss) and ``num_patches`` patches (zeros)."""
    extra, extra_patches = length - len(sequence), num_patches - len(sequence.patches)
    if extra < 0 or extra_patches < 0:
        raise ValueError(f"cannot pad a sequence of {len(sequence)} tokens/{len(sequence.patches)} patches "
                         f"to {length}/{num_patches}")
    if extra == 0 and extra_patches == 0:
        return sequence
    pad = TokenSequence.of_tokens(np.full(extra, PAD_ID), Modality.PAD, None)
    padded = concat_sequences([sequence, pad])
    zeros = np.zeros((extra_patches, 3, PATCH_SIZE, PATCH_SIZE), np.float32)
    return replace(padded, patches=np.concatenate([padded.patches, zeros]))


def stack_sequences(sequences: list[TokenSequence]) -> dict[str, np.ndarray]:
    """Batch sequences (right-padded to the longest) into arrays with a leading batch axis."""
    length = max(len(s) for s in sequences)
    num_patches = max(len(s.patches) for s in sequences)
    padded = [pad_sequence(s, length, num_patches) for s in sequences]
    names = ["token_ids", "modality", "obs_positions", "patch_rows", "patch_cols", "image_index", "loss_mask", "patches"]
    return {name: np.stack([getattr(s, name) for s in padded]) for name in names}


class GatoTokenizer:
    """Observation/action <-> :class:`TokenSequence` for one :class:`TimestepSpec`."""

    def __init__(self, spec: TimestepSpec = TimestepSpec()):
        self.spec = spec
        self.text = load_text_tokenizer(spec.text_model) if spec.text_tokens else None
        self._row_intervals, self._col_intervals = patch_position_intervals(spec.image_height, spec.image_width)
        self._eval_rows = sample_patch_positions(self._row_intervals, None)
        self._eval_cols = sample_patch_positions(self._col_intervals, None)
        self._text_cache: dict[str, np.ndarray] = {}
        standardized = spec.proprio_mean is not None
        self._proprio_mean = np.asarray(spec.proprio_mean if standardized else np.zeros(spec.proprio_dim))
        self._proprio_std = np.asarray(spec.proprio_std if standardized else np.ones(spec.proprio_dim))
        self._proprio_keep = np.arange(spec.proprio_dim) if spec.proprio_keep is None else np.array(spec.proprio_keep)

    # -- observation ---------------------------------------------------------------------------
    def proprio_token_ids(self, proprio: np.ndarray) -> np.ndarray:
        """Proprioception (..., proprio_dim; SI units, ``PROPRIO_LAYOUT`` order) -> the token ids of
        the values the spec keeps (..., proprio_tokens): standardized when the spec carries
        statistics, then mu-law companded into the 1024 bins (Gato Sec. 2.1)."""
        standardized = ((proprio - self._proprio_mean) / self._proprio_std)[..., self._proprio_keep]
        return tokenize_continuous(standardized).reshape(standardized.shape)

    def _text_ids(self, instruction: str) -> np.ndarray:
        if instruction not in self._text_cache:
            ids = self.text.encode(instruction)
            if len(ids) > self.spec.text_tokens:
                raise TokenizationError(
                    f"instruction {instruction!r} encodes to {len(ids)} tokens; "
                    f"the policy's layout holds {self.spec.text_tokens}"
                )
            self._text_cache[instruction] = np.concatenate(
                [ids, np.full(self.spec.text_tokens - len(ids), PAD_ID, np.int64)])
        return self._text_cache[instruction]

    def _grasp_flag(self, observation: Observation) -> np.ndarray:
        """The observation's grasp flag as a (1,) array, checked (a spec with ``grasp_sensor``)."""
        try:
            return observation.grasp_flag()
        except ValueError as error:
            raise TokenizationError(str(error)) from error

    def _validate(self, observation: Observation) -> np.ndarray:
        spec = self.spec
        missing = [name for name in spec.camera_names if name not in observation.images]
        if missing:
            raise TokenizationError(f"observation is missing camera(s) {missing}; got {sorted(observation.images)}")
        for name in spec.camera_names:
            validate_image(observation.images[name], name, (spec.image_height, spec.image_width))
        proprio = np.asarray(observation.proprio)
        if proprio.shape != (spec.proprio_dim,):
            raise TokenizationError(f"proprio: expected shape ({spec.proprio_dim},), got {proprio.shape}")
        if not np.all(np.isfinite(proprio)):
            raise TokenizationError(f"proprio: expected finite values, got NaN/Inf at index "
                                    f"{np.flatnonzero(~np.isfinite(proprio)).tolist()}")
        return proprio

    def encode_observation(self, observation: Observation, rng: np.random.Generator | None = None) -> TokenSequence:
        """Observation tokens of one timestep, closed by the separator.

        ``rng`` given (training): patch positions sampled within their intervals; None (evaluation):
        the interval means.
        """
        proprio = self._validate(observation)
        spec, parts, position = self.spec, [], 0
        if spec.text_tokens:
            text = TokenSequence.of_tokens(self._text_ids(observation.instruction), Modality.TEXT, position)
            text.loss_mask[text.token_ids == PAD_ID] = 0.0
            parts.append(text)
            position += spec.text_tokens
        for camera_index, name in enumerate(spec.camera_names):
            parts.append(self._image_tokens(observation.images[name], name, position, rng))
            position += spec.patches_per_image
        proprio_ids = self.proprio_token_ids(proprio)
        if spec.grasp_sensor:
            proprio_ids = np.concatenate([proprio_ids, tokenize_continuous(self._grasp_flag(observation))])
        parts.append(TokenSequence.of_tokens(proprio_ids, Modality.CONTINUOUS, position))
        position += spec.proprio_tokens
        parts.append(TokenSequence.of_tokens(np.array([SEPARATOR_ID]), Modality.SEPARATOR, position))
        return concat_sequences(parts)

    def _image_tokens(self, image: np.ndarray, name: str, obs_start: int, rng: np.random.Generator | None) -> TokenSequence:
        patches = image_to_patches(image, name)
        n = len(patches)
        rows = self._eval_rows if rng is None else sample_patch_positions(self._row_intervals, rng)
        cols = self._eval_cols if rng is None else sample_patch_positions(self._col_intervals, rng)
        return TokenSequence(
            token_ids=np.full(n, IMAGE_PLACEHOLDER_ID, np.int64),
            modality=np.full(n, int(Modality.IMAGE), np.uint8),
            obs_positions=np.arange(obs_start, obs_start + n, dtype=np.int64),
            patch_rows=rows.copy(),
            patch_cols=cols.copy(),
            image_index=np.arange(n, dtype=np.int64),
            loss_mask=np.zeros(n, np.float32),
            patches=patches,
        )

    # -- action --------------------------------------------------------------------------------
    def encode_action(self, action: np.ndarray) -> TokenSequence:
        """Action vector (already scaled to the policy's action range) -> action tokens."""
        action = np.asarray(action)
        if action.shape != (self.spec.action_dim,):
            raise TokenizationError(f"action: expected shape ({self.spec.action_dim},), got {action.shape}")
        ordered = action[list(self.spec.action_token_order)]
        return TokenSequence.of_tokens(tokenize_continuous(ordered), Modality.ACTION, None)

    def decode_action(self, token_ids: np.ndarray) -> np.ndarray:
        """Action token ids (..., action_dim), in token order -> continuous action values (float64)
        in the action vector's order."""
        token_ids = np.asarray(token_ids)
        if token_ids.shape[-1:] != (self.spec.action_dim,):
            raise TokenizationError(f"action tokens: expected trailing dimension {self.spec.action_dim}, "
                                    f"got shape {token_ids.shape}")
        values = detokenize_continuous(token_ids)
        action = np.empty_like(values)
        action[..., list(self.spec.action_token_order)] = values
        return action

    def encode_timestep(self, observation: Observation, action: np.ndarray,
                        rng: np.random.Generator | None = None) -> TokenSequence:
        return concat_sequences([self.encode_observation(observation, rng), self.encode_action(action)])
