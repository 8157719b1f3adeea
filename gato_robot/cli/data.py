"""`gato-robot data ...`: importing recordings into an episode store, inspecting it, checking it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..task import RGB_STACKING
from .common import _clear_errors, console

data_app = typer.Typer(help="Episode stores: import rosbag2 recordings, inspect, verify.", no_args_is_help=True)


@data_app.command("verify")
def verify_command(store: Path = typer.Argument(..., exists=True, help="Episode store directory.")) -> None:
    """Read every episode in full and check its checksums; list each damaged or unreadable one.
    Exit status 1 when any is damaged."""
    from tqdm import tqdm

    from ..data.episodes import EpisodeStore, verify_episode

    with _clear_errors():
        paths = EpisodeStore(store).paths()
    checks = [verify_episode(path) for path in tqdm(paths, desc="verify", unit="episode")]
    damaged = [check for check in checks if check.problem]
    unchecked = sum(not check.checked and not check.problem for check in checks)
    if damaged:
        table = Table(title=f"{len(damaged)} damaged episode(s) in {store}")
        table.add_column("episode")
        table.add_column("problem")
        for check in damaged:
            table.add_row(check.path.name, check.problem)
        console.print(table)
    console.print(f"{len(checks)} episodes: {len(checks) - len(damaged) - unchecked} intact, {len(damaged)} damaged"
                  + (f", {unchecked} readable but written before checksums (not verified)" if unchecked else ""))
    if damaged:
        raise typer.Exit(1)


@data_app.command("merge")
def merge_command(sources: list[Path] = typer.Argument(..., exists=True, help="Episode stores to copy from."),
                  into: Path = typer.Option(..., help="Destination store (created if missing).")) -> None:
    """Merge stores (e.g. generated on several machines from disjoint seed ranges): each episode
    verified, copied atomically; the same episode twice is skipped, a different one under the
    same name is refused."""
    from ..data.episodes import merge_stores

    with _clear_errors():
        result = merge_stores(sources, into)
    console.print(f"copied {result.copied} episodes into {into}; {result.already_there} already there")


@data_app.command("import-bag")
def import_bag_command(
        bags: list[Path] = typer.Argument(..., help="rosbag2 directories (sqlite3 or MCAP)."),
        store: Path = typer.Option(..., help="Episode store to add the episodes to (created if missing)."),
        cameras: str = typer.Option(",".join(RGB_STACKING.camera_names), help="Camera names, in the policy's order."),
        camera_topics: str = typer.Option("", help="Image topic per camera, comma-separated "
                                          "(default /<camera>/image_raw)."),
        joint_states: str = typer.Option("/joint_states", help="sensor_msgs/JointState topic."),
        command: str = typer.Option("measured", help="How the action is recovered: measured (consecutive TCP poses), "
                                    "joint (Float64MultiArray arm positions), trajectory (JointTrajectory) or twist "
                                    "(geometry_msgs/Twist or TwistStamped: linear x y z, angular z)."),
        command_topic: str = typer.Option(None, help="The command topic (with --command joint, trajectory or twist)."),
        gripper_command_topic: str = typer.Option(None, help="Float64MultiArray finger positions (m); default: the "
                                                  "gripper action is read off the measured width."),
        reward_topic: str = typer.Option(None, help="std_msgs/Float32 or Float64 reward; success = last reward > 0."),
        success: bool = typer.Option(None, "--success/--failure", help="Label every bag (without a reward topic)."),
        labels: Path = typer.Option(None, exists=True, help="YAML mapping bag directory name -> true/false "
                                    "(success), overriding --success/--failure."),
        rate: float = typer.Option(RGB_STACKING.rate_hz, help="Control grid (Hz): the policy's rate."),
        max_age: float = typer.Option(0.15, help="Oldest sample a tick may use (s); an older one is a gap."),
        task: str = typer.Option("real", help="Task name stored with each episode (the store's triplet field)."),
        engine: str = typer.Option("real", help="Source name stored with each episode (the store's engine field).")
) -> None:
    """Teleoperation or node recordings -> episodes on the 20 Hz control grid, with the 5-D
    Cartesian action recovered from the command (or from consecutive TCP poses). Each bag is
    checked whole before its episode is written; a bad bag stops the import naming it and its topic."""
    from ..data.bag_import import BagImporter, BagTopics, ImportConfig, import_bags
    from ..data.episodes import EpisodeStore
    from ..errors import read_yaml_mapping

    with _clear_errors():
        names = tuple(n for n in cameras.split(",") if n)
        topics_given = [t for t in camera_topics.split(",") if t]
        if topics_given and len(topics_given) != len(names):
            raise ValueError(f"--camera-topics names {len(topics_given)} topics for {len(names)} cameras")
        topics = BagTopics(dict(zip(names, topics_given or [f"/{n}/image_raw" for n in names])), joint_states,
                           command_topic, command, gripper_command_topic, reward_topic)
        label_map = None
        if labels is not None:
            label_map = read_yaml_mapping(labels, "bag labels")
            bad = {k: v for k, v in label_map.items() if not isinstance(v, bool)}
            if bad:
                raise ValueError(f"{labels}: labels must be true or false, got {bad}")
        importer = BagImporter(EpisodeStore(store, create=True), topics,
                               ImportConfig(rate_hz=rate, max_age_s=max_age, task=task, engine=engine))
        reports = import_bags(bags, importer, label_map, success)
    table = Table(title=f"{len(reports)} bag(s) -> {store}")
    for column in ("bag", "episode", "steps", "success", "trimmed start/end (s)", "late ticks (topic)"):
        table.add_column(column)
    for r in reports:
        late = ", ".join(f"{t} {n}" for t, n in r.late_ticks.items() if n) or "none"
        table.add_row(r.bag.name, r.episode.name, str(r.steps), str(r.success),
                      f"{r.skipped_start_s:.2f} / {r.skipped_end_s:.2f}", late)
    console.print(table)


@data_app.command("info")
def info_command(store: Path = typer.Argument(..., exists=True, help="Episode store directory.")) -> None:
    """What a store holds: episodes by source, successes, what Gato's return filter keeps."""
    from ..data.episodes import EpisodeStore
    from ..data.inspect import summarize_store

    with _clear_errors():
        summary = summarize_store(EpisodeStore(store))
    table = Table(title=f"{store}: {summary.episodes} episodes, {summary.timesteps} timesteps")
    for column in ("engine", "task / triplet", "episodes"):
        table.add_column(column)
    for (engine, triplet), count in sorted(summary.by_source.items()):
        table.add_row(engine, triplet, str(count))
    console.print(table)
    console.print(f"successes {summary.successes}, relabelled (DAgger) {summary.relabelled}, kept by the 80% "
                  f"return filter {summary.kept_by_return_filter}; steps per episode {summary.steps_range[0]}-"
                  f"{summary.steps_range[1]}; cameras {', '.join(summary.cameras)}")


@data_app.command("sheet")
def sheet_command(episode: Path = typer.Argument(..., exists=True, help="Episode file (.h5)."),
                  out: Path = typer.Option(..., help="Contact sheet PNG."),
                  rows: int = typer.Option(8, min=1, help="Timesteps shown."),
                  video: Path = typer.Option(None, help="Also write every timestep as a video (.mp4, or .gif).")) -> None:
    """An episode as a contact sheet (cameras, action, gripper width at evenly spaced steps), and
    optionally as a video: what the model will learn from."""
    import cv2

    from ..data.inspect import contact_sheet, episode_frames

    with _clear_errors():
        sheet = contact_sheet(episode, rows)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"cannot write {out} (a .png path in a writable directory)")
        written = None
        if video is not None:
            from gato_robot.sim.evaluate import save_video

            written = save_video(episode_frames(episode), video)
    console.print(f"contact sheet {out}" + (f", video {written}" if written else ""))
