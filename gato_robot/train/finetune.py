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
from .trainer import TrainConfig, train

ARMS = ("pretrained", "scratch")


@dataclass(frozen=True)
class FinetuneConfig:
    """Defaults are sized for the 2-core CPU machine: a few hundred steps at a lower peak rate."""

    episodes: int = 10
    steps: int = 300
    batch_size: int = 8
    window_timesteps: int = 3
    learning_rate: float = 3e-4
    warmup_steps: int = 30
    checkpoint_every: int = 100
    patch_position_jitter: bool = False
    seed: int = 0
    device: str = "cpu"

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, window_timesteps=self.window_timesteps,
                           learning_rate=self.learning_rate, min_learning_rate=self.learning_rate / 10,
                           warmup_steps=self.warmup_steps, checkpoint_every=self.checkpoint_every,
                           patch_position_jitter=self.patch_position_jitter, max_episodes=self.episodes,
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
    on the first ``config.episodes`` usable episodes of ``store``; resumes like ``train``."""
    if arm not in ARMS:
        raise ValueError(f"unknown fine-tuning arm {arm!r}; choose one of {ARMS}")
    load_checkpoint(pretrained)  # fail early, with the checkpoint's own error, if it is missing or broken
    init = pretrained if arm == "pretrained" else scratch_initialization(pretrained, run_dir / "init", config.seed)
    return train(store, run_dir, config.train_config(), init_from=init, progress=progress)
