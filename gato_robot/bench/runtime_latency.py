"""`gato-robot bench runtime`: end-to-end control-step latency per backend, side by side.

One step = camera frames + proprioception in -> tokenize -> prefill -> decode every action token
-> detokenize to a physical action (m/s, rad/s, gripper). Frames are generated outside the timed
region, as a camera driver would hand them over. Episodes reset every ``episode_steps`` so the KV
cache fills, slides and restarts as on the robot.

The roofline line divides the bytes of weights one action must read (the prefill reads every
weight once, each decode step the transformer and the action head again) by the memory
bandwidth measured in the same run: the time no implementation on this machine can beat at
batch size 1.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..deploy.policy import physical_action
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.config import preset
from ..model.policy import GatoPolicy
from ..runtime.base import PolicyRunner
from ..runtime.factory import load_runner
from ..task import RGB_STACKING
from ..tokenizer.sequence import GatoTokenizer
from .policy_latency import random_observation
from .stats import LatencyStats

CONTROL_PERIOD_S = RGB_STACKING.control_period_s
STAGES = ("tokenize", "prefill", "decode", "detokenize")


@dataclass
class BackendResult:
    backend: str
    total: LatencyStats
    stage_share: dict[str, float]
    deadline_miss_fraction: float
    actions: np.ndarray = field(repr=False)


def weight_bytes_per_action(policy: GatoPolicy) -> int:
    """Bytes of weights read for one action at batch size 1 (fp32 here; halve for fp16)."""
    element = policy.embed.token.weight.element_size()
    blocks = sum(p.numel() for p in policy.blocks.parameters()) + sum(p.numel() for p in policy.ln_f.parameters())
    head = 1024 * policy.config.n_embd
    patch = sum(p.numel() for p in policy.embed.patch_encoder.parameters())
    decode_steps = policy.config.timestep.action_dim
    return element * ((1 + decode_steps) * (blocks + head) + patch)


def measure_memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Sustained copy bandwidth in bytes/s (read + write counted), best of ``repeats``."""
    source = np.ones(megabytes * (1 << 20) // 8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


def run_backend(runner: PolicyRunner, tokenizer: GatoTokenizer, steps: int, episode_steps: int,
                seed: int) -> BackendResult:
    rng = np.random.default_rng(seed)
    totals, stages, actions = [], {s: [] for s in STAGES}, []
    for step in tqdm(range(steps), desc=f"bench runtime {runner.backend}", unit="step"):
        if step % episode_steps == 0:
            runner.reset()
        observation = random_observation(tokenizer, rng)
        start = time.perf_counter()
        tokens = tokenizer.encode_observation(observation)
        tokenized = time.perf_counter()
        bins = runner.act(tokens)
        acted = time.perf_counter()
        action = physical_action(tokenizer, bins)
        done = time.perf_counter()
        totals.append(done - start)
        stages["tokenize"].append(tokenized - start)
        stages["prefill"].append(runner.stage_seconds["prefill"])
        stages["decode"].append(runner.stage_seconds["decode"])
        stages["detokenize"].append(done - acted)
        actions.append(action)
    total = float(np.sum(totals))
    share = {s: float(np.sum(v)) / total for s, v in stages.items()}
    misses = float(np.mean(np.asarray(totals) > CONTROL_PERIOD_S))
    return BackendResult(runner.backend, LatencyStats.of(totals), share, misses, np.stack(actions))


def available_backends() -> list[str]:
    backends = ["torch"]
    try:
        import onnxruntime  # noqa: F401

        backends.append("onnxruntime")
    except ImportError:
        pass
    try:
        import tensorrt  # noqa: F401

        if torch.cuda.is_available():
            backends.append("tensorrt")
    except ImportError:
        pass
    return backends


def prepare_runners(backends: list[str], checkpoint: Path, workdir: Path, device: str, threads: int) -> list[PolicyRunner]:
    """Load each backend from one checkpoint, exporting ONNX / building engines as needed."""
    runners = []
    onnx_dir = workdir / "onnx"
    for backend in backends:
        if backend == "torch":
            runners.append(load_runner("torch", checkpoint, device=device))
            continue
        if not (onnx_dir / "decode.onnx").is_file():
            from ..runtime.export import export_checkpoint

            export_checkpoint(checkpoint, onnx_dir)
        if backend == "onnxruntime":
            runners.append(load_runner("onnxruntime", onnx_dir, threads=threads))
        elif backend == "tensorrt":
            from ..runtime.tensorrt_engine import build_engines

            build_engines(onnx_dir, workdir / "tensorrt")
            runners.append(load_runner("tensorrt", workdir / "tensorrt"))
        else:
            raise ValueError(f"unknown backend {backend!r}")
    return runners


def bench_runtime(backends: list[str] | None, preset_name: str = "cpu-small", checkpoint: Path | None = None,
                  steps: int = 1000, episode_steps: int = 400, device: str = "cpu", threads: int = 0,
                  seed: int = 0) -> tuple[list[BackendResult], dict[str, float]]:
    backends = backends or available_backends()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if checkpoint is None:
            torch.manual_seed(seed)
            checkpoint = save_checkpoint(GatoPolicy(preset(preset_name)), workdir / "checkpoint")
        policy = load_checkpoint(checkpoint)
        tokenizer = GatoTokenizer(policy.config.timestep)
        runners = prepare_runners(backends, Path(checkpoint), workdir, device, threads)
        results = [run_backend(r, tokenizer, steps, episode_steps, seed) for r in runners]
    bandwidth = measure_memory_bandwidth()
    weight_bytes = weight_bytes_per_action(policy)
    roofline = {"weight_bytes_per_action": float(weight_bytes), "memory_bandwidth_bytes_per_s": bandwidth,
                "floor_ms": 1e3 * weight_bytes / bandwidth, "parameters": float(policy.num_parameters())}
    return results, roofline
