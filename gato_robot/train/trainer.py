"""`gato-robot train`: behaviour cloning of the Gato policy on episode-store windows.

AdamW with linear warm-up and cosine decay (Gato Sec. 4: AdamW, warm-up, cosine schedule),
gradient clipping, bf16 autocast on CUDA, the masked next-token loss (text and action targets).
Checkpoints (``model.safetensors`` + ``config.json`` + ``training_state.pt`` with optimizer state,
step, loss history and held-out metrics) are written atomically every ``checkpoint_every`` steps; a run started on a
directory that holds one resumes exactly: batches are a pure function of (seed, step), dropout is
off, so the loss curve continues as if never interrupted. Batches are prepared by a background
thread one step ahead, so data loading overlaps the optimizer step. With ``heldout_store`` the
held-out action cross-entropy and physical action error (:mod:`gato_robot.train.validation`) are
measured at every checkpoint and plotted beside the loss. With ``ema_decay`` the checkpoint's
weights are an exponential moving average of the trained ones (Polyak averaging,
``torch.optim.swa_utils``; the trained weights stay in the training state for an exact resume):
what is evaluated, exported and deployed is the average.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..action_spec import GRIPPER_FIRST, RGB_STACKING_ACTIONS
from ..data.dataset import EpisodeWindows, proprio_noise_std, proprio_statistics
from ..data.episodes import EpisodeStore
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.config import GatoConfig, preset
from ..model.policy import GatoPolicy, batch_to_torch
from ..proprio import proprio_keep_for
from .distributed import (SHARDINGS, Cluster, data_parallel, gather_optimizer_state, gather_weights, join_cluster,
                          leave_cluster, load_optimizer_state, shard_policy)
from .validation import heldout_batch, heldout_metrics

STATE_FILE = "training_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "cpu-small"
    steps: int = 2000
    batch_size: int = 8
    window_timesteps: int = 3
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    min_return_fraction: float = 0.8
    patch_position_jitter: bool = True  # Gato App. C.3; off = interval means, as at evaluation
    image_encoder: str = "patch_resnet"  # GatoConfig.image_encoder: "patch_resnet" (Gato), "conv_stem", "conv_stem_global", "conv_stem_whole", "conv_stem_keypoints"
    action_loss: str = "vocab_ce"  # GatoConfig.action_loss: "vocab_ce" (Gato Eq. 2) or "hl_gauss"
    hl_gauss_sigma_bins: float = 2.0
    expectation_mse_weight: float = 0.0  # GatoConfig.expectation_mse_weight (hl_gauss only; 0: off)
    dropout: float = 0.0  # GatoConfig.dropout: attention and MLP dropout (Gato's is not stated; 0: off)
    continuous_embedding: str = "table"  # GatoConfig.continuous_embedding: "table" (Gato), "table_fourier", "value_mlp"
    fourier_frequencies: int = 8  # GatoConfig.fourier_frequencies: the finest period spans 2^(11 - this) bins
    action_head: str = "tied"  # GatoConfig.action_head: "tied" (the embedding table's rows) or "untied"
    action_inputs: str = "tokens"  # GatoConfig.action_inputs: "tokens" (Gato, autoregressive) or "query" (factored)
    standardize_proprio: bool = False  # per-dimension statistics of the training episodes, in the config
    random_shift_px: int = 0  # DrQ random shift of the camera images (0: off)
    proprio_noise: float = 0.0  # Gaussian noise on the proprioception seen, x its per-dimension std (0: off)
    proprio_dropout: float = 0.0  # probability that a window's proprioception tokens are all padding (0: off)
    velocity_dropout: float = 0.0  # probability that a window's joint-velocity tokens are all padding (0: off)
    velocity_noise: float = 0.0  # Gaussian noise on the joint velocities seen only, x their std (0: off; adds to proprio_noise)
    joint_velocities: bool = True  # False: leave them out of the tokens (a copycat shortcut, TimestepSpec)
    planar_position: bool = True  # False: leave out the joint angles and TCP x, y (proprio.PLANAR_POSITION)
    gripper_first: bool = False  # decode the gripper token before the motion (TimestepSpec.action_order)
    grasp_sensor: bool = False  # one more token: the grasp flag (TimestepSpec.grasp_sensor; proprio.grasp_detected)
    gripper_keyframe_weight: float = 1.0  # loss weight of a grasp's or release's gripper target (EpisodeWindows; 1: off)
    grasp_dropout: float = 0.0  # probability that a window's grasp-flag tokens are all padding (0: off)
    gripper_keyframes: str = "both"  # which keyframes weigh gripper_keyframe_weight: both, releases or grasps
    grasp_lead: int = 0  # and the open targets of that many timesteps before each grasp (EpisodeWindows)
    max_episodes: int | None = None  # few-shot: only the first N usable episodes of the store
    heldout_store: str | None = None  # episode store never trained on: metrics at every checkpoint
    heldout_windows: int = 96
    ema_decay: float = 0.0  # checkpoint an exponential moving average of the weights (e.g. 0.999; 0: off)
    skip_damaged: bool = True  # a damaged episode is left out with a warning naming it; False: stop with its error
    sharding: str = "ddp"  # under torchrun: "ddp" replicates the policy, "fsdp" shards it (large presets)
    seed: int = 0
    device: str = "cpu"


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``min_learning_rate``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (
        config.learning_rate - config.min_learning_rate)


def _optimizer(policy: GatoPolicy, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in policy.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in policy.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate, betas=(0.9, 0.95))


def weight_average(policy: GatoPolicy, decay: float) -> AveragedModel:
    """An exponential moving average of ``policy``'s weights, updated after every optimizer step."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1) to average weights, got {decay}")
    return AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def save_training_checkpoint(run_dir: Path, policy: GatoPolicy, optimizer_state: dict, step: int, losses: list[float],
                             config: TrainConfig, elapsed_s: float = 0.0, heldout: list[dict] | None = None,
                             average: AveragedModel | None = None) -> Path:
    """Write the checkpoint next to the live one, then swap it in (a kill never leaves half a checkpoint).
    With a weight ``average`` the checkpoint's weights are the average, and the trained weights go
    into the training state. ``policy`` holds full (unsharded) weights."""
    final = run_dir / "checkpoint"
    tmp = run_dir / f".checkpoint.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(policy if average is None else average.module, tmp,
                    metadata={"step": step, "preset": config.preset, "trained": "true"})
    averaging = {} if average is None else {"trained_weights": policy.state_dict(),
                                            "averaged_steps": int(average.n_averaged)}
    torch.save({"optimizer": optimizer_state, "step": step, "losses": losses, "config": asdict(config),
                "elapsed_s": elapsed_s, "heldout": heldout or [], **averaging}, tmp / STATE_FILE)
    old = run_dir / ".checkpoint.old"
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def recover_checkpoint(run_dir: Path) -> None:
    """Undo a kill inside :func:`save_training_checkpoint`: between its two renames the live
    checkpoint is already ``.checkpoint.old`` and the new one not yet in place; the old one is the
    last complete checkpoint, so it goes back. Half-written temporary checkpoints are removed."""
    final, old = run_dir / "checkpoint", run_dir / ".checkpoint.old"
    if not final.exists() and (old / STATE_FILE).is_file():
        old.rename(final)
        tqdm.write(f"recovered the last complete checkpoint of {run_dir} (a save was interrupted)")
    for tmp in run_dir.glob(".checkpoint.*.tmp"):
        shutil.rmtree(tmp)


