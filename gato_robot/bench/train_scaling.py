"""`gato-robot bench train`: training throughput at 1, 2, ... processes (torchrun, gloo on CPU or
NCCL on GPUs), the same global batch and steps each time; scaling efficiency as a ratio measured
in one run (the machine's noise cancels in it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScalingPoint:
    processes: int
    samples_per_s: float  # timestep windows per second, all processes together
    tokens_per_s: float
    wall_time_s: float


def run_training(store: Path, processes: int, steps: int, batch_size: int, preset: str, device: str,
                 threads_per_process: int, run_dir: Path) -> ScalingPoint:
    """One short training run under torchrun (a plain process for 1), read back from its summary."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                 "-m", "gato_robot.cli"] if processes > 1 else [sys.executable, "-m", "gato_robot.cli"])
    command = [*launcher, "train", "--store", str(store), "--run-dir", str(run_dir), "--preset", preset,
               "--steps", str(steps), "--batch-size", str(batch_size), "--window", "1", "--checkpoint-every",
               str(steps), "--device", device, "--no-patch-jitter"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process), "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"training with {processes} process(es) failed:\n{result.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    tokens_per_window = _tokens_per_window(run_dir)
    return ScalingPoint(processes, summary["samples_per_s"], summary["samples_per_s"] * tokens_per_window,
                        summary["wall_time_s"])


def _tokens_per_window(run_dir: Path) -> int:
    from ..model.checkpoint import load_config

    return load_config(run_dir / "checkpoint").timestep.timestep_tokens


def bench_train(store: Path, process_counts: tuple[int, ...] = (1, 2), steps: int = 30, batch_size: int = 24,
                preset: str = "cpu-small", device: str = "cpu", threads_per_process: int = 1) -> list[ScalingPoint]:
    with tempfile.TemporaryDirectory() as scratch:
        return [run_training(store, n, steps, batch_size, preset, device, threads_per_process,
                             Path(scratch) / f"run-{n}") for n in process_counts]
