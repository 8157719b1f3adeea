"""`gato-robot` commands: Training."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .common import WORKERS_HELP, _clear_errors, available_cores, console, git_revision


def train_command(store: Path = typer.Option(..., exists=True, help="Episode store (from `gato-robot sim generate`)."),
                  run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory: checkpoint, learning curve; "
                                           "resumes if present (--run-dir under torchrun, whose own --run-path "
                                           "would swallow --run)."),
                  preset: str = typer.Option("cpu-small", help="Model preset."),
                  steps: int = typer.Option(2000, min=1, help="Total optimizer steps."),
                  batch_size: int = typer.Option(8, min=1, help="Windows per optimizer step: the global batch, "
                                                 "split across torchrun processes."),
                  window: int = typer.Option(3, min=1, help="Timesteps per training window."),
                  lr: float = typer.Option(1e-3, help="Peak learning rate."),
                  warmup: int = typer.Option(100, min=0, help="Warm-up steps."),
                  checkpoint_every: int = typer.Option(200, min=1, help="Checkpoint period (steps)."),
                  stop_at: int = typer.Option(None, help="End this session after this step (resume later)."),
                  init_from: Path = typer.Option(None, help="Start from this checkpoint (fine-tuning)."),
                  device: str = typer.Option("cpu", help="cpu or cuda."),
                  patch_jitter: bool = typer.Option(True, help="Sample patch positions within their intervals "
                                                    "(Gato App. C.3); off: interval means, as at evaluation."),
                  image_encoder: str = typer.Option("patch_resnet", help="patch_resnet (Gato: one ResNet v2 block "
                                                    "per patch), conv_stem (convolutions across patch borders), "
                                                    "conv_stem_global (+ a whole-image code per camera, as BC-IMP's "
                                                    "head), conv_stem_whole (that code alone) or conv_stem_keypoints "
                                                    "(the code + spatial-softmax keypoints)."),
                  action_loss: str = typer.Option("vocab_ce", help="vocab_ce (Gato Eq. 2: one-hot over the vocabulary, "
                                                  "text + actions) or hl_gauss (ordinal, over the 1024 action bins)."),
                  hl_gauss_sigma: float = typer.Option(2.0, help="HL-Gauss standard deviation, in bins."),
                  expectation_mse_weight: float = typer.Option(0.0, min=0.0, help="With hl_gauss: + this weight x "
                                                               "the squared error of the bin distribution's physical "
                                                               "mean (BC-IMP's MSE through the same bins; 0: off)."),
                  dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Attention and MLP dropout (0: off)."),
                  weight_decay: float = typer.Option(0.1, min=0.0, help="AdamW weight decay of the matrices "
                                                     "(embedding table included; not biases or norms)."),
                  continuous_embedding: str = typer.Option("table", help="table (Gato: one learned row per mu-law "
                                                           "bin), table_fourier (+ Fourier features of the bin's value) or value_mlp (an MLP of those "
                                                           "features instead of the row)."),
                  fourier_frequencies: int = typer.Option(8, min=1, max=10, help="Fourier features of a continuous "
                                                          "value for table_fourier / value_mlp: the finest period "
                                                          "spans 2^(11 - this) bins (1: a smooth function of the "
                                                          "value, as BC-IMP's MLP reads proprioception)."),
                  action_head: str = typer.Option("tied", help="tied (the action bins' logits through the token "
                                                  "embedding table, as it predicts every token) or untied (a linear "
                                                  "head of its own over the 1024 bins; needs hl_gauss)."),
                  action_inputs: str = typer.Option("tokens", help="tokens (Gato: each action token embeds its "
                                                    "bin, so later dimensions condition on earlier ones) or query (a "
                                                    "learned query at every action position: each dimension from the "
                                                    "observation alone)."),
                  standardize_proprio: bool = typer.Option(False, help="Standardize proprioception per dimension "
                                                           "before mu-law (statistics stored in the checkpoint)."),
                  random_shift: int = typer.Option(0, help="DrQ random shift of the images, in pixels (0: off)."),
                  proprio_noise: float = typer.Option(0.0, min=0.0, help="Gaussian noise on the proprioception the "
                                                      "policy sees (not on the actions), as a fraction of each "
                                                      "dimension's standard deviation in the training data (0: off)."),
                  proprio_dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Probability that a training "
                                                        "window's proprioception tokens are all padding, so the "
                                                        "policy learns to act on the images alone (0: off)."),
                  velocity_dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Probability that a training "
                                                         "window's joint-velocity tokens are all padding, so the "
                                                         "policy cannot let the previous command stand in for the "
                                                         "images (0: off)."),
                  velocity_noise: float = typer.Option(0.0, min=0.0, help="Gaussian noise on the 7 joint velocities "
                                                       "the policy sees only, as a fraction of their standard "
                                                       "deviation (added to --proprio-noise; 0: off)."),
                  joint_velocities: bool = typer.Option(True, help="Tokenize the joint velocities (Gato's full "
                                                        "proprioception); off: leave out this copycat shortcut."),
                  planar_position: bool = typer.Option(True, help="Tokenize the joint angles and the TCP's x, y "
                                                       "(Gato's full proprioception); off: the policy finds the "
                                                       "gripper's horizontal offset from the blocks in the images."),
                  gripper_first: bool = typer.Option(False, help="Decode the gripper token before the motion tokens "
                                                     "(Gato's order is the action vector's: motion, then gripper)."),
                  grasp_sensor: bool = typer.Option(False, help="Give the policy the grasp flag as one more token "
                                                    "(1 while the gripper is commanded closed and something holds the "
                                                    "fingers apart), as the benchmark's robot reports it; off: "
                                                    "Gato's 22 proprioception values."),
                  gripper_keyframe_weight: float = typer.Option(1.0, min=1.0, help="Loss weight of the gripper "
                                                                "target where the expert grasps or releases "
                                                                "(keyframes, Wen et al. 2021); 1: every target alike."),
                  gripper_keyframes: str = typer.Option("both", help="Which keyframes weigh "
                                                        "--gripper-keyframe-weight: both, releases (closed -> "
                                                        "open) or grasps (open -> closed)."),
                  grasp_lead: int = typer.Option(0, min=0, help="Also weigh the open gripper targets of this many "
                                                 "timesteps before each grasp, so the weighted close is "
                                                 "two-sided (0: the keyframes alone)."),
                  grasp_dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Probability that a training "
                                                      "window's grasp-flag tokens are all padding, so the release "
                                                      "is learned from the images, not copied off the flag "
                                                      "(needs --grasp-sensor; 0: off)."),
                  sharding: str = typer.Option("ddp", help="Under torchrun: ddp replicates the policy on every "
                                               "process, fsdp shards weights, gradients and optimizer state across "
                                               "them (FSDP2; for the gato-364m and gato-1.18b presets)."),
                  ema_decay: float = typer.Option(0.0, min=0.0, max=0.9999, help="Checkpoint an exponential moving "
                                                  "average of the weights with this decay per step (e.g. 0.999; "
                                                  "0: the trained weights themselves)."),
                  heldout_store: Path = typer.Option(None, help="Episode store never trained on: held-out action "
                                                     "cross-entropy and physical action error at every checkpoint."),
                  heldout_windows: int = typer.Option(96, help="Held-out windows per measurement."),
                  warm_restart: bool = typer.Option(False, help="Resume with a new --steps: the cosine schedule "
                                                    "restarts for the new length (other settings must match)."),
                  skip_damaged: bool = typer.Option(True, "--skip-damaged/--stop-on-damaged",
                                                    help="Leave out a damaged episode with a warning naming it, or "
                                                    "stop with its error (`gato-robot data verify` lists them)."),
                  seed: int = 0) -> None:
    """Behaviour cloning of the Gato policy; exact resume after a kill; learning-curve PNG."""
    from ..train.trainer import TrainConfig, train

    config = TrainConfig(preset=preset, steps=steps, batch_size=batch_size, window_timesteps=window, learning_rate=lr,
                         min_learning_rate=lr / 10, warmup_steps=warmup, checkpoint_every=checkpoint_every, seed=seed,
                         device=device, patch_position_jitter=patch_jitter, image_encoder=image_encoder,
                         action_loss=action_loss, hl_gauss_sigma_bins=hl_gauss_sigma, dropout=dropout,
                         weight_decay=weight_decay,
                         expectation_mse_weight=expectation_mse_weight,
                         continuous_embedding=continuous_embedding, fourier_frequencies=fourier_frequencies,
                         action_head=action_head,
                         action_inputs=action_inputs,
                         standardize_proprio=standardize_proprio, random_shift_px=random_shift,
                         proprio_noise=proprio_noise, proprio_dropout=proprio_dropout, velocity_noise=velocity_noise,
                         velocity_dropout=velocity_dropout,
                         joint_velocities=joint_velocities,
                         planar_position=planar_position,
                         gripper_first=gripper_first, grasp_sensor=grasp_sensor,
                         gripper_keyframe_weight=gripper_keyframe_weight, grasp_dropout=grasp_dropout,
                         gripper_keyframes=gripper_keyframes, grasp_lead=grasp_lead,
                         heldout_store=str(heldout_store) if heldout_store else None,
                         heldout_windows=heldout_windows, ema_decay=ema_decay, sharding=sharding,
                         skip_damaged=skip_damaged)
    with _clear_errors():
        summary = train(store, run, config, init_from=init_from, stop_at=stop_at, warm_restart=warm_restart)
    console.print(f"step {summary['steps']}: loss {summary['final_loss']:.4f}, {summary['tokens_per_s']:.0f} tokens/s; "
                  f"checkpoint {summary['checkpoint']}, curve {run / 'learning_curve.png'}")


# Top-level commands, registered on the main app by gato_robot.cli.
commands = [("train", train_command)]


def train_baseline_command(store: Path = typer.Option(..., exists=True,
                                                      help="Episode store (from `gato-robot sim generate`)."),
                           out: Path = typer.Option(..., help="Checkpoint directory to write."),
                           steps: int = typer.Option(1500, min=1, help="Optimizer steps."),
                           batch_size: int = typer.Option(32, min=1, help="Timesteps per batch."),
                           lr: float = typer.Option(3e-4, help="Peak learning rate (cosine decay)."),
                           random_shift: int = typer.Option(0,
                                                            help="DrQ random shift of the images, in pixels (0: off)."),
                           action_head: str = typer.Option("tanh", help="tanh: MSE regression (Lee et al.); "
                                                           "hl_gauss: Gato's 1024 mu-law action bins, HL-Gauss "
                                                           "targets (decoded by `sim eval --expectation`)."),
                           joint_velocities: bool = typer.Option(True, help="Let the policy see the 7 joint "
                                                                 "velocities (--no-joint-velocities: as the shipped Gato)."),
                           planar_position: bool = typer.Option(True, help="Let the policy see the joint angles "
                                                                "and the TCP's x, y (off: as Gato's --no-planar-position)."),
                           standardize_proprio: bool = typer.Option(False, help="Standardize proprioception per "
                                                                    "dimension (training-store statistics, as Gato's "
                                                                    "option) instead of sign * log1p of SI units."),
                           velocity_noise: float = typer.Option(0.0, min=0.0, help="Gaussian noise on the 7 joint "
                                                                "velocities seen at training time, as a fraction of "
                                                                "their standard deviation (0: off; as Gato's option)."),
                           grasp_sensor: bool = typer.Option(False, help="Give the policy the grasp flag (1 while "
                                                             "the closed fingers hold something), as Gato's "
                                                             "--grasp-sensor."),
                           gripper_keyframe_weight: float = typer.Option(1.0, min=1.0, help="Loss weight of the "
                                                                         "gripper target where the expert grasps or "
                                                                         "releases, as Gato's option; 1: off."),
                           gripper_keyframes: str = typer.Option("both", help="Which keyframes weigh it: both, "
                                                                 "releases or grasps."),
                           grasp_lead: int = typer.Option(0, min=0, help="And the open targets of this many "
                                                          "timesteps before each grasp, as Gato's option."),
                           seed: int = 0) -> None:
    """Train the BC-IMP specialist baseline (conv encoder + MLP, behaviour cloning) on the same store."""
    from ..baselines.bc_imp import BCIMPConfig, BCIMPTrainConfig, train_bc_imp
    from ..proprio import proprio_keep_for

    with _clear_errors():
        model = BCIMPConfig(action_head=action_head, proprio_keep=proprio_keep_for(joint_velocities, planar_position),
                            grasp_sensor=grasp_sensor)
        summary = train_bc_imp(store, out, BCIMPTrainConfig(steps=steps, batch_size=batch_size, learning_rate=lr,
                                                            random_shift_px=random_shift, seed=seed, model=model,
                                                            standardize_proprio=standardize_proprio,
                                                            velocity_noise=velocity_noise,
                                                            gripper_keyframe_weight=gripper_keyframe_weight,
                                                            gripper_keyframes=gripper_keyframes,
                                                            grasp_lead=grasp_lead))
    console.print(f"BC-IMP: {steps} steps, final loss {summary['final_loss']:.4f}, {summary['seconds']:.0f} s -> {out}")


commands.append(("train-baseline", train_baseline_command))


def improve_baseline_command(bc: Path = typer.Option(..., exists=True, help="The behaviour-cloned BC-IMP checkpoint."),
                             store: list[Path] = typer.Option(..., exists=True, help="Episode stores: the expert's "
                                                              "(all episodes, failures too) and the BC policy's "
                                                              "rollouts (`sim rollouts`); repeat the option."),
                             out: Path = typer.Option(..., help="Improved checkpoint directory to write."),
                             steps: int = typer.Option(1250, min=1, help="Optimizer steps (critic and policy)."),
                             batch_size: int = typer.Option(32, min=1, help="Transitions per batch."),
                             beta: float = typer.Option(1.0, min=1e-6, help="Advantage temperature."),
                             random_shift: int = typer.Option(4, min=0, help="DrQ random shift (px), as the BC stage."),
                             seed: int = 0) -> None:
    """BC-IMP's improvement step: CRR (critic-regularized regression) from the BC policy, on the
    expert's data and the BC policy's own rollouts with their rewards (Lee et al. 2021)."""
    from ..baselines.crr import CRRConfig, improve_bc_imp

    with _clear_errors():
        summary = improve_bc_imp(bc, list(store), out, CRRConfig(steps=steps, batch_size=batch_size, beta=beta,
                                                                random_shift_px=random_shift, seed=seed))
    last = summary["last_50_steps"]
    console.print(f"CRR: {steps} steps on {summary['transitions']} transitions of {summary['episodes']} episodes, "
                  f"{summary['wall_time_s']:.0f} s; last 50 steps: Q {last['q']:.2f}, advantage weight "
                  f"{last['weight']:.2f}, TD loss {last['critic']:.4f} -> {out}")


commands.append(("improve-baseline", improve_baseline_command))


def finetune_command(pretrained: str = typer.Option(..., help="Pretrained policy: a shipped name (gato-cpu-small) "
                                                     "or a checkpoint directory."),
                     store: Path = typer.Option(..., exists=True, help="Episode store of the new task (`gato-robot "
                                                "data import-bag` writes one from rosbag2 recordings)."),
                     run: Path = typer.Option(..., "--run", "--run-dir", help="Run directory (resumes if present; "
                                              "--run-dir under torchrun, whose own --run-path would swallow --run)."),
                     episodes: int = typer.Option(None, min=1, help="Fine-tune on the first N usable episodes "
                                                  "(default: all)."),
                     scratch: bool = typer.Option(False, help="Control arm: same architecture, random init."),
                     steps: int = typer.Option(300, min=1, help="Optimizer steps."),
                     lr: float = typer.Option(3e-4, help="Peak learning rate."),
                     device: str = typer.Option("cpu", help="cpu or cuda."),
                     eval_triplet: str = typer.Option(None, help="Then evaluate in simulation on this triplet "
                                                      "(e.g. test-3-prism); off for a real task."),
                     eval_episodes: int = typer.Option(30, min=1, help="Evaluation episodes (with --eval-triplet)."),
                     seed: int = 0) -> None:
    """Few-episode fine-tuning of a pretrained policy (or the from-scratch control), with progress,
    checkpoints and resume; optionally a simulated evaluation at the end. Export the result with
    `gato-robot export onnx RUN/checkpoint` to deploy it on the node."""
    from ..policies import resolve_policy
    from ..train.finetune import FinetuneConfig, finetune

    with _clear_errors():
        source = Path(resolve_policy(pretrained))
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"pretrained policy {pretrained!r} is neither a shipped policy nor a checkpoint "
                                    "directory (with config.json)")
        config = FinetuneConfig(episodes=episodes, steps=steps, learning_rate=lr, seed=seed, device=device)
        summary = finetune(source, store, run, config, "scratch" if scratch else "pretrained")
    console.print(f"{'scratch' if scratch else 'fine-tuned'} on {summary['episodes']} episodes: loss {summary['final_loss']:.4f} "
                  f"after {summary['steps']} steps -> {summary['checkpoint']}")
    if eval_triplet and int(os.environ.get("RANK", "0")) == 0:  # under torchrun: rank 0 evaluates
        from gato_robot.sim.evaluate import EvalConfig, evaluate

        with _clear_errors():
            report = evaluate(EvalConfig(policy=str(summary["checkpoint"]), triplets=eval_triplet,
                                         episodes=eval_episodes, seed=0))
        low, high = report.ci95
        console.print(f"{eval_triplet}: {report.successes}/{report.episodes} stacked "
                      f"({100 * report.success_rate:.0f}% [{100 * low:.0f}, {100 * high:.0f}])")


def finetune_sweep_command(pretrained: str = typer.Option(..., help="Pretrained policy: a shipped name "
                                                           "(gato-cpu-small) or a checkpoint directory."),
                           store: Path = typer.Option(..., exists=True, help="Episode store of the held-out triplet."),
                           triplet: str = typer.Option(..., help="The held-out triplet evaluated (e.g. test-3-prism)."),
                           out: Path = typer.Option(Path("results/fewshot"), help="CSV and PNG."),
                           runs: Path = typer.Option(Path("runs/fewshot"), help="Training run directories."),
                           counts: str = typer.Option("0,10,25,50,100",
                                                      help="Episode counts, comma-separated (0: no fine-tuning)."),
                           base_steps: int = typer.Option(200, min=1, help="Steps rule: optimizer steps for N "
                                                          "episodes = BASE + PER_EPISODE x N (both arms)."),
                           steps_per_episode: int = typer.Option(10, min=0, help="Steps rule: PER_EPISODE."),
                           eval_episodes: int = typer.Option(30, min=1, help="Evaluation episodes per run."),
                           engine: str = typer.Option("mujoco", help="Evaluation engine."),
                           workers: int = typer.Option(None, min=1, help=WORKERS_HELP)) -> None:
    """Few-shot curves: pretrained vs scratch for each N, evaluated in sim; CSV + PNG; resumable."""
    from gato_robot.sim.fewshot import StepsRule, SweepConfig, run_sweep

    from ..policies import resolve_policy
    from ..train.finetune import FinetuneConfig

    config = SweepConfig(Path(resolve_policy(pretrained)), store, out, triplet, tuple(int(c) for c in counts.split(",")), engine,
                         eval_episodes, workers=workers or available_cores(), finetune=FinetuneConfig(),
                         steps_rule=StepsRule(base_steps, steps_per_episode), runs_dir=runs,
                         git_revision=git_revision())
    with _clear_errors():
        csv_path = run_sweep(config)
    console.print(f"few-shot curve: {csv_path} and {csv_path.with_suffix('.png')}")


commands += [("finetune", finetune_command), ("finetune-sweep", finetune_sweep_command)]