RESUMABLE_CHANGES = ("checkpoint_every", "device", "heldout_store", "heldout_windows", "skip_damaged", "sharding")
"""TrainConfig fields a resumed run may change; any other change would make it another run."""


def check_resume_matches(saved: dict, config: TrainConfig, step: int, warm_restart: bool = False) -> None:
    """A resumed run continues the run it finds: one schedule, one batch size, one data recipe.
    Changing the length would restart the cosine schedule (a warm restart), so it is refused too:
    start a new run directory with ``--init-from`` to continue training on purpose, or pass
    ``warm_restart`` to resume with a new length (the previous shipped policy's recipe did)."""
    allowed = RESUMABLE_CHANGES + (("steps",) if warm_restart else ())
    changed = {name: (saved[name], value) for name, value in asdict(config).items()
               if name in saved and name not in allowed and saved[name] != value}
    if changed:
        listed = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
        raise ValueError(f"the run directory holds a run at step {step} made with other settings ({listed}); "
                         "resume it with its own settings, or start a new run (--init-from CHECKPOINT continues "
                         "training from its weights with a schedule of its own)")


def check_window_fits(config: TrainConfig, model: GatoConfig) -> None:
    """Training windows must fit the model's attention context (preset, resumed or fine-tuned)."""
    window_tokens = config.window_timesteps * model.timestep.timestep_tokens
    if window_tokens > model.context_tokens:
        raise ValueError(f"training windows of {config.window_timesteps} timesteps ({window_tokens} tokens) exceed the "
                         f"{model.context_tokens}-token context of the model")


