"""Few-episode fine-tuning (Gato Sec. 5.2, "Fine-tuning on robotics tasks" and Fig. 10): start from
a pretrained checkpoint, train on the first N episodes of a task held out of pretraining; the
control arm is the same architecture from random initialization on the same N episodes, with the
same steps, batch and schedule, so the only difference is the pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..model.checkpoint import load_checkpoint, load_config, save_checkpoint
from ..model.policy import GatoPolicy
from .distributed import join_cluster, leave_cluster
from .trainer import TrainConfig, train

ARMS = ("pretrained", "scratch")


@dataclass(frozen=True)
class FinetuneConfig:
    """Defaults are sized for the 2-core CPU machine: a few hundred steps at a lower peak rate.
    Windows default to the pretrained model's context, batches hold ``timesteps_per_batch``
    timesteps whatever the window."""

    episodes: int | None = 10  # None: every usable episode of the store
    steps: int = 300
    timesteps_per_batch: int = 24
    window_timesteps: int | None = None
    learning_rate: float = 3e-4
    warmup_steps: int = 30
    checkpoint_every: int = 100
    patch_position_jitter: bool = False
    random_shift_px: int = 4  # DrQ random shift, as the shipped policy was pretrained (0: off)
    seed: int = 0
    device: str = "cpu"

    def train_config(self, pretrained_window: int) -> TrainConfig:
        """The trainer's config; ``pretrained_window`` (timesteps) applies unless ``window_timesteps`` is set."""
        window = self.window_timesteps or pretrained_window
        return TrainConfig(steps=self.steps, batch_size=max(1, self.timesteps_per_batch // window),
                           window_timesteps=window,
                           learning_rate=self.learning_rate, min_learning_rate=self.learning_rate / 10,
                           warmup_steps=self.warmup_steps, checkpoint_every=self.checkpoint_every,
                           patch_position_jitter=self.patch_position_jitter,
                           random_shift_px=self.random_shift_px, max_episodes=self.episodes,
                           seed=self.seed, device=self.device)


def scratch_initialization(pretrained: Path, out: Path, seed: int) -> Path:
    """A randomly initialized checkpoint with exactly the pretrained checkpoint's architecture."""
    if not (out / "model.safetensors").is_file():
        torch.manual_seed(seed)
        save_checkpoint(GatoPolicy(load_config(pretrained)), out, metadata={"trained": "false"})
    return out


def finetune(pretrained: Path, store: Path, run_dir: Path, config: FinetuneConfig, arm: str = "pretrained",
             progress: bool = True) -> dict:
    """Train ``arm`` ("pretrained": from ``pretrained``; "scratch": same architecture, random init)
    on the first ``config.episodes`` usable episodes of ``store``; resumes like ``train``, and runs
    under `torchrun` as ``train`` does (rank 0 writes the scratch initialization and the run)."""
    if arm not in ARMS:
        raise ValueError(f"unknown fine-tuning arm {arm!r}; choose one of {ARMS}")
    window = load_checkpoint(pretrained).config.timesteps_in_context  # fails early if missing or broken
    cluster = join_cluster(config.device)  # under torchrun: one process group for the whole run
    try:
        init = pretrained
        if arm == "scratch":
            init = run_dir / "init"
            if cluster.is_main:  # one writer; the other ranks read it after the barrier
                scratch_initialization(pretrained, init, config.seed)
            cluster.barrier()
        return train(store, run_dir, config.train_config(window), init_from=init, progress=progress)
    finally:
        leave_cluster(cluster)
