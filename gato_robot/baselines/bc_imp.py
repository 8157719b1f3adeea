"""The BC-IMP specialist baseline that Gato is compared with on RGB stacking (Lee et al. 2021;
Gato Sec. 5.2 / Table 3 reports it as the specialist it matches).

How it follows Lee et al.: a non-transformer, vision-based specialist that sees the same two front
cameras and proprioception, with a convolutional image encoder (shared across cameras), an MLP
over proprioception, and a continuous action head (tanh, actions scaled to [-1, 1] by the action
spec), trained by behaviour cloning on the filtered successful episodes of the same store, and
evaluated by the same harness.

Two options bridge it to Gato, one change at a time (the recipe ablation of the issue "A Gato
policy that stacks"): ``action_head="hl_gauss"`` replaces the tanh regression by Gato's action
tokenizer (mu-law, 1024 uniform bins, Reed et al. 2022 Sec. 2.1) with HL-Gauss soft targets, decoded
by Gato's :func:`gato_robot.runtime.base.choose_bin` (motion by the expectation asked for, default the
shipped Gato's physical one; gripper by argmax; results/ablation-history.md round 12: the physical one stacks, the
companded one does not); ``proprio_keep`` leaves proprioception out as Gato's
``TimestepSpec.proprio_keep`` does (``JOINT_VELOCITY_FREE``: no joint velocities); ``proprio_mean``
and ``proprio_std`` standardize proprioception per dimension with the training episodes' statistics,
as Gato's ``--standardize-proprio`` does, instead of BC-IMP's sign * log1p of SI units;
``grasp_sensor`` appends the grasp flag (0 or 1, :func:`gato_robot.proprio.grasp_detected`) to the
proprioception MLP's input, as Gato's ``TimestepSpec.grasp_sensor`` adds its token, so the two compare
input for input (the benchmark's robot reports the flag; Lee et al. 2021).

Where it simplifies: Lee et al.'s BC-IMP adds an offline policy-improvement step (CRR with a
learned critic, then data collection with the improved policy) and uses a ResNet encoder with an
LSTM over time; here the policy is feed-forward (one timestep), and this module is the "BC" stage
of BC-IMP; the improvement step is :mod:`gato_robot.baselines.crr`. The dataset filter is the same 80% return rule
Gato uses.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from tqdm import tqdm

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..data.dataset import RECORDING_ARM, gripper_keyframe_mask, proprio_noise_std, proprio_statistics, random_shift
from ..data.episodes import EpisodeReader, EpisodeStore
from ..errors import DamagedFileError, read_json_object, reading
from ..model.policy import hl_gauss_cross_entropy
from ..proprio import PROPRIO_DIM, PROPRIO_OFFSETS, check_proprio_keep, grasp_flags
from ..runtime.base import MOTION_DIMS, choose_bin
from ..runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE
from ..tokenizer.ids import NUM_CONTINUOUS_BINS
from ..tokenizer.mulaw import bins_to_continuous, continuous_to_bins
from ..train.distributed import Cluster, data_parallel, join_cluster, leave_cluster

KIND = "bc_imp"
ACTION_HEADS = ("tanh", "hl_gauss")


@dataclass(frozen=True)
class BCIMPConfig:
    camera_names: tuple[str, ...] = ("front_left", "front_right")
    channels: tuple[int, ...] = (32, 64, 64, 128)
    keypoint_channels: int = 32
    image_size: int = 128  # pixels, square
    image_embedding: int = 128
    hidden: int = 256
    proprio_dim: int = PROPRIO_DIM
    action_dim: int = 5
    action_head: str = "tanh"  # "tanh": MSE on normalized actions (Lee et al.); "hl_gauss": Gato's 1024 bins
    hl_gauss_sigma_bins: float = 2.0  # HL-Gauss target width, in bins (companded space), as GatoConfig's
    proprio_keep: tuple[int, ...] | None = None  # indices of the 22 proprio values seen (None: all)
    proprio_mean: tuple[float, ...] | None = None  # per-dimension statistics of the training episodes (SI units):
    proprio_std: tuple[float, ...] | None = None  # standardized as Gato's tokenizer does (None: sign * log1p|x|)
    grasp_sensor: bool = False  # also read the grasp flag (0/1; Observation.extras["gripper_grasp"]), as Gato's option
    kind: str = KIND

    def __post_init__(self):
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"action_head must be one of {ACTION_HEADS}, got {self.action_head!r}")
        if self.proprio_keep is not None:
            object.__setattr__(self, "proprio_keep", check_proprio_keep(self.proprio_keep, self.proprio_dim))
        if (self.proprio_mean is None) != (self.proprio_std is None) or (
                self.proprio_mean is not None and not len(self.proprio_mean) == len(self.proprio_std) == self.proprio_dim):
            raise ValueError(f"proprio_mean and proprio_std must both be {self.proprio_dim} values or both None")

    @property
    def proprio_seen(self) -> int:
        return self.proprio_dim if self.proprio_keep is None else len(self.proprio_keep)


class ConvEncoder(nn.Module):
    """uint8 (N, H, W, 3) -> (N, image_embedding): strided convs with GroupNorm + GELU, then a 1x1
    conv to ``keypoint_channels`` and a linear layer over the whole (flattened) feature map, so
    where an object is in the image survives to the action head (pooling would discard it)."""

    def __init__(self, config: BCIMPConfig):
        super().__init__()
        layers, previous = [], 3
        for width in config.channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU()]
            previous = width
        layers += [nn.Conv2d(previous, config.keypoint_channels, 1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        self.head = nn.Linear(config.keypoint_channels * side * side, config.image_embedding)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.head(self.body(x).flatten(1))


class BCIMPPolicy(nn.Module):
    def __init__(self, config: BCIMPConfig = BCIMPConfig()):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config)
        self.proprio = nn.Sequential(nn.Linear(config.proprio_seen + int(config.grasp_sensor), 64), nn.GELU())
        features = config.image_embedding * len(config.camera_names) + 64
        outputs = config.action_dim * (NUM_CONTINUOUS_BINS if config.action_head == "hl_gauss" else 1)
        self.head = nn.Sequential(nn.Linear(features, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.hidden),
                                  nn.GELU(), nn.Linear(config.hidden, outputs))
        if config.proprio_keep is not None:
            self.register_buffer("keep", torch.tensor(config.proprio_keep), persistent=False)
        if config.proprio_mean is not None:
            self.register_buffer("proprio_mean", torch.tensor(config.proprio_mean), persistent=False)
            self.register_buffer("proprio_std", torch.tensor(config.proprio_std), persistent=False)

    def forward(self, images: torch.Tensor, proprio: torch.Tensor, grasp: torch.Tensor | None = None) -> torch.Tensor:
        """images uint8 (B, cameras, H, W, 3), proprio (B, 22) SI units, grasp (B, 1) flags (0/1; only
        for a ``grasp_sensor`` policy) -> normalized action (B, 5) in [-1, 1] ("tanh" head), or
        action-bin logits (B, 5, 1024) ("hl_gauss" head)."""
        if (grasp is not None) != self.config.grasp_sensor:
            raise ValueError("this BC-IMP policy reads the grasp flag: pass grasp (B, 1)" if self.config.grasp_sensor
                             else "this BC-IMP policy does not read the grasp flag: grasp must be None")
        batch, cameras = images.shape[:2]
        encoded = self.encoder(images.flatten(0, 1)).view(batch, -1)
        if self.config.proprio_mean is not None:
            scaled = (proprio - self.proprio_mean) / self.proprio_std
        else:
            scaled = torch.sign(proprio) * torch.log1p(proprio.abs())  # proprio spans rad, m and rad/s
        if self.config.proprio_keep is not None:
            scaled = scaled[:, self.keep]
        if grasp is not None:
            scaled = torch.cat([scaled, grasp.to(scaled.dtype)], dim=1)
        out = self.head(torch.cat([encoded, self.proprio(scaled.float())], dim=1))
        return torch.tanh(out) if self.config.action_head == "tanh" else out.view(batch, self.config.action_dim, -1)

    def loss(self, images: torch.Tensor, proprio: torch.Tensor, actions: np.ndarray,
             grasp: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Behaviour-cloning loss against normalized actions (B, 5): MSE ("tanh"), or cross-entropy
        against HL-Gauss targets centred on each action's mu-law bin ("hl_gauss"); the mean over
        targets, weighted by ``weights`` (B, 5) when given (gripper keyframes, as Gato's loss_mask)."""
        prediction = self(images, proprio, grasp)
        if self.config.action_head == "tanh":
            squared = (prediction - torch.from_numpy(actions).float()) ** 2
            return squared.mean() if weights is None else (weights * squared).sum() / weights.sum()
        bins = torch.from_numpy(continuous_to_bins(actions)).reshape(-1)
        log_p = F.log_softmax(prediction.reshape(bins.shape[0], -1), dim=-1)
        return hl_gauss_cross_entropy(log_p, bins, self.config.hl_gauss_sigma_bins,
                                      None if weights is None else weights.reshape(-1))

    @torch.inference_mode()
    def act(self, images: torch.Tensor, proprio: torch.Tensor, expectation: str = DEPLOYED_EXPECTATION,
            grasp: torch.Tensor | None = None) -> np.ndarray:
        """Deterministic normalized actions (B, 5) float64: the tanh output, or the bins decoded as
        Gato's runners decode (motion by ``expectation``, default the shipped Gato's; gripper by argmax)."""
        out = self(images, proprio, grasp).numpy().astype(np.float64)
        if self.config.action_head == "tanh":
            return out
        rng = np.random.default_rng(0)  # unused: every decoding here is deterministic
        bins = np.array([[choose_bin(row[d], DEPLOYED_TEMPERATURE, rng, expectation if d in MOTION_DIMS else "off")
                          for d in range(self.config.action_dim)] for row in out])
        return bins_to_continuous(bins)