def model_config(config: TrainConfig, episodes: list | None = None) -> GatoConfig:
    """The preset with the run's encoder and loss, and its attention context set to the training
    window: the policy then attends over exactly as many timesteps (and rotary positions) at
    deployment as it was trained on (with windows of the full context, as in Gato, the preset's).
    With ``standardize_proprio`` the statistics of the training ``episodes`` go into the config."""
    base = preset(config.preset, image_encoder=config.image_encoder, action_loss=config.action_loss,
                  hl_gauss_sigma_bins=config.hl_gauss_sigma_bins,
                  expectation_mse_weight=config.expectation_mse_weight, continuous_embedding=config.continuous_embedding,
                  fourier_frequencies=config.fourier_frequencies, dropout=config.dropout, action_head=config.action_head,
                  action_inputs=config.action_inputs)
    check_window_fits(config, base)
    timestep = base.timestep
    if config.standardize_proprio:
        if not episodes:
            raise ValueError("standardize_proprio needs the training episodes to compute statistics")
        mean, std = proprio_statistics(episodes, skip_damaged=config.skip_damaged)
        timestep = replace(timestep, proprio_mean=tuple(mean.tolist()), proprio_std=tuple(std.tolist()))
    keep = proprio_keep_for(config.joint_velocities, config.planar_position)
    if keep is not None:
        timestep = replace(timestep, proprio_keep=keep)
    if config.gripper_first:
        timestep = replace(timestep, action_order=GRIPPER_FIRST)
    if config.grasp_sensor:
        timestep = replace(timestep, grasp_sensor=True)
    return replace(base, context_tokens=config.window_timesteps * timestep.timestep_tokens, timestep=timestep)


def select_episodes(store: EpisodeStore, config: TrainConfig) -> list:
    """The usable episodes (return filter), in store order; the first ``max_episodes`` when set."""
    usable = store.episodes(config.min_return_fraction, skip_damaged=config.skip_damaged)
    if config.max_episodes is None:
        return usable
    if len(usable) < config.max_episodes:
        raise ValueError(f"{store.root} has {len(usable)} usable episodes; {config.max_episodes} were asked for")
    return usable[:config.max_episodes]


def check_sharding(config: TrainConfig, cluster: Cluster) -> bool:
    """Whether this run shards the policy (FSDP) across its ranks; one process has nothing to shard."""
    if config.sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {config.sharding!r}; choose one of {SHARDINGS}")
    sharded = config.sharding == "fsdp" and cluster.distributed
    if sharded and config.ema_decay:
        raise ValueError("ema_decay averages whole weights; it is not supported with --sharding fsdp")
    return sharded


def _full_policy(policy: GatoPolicy, sharded: bool) -> GatoPolicy | None:
    """``policy`` with full weights: itself when replicated; when sharded a plain copy gathered onto
    rank 0 (every rank must call; the others get None)."""
    if not sharded:
        return policy
    weights = gather_weights(policy, sharded)
    if not weights:
        return None
    full = GatoPolicy(policy.config)
    full.load_state_dict(weights)
    return full


def _prefetch(windows: EpisodeWindows, config: TrainConfig, first_step: int, stop: threading.Event,
              rows: range | None = None) -> queue.Queue:
    """Batches (this rank's ``rows`` of each global batch) loaded ahead of the training loop."""
    batches: queue.Queue = queue.Queue(maxsize=2)

    def produce():
        try:
            for step in range(first_step, config.steps):
                if stop.is_set():
                    return
                batches.put((step, windows.batch(config.seed, step, config.batch_size, rows)))
        except Exception as error:  # reaches the training loop instead of leaving it waiting forever
            batches.put((None, error))

    threading.Thread(target=produce, daemon=True).start()
    return batches


