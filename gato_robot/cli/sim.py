"""`gato-robot` commands: RGB-stacking simulation: data generation and headless evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import typer
from rich.table import Table

from ..action_spec import RGB_STACKING_ACTIONS
from ..runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE
from .common import TRIPLETS_HELP, WORKERS_HELP, _clear_errors, available_cores, console, git_revision

sim_app = typer.Typer(help="RGB-stacking simulation: data generation and headless evaluation.", no_args_is_help=True)


@sim_app.command("eval")
def sim_eval(engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
             policy: str = typer.Option("gato-cpu-small", help="A shipped policy (gato-cpu-small), a checkpoint "
                                        "directory (or ONNX export with --backend), or 'expert'."),
             triplets: str = typer.Option("test", help="test (the 5 held-out triplets), train, train-wide (the "
                                          "wider object grid), a triplet name, or a comma-separated list "
                                          "(train,test)."),
             episodes: int = typer.Option(50, min=1, help="Episodes per triplet."),
             workers: int = typer.Option(None, min=1, help=WORKERS_HELP),
             backend: str = typer.Option("onnxruntime", help="Policy runtime: onnxruntime (the node's; a checkpoint "
                                         "is exported once and the export kept beside it), torch or tensorrt. "
                                         "BC-IMP runs on torch whatever this says."),
             seed: int = typer.Option(0, help="First episode seed (seeds are consecutive)."),
             report: Path = typer.Option(None, help="Write the JSON report here."),
             videos: Path = typer.Option(None, help="Write one episode video per triplet here (both cameras)."),
             expert_noise: float = typer.Option(0.0, help="Action noise of the scripted expert (fraction of bounds)."),
             temperature: float = typer.Option(DEPLOYED_TEMPERATURE, min=0, help="Gato action tokens not decoded by "
                                               "expectation (the gripper): sampled at this temperature (seeded by "
                                               "the episode seed), as the paper's Gato; 0 = argmax, as shipped."),
             expectation: str = typer.Option(DEPLOYED_EXPECTATION, help="Decode the motion dimensions by the "
                                             "expectation of their bins: physical (mean decoded value; shipped), "
                                             "companded (mean bin, mu-law space) or median (the same bin in both spaces); "
                                             "off: by --temperature like the gripper."),
             batch_size: int = typer.Option(8, min=1,
                                            help="Policy episodes stepped in lockstep per worker, one batched "
                                            "policy call per tick (torch and onnxruntime; 1 = one at a time).")) -> None:
    """Success rate per triplet with 95% confidence intervals, headless."""
    from gato_robot.sim.evaluate import EvalConfig, evaluate, write_report

    with _clear_errors():
        result = evaluate(EvalConfig(policy, engine, triplets, episodes, workers or available_cores(), seed, backend,
                                     videos, 1, expert_noise, temperature, expectation, batch_size))
    result.git_revision = git_revision()
    decoding = f"sampled at T={temperature}" if temperature else "greedy"
    if expectation != "off":
        decoding = f"motion by {expectation} expectation, gripper {decoding}"
    table = Table(title=f"{engine}: {policy} ({decoding}) on {triplets} triplets, {episodes} episodes each "
                        f"(rev {result.git_revision})")
    for column in ("triplet", "success", "95% CI", "episodes", "mean steps"):
        table.add_column(column, justify="right" if column != "triplet" else "left")
    for name, row in result.per_triplet.items():
        low, high = row.ci95
        table.add_row(name, f"{100 * row.success_rate:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]",
                      str(row.episodes), f"{row.mean_steps:.0f}")
    low, high = result.ci95
    table.add_row("overall", f"{100 * result.success_rate:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]",
                  str(result.episodes), "")
    console.print(table)
    for seed, reason in ((s, r) for row in result.per_triplet.values() for s, r in row.held.items()):
        console.print(f"episode {seed} ended by a hold: {reason}")
    if report:
        console.print(f"report: {write_report(result, report)}")
    for row in result.per_triplet.values():
        for video in row.videos:
            console.print(f"video: {video}")


@sim_app.command("relabel")
def sim_relabel(policy: str = typer.Option("gato-cpu-small", help="Shipped policy, checkpoint directory or 'expert'."),
                engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                triplet: str = typer.Option("train", help="train, train-wide (the wider object grid) or a "
                                                          "test triplet name."),
                episodes: int = typer.Option(4, min=1, help="Episodes (consecutive seeds)."),
                seed: int = typer.Option(0, help="First episode seed."),
                trace_every: int = typer.Option(20, min=0, help="Print every Kth step of the first episode (0: none)."),
                temperature: float = typer.Option(DEPLOYED_TEMPERATURE, min=0,
                                                  help="Gato action tokens: sampled at this "
                                                  "temperature (0 = argmax), as in `sim eval`."),
                expectation: str = typer.Option(DEPLOYED_EXPECTATION, help="Motion dimensions by expectation: off, "
                                                "companded, physical or median."),
                csv_out: Path = typer.Option(None, "--csv", help="Write every relabelled step here.")) -> None:
    """Let the policy drive and the scripted expert say what it would do in each state (DAgger's
    labelling step): per-axis sign agreement, gripper agreement and distance to the red object."""
    import csv

    from gato_robot.sim.relabel import RelabellingAgent, agreement
    from gato_robot.sim.rollout import make_agent, make_env, run_episode

    with _clear_errors():
        env = make_env(engine, triplet)
        relabeller = RelabellingAgent(make_agent(policy, temperature=temperature, expectation=expectation))
        rows = []
        for episode_seed in range(seed, seed + episodes):
            result = run_episode(env, relabeller, episode_seed)
            rows.append((episode_seed, result.success, agreement(relabeller.steps), list(relabeller.steps)))
        env.close()
    summary = Table(title=f"{engine}: {policy} relabelled by the expert on {triplet}")
    keys = list(rows[0][2])
    for column in ("seed", "success", *keys):
        summary.add_column(column.replace("_", " "), justify="right")
    for episode_seed, success, stats, _ in rows:
        summary.add_row(str(episode_seed), str(success), *(f"{stats[k]:.2f}" for k in keys))
    console.print(summary)
    if trace_every:
        trace = Table(title=f"seed {rows[0][0]}: policy action vs expert label (velocities / bound)")
        for column in ("step", "expert phase", "red - TCP (m)", "policy", "expert"):
            trace.add_column(column)
        bounds = np.asarray(RGB_STACKING_ACTIONS.bounds)
        for step in rows[0][3][::trace_every]:
            trace.add_row(str(step.step), step.phase, str(np.round(step.red_offset, 3)),
                          str(np.round(step.action / bounds, 2)), str(np.round(step.label / bounds, 2)))
        console.print(trace)
    if csv_out:
        with csv_out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seed", "step", "phase", "red_dx", "red_dy", "red_dz", *(f"policy_{n}" for n in
                             RGB_STACKING_ACTIONS.names), *(f"expert_{n}" for n in RGB_STACKING_ACTIONS.names)])
            for episode_seed, _, _, steps in rows:
                for step in steps:
                    writer.writerow([episode_seed, step.step, step.phase, *step.red_offset, *step.action, *step.label])
        console.print(f"steps: {csv_out}")


@sim_app.command("closed-loop")
def sim_closed_loop(model: Path = typer.Option(..., help="Checkpoint (torch) or export directory."),
                    backend: str = typer.Option("torch", help="torch, onnxruntime or tensorrt."),
                    engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                    triplet: str = typer.Option("test-1-slanted", help="Triplet name, or 'train'."),
                    calibration: Path = typer.Option(None, help="Directory of <camera>.camera_info/extrinsics YAML."),
                    seed: int = 0) -> None:
    """Drive a simulator with the real-arm ControlLoop (joint commands, safety, watchdog): the check
    to run before a policy touches the arm."""
    import numpy as np

    from ..robot.action_path import CartesianActionMapper
    from ..deploy.control import ControlLoop
    from ..deploy.policy import load_policy
    from gato_robot.sim.closed_loop import run_closed_loop
    from gato_robot.sim.rollout import make_env
    from gato_robot.sim.scene import DEFAULT_SCENE, scene_with_calibrated_cameras

    with _clear_errors():
        scene = scene_with_calibrated_cameras(calibration) if calibration else DEFAULT_SCENE
        env = make_env(engine, triplet, scene=scene)
        loop = ControlLoop(load_policy(model, backend), CartesianActionMapper(scene.arm, scene.action_path))
        trace = run_closed_loop(env, loop, scene.episode_steps, seed)
        env.close()
    totals = np.array([r.stage_seconds["total"] for r in trace.results]) * 1e3
    console.print(f"{engine} {triplet}: {len(trace.results)} ticks, {loop.stats.active_ticks} active, "
                  f"{loop.stats.held_ticks} held, success {trace.success}; tick median {np.median(totals):.1f} ms, "
                  f"p99 {np.percentile(totals, 99):.1f} ms, {loop.stats.deadline_misses} deadline misses")


@sim_app.command("generate")
def sim_generate(out: Path = typer.Option(..., help="Episode store directory (created or appended to)."),
                 engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                 triplets: str = typer.Option("train", help=TRIPLETS_HELP),
                 episodes: int = typer.Option(100, min=1, help="Episodes (per triplet for 'test')."),
                 workers: int = typer.Option(None, min=1, help=WORKERS_HELP),
                 seed: int = typer.Option(0, help="First episode seed."),
                 noise: float = typer.Option(0.1, help="Expert action noise (fraction of each bound)."),
                 gripper_noise: float = typer.Option(0.0, help="Per-tick probability that the expert executes the "
                                                     "opposite gripper command for 4 ticks (recovery data; the "
                                                     "label stays clean).")) -> None:
    """Scripted-expert episodes (cameras + proprioception + actions) into an episode store."""
    from gato_robot.sim.evaluate import generate

    with _clear_errors():
        summary = generate(out, engine, triplets, episodes, workers or available_cores(), seed, noise, gripper_noise)
    console.print(f"wrote {summary['episodes']} episodes ({summary['successes']} successful) to {summary['store']}"
                  f"; {summary['skipped']} already there")


@sim_app.command("dagger")
def sim_dagger(store: Path = typer.Option(..., help="Episode store to add the relabelled episodes to."),
               policy: str = typer.Option(..., help="Shipped policy or checkpoint directory that drives."),
               engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
               triplets: str = typer.Option("train", help=TRIPLETS_HELP),
               episodes: int = typer.Option(50, min=1, help="Episodes (per triplet for 'test')."),
               workers: int = typer.Option(None, min=1, help=WORKERS_HELP),
               seed: int = typer.Option(6_000_000, help="First episode seed (disjoint from data and evaluation)."),
               temperature: float = typer.Option(DEPLOYED_TEMPERATURE, min=0, help="Policy action sampling temperature "
                                                 "(0 = argmax); the policy drives as deployed by default."),
               expectation: str = typer.Option(DEPLOYED_EXPECTATION, help="Motion dimensions by expectation: off, "
                                               "companded, physical or median.")) -> None:
    """DAgger data collection: the policy drives, the scripted expert labels every visited state;
    episodes go to the store flagged as relabelled (kept whatever their return)."""
    from gato_robot.sim.evaluate import collect_policy_episodes

    with _clear_errors():
        summary = collect_policy_episodes(store, engine, policy, triplets, episodes, workers or available_cores(),
                                          seed, temperature, expectation)
    console.print(f"wrote {summary['episodes']} relabelled episodes ({summary['successes']} successful) to "
                  f"{summary['store']}; {summary['skipped']} already there")


@sim_app.command("rollouts")
def sim_rollouts(store: Path = typer.Option(..., help="Episode store to write the rollouts to."),
                 policy: str = typer.Option(..., help="Shipped policy or checkpoint directory that drives."),
                 engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                 triplets: str = typer.Option("train", help=TRIPLETS_HELP),
                 episodes: int = typer.Option(100, min=1, help="Episodes (per triplet for 'test')."),
                 workers: int = typer.Option(None, min=1, help=WORKERS_HELP),
                 seed: int = typer.Option(6_500_000, help="First episode seed (disjoint from data and evaluation).")
                 ) -> None:
    """A policy's own episodes (its executed actions and their rewards) into a store: the data of
    BC-IMP's improvement step (`gato-robot improve-baseline`)."""
    from gato_robot.sim.evaluate import collect_policy_episodes

    with _clear_errors():
        summary = collect_policy_episodes(store, engine, policy, triplets, episodes, workers or available_cores(),
                                          seed, relabel=False)
    console.print(f"wrote {summary['episodes']} rollouts ({summary['successes']} successful) to {summary['store']}; "
                  f"{summary['skipped']} already there")


@sim_app.command("table")
def sim_table(column: list[str] = typer.Option(..., help="HEADER=REPORT.json, once per column."),
              out: Path = typer.Option(None, help="Also write the Markdown table here.")) -> None:
    """Evaluation reports side by side (Markdown): success per triplet with 95% CIs."""
    from gato_robot.sim.report import comparison_table

    columns = {}
    for item in column:
        header, sep, path = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected HEADER=REPORT.json, got {item!r}")
        columns[header] = Path(path)
    with _clear_errors():
        table = comparison_table(columns)
    print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
