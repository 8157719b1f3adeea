"""Training windows from the episode store, tokenized exactly as at deployment.

A sample is ``window_timesteps`` consecutive timesteps of one episode (Gato trains on windows of
the context length); each timestep is its observation tokens (training-time patch position
sampling) followed by the action the expert took, scaled to [-1, 1] by the action spec. Episodes
are filtered as Gato does: return >= ``min_return_fraction`` of the expert return (the store's
median; see :meth:`EpisodeStore.episodes`).

Patch positions are sampled within their intervals (Gato App. C.3) when ``patch_position_jitter``
is on, the paper's default; off, training uses the interval means exactly as evaluation does,
which small-data runs learn faster with (each of the 128 bins need not be learned separately).

Random shift (``random_shift_px`` > 0; DrQ, Kostrikov et al. 2020): each camera image of a window
is padded by that many pixels (edge replicated) and cropped back to its size at a random offset,
the same offset for every timestep of the window.

Proprioception noise (``proprio_noise_std``, SI units per dimension): Gaussian noise added to the
proprioception the policy sees, never to the action it is trained to take, so the policy cannot
read where things are off the joint and TCP values to a precision the images do not give, and a
value just beside the training data's (a gripper closed on a wider object) reads as a seen one.

Proprioception dropout (``proprio_dropout``, a probability; modality dropout): each window's
proprioception tokens are all replaced by the padding id with that probability, their observation
positions kept, so the policy learns to act on the images alone where the proprioception says
nothing, and cannot let the joint and TCP values stand in for what the cameras show (BC-IMP
reads depth from the cameras, Gato partly from the TCP values: results/ablation-history.md round 12). Never at
deployment, where the proprioception is always read; the token layout is unchanged.

Velocity dropout (``velocity_dropout``, a probability; past-motion dropout, Bansal et al. 2018,
ChauffeurNet): the same for the 7 joint-velocity tokens alone. The measured joint velocity is the
previous command (``results/velocity-leak.txt``); a window without it must be acted on from the
images and the pose, so the velocities cannot become the whole answer a policy copies closed-loop.
Measured in results/ablation-history.md round 24 (25/50, 31/150 against 19/50, 39/150 without it): not shipped.

Gripper keyframes (``gripper_keyframe_weight`` > 1; keyframe-focused imitation, Wen et al. 2021):
the gripper action token of a timestep whose gripper label differs in sign from the timestep
before (a grasp or a release; the first timestep compares with an open gripper) weighs that much
in the loss (``loss_mask``), every other target 1. A policy that reads the grasp flag can take
"hold while holding" from it for all but these few targets (the copycat shortcut); weighted, the
releases and grasps that must come from the images count as they matter closed loop.
``gripper_keyframes`` picks which: "both" (round 28-30), "releases" (label closed -> open: the one
target the flag's "still closed" cannot give) or "grasps" (open -> closed). ``grasp_lead`` also
weighs the gripper targets (still "open") of the ``grasp_lead`` timesteps before each grasp, the last
millimetres of the descent (the expert is 1.1 and 2.4 mm above the height it closes at one and two ticks
before), so the weighted boundary is two-sided: rounds 29 and 32 read the flag recipe's cost as a
close pulled early into the descent by the weighted grasp. Measured in results/ablation-history.md
round 34 (Gato, ``grasp_lead`` 2: 18/50, 40/150 against 25-31, 73-84 without; the close no lower,
18.6 mm above the block's bottom as every Gato arm's, the release later; BC-IMP 0/50, 3/150): not
shipped.

Grasp-flag dropout (``grasp_dropout``, a probability; the same past-action dropout as the
velocities'): each window's grasp-flag tokens are all padding with that probability. The flag is
1 exactly while the last command was "close" and a block holds the fingers apart, so a policy that
always has it can copy "still closed" and never release (round 28); without it in some windows
the release must be read off the images. Never at deployment, where the flag is always sensed.
Measured in results/ablation-history.md round 29 (26/50, 53/150, 3/30 on the flat block, against
20/50, 50/150, 12/30 without it): not shipped.

Sampling is a pure function of (seed, step, index in batch), so a resumed run sees exactly the
batches an uninterrupted one would. With ``skip_damaged`` an episode that fails to read (a damaged
chunk: :class:`DamagedFileError`) is warned about once by name and never drawn again; a window that
fell on it is replaced by the first window of an intact episode at a fixed stride from it, so the
batches stay a function of (seed, step, the damaged episodes found).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from ..errors import DamagedFileError

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..observation import Observation
from ..proprio import GRASP_SENSOR, JOINT_VELOCITIES, PROPRIO_OFFSETS, grasp_flags
from ..robot.description import ArmDescription
from ..tokenizer.ids import PAD_ID
from ..tokenizer.sequence import (GatoTokenizer, Modality, TimestepSpec, TokenSequence, concat_sequences,
                                  stack_sequences)
from .episodes import EpisodeMeta, EpisodeReader, EpisodeStore


LOGGER = logging.getLogger(__name__)
REPLACEMENT_STRIDE = 7919  # windows; a prime, so the replacements of one damaged episode spread over the store
RECORDING_ARM = ArmDescription()
"""The arm the stores were recorded with (the simulators' Panda): its opening maps gripper actions to widths."""

GRIPPER_KEYFRAMES = ("both", "releases", "grasps")  # which gripper label changes weigh gripper_keyframe_weight


def gripper_keyframe_mask(gripper: np.ndarray, gripper_before: float, kinds: str = "both", grasp_lead: int = 0,
                          gripper_after: np.ndarray = ()) -> np.ndarray:
    """(T,) bool: the timesteps of a recorded stretch whose gripper label (``gripper``, (T,) in
    [-1, 1], > 0 closes) differs in sign from the one before (``gripper_before`` ahead of the first;
    -1, open, at an episode's start): grasps (open -> closed) and releases (closed -> open), those
    ``kinds`` names (:data:`GRIPPER_KEYFRAMES`). Keyframe-focused imitation, Wen et al. 2021.
    ``grasp_lead``: also that many timesteps before each grasp (whatever ``kinds``), reading
    ``gripper_after`` (the labels recorded after the stretch, up to ``grasp_lead`` of them) for
    grasps just past its end."""
    if kinds not in GRIPPER_KEYFRAMES:
        raise ValueError(f"gripper_keyframes must be one of {GRIPPER_KEYFRAMES}, got {kinds!r}")
    if grasp_lead < 0:
        raise ValueError(f"grasp_lead must be >= 0 timesteps, got {grasp_lead}")
    steps = len(gripper)
    signs = np.sign(np.concatenate([[gripper_before], np.asarray(gripper, np.float64),
                                    np.asarray(gripper_after, np.float64)[:grasp_lead]]))
    changed = signs[1:] != signs[:-1]
    grasps = changed & (signs[1:] > 0)
    mask = (changed if kinds == "both" else grasps if kinds == "grasps" else changed & ~grasps)[:steps].copy()
    for lead in range(1, grasp_lead + 1):  # the open labels just before each grasp
        ahead = grasps[lead:lead + steps]
        mask[:len(ahead)] |= ahead
    return mask


@dataclass(frozen=True)
class WindowIndex:
    episode: int
    start: int


class EpisodeWindows:
    def __init__(self, store: EpisodeStore, spec: TimestepSpec, window_timesteps: int,
                 min_return_fraction: float = 0.8, action_spec: ActionSpec = RGB_STACKING_ACTIONS,
                 episodes: list[EpisodeMeta] | None = None, patch_position_jitter: bool = True,
                 random_shift_px: int = 0, skip_damaged: bool = False, proprio_noise_std: np.ndarray | None = None,
                 proprio_dropout: float = 0.0, velocity_dropout: float = 0.0, gripper_keyframe_weight: float = 1.0,
                 grasp_dropout: float = 0.0, gripper_keyframes: str = "both", grasp_lead: int = 0):
        self.episodes = episodes if episodes is not None else store.episodes(min_return_fraction)
        if not self.episodes:
            raise ValueError(f"no usable episodes in {store.root} (after the {min_return_fraction:.0%} return filter)")
        self.tokenizer = GatoTokenizer(spec)
        self.window, self.action_spec = window_timesteps, action_spec
        self.patch_position_jitter = patch_position_jitter
        if random_shift_px < 0:
            raise ValueError(f"random_shift_px must be >= 0, got {random_shift_px}")
        self.random_shift_px = random_shift_px
        if not 0.0 <= proprio_dropout < 1.0:
            raise ValueError(f"proprio_dropout must be in [0, 1), got {proprio_dropout}")
        self.proprio_dropout = proprio_dropout
        if not 0.0 <= velocity_dropout < 1.0:
            raise ValueError(f"velocity_dropout must be in [0, 1), got {velocity_dropout}")
        keep = np.arange(spec.proprio_dim) if spec.proprio_keep is None else np.asarray(spec.proprio_keep)
        # which of a timestep's proprio tokens are velocities (the grasp flag's token, last, is not)
        self._velocity_tokens = np.concatenate([np.isin(keep, JOINT_VELOCITIES), np.zeros(int(spec.grasp_sensor), bool)])
        if velocity_dropout and not self._velocity_tokens.any():
            raise ValueError("velocity_dropout needs a policy that sees the joint velocities (it leaves them out)")
        self.velocity_dropout = velocity_dropout
        if not 0.0 <= grasp_dropout < 1.0:
            raise ValueError(f"grasp_dropout must be in [0, 1), got {grasp_dropout}")
        if grasp_dropout and not spec.grasp_sensor:
            raise ValueError("grasp_dropout needs a policy that reads the grasp flag (TimestepSpec.grasp_sensor)")
        self.grasp_dropout = grasp_dropout
        self._grasp_tokens = np.zeros(len(self._velocity_tokens), bool)  # the flag's token, last of a timestep's
        self._grasp_tokens[-1:] = spec.grasp_sensor
        if not gripper_keyframe_weight >= 1.0:
            raise ValueError(f"gripper_keyframe_weight must be >= 1, got {gripper_keyframe_weight}")
        self.gripper_keyframe_weight = gripper_keyframe_weight
        gripper_keyframe_mask(np.zeros(0), -1.0, gripper_keyframes, grasp_lead)  # checks the kind and the lead
        self.gripper_keyframes, self.grasp_lead = gripper_keyframes, grasp_lead
        self._gripper = action_spec.names.index("gripper")  # in the action vector
        self._gripper_token = spec.action_token_order.index(self._gripper)  # among a timestep's action tokens
        self.proprio_noise_std = None
        if proprio_noise_std is not None:
            self.proprio_noise_std = np.asarray(proprio_noise_std, dtype=np.float64)
            if self.proprio_noise_std.shape != (spec.proprio_dim,) or np.any(self.proprio_noise_std < 0):
                raise ValueError(f"proprio_noise_std must be {spec.proprio_dim} values >= 0, got {proprio_noise_std}")
        self._readers: dict[int, EpisodeReader] = {}
        self.skip_damaged, self.damaged = skip_damaged, set()  # indices into self.episodes
        lengths = np.array([m.steps for m in self.episodes])
        self._starts_per_episode = np.maximum(lengths - window_timesteps + 1, 1)
        self._cumulative = np.cumsum(self._starts_per_episode)

    def __len__(self) -> int:
        return int(self._cumulative[-1])

    @property
    def timesteps(self) -> int:
        return int(sum(m.steps for m in self.episodes))

    def locate(self, flat: int) -> WindowIndex:
        episode = int(np.searchsorted(self._cumulative, flat, side="right"))
        previous = int(self._cumulative[episode - 1]) if episode else 0
        return WindowIndex(episode, flat - previous)

    def _reader(self, episode: int) -> EpisodeReader:
        if episode not in self._readers:
            self._readers[episode] = EpisodeReader(self.episodes[episode].path)
        return self._readers[episode]

    def sample(self, window: WindowIndex, rng: np.random.Generator) -> TokenSequence:
        meta = self.episodes[window.episode]
        reader = self._reader(window.episode)
        stop = min(window.start + self.window, meta.steps)
        images = reader.images(window.start, stop)
        if self.random_shift_px:
            images = {name: random_shift(frames, self.random_shift_px, rng) for name, frames in images.items()}
        proprio, actions = reader.proprio(window.start, stop).astype(np.float64), reader.actions(window.start, stop)
        gripper, gripper_before, grasp = actions[:, self._gripper], -1.0, None  # -1: open, before an episode
        if window.start and (self.tokenizer.spec.grasp_sensor or self.gripper_keyframe_weight != 1.0):
            gripper_before = float(reader.actions(window.start - 1, window.start)[0, self._gripper])
        if self.tokenizer.spec.grasp_sensor:  # from the recorded widths, not the noisy ones the policy may be shown
            grasp = grasp_flags(proprio[:, PROPRIO_OFFSETS["gripper_width"]], gripper, RECORDING_ARM.max_gripper_width_m,
                                gripper_before)
        if self.proprio_noise_std is not None:
            proprio = proprio + rng.normal(0.0, 1.0, proprio.shape) * self.proprio_noise_std
        parts, position_rng = [], rng if self.patch_position_jitter else None
        for t in range(stop - window.start):
            observation = Observation({name: images[name][t] for name in self.tokenizer.spec.camera_names},
                                      proprio[t], meta.instruction, {} if grasp is None else {GRASP_SENSOR: grasp[t:t + 1]})
            parts.append(self.tokenizer.encode_timestep(observation, self.action_spec.normalize(actions[t]),
                                                        position_rng))
        sequence = concat_sequences(parts)
        if self.gripper_keyframe_weight != 1.0:
            after = (reader.actions(stop, min(stop + self.grasp_lead, meta.steps))[:, self._gripper]
                     if self.grasp_lead else np.zeros(0))  # the labels a lead looks ahead to
            sequence = self._weigh_gripper_keyframes(sequence, gripper, gripper_before, after)
        if self.proprio_dropout and rng.random() < self.proprio_dropout:  # drawn last: other draws unchanged
            sequence = self._pad_proprio_slots(sequence, np.ones(len(self._velocity_tokens), bool))
        if self.velocity_dropout and rng.random() < self.velocity_dropout:  # drawn after: other draws unchanged
            sequence = self._pad_proprio_slots(sequence, self._velocity_tokens)
        if self.grasp_dropout and rng.random() < self.grasp_dropout:  # drawn after: other draws unchanged
            sequence = self._pad_proprio_slots(sequence, self._grasp_tokens)
        return sequence

    def _weigh_gripper_keyframes(self, sequence: TokenSequence, gripper: np.ndarray, gripper_before: float,
                                 gripper_after: np.ndarray) -> TokenSequence:
        """``sequence`` with the loss weight of the gripper target raised at the keyframes
        (:func:`gripper_keyframe_mask` of ``gripper``, one label per timestep, between ``gripper_before``
        and ``gripper_after``)."""
        keyframes = np.flatnonzero(gripper_keyframe_mask(gripper, gripper_before, self.gripper_keyframes,
                                                         self.grasp_lead, gripper_after))
        actions = np.flatnonzero(sequence.modality == Modality.ACTION).reshape(len(gripper), -1)
        loss_mask = sequence.loss_mask.copy()
        loss_mask[actions[keyframes, self._gripper_token]] = self.gripper_keyframe_weight
        return replace(sequence, loss_mask=loss_mask)

    def _pad_proprio_slots(self, sequence: TokenSequence, slots: np.ndarray) -> TokenSequence:
        """``sequence`` with the proprio tokens at ``slots`` (a mask over one timestep's proprio
        tokens, in keep order, the grasp flag last) replaced by the padding id in every timestep."""
        proprio = sequence.modality == Modality.CONTINUOUS
        slot = (np.cumsum(proprio) - 1) % len(slots)
        return replace(sequence, token_ids=np.where(proprio & slots[slot], PAD_ID, sequence.token_ids))

    def batch(self, seed: int, step: int, batch_size: int, rows: range | None = None) -> dict[str, np.ndarray]:
        """The batch of training step ``step``: a pure function of (seed, step). ``rows`` takes a
        slice of it (a data-parallel rank's shard): each row draws its window and augmentation from
        a generator of its own, so the shards of all ranks together are exactly the whole batch."""
        flats = np.random.default_rng([seed, step]).integers(0, len(self), size=batch_size)
        rows = range(batch_size) if rows is None else rows
        return stack_sequences([self._sample_intact(int(flats[i]), np.random.default_rng([seed, step, i]))
                                for i in rows])

    def _sample_intact(self, flat: int, rng: np.random.Generator) -> TokenSequence:
        for attempt in range(len(self.episodes) + 1):
            window = self.locate((flat + attempt * REPLACEMENT_STRIDE) % len(self))
            if window.episode in self.damaged:
                continue
            try:
                return self.sample(window, rng)
            except DamagedFileError as error:
                if not self.skip_damaged:
                    raise
                self.damaged.add(window.episode)
                reader = self._readers.pop(window.episode, None)
                if reader is not None:
                    reader.close()
                LOGGER.warning("skipping damaged episode (%d of %d now left out): %s", len(self.damaged),
                               len(self.episodes), error)
        raise DamagedFileError(self.episodes[0].path.parent, f"no intact episode found ({len(self.damaged)} of "
                                                             f"{len(self.episodes)} damaged): run `gato-robot data verify`")

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> the same frames padded by ``pad`` px (edge) and cropped back to
    H x W at one random offset (DrQ's random shift)."""
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    top, left = rng.integers(0, 2 * pad + 1, size=2)
    return np.ascontiguousarray(padded[:, top:top + height, left:left + width])


def proprio_statistics(episodes: list[EpisodeMeta], min_std: float = 1e-2,
                       skip_damaged: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of proprioception over ``episodes`` (SI units);
    deviations are floored at ``min_std`` so a nearly constant dimension (a quaternion component)
    is not blown up into noise. ``skip_damaged``: an unreadable episode is left out with a warning."""
    values = []
    for meta in episodes:
        try:
            with EpisodeReader(meta.path) as reader:
                values.append(reader.proprio(0, meta.steps))
        except DamagedFileError as error:
            if not skip_damaged:
                raise
            LOGGER.warning("proprio statistics: skipping damaged episode %s", error)
    values = np.concatenate(values).astype(np.float64)
    return values.mean(axis=0), np.maximum(values.std(axis=0), min_std)


def proprio_noise_std(episodes: list[EpisodeMeta], proprio_noise: float = 0.0, velocity_noise: float = 0.0,
                      skip_damaged: bool = False) -> np.ndarray | None:
    """Per-dimension std (SI units, ``PROPRIO_LAYOUT`` order) of training-time proprioception
    noise: ``proprio_noise`` x each dimension's std in ``episodes``, plus ``velocity_noise`` x their
    std on the 7 joint velocities only; None when both are off.

    Velocity noise is the copycat remedy of "the previous command as a prior, not an answer": the
    measured joint velocity is the previous command (``results/velocity-leak.txt``), which a policy
    fed clean values copies closed-loop (results/ablation-history.md rounds 11, 23); blurred at training time only, it
    stays a hint the images must confirm (past-motion perturbation, Bansal et al. 2018, ChauffeurNet).
    Measured in results/ablation-history.md round 24: Gato then all but ignores the velocities and stacks less; BC-IMP
    stacks far less. Not part of either shipped recipe.
    """
    if proprio_noise <= 0 and velocity_noise <= 0:
        return None
    std = proprio_statistics(episodes, skip_damaged=skip_damaged)[1]
    noise = proprio_noise * std
    velocities = np.array(JOINT_VELOCITIES)
    noise[velocities] += velocity_noise * std[velocities]
    return noise
