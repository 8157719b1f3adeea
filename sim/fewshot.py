"""The few-shot fine-tuning sweep (Gato Sec. 5.2, Fig. 10): for each episode count N, fine-tune the
pretrained checkpoint and train the scratch control on the same N episodes of a held-out triplet,
evaluate both in simulation, and write the curve as CSV + PNG. N = 0 evaluates the pretrained
policy as it is (zero-shot) and the untrained initialization. The optimizer steps for each N follow
:class:`StepsRule`, fixed before any evaluation and the same for both arms.

Resumable: every finished (N, arm) row is in the CSV before the next starts, and each training run
resumes from its own checkpoint, so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gato_robot.runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE
from gato_robot.train.finetune import ARMS, FinetuneConfig, finetune, scratch_initialization

from .evaluate import EvalConfig, evaluate

FIELDS = ("episodes", "arm", "success_rate", "ci95_low", "ci95_high", "eval_episodes", "final_loss", "steps",
          "triplet", "engine", "git_revision")


@dataclass(frozen=True)
class StepsRule:
    """Fine-tuning steps for N episodes: ``base + per_episode * N``. The base adapts the pretrained
    policy to the new objects at all; the per-episode term lets more data be seen more (an episode
    is ~200 timesteps, a step 24: at 10 per episode each timestep is seen ~1.2 times by the
    per-episode term alone). Written down before any evaluation; never tuned on evaluation seeds."""

    base: int = 200
    per_episode: int = 10

    def steps(self, episodes: int) -> int:
        return self.base + self.per_episode * episodes

    def __str__(self) -> str:
        return f"{self.base} + {self.per_episode} x N steps"


@dataclass(frozen=True)
class SweepConfig:
    pretrained: Path
    store: Path  # episodes of the held-out triplet
    out: Path
    triplet: str
    episode_counts: tuple[int, ...] = (0, 10, 25, 50, 100)
    engine: str = "mujoco"
    eval_episodes: int = 20
    eval_seed: int = 0
    workers: int = 2
    temperature: float = DEPLOYED_TEMPERATURE  # evaluation decodes as shipped (gripper argmax, ...)
    expectation: str = DEPLOYED_EXPECTATION  # ... motion by physical expectation); "off" + 1.0: the paper's sampling
    finetune: FinetuneConfig = FinetuneConfig()  # its ``steps`` is replaced by ``steps_rule`` for each N
    steps_rule: StepsRule = StepsRule()
    runs_dir: Path | None = None  # training runs (checkpoints); default OUT/runs
    git_revision: str = "unknown"  # of the code that ran, recorded per row


def _done(csv_path: Path) -> list[dict]:
    if not csv_path.is_file():
        return []
    with csv_path.open() as handle:
        return list(csv.DictReader(handle))


def _write(csv_path: Path, rows: list[dict]) -> None:
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)


def run_sweep(config: SweepConfig) -> Path:
    """Run (or continue) the sweep; returns the CSV path (the PNG sits beside it)."""
    config.out.mkdir(parents=True, exist_ok=True)
    csv_path = config.out / "fewshot.csv"
    rows = _done(csv_path)
    finished = {(int(r["episodes"]), r["arm"]) for r in rows}
    for count in config.episode_counts:
        for arm in ARMS:
            if (count, arm) in finished:
                continue
            run_dir = (config.runs_dir or config.out / "runs") / f"{arm}-{count}"
            if count == 0:  # zero-shot reference: the pretrained policy as is, or the random initialization
                checkpoint = (config.pretrained if arm == "pretrained"
                              else scratch_initialization(config.pretrained, run_dir, config.finetune.seed))
                summary = {"final_loss": "", "steps": 0}
            else:
                checkpoint = run_dir / "checkpoint"
                summary = finetune(config.pretrained, config.store, run_dir,
                                   replace(config.finetune, episodes=count, steps=config.steps_rule.steps(count)), arm)
            report = evaluate(EvalConfig(str(checkpoint), config.engine, config.triplet, config.eval_episodes,
                                         config.workers, config.eval_seed, temperature=config.temperature,
                                         expectation=config.expectation))
            (result,) = report.per_triplet.values()
            rows.append({"episodes": count, "arm": arm, "success_rate": result.success_rate,
                         "ci95_low": result.ci95[0], "ci95_high": result.ci95[1],
                         "eval_episodes": result.episodes, "final_loss": summary["final_loss"],
                         "steps": summary["steps"], "triplet": config.triplet, "engine": config.engine,
                         "git_revision": config.git_revision})
            _write(csv_path, rows)
    plot_curves(rows, config.out / "fewshot.png", config)
    (config.out / "sweep_config.txt").write_text(repr({k: str(v) for k, v in asdict(config).items()}))
    return csv_path


def plot_curves(rows: list[dict], path: Path, config: SweepConfig) -> Path:
    """Success rate vs fine-tuning episodes (symmetric-log x: 0 = no fine-tuning; every N labelled),
    one line per arm, 95% CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.8))
    for arm, colour in zip(ARMS, ("tab:blue", "tab:orange")):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: int(r["episodes"]))
        if not mine:
            continue
        x = [int(r["episodes"]) for r in mine]
        y = [100 * float(r["success_rate"]) for r in mine]
        axis.plot(x, y, "o-", color=colour, label=f"{arm}")
        axis.fill_between(x, [100 * float(r["ci95_low"]) for r in mine], [100 * float(r["ci95_high"]) for r in mine],
                          color=colour, alpha=0.15)
    axis.set_xscale("symlog", linthresh=1)  # 0 = zero-shot
    counts = sorted({int(r["episodes"]) for r in rows})
    axis.set_xticks(counts, [str(count) for count in counts])
    axis.minorticks_off()
    axis.set_xlabel("fine-tuning episodes")
    axis.set_ylabel("success (%)")
    axis.set_ylim(-2, 102)
    axis.set_title(f"few-shot fine-tuning on {config.triplet} ({config.engine}, "
                   f"{config.steps_rule}, both arms)", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
