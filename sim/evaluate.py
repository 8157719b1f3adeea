"""Headless evaluation and data generation, parallel over processes, with progress bars.

Policy episodes run in batches: each worker steps ``batch_size`` environments in lockstep and
makes one batched policy call per control tick, which amortizes the per-call overhead of a small
model over the batch. Every episode keeps its own env seed and sampling seed, so its result does
not depend on the batch it ran in. A trained policy (Gato or BC-IMP) is scored through the
deployment loop the arm runs (:func:`gato_robot.sim.closed_loop.run_control_loop_episodes`:
watchdog, the policy's encoder, the policy, action path, SafetyLimits, joint commands into the
engine); the scripted expert (privileged state) and data collection (DAgger, the policy's rollouts)
act through the environment's action path (:func:`gato_robot.sim.rollout.run_episodes_batched`).

Success rates carry 95% Wilson score intervals. Reports are JSON; selected episodes become videos
(both cameras side by side; GIF, or MP4 when ffmpeg is available).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gato_robot.policies import DEFAULT_POLICY
from gato_robot.runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE

from .closed_loop import run_control_loop_episodes
from .rollout import ENGINES, EpisodeResult, make_agent, make_env, run_episode, run_episodes_batched
from .triplets import TEST_TRIPLETS, TRAINING_GRIDS, test_triplet, training_distribution


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def triplet_names(which: str) -> list[str]:
    """"test" -> the five test triplets; "train" or "train-wide" -> training triplets of that grid (a
    fresh one per seed); else a triplet name; comma-separated lists combine them ("train,test")."""
    names: list[str] = []
    for part in which.split(","):
        part = part.strip()
        for name in ([t.name for t in TEST_TRIPLETS] if part == "test" else
                     [part if part in TRAINING_GRIDS else test_triplet(part).name]):  # "test-1" -> "test-1-slanted"
            if name not in names:
                names.append(name)
    return names


@dataclass(frozen=True)
class Job:
    engine: str
    triplet: str
    seed: int
    policy: str  # "expert" or a checkpoint directory
    backend: str
    record: bool
    store: str | None
    expert_noise: float
    temperature: float = DEPLOYED_TEMPERATURE  # policy action decoding: 0 greedy, > 0 sampled (seeded per episode)
    gripper_noise: float = 0.0  # expert: per-tick probability of a gripper flip (recovery data)
    expectation: str = DEPLOYED_EXPECTATION  # policy: motion dimensions by expectation ("companded", "physical", "off")
    relabel: bool = False  # DAgger: the policy drives, the expert's action is recorded (needs store)


_ENVS: dict = {}
_AGENTS: dict = {}


def _agent(job: Job, batch_size: int = 1):
    key = (job.policy, job.backend, job.expert_noise, job.temperature, job.gripper_noise, job.expectation, batch_size)
    if key not in _AGENTS:
        _AGENTS[key] = make_agent(job.policy, job.backend, job.expert_noise, job.temperature, job.gripper_noise,
                                  job.expectation, batch_size)
    return _AGENTS[key]


def _env(job: Job, cameras: bool, index: int = 0):
    key = (job.engine, job.triplet, cameras, index)
    if key not in _ENVS:
        _ENVS[key] = make_env(job.engine, job.triplet, render_cameras=cameras)
    return _ENVS[key]


def _run_chunk(jobs: tuple[Job, ...]) -> list[EpisodeResult]:
    """Episodes of one policy on one triplet kind, in lockstep (one batched policy call per tick);
    DAgger episodes are relabelled by one expert per row and written to the store."""
    policy = getattr(_agent(jobs[0], len(jobs)), "policy", None) if jobs[0].store is None else None
    if policy is not None:  # a trained policy (Gato or BC-IMP), scored as deployed
        envs = [_env(jobs[0], True, index) for index in range(len(jobs))]
        results = run_control_loop_episodes(envs, policy, [job.seed for job in jobs],
                                            record_frames=any(job.record for job in jobs))
        for job, result in zip(jobs, results):
            if not job.record:
                result.frames = []
        return results
    if len(jobs) == 1:
        return [_run_job(jobs[0])]
    envs = [_env(jobs[0], True, index) for index in range(len(jobs))]
    agent, writers = _agent(jobs[0], len(jobs)), None
    if jobs[0].relabel:
        from .relabel import BatchRelabellingAgent

        agent, writers = BatchRelabellingAgent(agent), [_writer(job) for job in jobs]
    elif jobs[0].store is not None:  # the policy's own rollouts: executed actions and their rewards
        writers = [_writer(job) for job in jobs]
    results = run_episodes_batched(envs, agent, [job.seed for job in jobs],
                                   record_frames=any(job.record for job in jobs), writers=writers)
    for job, result in zip(jobs, results):
        if not job.record:
            result.frames = []
    for writer, result in zip(writers or [], results):
        writer.commit(result.success)
    return results


def _writer(job: Job):
    from gato_robot.data.episodes import EpisodeStore

    from .env_base import INSTRUCTION

    return EpisodeStore(job.store, create=True).writer(job.engine, job.triplet, job.seed, INSTRUCTION,
                                                      relabelled=job.relabel)


def chunk_jobs(jobs: list[Job], batch_size: int, workers: int) -> list[tuple[Job, ...]]:
    """Group policy episodes of the same engine, triplet and decoding into batches of at most
    ``batch_size``, small enough that every worker gets work; expert and data-writing episodes
    stay alone."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        alone = job.policy == "expert" or (job.store is not None and not job.relabel) or job.backend == "tensorrt"
        key = (id(job),) if alone else (job.engine, job.triplet, job.policy, job.temperature, job.expectation,
                                        job.relabel)
        groups.setdefault(key, []).append(job)
    chunks = []
    for group in groups.values():
        size = max(1, min(batch_size, math.ceil(len(group) / max(1, workers))))
        chunks += [tuple(group[i:i + size]) for i in range(0, len(group), size)]
    return chunks


