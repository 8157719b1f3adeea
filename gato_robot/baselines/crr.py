"""BC-IMP's improvement step: Critic Regularized Regression (Wang et al. 2020, "Critic Regularized
Regression"), as Lee et al. 2021 ("Beyond Pick-and-Place", Sec. 4) improve the BC policy that Gato
is compared with (Gato Sec. 5.2).

Starting from the behaviour-cloned policy, on *all* the data (the expert's episodes, failures
included, and the BC policy's own rollouts with their rewards; no return filter, since offline RL
learns from what did not work too):

- a critic Q(s, a) (the BC-IMP encoder, its own weights; actions in normalized units) is trained
  by TD(0) toward r + discount * Q_target(s', pi_target(s')), with Polyak-averaged targets;
- the policy by advantage-weighted regression: weight exp(A / beta), clipped at ``max_weight``,
  times the squared error to the dataset action, where A(s, a) = Q(s, a) - mean_j Q(s, a_j) and
  the a_j are drawn from a Gaussian of ``policy_std`` around the policy's action (CRR's "exp"
  variant with the policy made stochastic for the value estimate).

Where it simplifies Lee et al.: a scalar critic (theirs is distributional), feed-forward (no LSTM),
one improvement round; transitions whose successor is the episode's last observation are sampled
(the final one of a truncated episode is not, so no bootstrap is cut by the 400-step limit).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..data.dataset import random_shift
from ..data.episodes import EpisodeReader, EpisodeStore
from .bc_imp import BCIMPConfig, BCIMPPolicy, ConvEncoder, load, save


@dataclass(frozen=True)
class CRRConfig:
    steps: int = 1250
    batch_size: int = 32
    learning_rate: float = 1e-4  # policy (fine-tuning the BC weights)
    critic_learning_rate: float = 3e-4
    discount: float = 0.99  # per 50 ms tick: a 5 s horizon
    beta: float = 1.0  # advantage temperature
    max_weight: float = 20.0
    action_samples: int = 4  # actions drawn per state for the value estimate
    policy_std: float = 0.2  # of those draws, normalized action units
    target_update: float = 0.005  # Polyak rate of the target critic and policy
    random_shift_px: int = 4
    seed: int = 0


class Critic(nn.Module):
    """Q(images, proprio, normalized action) -> scalar: BC-IMP's encoder and proprio MLP, with the
    action joining before the head."""

    def __init__(self, config: BCIMPConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config)
        self.proprio = nn.Sequential(nn.Linear(config.proprio_dim, 64), nn.GELU())
        features = config.image_embedding * len(config.camera_names) + 64
        self.head = nn.Sequential(nn.Linear(features + config.action_dim, config.hidden), nn.GELU(),
                                  nn.Linear(config.hidden, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))

    def features(self, images: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        encoded = self.encoder(images.flatten(0, 1)).view(batch, -1)
        scaled = torch.sign(proprio) * torch.log1p(proprio.abs())
        return torch.cat([encoded, self.proprio(scaled)], dim=1)

    def value(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([features, actions], dim=-1)).squeeze(-1)


class TransitionSampler:
    """Uniform (s, a, r, s') samples over every episode of the stores, no return filter."""

    def __init__(self, stores: list[Path], spec: ActionSpec, cameras: tuple[str, ...], shift_px: int):
        metas = [m for store in stores for m in EpisodeStore(store).episodes() if m.steps >= 2]
        if not metas:
            raise ValueError(f"no episodes of 2 or more steps in {', '.join(map(str, stores))}")
        self.readers = [EpisodeReader(m.path) for m in metas]
        self.lengths = np.array([m.steps for m in metas])
        self.spec, self.cameras, self.shift_px = spec, cameras, shift_px
        self.episodes, self.transitions = len(metas), int(np.sum(self.lengths - 1))

    def _observations(self, reader: EpisodeReader, t: int, rng: np.random.Generator):
        """Timesteps t and t + 1 from one read: ((images, proprio), (images, proprio)), each
        timestep's cameras shifted independently."""
        frames, proprio = reader.images(t, t + 2), reader.proprio(t, t + 2)
        observations = []
        for k in range(2):
            images = [frames[name][k:k + 1] for name in self.cameras]
            if self.shift_px:
                images = [random_shift(image, self.shift_px, rng) for image in images]
            observations.append((np.concatenate(images), proprio[k]))
        return observations

    def batch(self, seed: int, step: int, size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step])
        picks = rng.integers(0, self.episodes, size)
        times = (rng.random(size) * (self.lengths[picks] - 1)).astype(int)  # t + 1 exists
        now, after = zip(*[self._observations(self.readers[e], t, rng) for e, t in zip(picks, times)])
        actions = np.stack([self.spec.normalize(self.readers[e].actions(t, t + 1)[0]) for e, t in zip(picks, times)])
        rewards = np.array([self.readers[e].file["rewards"][t] for e, t in zip(picks, times)], dtype=np.float32)
        as_tensor = lambda arrays, dtype: torch.from_numpy(np.stack(arrays)).to(dtype)  # noqa: E731
        return {"images": as_tensor([o[0] for o in now], torch.uint8), "proprio": as_tensor([o[1] for o in now], torch.float32),
                "next_images": as_tensor([o[0] for o in after], torch.uint8),
                "next_proprio": as_tensor([o[1] for o in after], torch.float32),
                "actions": torch.from_numpy(actions).float(), "rewards": torch.from_numpy(rewards)}

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def crr_losses(policy: BCIMPPolicy, critic: Critic, target_policy: BCIMPPolicy, target_critic: Critic,
               batch: dict[str, torch.Tensor], config: CRRConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The critic's TD loss and the policy's advantage-weighted regression loss of one batch."""
    with torch.no_grad():
        next_features = target_critic.features(batch["next_images"], batch["next_proprio"])
        next_action = target_policy(batch["next_images"], batch["next_proprio"])
        target = batch["rewards"] + config.discount * target_critic.value(next_features, next_action)
    features = critic.features(batch["images"], batch["proprio"])
    critic_loss = F.mse_loss(critic.value(features, batch["actions"]), target)

    mean_action = policy(batch["images"], batch["proprio"])
    with torch.no_grad():
        detached = features.detach()
        q_data = critic.value(detached, batch["actions"])
        noise = torch.randn((config.action_samples, *mean_action.shape), generator=generator)
        draws = (mean_action.detach().unsqueeze(0) + config.policy_std * noise).clamp(-1.0, 1.0)
        q_policy = torch.stack([critic.value(detached, draw) for draw in draws]).mean(0)
        advantage = q_data - q_policy
        weights = torch.exp(advantage / config.beta).clamp(max=config.max_weight)
    policy_loss = (weights * ((mean_action - batch["actions"]) ** 2).sum(-1)).mean()
    return {"critic": critic_loss, "policy": policy_loss, "advantage": advantage.mean(), "weight": weights.mean(),
            "q": q_data.mean()}


def _polyak(target: nn.Module, source: nn.Module, rate: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, rate)


def improve_bc_imp(bc_policy: Path, stores: list[Path], out: Path, config: CRRConfig = CRRConfig(),
                   spec: ActionSpec = RGB_STACKING_ACTIONS, progress: bool = True) -> dict:
    """CRR from the BC checkpoint ``bc_policy`` on ``stores``; writes a BC-IMP checkpoint (the
    same format, so `sim eval --policy OUT` evaluates it) and its summary to ``out``."""
    torch.manual_seed(config.seed)
    policy = load(bc_policy).train()
    if policy.config.action_head != "tanh":
        raise ValueError(f"{bc_policy}: CRR needs BC-IMP's tanh action head (a Gaussian policy around its mean), "
                         f"got action_head {policy.config.action_head!r}")
    if policy.config.grasp_sensor:
        raise ValueError(f"{bc_policy}: CRR does not feed the grasp flag to its critic and policy yet; improve a BC "
                         "checkpoint trained without --grasp-sensor")
    critic = Critic(policy.config).train()
    target_policy, target_critic = copy.deepcopy(policy).eval(), copy.deepcopy(critic).eval()
    policy_optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=config.critic_learning_rate, weight_decay=1e-4)
    sampler = TransitionSampler(stores, spec, policy.config.camera_names, config.random_shift_px)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc="crr", unit="step", disable=not progress)
    try:
        for step in bar:
            batch = sampler.batch(config.seed, step, config.batch_size)
            losses = crr_losses(policy, critic, target_policy, target_critic, batch, config, generator)
            cosine = 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for optimizer, base, loss, module in ((critic_optimizer, config.critic_learning_rate, losses["critic"], critic),
                                                  (policy_optimizer, config.learning_rate, losses["policy"], policy)):
                for group in optimizer.param_groups:
                    group["lr"] = base * cosine
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                optimizer.step()
            _polyak(target_critic, critic, config.target_update)
            _polyak(target_policy, policy, config.target_update)
            history.append({name: value.item() for name, value in losses.items()})
            bar.set_postfix(q=f"{history[-1]['q']:.2f}", weight=f"{history[-1]['weight']:.2f}",
                            td=f"{history[-1]['critic']:.4f}")
    finally:
        sampler.close()
    save(policy.eval(), out)
    seconds = time.perf_counter() - started
    last = {name: float(np.mean([h[name] for h in history[-50:]])) for name in history[-1]}
    summary = {"improved_from": str(bc_policy), "stores": [str(s) for s in stores], "episodes": sampler.episodes,
               "transitions": sampler.transitions, "steps": config.steps, "samples": config.steps * config.batch_size,
               "wall_time_s": seconds, "samples_per_s": config.steps * config.batch_size / seconds,
               "last_50_steps": last, "config": asdict(config)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
