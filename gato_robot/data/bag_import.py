"""rosbag2 recordings of a real cell (teleoperation or the node itself) -> episodes of the store.

A bag holds the node's own sensor topics (camera images, joint states) and, optionally, a command
topic. Importing one bag:

1. Every message of the wanted topics is read (sqlite3 or MCAP, via `rosbags`), stamped by its
   header (by the bag's receive time where a message has no header), and checked: within a topic
   stamps must strictly increase (an unsorted or duplicated stamp is an error naming the topic).
2. Ticks are laid on the control grid (``rate_hz``, 20 Hz as the policy runs) from the first
   instant every required topic has a sample to the last joint state. Each tick takes the latest
   sample of every topic stamped at or before it (what the live loop would have seen); a sample
   older than ``max_age_s`` is a gap and the bag is refused with the topic and time; ticks whose
   sample is over one period old are counted in the report. The grid ends where a sensor topic
   ends or at the last command, whichever is first (recordings run on after the operator stops).
3. Observations: images fitted to the training cameras (:func:`gato_robot.ros.convert.fit_image`),
   proprioception as the simulator writes it (joints, joint velocities, gripper width, TCP pose
   from forward kinematics, :mod:`gato_robot.proprio`).
4. Actions, the 5-D Cartesian action (m/s, rad/s, gripper) the policy would have produced:
   ``command="twist"``: the recorded ``geometry_msgs/Twist(Stamped)`` (linear x, y, z; angular z).
   ``"joint"`` (``std_msgs/Float64MultiArray`` of the arm's positions, the node's forward
   interface) or ``"trajectory"`` (``trajectory_msgs/JointTrajectory``, first point): the TCP
   motion from the point the action path linearizes about (the last command, pulled to within
   the tracking bound of the measured joints: :meth:`CartesianActionMapper.anchor`) to the
   commanded pose, over one period. ``"measured"`` (no command recorded): the motion between
   consecutive measured TCP poses. The command answering tick t is the latest one stamped before
   tick t + 1. The gripper: the recorded finger command inverted through the action path's
   width rule, or, without one, the measured width's direction (closing, or opening to nearly
   fully open, by more than ``gripper_step_m`` per tick; held otherwise).
5. Success from the bag's label or a reward topic (``std_msgs/Float32`` or ``Float64``; the
   reward of tick t is the latest before tick t + 1, as the store's reward follows the action;
   success if the last one is positive); without a reward topic the reward is 1 on the final tick of a
   successful bag, else 0, so Gato's return filter keeps the successful ones.

The episode is written atomically (:class:`~gato_robot.data.episodes.EpisodeWriter`), under a seed
derived from the bag's name, so importing a bag again replaces its episode instead of adding one;
a bad bag raises before anything is written.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..action_spec import RGB_STACKING_ACTIONS, ActionSpec
from ..proprio import proprio_vector
from ..robot.description import PANDA, ArmDescription
from ..ros.bag import open_bag
from ..ros.convert import MessageError, fit_image, image_to_rgb, joint_state_to_sample, stamp_seconds
from ..task import RGB_STACKING
from .episodes import EpisodeStore

COMMAND_KINDS = ("measured", "joint", "trajectory", "twist")
COMMAND_TYPES = {"joint": ("std_msgs/msg/Float64MultiArray",), "trajectory": ("trajectory_msgs/msg/JointTrajectory",),
                 "twist": ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")}
REWARD_TYPES = ("std_msgs/msg/Float32", "std_msgs/msg/Float64")


class BagImportError(ValueError):
    """A bag that cannot become an episode; the text names the bag and the topic."""


@dataclass(frozen=True)
class BagTopics:
    """Topic names of one recording. ``cameras``: camera name -> sensor_msgs/Image topic."""

    cameras: dict[str, str]
    joint_states: str = "/joint_states"
    command: str | None = None  # None with command_kind "measured"
    command_kind: str = "measured"
    gripper_command: str | None = None  # std_msgs/Float64MultiArray finger positions (m); None: from the width
    reward: str | None = None

    def __post_init__(self) -> None:
        if self.command_kind not in COMMAND_KINDS:
            raise ValueError(f"command kind must be one of {COMMAND_KINDS}, got {self.command_kind!r}")
        if (self.command_kind == "measured") != (self.command is None):
            raise ValueError("a command topic goes with command kind joint, trajectory or twist; "
                             "kind 'measured' reads none")

    @classmethod
    def default(cls, camera_names: tuple[str, ...] = RGB_STACKING.camera_names, **overrides) -> "BagTopics":
        """The node's own topics: ``/<camera>/image_raw`` and ``/joint_states``."""
        return cls({name: f"/{name}/image_raw" for name in camera_names}, **overrides)