def save(policy: BCIMPPolicy, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(asdict(policy.config), indent=2))
    save_model(policy, str(directory / "model.safetensors"))
    return directory


def load(directory: Path) -> BCIMPPolicy:
    path = Path(directory) / "config.json"
    data = read_json_object(path, "policy config")
    if data.get("kind") != KIND:
        raise DamagedFileError(path, f"not a BC-IMP config (kind {data.get('kind')!r}, expected {KIND!r})")
    with reading(path, "BC-IMP config", TypeError, ValueError):
        config = BCIMPConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        policy = BCIMPPolicy(config)  # widths that build no network are a damaged config too
    weights = Path(directory) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"BC-IMP weights not found: expected {weights}")
    with reading(weights, f"BC-IMP weights file for the network {path} describes", SafetensorError, RuntimeError,
                 OSError):
        load_model(policy, str(weights))
    return policy.eval()


@dataclass(frozen=True)
class BCIMPTrainConfig:
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    min_return_fraction: float = 0.8
    random_shift_px: int = 0  # DrQ random shift of each camera image, as for Gato (0: off)
    standardize_proprio: bool = False  # model.proprio_mean/std from the training episodes, as Gato's option
    velocity_noise: float = 0.0  # Gaussian noise on the joint velocities seen, x their std, at training only (0: off)
    gripper_keyframe_weight: float = 1.0  # loss weight of the gripper target at a grasp or release (1: off), as Gato's
    gripper_keyframes: str = "both"  # which keyframes weigh it: both, releases or grasps (data.dataset.GRIPPER_KEYFRAMES)
    grasp_lead: int = 0  # and the open targets of that many timesteps before each grasp, as Gato's
    seed: int = 0
    model: BCIMPConfig = field(default_factory=BCIMPConfig)

    def __post_init__(self):
        if not self.gripper_keyframe_weight >= 1.0:
            raise ValueError(f"gripper_keyframe_weight must be >= 1, got {self.gripper_keyframe_weight}")
        gripper_keyframe_mask(np.zeros(0), -1.0, self.gripper_keyframes, self.grasp_lead)  # checks the kind and lead