def train(store_dir: Path, run_dir: Path, config: TrainConfig, init_from: Path | None = None,
          progress: bool = True, stop_at: int | None = None, warm_restart: bool = False) -> dict:
    """Train (or resume) into ``run_dir``; returns a summary with the loss history. ``stop_at``
    ends this run after that step (with a checkpoint), as a time-boxed session would; the next
    call resumes. Under `torchrun` every rank runs this with the same arguments
    (:mod:`gato_robot.train.distributed`); rank 0 logs and writes the run directory."""
    cluster = join_cluster(config.device)
    try:
        return _train(store_dir, run_dir, config, cluster, init_from, progress and cluster.is_main, stop_at,
                      warm_restart)
    finally:
        leave_cluster(cluster)


def _train(store_dir: Path, run_dir: Path, config: TrainConfig, cluster: Cluster, init_from: Path | None,
           progress: bool, stop_at: int | None, warm_restart: bool) -> dict:
    rows = cluster.shard(config.batch_size)
    if cluster.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover_checkpoint(run_dir)
    cluster.barrier()
    device = cluster.device(config.device)
    checkpoint = run_dir / "checkpoint"
    store = EpisodeStore(store_dir)
    episodes = select_episodes(store, config)
    sharded = check_sharding(config, cluster)
    average, state = None, None
    if (checkpoint / STATE_FILE).is_file():
        policy = load_checkpoint(checkpoint).to(device).train()
        state = torch.load(checkpoint / STATE_FILE, map_location=device, weights_only=False)
        if config.ema_decay:  # the checkpoint holds the average; the trained weights are in the state
            average = weight_average(policy, config.ema_decay)
            average.n_averaged.fill_(state["averaged_steps"])
            policy.load_state_dict(state["trained_weights"])
        start, losses = int(state["step"]), list(state["losses"])
        elapsed_before, heldout = float(state.get("elapsed_s", 0.0)), list(state.get("heldout", []))
        check_resume_matches(state.get("config", {}), config, start, warm_restart)
    else:
        torch.manual_seed(config.seed)
        policy = (load_checkpoint(init_from) if init_from else
                  GatoPolicy(model_config(config, episodes))).to(device).train()
        start, losses, elapsed_before, heldout = 0, [], 0.0, []
        if config.ema_decay:
            average = weight_average(policy, config.ema_decay)
    deployed = policy if average is None else average.module
    check_window_fits(config, policy.config)
    if sharded:
        shard_policy(policy)
    optimizer = _optimizer(policy, config)  # after sharding: it steps the shards
    if state is not None:
        load_optimizer_state(policy, optimizer, state["optimizer"], sharded)
    model = data_parallel(policy, cluster, sharded)
    if cluster.is_main:
        (run_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    noise_std = proprio_noise_std(episodes, config.proprio_noise, config.velocity_noise, config.skip_damaged)
    windows = EpisodeWindows(store, policy.config.timestep, config.window_timesteps, episodes=episodes,
                             patch_position_jitter=config.patch_position_jitter, random_shift_px=config.random_shift_px,
                             skip_damaged=config.skip_damaged, proprio_noise_std=noise_std,
                             proprio_dropout=config.proprio_dropout, velocity_dropout=config.velocity_dropout,
                             gripper_keyframe_weight=config.gripper_keyframe_weight,
                             grasp_dropout=config.grasp_dropout, gripper_keyframes=config.gripper_keyframes,
                             grasp_lead=config.grasp_lead)
    if progress:
        tqdm.write(f"training on {len(windows.episodes)} of {len(store)} episodes in {store_dir} "
                   f"({windows.timesteps} timesteps) after the return filter"
                   + (f"; {cluster.world_size} processes, {len(rows)} windows each per step" if cluster.distributed
                      else ""))
    heldout_arrays = None
    if config.heldout_store and cluster.is_main:
        heldout_windows = EpisodeWindows(EpisodeStore(Path(config.heldout_store)), policy.config.timestep, config.window_timesteps,
                                         min_return_fraction=0.0, patch_position_jitter=False)
        heldout_arrays = heldout_batch(heldout_windows, config.heldout_windows)
        heldout_windows.close()
    stop = threading.Event()
    batches = _prefetch(windows, config, start, stop, rows)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    bar = tqdm(range(start, config.steps), desc="train", unit="step", disable=not progress, initial=start,
               total=config.steps)
    tokens, started = 0, time.perf_counter()
    try:
        for step in bar:
            batch_step, arrays = batches.get()
            if isinstance(arrays, Exception):
                raise arrays
            assert batch_step == step
            batch = batch_to_torch(arrays, device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            with autocast:
                loss = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            if average is not None:
                average.update_parameters(policy)
            losses.append(cluster.mean(loss))  # the global batch's loss, as a single process computes it
            tokens += int(batch["token_ids"].numel()) * cluster.world_size
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{tokens / (time.perf_counter() - started):.0f}")
            last = step + 1 == config.steps or (stop_at is not None and step + 1 >= stop_at)
            if (step + 1) % config.checkpoint_every == 0 or last:
                full = _full_policy(policy, sharded)  # sharded: every rank takes part, rank 0 receives
                optimizer_state = gather_optimizer_state(policy, optimizer, sharded)
                if cluster.is_main:
                    if heldout_arrays is not None:
                        measured = full if average is None else deployed
                        heldout.append(heldout_metrics(measured, heldout_arrays, step + 1).as_dict())
                        tqdm.write(f"step {step + 1}: held-out action CE {heldout[-1]['action_cross_entropy']:.3f} "
                                   f"nats, error/bound {' '.join(f'{e:.3f}' for e in heldout[-1]['action_error'])}")
                    save_training_checkpoint(run_dir, full, optimizer_state, step + 1, losses, config,
                                             elapsed_before + time.perf_counter() - started, heldout, average)
                cluster.barrier()
            if last:
                break
    finally:
        stop.set()
        windows.close()
    if cluster.is_main:
        plot_learning_curve(losses, run_dir / "learning_curve.png", heldout)
    wall_s = elapsed_before + time.perf_counter() - started
    summary = {"steps": len(losses), "samples": len(losses) * config.batch_size * config.window_timesteps,
               "wall_time_s": wall_s, "samples_per_s": len(losses) * config.batch_size * config.window_timesteps / wall_s,
               "final_loss": losses[-1] if losses else None, "episodes": len(windows.episodes),
               "parameters": policy.num_parameters(), "heldout": heldout, "processes": cluster.world_size,
               "config": asdict(config)}
    if cluster.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "losses": losses, "tokens_per_s": tokens / max(1e-9, time.perf_counter() - started),
            "checkpoint": str(checkpoint)}


def plot_learning_curve(losses: list[float], path: Path, heldout: list[dict] | None = None) -> None:
    """Training loss; with held-out metrics, a second panel of held-out action CE and error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2 if heldout else 1, figsize=(11 if heldout else 6, 3.5), squeeze=False)
    axis = axes[0, 0]
    axis.plot(np.arange(1, len(losses) + 1), losses, linewidth=0.8, label="batch loss")
    if len(losses) >= 20:
        kernel = np.ones(20) / 20
        axis.plot(np.arange(20, len(losses) + 1), np.convolve(losses, kernel, mode="valid"), label="20-step mean")
    axis.set_xlabel("step")
    axis.set_ylabel("masked cross-entropy (nats)")
    axis.set_yscale("log")
    axis.legend()
    if heldout:
        steps = [row["step"] for row in heldout]
        right = axes[0, 1]
        right.plot(steps, [row["action_cross_entropy"] for row in heldout], "k-o", markersize=3, label="action CE (nats)")
        right.set_xlabel("step")
        right.set_ylabel("held-out action cross-entropy (nats)")
        error_axis = right.twinx()
        for dimension, name in enumerate(RGB_STACKING_ACTIONS.names):
            error_axis.plot(steps, [row["action_error"][dimension] for row in heldout], linewidth=0.8, label=name)
        error_axis.set_ylabel("held-out |E[action] - label| / bound")
        error_axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