def _run_job(job: Job) -> EpisodeResult:
    agent = _agent(job)
    if job.relabel:
        from .relabel import RelabellingAgent

        agent = RelabellingAgent(agent)
    cameras = agent.needs_cameras or job.record or job.store is not None
    env = _env(job, cameras)
    writer = _writer(job) if job.store is not None else None
    result = run_episode(env, agent, job.seed, writer=writer, record_frames=job.record)
    if writer is not None:
        writer.commit(result.success)
    return result


def _single_threaded_worker() -> None:
    """One compute thread per worker process: with one process per core, torch's default thread
    pool in every worker oversubscribes the cores and (measured here) made policy episodes ~10x slower."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM (``kill``, ``timeout``, a job scheduler) ends the run as Ctrl-C does, by an exception
    in the main thread, so the process pool is terminated on the way out instead of its workers
    running on as orphans until their chunks end. Committed episodes stay; a half-written one is
    never committed (the store's atomic writer)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_jobs(jobs: list[Job], workers: int, description: str, batch_size: int = 1) -> list[EpisodeResult]:
    """Run episodes over ``workers`` processes (each keeps its environments), policy episodes in
    lockstep batches of up to ``batch_size``, with a progress bar counting episodes."""
    chunks = chunk_jobs(jobs, batch_size, workers)
    results: list[EpisodeResult] = []
    with tqdm(total=len(jobs), desc=description, unit="episode") as bar:
        if workers <= 1:
            for chunk in chunks:
                results += _run_chunk(chunk)
                bar.update(len(chunk))
            return results
        context = mp.get_context("spawn")
        with _sigterm_as_exit(), context.Pool(workers, initializer=_single_threaded_worker) as pool:
            for chunk_results in pool.imap_unordered(_run_chunk, chunks):
                results += chunk_results
                bar.update(len(chunk_results))
    return results


def save_video(frames: list[np.ndarray], path: Path, fps: int = 20) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp4":
        try:
            imageio.mimwrite(path, frames, fps=fps, codec="libx264", quality=7, macro_block_size=1)
            return path
        except Exception:  # no ffmpeg: fall back to GIF
            path = path.with_suffix(".gif")
    imageio.mimwrite(path, frames[::2], duration=2 / fps, loop=0)
    return path


def require_policy(policy: str, backend: str = "torch") -> None:
    """Raise FileNotFoundError unless ``policy`` is a directory or a shipped policy's name, and the
    loader's error (DamagedFileError naming the file) unless it loads: checked once here, before
    any worker or progress bar starts."""
    from gato_robot.policies import resolve_policy, shipped_policies

    if not Path(resolve_policy(policy)).exists():
        raise FileNotFoundError(f"policy not found: {policy!r} is neither a directory nor a shipped policy "
                                f"{shipped_policies()}")
    make_agent(policy, backend)


@dataclass(frozen=True)
class EvalConfig:
    """One `sim eval`: which policy, where, how many episodes, decoded how."""
    policy: str = DEFAULT_POLICY  # a shipped policy, a checkpoint or export directory, or "expert"
    engine: str = "mujoco"
    triplets: str = "test"  # see triplet_names()
    episodes: int = 50  # per triplet, seeds seed, seed + 1, ...
    workers: int = 1
    seed: int = 0
    backend: str = "onnxruntime"  # the node's runner (a checkpoint is exported once, beside it); torch, tensorrt
    video_dir: Path | None = None
    videos_per_triplet: int = 1
    expert_noise: float = 0.0  # scripted expert: action noise, fraction of the bounds
    temperature: float = DEPLOYED_TEMPERATURE  # > 0 samples the policy's tokens (seeded per episode)
    expectation: str = DEPLOYED_EXPECTATION
    batch_size: int = 8  # policy episodes per lockstep batch in a worker

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {ENGINES}")
        if self.episodes < 1 or self.workers < 1 or self.batch_size < 1:
            raise ValueError(f"episodes, workers and batch size must be >= 1; got {self.episodes}, {self.workers}, "
                             f"{self.batch_size}")


@dataclass
class TripletResult:
    episodes: int
    successes: int
    ci95: tuple[float, float]  # 95% Wilson score interval of the success rate
    mean_steps: float
    held: dict[str, str] = field(default_factory=dict)  # episode seed -> why a tick held and ended it
    limited_ticks: int = 0  # ticks whose command SafetyLimits changed
    videos: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.episodes)


@dataclass
class EvalReport:
    config: EvalConfig
    per_triplet: dict[str, TripletResult]
    wall_time_s: float
    git_revision: str = "unknown"  # set by the caller that knows the checkout (the CLI)

    @property
    def successes(self) -> int:
        return sum(r.successes for r in self.per_triplet.values())

    @property
    def episodes(self) -> int:
        return sum(r.episodes for r in self.per_triplet.values())

    @property
    def success_rate(self) -> float:
        return self.successes / max(1, self.episodes)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def to_json(self) -> dict:
        """The report file's layout (read by scripts/ablation_table.py and sim/report.py)."""
        omitted = ("video_dir", "videos_per_triplet", "workers", "expert_noise", "episodes")
        config = {key: value for key, value in asdict(self.config).items() if key not in omitted}
        per_triplet = {}
        for name, r in self.per_triplet.items():
            row = {"episodes": r.episodes, "successes": r.successes, "success_rate": r.success_rate,
                   "ci95": list(r.ci95), "mean_steps": r.mean_steps, "held": r.held, "limited_ticks": r.limited_ticks}
            per_triplet[name] = {**row, "videos": r.videos} if r.videos else row
        overall = {"success_rate": self.success_rate, "ci95": list(self.ci95)}
        return {**config, "episodes_per_triplet": self.config.episodes, "per_triplet": per_triplet,
                "overall": overall, "wall_time_s": self.wall_time_s, "git_revision": self.git_revision}


