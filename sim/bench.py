"""`gato-robot bench sim`: environment steps/s per engine, cameras on and off, beside the raw
engine's own physics + render rate for the same scene, so the wrapper's overhead is a ratio.

"Raw" = the engine calls one env step makes and nothing else: ``substeps`` physics steps and, with
cameras, one render per camera, with the same models and the same zero-velocity command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .rollout import make_env


@dataclass(frozen=True)
class SimRate:
    engine: str
    cameras: bool
    env_steps_per_s: float
    raw_steps_per_s: float

    @property
    def overhead(self) -> float:
        """Wrapper time per step over raw engine time per step, minus one (0.1 = 10% extra)."""
        return self.raw_steps_per_s / self.env_steps_per_s - 1.0


def _best_rates(functions, steps: int, rounds: int = 5) -> list[float]:
    """Steps/s of each function, best of ``rounds`` alternating rounds (so drift in machine load
    affects every function alike)."""
    for fn in functions:
        fn()  # warm-up
    best = [0.0] * len(functions)
    for _ in range(rounds):
        for i, fn in enumerate(functions):
            start = time.perf_counter()
            for _ in range(steps // rounds):
                fn()
            best[i] = max(best[i], (steps // rounds) / (time.perf_counter() - start))
    return best


def bench_engine(engine: str, cameras: bool, steps: int = 200) -> SimRate:
    env = make_env(engine, "test-1-slanted", render_cameras=cameras)
    env.reset(seed=0)
    action = np.zeros(5)
    substeps = env.scene.physics.substeps
    names = [c.name for c in env.scene.cameras] if cameras else []

    def raw_step():
        env._step_physics(substeps)
        for name in names:
            env.render_camera(name)

    env_rate, raw_rate = _best_rates([lambda: env.step(action), raw_step], steps)
    env.close()
    return SimRate(engine, cameras, env_rate, raw_rate)


def bench_sim(engines: list[str], steps: int = 200) -> list[SimRate]:
    return [bench_engine(engine, cameras, steps) for engine in engines for cameras in (False, True)]


@dataclass(frozen=True)
class WorkerRate:
    workers: int
    episodes_per_min: float


def bench_generation_workers(engine: str, episodes: int, worker_counts: tuple[int, ...] = (1, 2)) -> list[WorkerRate]:
    """Expert episodes/min of `sim generate` at each worker count, the same seeds each time (into
    throw-away stores); the ratio between counts is the process pool's scaling."""
    import tempfile
    from pathlib import Path

    from .evaluate import generate

    rates = []
    with tempfile.TemporaryDirectory() as scratch:
        for workers in worker_counts:
            start = time.perf_counter()
            generate(Path(scratch) / f"store-{workers}", engine, "train", episodes, workers, seed=0)
            rates.append(WorkerRate(workers, 60 * episodes / (time.perf_counter() - start)))
    return rates
