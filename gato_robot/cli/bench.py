"""`gato-robot` commands: Benchmarks that print figures (latency, throughput)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import typer
from rich.table import Table

from .common import _clear_errors, console

bench_app = typer.Typer(help="Benchmarks that print figures (latency, throughput).", no_args_is_help=True)


@bench_app.command("policy")
def bench_policy_command(preset: str = typer.Option("cpu-small", help="Model preset."),
                         steps: int = typer.Option(50, min=1, help="Measured actions (after filling the context)."),
                         threads: int = typer.Option(0, min=0, help="Torch threads (0: torch's default)."),
                         seed: int = 0) -> None:
    """Per-action latency (median, p99) of act(), KV-cached vs uncached, side by side."""
    from ..bench.policy_latency import bench_policy

    report = bench_policy(preset, steps=steps, seed=seed, threads=threads or None)
    table = Table(title=f"act() latency, preset {report.preset} ({report.parameters / 1e6:.1f}M params, "
                        f"{report.context_timesteps} timesteps of context, {report.threads} threads)")
    for column in ("path", "median ms", "p99 ms", "max ms", "actions"):
        table.add_column(column, justify="right")
    for name, stats in (("KV-cached", report.cached), ("uncached", report.uncached)):
        table.add_row(name, f"{stats.median_ms:.2f}", f"{stats.p99_ms:.2f}", f"{stats.max_ms:.2f}", str(stats.count))
    console.print(table)
    console.print(f"speed-up of the cache (median): {report.uncached.median_ms / report.cached.median_ms:.1f}x")


@bench_app.command("runtime")
def bench_runtime_command(
        backend: list[str] = typer.Option(None, help="Backend(s) to compare; default: every one installed here."),
        preset: str = typer.Option("cpu-small", help="Preset for a random-weight policy when no checkpoint is given."),
        checkpoint: Path = typer.Option(None, help="Checkpoint directory to benchmark."),
        steps: int = typer.Option(1000, min=1, help="Control steps per backend."),
        device: str = typer.Option("cpu", help="Device of the torch backend."),
        threads: int = typer.Option(0, min=0, help="ONNX Runtime intra-op threads (0: all cores)."),
        seed: int = 0) -> None:
    """End-to-end step latency (frames in -> action out) per backend, with stage shares and 20 Hz misses."""
    from ..bench.runtime_latency import bench_runtime

    with _clear_errors():
        results, roofline = bench_runtime(backend, preset, checkpoint, steps, device=device, threads=threads,
                                          seed=seed)
    source = str(checkpoint) if checkpoint else f"{preset} (random weights)"
    table = Table(title=f"end-to-end control step, {source}, {steps} steps per backend")
    for column in ("backend", "median ms", "p99 ms", "max ms", "miss 20 Hz", "tokenize", "prefill", "decode",
                   "detokenize"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.backend, f"{r.total.median_ms:.2f}", f"{r.total.p99_ms:.2f}", f"{r.total.max_ms:.2f}",
                      f"{100 * r.deadline_miss_fraction:.2f}%",
                      *(f"{100 * r.stage_share[s]:.0f}%" for s in ("tokenize", "prefill", "decode", "detokenize")))
    console.print(table)
    console.print(f"roofline: {roofline['weight_bytes_per_action'] / 1e6:.1f} MB of weights per action / "
                  f"{roofline['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s measured = "
                  f"{roofline['floor_ms']:.3f} ms floor per action")
    if len(results) > 1:
        agree = all(np.array_equal(results[0].actions, r.actions) for r in results[1:])
        console.print(f"backends chose identical actions on every step: {agree}")


@bench_app.command("eval")
def bench_eval_command(policy: str = typer.Option("gato-cpu-small", help="Shipped policy or checkpoint directory."),
                       batch_size: list[int] = typer.Option([1, 4, 8, 16], help="Lockstep batch sizes (torch, "
                                                            "onnxruntime)."),
                       backend: list[str] = typer.Option(["torch", "onnxruntime"], help="Backends."),
                       steps: int = typer.Option(40, min=1, help="Control ticks measured per configuration."),
                       baseline: str = typer.Option("bc-imp", help="Also measured, at every batch size, through the "
                                                    "same loop ('' to skip): the per-episode cost ratio.")) -> None:
    """Evaluation episodes per minute per policy, backend and batch size (one worker, one thread),
    as ratios to the policy's torch at batch 1 measured in the same run, with the
    policy/loop/environment time split; and the policy's best rate against the baseline's."""
    from gato_robot.sim.bench_eval import bench_eval

    with _clear_errors():
        rates = bench_eval(policy, tuple(batch_size), tuple(backend), steps, baseline=baseline or None)
    ours = [r for r in rates if r.policy == Path(policy).name]
    reference = next((r for r in ours if r.backend == "torch" and r.batch_size == 1), ours[0])
    table = Table(title=f"evaluation throughput, {steps} ticks per row, 1 thread (episodes of 400 ticks)")
    for column in ("policy", "backend", "batch", "episodes/min", f"vs {reference.backend} x{reference.batch_size}",
                   "policy ms/tick", "loop ms/tick", "env ms/tick"):
        table.add_column(column, justify="right")
    for r in rates:
        table.add_row(r.policy, r.backend, str(r.batch_size), f"{r.episodes_per_minute():.2f}",
                      f"{r.episodes_per_minute() / reference.episodes_per_minute():.2f}x",
                      f"{1e3 * r.policy_s / r.ticks:.1f}", f"{1e3 * r.loop_s / r.ticks:.1f}",
                      f"{1e3 * r.env_s / r.ticks:.1f}")
    console.print(table)
    theirs = [r for r in rates if r.policy != Path(policy).name]
    if theirs:
        best, best_baseline = (max(group, key=lambda r: r.episodes_per_minute()) for group in (ours, theirs))
        console.print(f"seconds per episode, best configuration of each: {best.policy} {60 / best.episodes_per_minute():.2f} "
                      f"({best.backend} x{best.batch_size}), {best_baseline.policy} "
                      f"{60 / best_baseline.episodes_per_minute():.2f} (x{best_baseline.batch_size}): "
                      f"ratio {best_baseline.episodes_per_minute() / best.episodes_per_minute():.2f}")


@bench_app.command("sim")
def bench_sim_command(engine: list[str] = typer.Option(None, help="Engines (default: mujoco and pybullet)."),
                      steps: int = typer.Option(200, min=1, help="Steps per measurement."),
                      workers_episodes: int = typer.Option(0, min=0, help="Also time `sim generate` of this many "
                                                           "expert episodes at 1, 2, ... workers (0: skip).")) -> None:
    """Env steps/s per engine, cameras on and off, vs the raw engine's physics + render rate; and
    optionally the process pool's scaling from 1 worker to the cores available, as ratios."""
    from gato_robot.sim.bench import bench_generation_workers, bench_sim

    from .common import available_cores

    rates = bench_sim(engine or ["mujoco", "pybullet"], steps)
    table = Table(title=f"simulation rate, {steps} steps each (control period 0.05 s)")
    for column in ("engine", "cameras", "env steps/s", "raw engine steps/s", "wrapper overhead"):
        table.add_column(column, justify="right")
    for r in rates:
        table.add_row(r.engine, "on" if r.cameras else "off", f"{r.env_steps_per_s:.0f}", f"{r.raw_steps_per_s:.0f}",
                      f"{100 * r.overhead:+.1f}%")
    console.print(table)
    if workers_episodes:
        counts = tuple(range(1, max(2, available_cores()) + 1))
        for name in engine or ["mujoco"]:
            rates = bench_generation_workers(name, workers_episodes, counts)
            console.print(f"{name} sim generate, {workers_episodes} episodes: " + ", ".join(
                f"{r.workers} worker(s) {r.episodes_per_min:.1f} episodes/min ({r.episodes_per_min / rates[0].episodes_per_min:.2f}x)"
                for r in rates))


