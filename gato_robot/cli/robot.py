"""`gato-robot` commands: Real-arm tools: rosbag2 replay."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import _clear_errors, console


def replay_command(bag: Path = typer.Argument(..., exists=True, help="rosbag2 directory (sqlite3 or MCAP)."),
                   model: Path = typer.Option(...,
                                              help="Checkpoint (torch) or export directory (onnxruntime, tensorrt)."),
                   out: Path = typer.Option(Path("replay_commands.npz"), help="Where to write the commands (.npz)."),
                   backend: str = typer.Option("torch", help="torch, onnxruntime or tensorrt."),
                   joint_states_topic: str = typer.Option("/joint_states", help="sensor_msgs/JointState topic."),
                   rate_hz: float = typer.Option(20.0, min=1.0, help="Control rate of the replayed loop.")) -> None:
    """Run the control loop over a recorded bag and write the joint commands it would have sent."""
    from ..robot.action_path import ActionPathConfig, CartesianActionMapper
    from ..deploy.control import ControlConfig, ControlLoop
    from ..deploy.replay import ReplayTopics, replay_bag
    from ..deploy.policy import load_policy

    with _clear_errors():
        loop = ControlLoop(load_policy(model, backend),  # decoded as the node decodes by default
                           CartesianActionMapper(config=ActionPathConfig(control_period_s=1 / rate_hz)),
                           ControlConfig(rate_hz))
        topics = ReplayTopics.default(loop.policy.inputs.camera_names)
        topics = ReplayTopics(topics.cameras, joint_states_topic)
        result = replay_bag(bag, loop, topics)
    result.save(out)
    active = sum(state == "active" for state in result.states)
    console.print(f"{len(result.states)} ticks ({active} active, {len(result.states) - active} held) -> {out}")
    for reason in sorted(set(result.reasons) - {"ok"}):
        console.print(f"held: {reason} ({result.reasons.count(reason)} ticks)")


# Top-level commands, registered on the main app by gato_robot.cli.
commands = [("replay", replay_command)]