@dataclass(frozen=True)
class ImportConfig:
    rate_hz: float = 20.0  # the control grid (the policy's rate)
    max_age_s: float = 0.15  # a tick whose latest sample of a topic is older: a gap, the bag is refused
    image_size: tuple[int, int] = (RGB_STACKING.image_height, RGB_STACKING.image_width)  # the training cameras
    engine: str = "real"  # the store's engine field: where the episode came from
    task: str = "real"  # the store's triplet field: the task or object set
    instruction: str = RGB_STACKING.instruction
    gripper_step_m: float = 0.001  # width change per tick read as closing / opening (no gripper command)
    open_margin_m: float = 0.01  # an opening ends within this of fully open ...
    open_horizon_s: float = 1.0  # ... this soon

    def __post_init__(self) -> None:
        if not all(value > 0 for value in (self.rate_hz, self.max_age_s, self.gripper_step_m, self.open_margin_m,
                                           self.open_horizon_s)):
            raise ValueError("rate_hz, max_age_s, gripper_step_m, open_margin_m and open_horizon_s must be positive")


@dataclass
class BagImport:
    """What one bag became: the episode, and how well its topics covered the grid."""

    bag: Path
    episode: Path | None
    steps: int
    success: bool
    start_s: float
    skipped_start_s: float  # from the bag's first joint state to the first tick where every topic had arrived
    skipped_end_s: float  # from the last tick (a sensor ended, or the last command) to the last joint state
    late_ticks: dict[str, int] = field(default_factory=dict)  # topic -> ticks whose sample was over one period old
    largest_age_s: dict[str, float] = field(default_factory=dict)  # topic -> oldest sample any tick used


@dataclass
class _Series:
    """One topic's samples in stamp order."""

    topic: str
    stamps: list[float] = field(default_factory=list)
    values: list = field(default_factory=list)

    def add(self, bag: Path, stamp: float, value) -> None:
        if self.stamps and stamp <= self.stamps[-1]:
            what = "duplicated" if stamp == self.stamps[-1] else "unsorted"
            raise BagImportError(f"bag {bag}: topic {self.topic} has {what} stamps ({stamp:.6f} s after "
                                 f"{self.stamps[-1]:.6f} s); stamps must strictly increase")
        self.stamps.append(stamp)
        self.values.append(value)

    def at(self, bag: Path, ticks: np.ndarray, max_age_s: float, period: float, report: BagImport) -> list:
        """The latest sample at or before each tick; a tick with none, or only one older than
        ``max_age_s``, raises (a gap). Ticks whose sample is over one period old are counted."""
        stamps = np.asarray(self.stamps)
        index = np.searchsorted(stamps, ticks + 1e-9, side="right") - 1
        ages = ticks - stamps[np.maximum(index, 0)]
        bad = np.flatnonzero((index < 0) | (ages > max_age_s + 1e-9))
        if bad.size:
            first = bad[0]
            before = f"its previous sample is at {stamps[index[first]]:.3f} s" if index[first] >= 0 else "none before"
            raise BagImportError(f"bag {bag}: topic {self.topic} has no sample within {max_age_s:.3f} s of the tick "
                                 f"at {ticks[first]:.3f} s ({before}); record the topic without gaps or allow "
                                 "older samples (max_age_s)")
        report.late_ticks[self.topic] = int(np.sum(ages > period + 1e-9))
        report.largest_age_s[self.topic] = float(ages.max())
        return [self.values[i] for i in index]

    def latest_or(self, ticks: np.ndarray, default) -> list:
        """The latest sample at or before each tick, ``default`` before the first (no age limit:
        a reward or a gripper command holds until the next one)."""
        index = np.searchsorted(np.asarray(self.stamps), ticks + 1e-9, side="right") - 1
        return [self.values[i] if i >= 0 else default for i in index]