def previous_gripper_label(reader: EpisodeReader, t: int, spec: ActionSpec) -> float:
    """The gripper label of recorded timestep ``t - 1`` in [-1, 1]; -1 (open) before the first."""
    return float(reader.actions(t - 1, t)[0, spec.names.index("gripper")]) if t else -1.0


def recorded_keyframe(reader: EpisodeReader, t: int, spec: ActionSpec, kinds: str, grasp_lead: int = 0) -> bool:
    """Whether recorded timestep ``t``'s gripper label is a keyframe of ``kinds``: its sign differs
    from the label of ``t - 1``, or (``grasp_lead`` > 0) a grasp follows within that many timesteps,
    the rule of Gato's training windows (:func:`gato_robot.data.dataset.gripper_keyframe_mask`)."""
    labels = reader.actions(t, t + 1 + grasp_lead)[:, spec.names.index("gripper")]
    return bool(gripper_keyframe_mask(labels[:1], previous_gripper_label(reader, t, spec), kinds, grasp_lead,
                                      labels[1:])[0])


def recorded_grasp_flag(reader: EpisodeReader, t: int, proprio: np.ndarray, spec: ActionSpec) -> np.ndarray:
    """The grasp flag (1,) of recorded timestep ``t`` whose proprioception is ``proprio`` (22,): its
    finger width against the gripper command of ``t - 1`` (open before the first), the rule of
    Gato's training windows (:func:`gato_robot.proprio.grasp_flags`)."""
    width = np.array([proprio[PROPRIO_OFFSETS["gripper_width"]]])
    return grasp_flags(width, np.zeros(1), RECORDING_ARM.max_gripper_width_m,  # a 1-step stretch: its own action unused
                       previous_action=previous_gripper_label(reader, t, spec))


