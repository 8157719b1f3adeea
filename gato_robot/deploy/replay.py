"""`gato-robot replay BAG`: run :class:`ControlLoop` over a recorded rosbag2 (sqlite3 or MCAP) of
camera and joint-state topics, and write the commands it would have sent.

Ticks follow the live schedule: the first tick is at the first joint state's stamp (where the
loop is enabled from the measured position), then every 1/rate seconds; each tick sees the latest
message of every topic stamped at or before it, exactly what the live loop would have seen. So a
policy is checked on real robot logs before it touches the arm; for the same backend the commands
are bit-identical to the live run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .control import ControlLoop
from ..robot.description import PANDA
from ..ros.bag import open_bag
from ..ros.convert import MessageError, image_to_rgb, joint_state_to_sample, stamp_seconds
from ..observation import Frame, JointSample, newest


@dataclass(frozen=True)
class ReplayTopics:
    cameras: dict[str, str]  # camera name -> image topic
    joint_states: str = "/joint_states"
    arm_joints: tuple[str, ...] = PANDA.arm_joints
    finger_joints: tuple[str, ...] = PANDA.finger_joints

    @classmethod
    def default(cls, camera_names: tuple[str, ...]) -> "ReplayTopics":
        return cls({name: f"/{name}/image_raw" for name in camera_names})


@dataclass
class ReplayResult:
    times_s: np.ndarray
    states: list[str]
    reasons: list[str]
    arm_commands: np.ndarray  # (ticks, 7) radians
    gripper_commands: np.ndarray  # (ticks,) metres

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez_compressed(path, times_s=self.times_s, states=np.array(self.states), reasons=np.array(self.reasons),
                            arm_commands=self.arm_commands, gripper_commands=self.gripper_commands)
        return path


def replay_bag(bag: str | Path, loop: ControlLoop, topics: ReplayTopics) -> ReplayResult:
    bag = Path(bag)
    period = loop.config.period_s
    frames: dict[str, Frame] = {}
    joints: JointSample | None = None
    by_topic = {topic: name for name, topic in topics.cameras.items()}
    ticks: list = []
    next_tick: float | None = None

    def tick(now: float) -> None:
        if not ticks:
            loop.disable()
            loop.enable(joints)
        ticks.append((now, loop.tick(now, frames, joints)))

    with open_bag(bag) as reader:
        wanted = [c for c in reader.connections if c.topic in by_topic or c.topic == topics.joint_states]
        missing = sorted((set(by_topic) | {topics.joint_states}) - {c.topic for c in wanted})
        if missing:
            raise ValueError(f"bag {bag} lacks topic(s) {missing}; it has {sorted(c.topic for c in reader.connections)}")
        for connection, timestamp, raw in reader.messages(connections=wanted):
            message = reader.deserialize(raw, connection.msgtype)
            stamp = stamp_seconds(message.header.stamp) or timestamp * 1e-9
            while next_tick is not None and stamp > next_tick + 1e-9:
                tick(next_tick)
                next_tick = ticks[0][0] + len(ticks) * period
            try:
                if connection.topic == topics.joint_states:  # the node's bookkeeping: out-of-order samples dropped
                    joints = newest(joint_state_to_sample(message, topics.arm_joints, topics.finger_joints, stamp),
                                    joints) or joints
                    if next_tick is None:
                        next_tick = stamp
                else:
                    name = by_topic[connection.topic]
                    frames[name] = newest(Frame(image_to_rgb(message), stamp), frames.get(name)) or frames[name]
            except MessageError as error:  # as `data import-bag`: which bag, topic and time, not only the field
                raise MessageError(f"bag {bag}: topic {connection.topic} at {stamp:.3f} s: {error}") from error
        if next_tick is not None:
            tick(next_tick)
    held = np.full(len(loop.limits.lower), np.nan)
    return ReplayResult(
        np.array([t for t, _ in ticks]), [r.state.value for _, r in ticks], [r.reason for _, r in ticks],
        np.array([r.command.arm_positions if r.command is not None else held for _, r in ticks]),
        np.array([r.command.gripper_width if r.command is not None else np.nan for _, r in ticks]))