def episode_seed(bag: Path) -> int:
    """A stable 8-digit id from the bag's directory name: importing it again replaces its episode."""
    return zlib.crc32(Path(bag).resolve().name.encode()) % 100_000_000


class BagImporter:
    """Imports recordings of one arm into one store (see the module docstring for the rules)."""

    def __init__(self, store: EpisodeStore, topics: BagTopics, config: ImportConfig = ImportConfig(),
                 arm: ArmDescription = PANDA, spec: ActionSpec = RGB_STACKING_ACTIONS):
        from ..robot.action_path import CartesianActionMapper

        self.store, self.topics, self.config, self.arm, self.spec = store, topics, config, arm, spec
        self.mapper = CartesianActionMapper(arm, spec=spec)

    # -- reading ------------------------------------------------------------------------------
    def _read(self, bag: Path) -> dict[str, _Series]:
        topics, height_width = self.topics, self.config.image_size
        by_topic = {topic: ("camera", name) for name, topic in topics.cameras.items()}
        by_topic[topics.joint_states] = ("joints", None)
        for role, topic in (("command", topics.command), ("gripper", topics.gripper_command),
                            ("reward", topics.reward)):
            if topic is not None:
                by_topic[topic] = (role, None)
        series = {topic: _Series(topic) for topic in by_topic}
        with open_bag(bag) as reader:
            connections = [c for c in reader.connections if c.topic in by_topic]
            missing = sorted(set(by_topic) - {c.topic for c in connections})
            if missing:
                raise BagImportError(f"bag {bag} lacks topic(s) {missing}; it has "
                                     f"{sorted({c.topic for c in reader.connections})}")
            for connection in connections:
                self._check_type(bag, connection)
            for connection, timestamp, raw in reader.messages(connections=connections):
                message = reader.deserialize(raw, connection.msgtype)
                header = getattr(message, "header", None)
                stamp = (stamp_seconds(header.stamp) if header is not None else 0.0) or timestamp * 1e-9
                role, name = by_topic[connection.topic]
                try:
                    value = self._convert(role, message, height_width, stamp)
                except MessageError as error:
                    raise BagImportError(f"bag {bag}: topic {connection.topic} at {stamp:.3f} s: {error}") from error
                series[connection.topic].add(bag, stamp, value)
        empty = sorted(topic for topic, s in series.items() if not s.stamps)
        if empty:
            raise BagImportError(f"bag {bag}: topic(s) {empty} have no messages")
        return series

    def _check_type(self, bag: Path, connection) -> None:
        topics = self.topics
        expected = {topics.joint_states: ("sensor_msgs/msg/JointState",)}
        expected.update({topic: ("sensor_msgs/msg/Image",) for topic in topics.cameras.values()})
        if topics.command is not None:
            expected[topics.command] = COMMAND_TYPES[topics.command_kind]
        if topics.gripper_command is not None:
            expected[topics.gripper_command] = ("std_msgs/msg/Float64MultiArray",)
        if topics.reward is not None:
            expected[topics.reward] = REWARD_TYPES
        if connection.msgtype not in expected[connection.topic]:
            raise BagImportError(f"bag {bag}: topic {connection.topic} carries {connection.msgtype}, "
                                 f"expected {' or '.join(expected[connection.topic])}")

    def _convert(self, role: str, message, height_width: tuple[int, int], stamp: float):
        if role == "camera":
            return fit_image(image_to_rgb(message), *height_width)
        if role == "joints":
            return joint_state_to_sample(message, self.arm.arm_joints, self.arm.finger_joints, stamp)
        if role == "reward":
            return float(message.data)
        if role == "gripper":
            return float(np.sum(np.asarray(message.data, dtype=np.float64)))  # finger positions -> width (m)
        kind = self.topics.command_kind
        if kind == "twist":
            twist = getattr(message, "twist", message)
            motion = np.array([twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z], dtype=np.float64)
            if not np.all(np.isfinite(motion)):
                raise MessageError(f"twist command has a non-finite value: {motion.tolist()}")
            return motion
        if kind == "joint":
            positions = np.asarray(message.data, dtype=np.float64)
        else:
            if not message.points:
                raise MessageError("joint trajectory has no points")
            names = list(message.joint_names)
            missing = [n for n in self.arm.arm_joints if n not in names]
            if missing:
                raise MessageError(f"joint trajectory lacks joint(s) {missing}; it has {names}")
            values = np.asarray(message.points[0].positions, dtype=np.float64)
            if values.size != len(names):
                raise MessageError(f"joint trajectory names {len(names)} joints but its first point has "
                                   f"{values.size} positions")
            positions = np.array([values[names.index(n)] for n in self.arm.arm_joints])
        if positions.shape != (len(self.arm.arm_joints),) or not np.all(np.isfinite(positions)):
            raise MessageError(f"joint command: expected {len(self.arm.arm_joints)} finite positions (rad), "
                               f"got {positions.tolist()}")
        return positions

    # -- the episode --------------------------------------------------------------------------
    def import_bag(self, bag: str | Path, success: bool | None = None) -> BagImport:
        """Read, check and convert one bag, then commit its episode. ``success`` labels the bag;
        None reads it from the reward topic."""
        bag = Path(bag)
        topics, config = self.topics, self.config
        if success is None and topics.reward is None:
            raise BagImportError(f"bag {bag}: no success label: label the bag or name a reward topic")
        series = self._read(bag)
        period = 1.0 / config.rate_hz
        sensors = [topics.joint_states, *topics.cameras.values()]
        joints = series[topics.joint_states]
        start = max(series[t].stamps[0] for t in sensors)
        if topics.command:  # the first tick is the first one a command answers (within one period)
            late = series[topics.command].stamps[0] - (start + period)
            start += period * max(0, int(np.ceil(late / period - 1e-9)))
        # The grid ends where a sensor stops, or at the last command (a recording runs on after it).
        end = min([series[t].stamps[-1] for t in sensors] + ([series[topics.command].stamps[-1]] if topics.command
                                                              else []))
        ticks = start + period * np.arange(int(np.floor((end - start) / period + 1e-9)) + 1)
        if end < start or len(ticks) < 3:
            raise BagImportError(f"bag {bag}: fewer than 3 control ticks at {config.rate_hz} Hz between the instant "
                                 f"every topic has arrived ({start:.3f} s) and the first to end ({end:.3f} s)")
        report = BagImport(bag, None, 0, False, float(start), float(start - joints.stamps[0]),
                           float(joints.stamps[-1] - ticks[-1]))
        samples = joints.at(bag, ticks, config.max_age_s, period, report)
        images = {name: series[topic].at(bag, ticks, config.max_age_s, period, report)
                  for name, topic in topics.cameras.items()}
        # The command answering tick t, and the reward that followed it: the latest before tick t + 1.
        answers = ticks + period - 1e-6
        commands = (series[topics.command].at(bag, answers, config.max_age_s + period, period, report)
                    if topics.command else None)
        widths_commanded = (series[topics.gripper_command].latest_or(answers, self.arm.max_gripper_width_m)
                            if topics.gripper_command else None)  # open until the first gripper command
        rewards = (np.array(series[topics.reward].latest_or(answers, 0.0), dtype=np.float64)
                   if topics.reward else None)

        positions = np.stack([s.positions for s in samples])
        actions = self._actions(positions, np.array([s.gripper_width for s in samples]), commands, widths_commanded,
                                period)
        steps = len(actions)  # "measured" needs the next pose: one tick fewer
        if success is None:
            success = bool(rewards[steps - 1] > 0)
        if rewards is None:
            rewards = np.zeros(len(ticks))
            rewards[steps - 1] = 1.0 if success else 0.0
        self._check_not_another_bags_episode(bag)
        kinematics = self.mapper.kinematics
        writer = self.store.writer(config.engine, config.task, episode_seed(bag), config.instruction,
                                   attributes={"source_bag": bag.resolve().name})
        for t in range(steps):
            sample = samples[t]
            proprio = proprio_vector({"joint_positions": sample.positions, "joint_velocities": sample.velocities,
                                      "gripper_width": [sample.gripper_width],
                                      "tcp_pose": kinematics.tcp_pose(sample.positions)})
            writer.add({name: frames[t] for name, frames in images.items()}, proprio, actions[t], rewards[t])
        report.episode, report.steps, report.success = writer.commit(success).path, steps, success
        return report

    def _check_not_another_bags_episode(self, bag: Path) -> None:
        """Re-importing a bag replaces its episode; two bags whose names share an id must not."""
        import h5py

        path = self.store.episode_path(self.config.engine, self.config.task, episode_seed(bag))
        if path.is_file():
            with h5py.File(path, "r") as existing:
                source = str(existing.attrs.get("source_bag", ""))
            if source != bag.resolve().name:
                raise BagImportError(f"bag {bag}: its episode id {episode_seed(bag)} is taken by {path.name} "
                                     f"(from {source or 'a simulator'}); rename the bag directory")

    def _actions(self, positions: np.ndarray, widths: np.ndarray, commands: list | None,
                 widths_commanded: list | None, period: float) -> np.ndarray:
        """(T, 7) measured joints (rad), (T,) widths (m) -> (T', 5) physical actions (T' = T, or
        T - 1 where the motion is read off the next measured pose)."""
        kind = self.topics.command_kind
        if kind == "measured":
            poses = [self._tcp(q) for q in positions]
            motion = np.array([self._tcp_motion(a, b, period) for a, b in zip(poses[:-1], poses[1:])])
        elif kind == "twist":
            motion = np.stack(commands)
        else:
            motion, previous = [], None
            for q, command in zip(positions, commands):
                anchor = self.mapper.anchor(q, previous)
                motion.append(self._tcp_motion(self._tcp(anchor), self._tcp(command), period))
                previous = command
            motion = np.array(motion)
        steps = len(motion)
        if widths_commanded is not None:  # the action path's width rule, inverted: width = max (1 - g) / 2
            gripper = 1.0 - 2.0 * np.asarray(widths_commanded[:steps]) / self.arm.max_gripper_width_m
        else:
            gripper = self._gripper_from_widths(widths)[:steps]
        actions = np.concatenate([motion, np.asarray(gripper)[:, None]], axis=1)
        bounds = np.asarray(self.spec.bounds)
        return np.clip(actions, -bounds, bounds)

    def _tcp(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        """TCP position (m, base frame) and yaw (rad) at joint positions ``q`` (copied out of
        Pinocchio's data, which the next forward-kinematics call overwrites)."""
        from ..robot.action_path import yaw_of

        transform = self.mapper.kinematics.tcp_transform(q)
        return transform.translation.copy(), yaw_of(transform.rotation)

    @staticmethod
    def _tcp_motion(start: tuple[np.ndarray, float], end: tuple[np.ndarray, float], period: float) -> np.ndarray:
        """Two TCP poses one period apart -> (vx, vy, vz) m/s and the yaw rate (rad/s)."""
        from ..robot.action_path import wrap_angle

        return np.array([*(end[0] - start[0]) / period, wrap_angle(end[1] - start[1]) / period])

    def _gripper_from_widths(self, widths: np.ndarray) -> np.ndarray:
        """Measured finger width (m) per tick -> gripper command per tick (+1 close, -1 open).

        Closing: from the tick before the width drops by more than ``gripper_step_m``. Opening:
        from the tick before it rises by that much *and* reaches within ``open_margin_m`` of fully
        open within ``open_horizon_s`` (fingers that close on an object rebound by ~1 cm; that
        is not an opening). Held in between; before any change, closed if under half open."""
        config, full = self.config, self.arm.max_gripper_width_m
        horizon = max(1, int(round(config.open_horizon_s * config.rate_hz)))
        state = 1.0 if widths[0] < full / 2 else -1.0
        commands = np.empty(len(widths))
        for t in range(len(widths)):
            change = widths[t + 1] - widths[t] if t + 1 < len(widths) else 0.0
            if change < -config.gripper_step_m:
                state = 1.0
            elif change > config.gripper_step_m and widths[t + 1:t + 1 + horizon].max() >= full - config.open_margin_m:
                state = -1.0
            commands[t] = state
        return commands


def import_bags(bags: list[Path], importer: BagImporter, labels: dict[str, bool] | None = None,
                success: bool | None = None, progress: bool = True) -> list[BagImport]:
    """Import bags one by one (each episode is committed whole before the next bag is read).
    ``labels`` (bag directory name -> success) takes precedence over ``success``."""
    from tqdm import tqdm

    return [importer.import_bag(bag, (labels or {}).get(Path(bag).resolve().name, success))
            for bag in tqdm(bags, desc="import bags", unit="bag", disable=not progress)]