def evaluate(config: EvalConfig) -> EvalReport:
    """Success per triplet with 95% CIs (``triplets="train"`` draws a fresh training triplet per seed)."""
    if config.policy != "expert":
        from gato_robot.deploy.policy import GATO_KIND, checkpoint_kind
        from gato_robot.policies import resolve_policy

        resolved = Path(resolve_policy(config.policy))
        if resolved.is_dir() and checkpoint_kind(resolved) != GATO_KIND:
            config = replace(config, backend="torch")  # BC-IMP has no compiled form: the report says what ran
        require_policy(config.policy, config.backend)
    names = triplet_names(config.triplets)
    recording = config.video_dir is not None
    jobs = [Job(config.engine, name, config.seed + i, config.policy, config.backend,
                recording and i < config.videos_per_triplet, None, config.expert_noise, config.temperature,
                expectation=config.expectation) for name in names for i in range(config.episodes)]
    start = time.time()
    label = config.policy if config.policy == "expert" else Path(config.policy).name
    results = run_jobs(jobs, config.workers, f"eval {config.engine} {label}", config.batch_size)
    per_triplet = {}
    for name in names:
        mine = sorted((r for r in results if r.triplet == name or training_distribution(r.triplet) == name),
                      key=lambda r: r.seed)
        wins = sum(r.success for r in mine)
        row = TripletResult(len(mine), wins, wilson_interval(wins, len(mine)), float(np.mean([r.steps for r in mine])),
                            {str(r.seed): r.held for r in mine if r.held}, int(sum(r.limited_ticks for r in mine)))
        for r in [r for r in mine if r.frames][:config.videos_per_triplet] if recording else []:
            outcome = "success" if r.success else "failure"
            row.videos.append(str(save_video(r.frames, config.video_dir / f"{config.engine}-{name}-seed{r.seed}-{outcome}.mp4")))
        per_triplet[name] = row
    return EvalReport(config, per_triplet, time.time() - start)