def train_bc_imp(store_dir: Path, out: Path, config: BCIMPTrainConfig, spec: ActionSpec = RGB_STACKING_ACTIONS,
                 progress: bool = True) -> dict:
    """Behaviour cloning (:meth:`BCIMPPolicy.loss`) on the filtered episodes; cosine learning rate.
    Under `torchrun` (gloo) every rank computes the gradient of its rows of each step's global batch
    of ``config.batch_size`` and DistributedDataParallel averages them, as ``gato-robot train`` does
    (:mod:`gato_robot.train.distributed`): the same run as one process; rank 0 writes ``out``."""
    cluster = join_cluster("cpu")
    try:
        return _train_bc_imp(store_dir, out, config, spec, cluster, progress and cluster.is_main)
    finally:
        leave_cluster(cluster)


def _train_bc_imp(store_dir: Path, out: Path, config: BCIMPTrainConfig, spec: ActionSpec, cluster: Cluster,
                  progress: bool) -> dict:
    torch.manual_seed(config.seed)
    rows = cluster.shard(config.batch_size)
    episodes = EpisodeStore(store_dir).episodes(config.min_return_fraction)
    if not episodes:
        raise ValueError(f"no usable episodes in {store_dir}")
    readers = [EpisodeReader(m.path) for m in episodes]
    lengths = np.array([m.steps for m in episodes])
    model = config.model
    if config.standardize_proprio:
        mean, std = proprio_statistics(episodes)
        model = replace(model, proprio_mean=tuple(mean.tolist()), proprio_std=tuple(std.tolist()))
    noise_std = proprio_noise_std(episodes, velocity_noise=config.velocity_noise)
    policy = BCIMPPolicy(model).train()
    loss_of = data_parallel(policy, cluster)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    losses, started = [], time.perf_counter()
    bar = tqdm(range(config.steps), desc="train bc-imp", unit="step", disable=not progress)
    for step in bar:
        rng = np.random.default_rng([config.seed, step])  # the global batch: the same draw on every rank
        picks = rng.integers(0, len(readers), config.batch_size)[rows]
        times = (rng.random(config.batch_size)[rows] * lengths[picks]).astype(int)
        images = np.stack([np.stack([readers[e].images(t, t + 1)[name][0] for name in config.model.camera_names])
                           for e, t in zip(picks, times)])
        if config.random_shift_px:  # per camera; each row draws from a generator of its own, so shards draw alike
            row_rngs = [np.random.default_rng([config.seed, step, row]) for row in rows]
            images = np.stack([np.concatenate([random_shift(camera[None], config.random_shift_px, row_rng)
                                               for camera in cameras]) for cameras, row_rng in zip(images, row_rngs)])
        proprio = np.stack([readers[e].proprio(t, t + 1)[0] for e, t in zip(picks, times)])
        grasp = (torch.from_numpy(np.stack([recorded_grasp_flag(readers[e], t, proprio[i], spec)
                                            for i, (e, t) in enumerate(zip(picks, times))])).float()
                 if model.grasp_sensor else None)  # from the recorded widths, before any noise, as Gato's windows
        if noise_std is not None:  # generators of their own: every other draw as without the noise
            proprio = proprio + noise_std * np.stack([np.random.default_rng([config.seed, step, row, 1]).normal(
                size=proprio.shape[1]) for row in rows])
        actions = np.stack([spec.normalize(readers[e].actions(t, t + 1)[0]) for e, t in zip(picks, times)])
        weights = None
        if config.gripper_keyframe_weight != 1.0:
            weights = torch.ones(actions.shape)
            weights[[i for i, (e, t) in enumerate(zip(picks, times))
                     if recorded_keyframe(readers[e], t, spec, config.gripper_keyframes, config.grasp_lead)],
                    spec.names.index("gripper")] = config.gripper_keyframe_weight
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        loss = loss_of(torch.from_numpy(images), torch.from_numpy(proprio).float(), actions, grasp, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        losses.append(cluster.mean(loss))  # the global batch's loss
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    for reader in readers:
        reader.close()
    seconds = time.perf_counter() - started
    summary = {"steps": config.steps, "samples": config.steps * config.batch_size, "wall_time_s": seconds,
               "samples_per_s": config.steps * config.batch_size / seconds, "final_loss": losses[-1],
               "episodes": len(episodes), "parameters": sum(p.numel() for p in policy.parameters()),
               "processes": cluster.world_size,
               "config": {k: v for k, v in asdict(config).items() if k != "model"}}
    if cluster.is_main:
        save(policy.eval(), out)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    cluster.barrier()
    return {**summary, "losses": losses, "seconds": seconds}