@bench_app.command("train")
def bench_train_command(store: Path = typer.Option(..., exists=True, help="Episode store."),
                        processes: str = typer.Option("1,2", help="Process counts, comma-separated (torchrun)."),
                        steps: int = typer.Option(30, min=2, help="Optimizer steps per run."),
                        batch_size: int = typer.Option(24, min=1, help="Global batch (windows per step)."),
                        preset: str = typer.Option("cpu-small", help="Model preset."),
                        device: str = typer.Option("cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)."),
                        threads: int = typer.Option(1, min=1, help="Torch threads per process.")) -> None:
    """Training samples/s and tokens/s per process count, same global batch; scaling efficiency =
    rate(N) / (N x rate(1)), measured in one run."""
    from ..bench.train_scaling import bench_train

    counts = tuple(int(c) for c in processes.split(","))
    with _clear_errors():
        points = bench_train(store, counts, steps, batch_size, preset, device, threads)
    base = points[0]
    table = Table(title=f"training throughput, preset {preset}, global batch {batch_size}, {steps} steps, "
                        f"{threads} thread(s) per process, {device}")
    for column in ("processes", "samples/s", "tokens/s", "wall s", "speed-up", "scaling efficiency"):
        table.add_column(column, justify="right")
    for p in points:
        speedup = p.samples_per_s / base.samples_per_s
        table.add_row(str(p.processes), f"{p.samples_per_s:.1f}", f"{p.tokens_per_s:.0f}", f"{p.wall_time_s:.1f}",
                      f"{speedup:.2f}x", f"{speedup * base.processes / p.processes:.2f}")
    console.print(table)


@bench_app.command("data")
def bench_data_command(store: Path = typer.Option(..., exists=True, help="Episode store."),
                       preset: str = typer.Option("cpu-small", help="Model preset for the training-step side."),
                       batch_size: int = 8, window: int = 3, steps: int = 10) -> None:
    """Tokens/s of the data pipeline alone vs of full training steps: loading must outpace training."""
    import time

    import torch

    from ..data.dataset import EpisodeWindows
    from ..data.episodes import EpisodeStore
    from ..model.config import preset as get_preset
    from ..model.policy import GatoPolicy, batch_to_torch

    config = get_preset(preset)
    with _clear_errors():
        windows = EpisodeWindows(EpisodeStore(store), config.timestep, window)
    start = time.perf_counter()
    batches = [windows.batch(0, step, batch_size) for step in range(steps)]
    data_s = time.perf_counter() - start
    tokens = sum(b["token_ids"].size for b in batches)
    policy = GatoPolicy(config)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    start = time.perf_counter()
    for arrays in batches:
        loss = policy.loss(batch_to_torch(arrays))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model_s = time.perf_counter() - start
    console.print(f"data pipeline: {tokens / data_s:.0f} tokens/s; training step (model only): {tokens / model_s:.0f} "
                  f"tokens/s; ratio {model_s / data_s:.1f}x (>1: a prefetching thread keeps the trainer fed)")