def generate(store: Path, engine: str, triplets: str, episodes: int, workers: int = 1, seed: int = 0,
             expert_noise: float = 0.1, gripper_noise: float = 0.0) -> dict:
    """Scripted-expert episodes into an episode store; each episode is committed atomically, and
    episodes already in the store are skipped, so a killed run continues where it stopped."""
    from gato_robot.data.episodes import EpisodeStore

    existing = EpisodeStore(store, create=True)
    names = triplet_names(triplets)
    jobs = [Job(engine, name, seed + i, "expert", "torch", False, str(store), expert_noise, gripper_noise=gripper_noise)
            for name in names for i in range(episodes) if not existing.has(engine, name, seed + i)]
    results = run_jobs(jobs, workers, f"generate {engine}")
    return {"episodes": len(results), "successes": sum(r.success for r in results), "store": str(store),
            "skipped": len(names) * episodes - len(jobs)}


def collect_policy_episodes(store: Path, engine: str, policy: str, triplets: str, episodes: int, workers: int = 1,
                            seed: int = 6_000_000, temperature: float = DEPLOYED_TEMPERATURE,
                            expectation: str = DEPLOYED_EXPECTATION, relabel: bool = True) -> dict:
    """Episodes that ``policy`` drives, into ``store``. ``relabel``: one DAgger round's data (Ross
    et al. 2011), the scripted expert labels every state visited and each episode is flagged as
    relabelled (so the return filter keeps it); otherwise the policy's own rollouts, its executed
    actions and their rewards (BC-IMP's improvement data). Resumable like :func:`generate`; use seeds no
    other data or evaluation uses."""
    from gato_robot.data.episodes import EpisodeStore

    require_policy(policy)
    existing = EpisodeStore(store, create=True)
    names = triplet_names(triplets)
    jobs = [Job(engine, name, seed + i, policy, "torch", False, str(store), 0.0, temperature, expectation=expectation,
                relabel=relabel) for name in names for i in range(episodes) if not existing.has(engine, name, seed + i)]
    results = run_jobs(jobs, workers, f"{'dagger' if relabel else 'rollouts'} {engine}", batch_size=8)
    return {"episodes": len(results), "successes": sum(r.success for r in results), "store": str(store),
            "skipped": len(names) * episodes - len(jobs)}


def write_report(report: EvalReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2))
    return path
