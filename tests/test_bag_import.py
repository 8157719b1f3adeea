"""rosbag2 -> episode store: simulated expert episodes recorded through real rclpy topics import
back to the simulator's own episodes; bad bags are refused by name, with nothing written."""

import os
import shutil

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from gato_robot.cli import app
from gato_robot.data.bag_import import BagImporter, BagImportError, BagTopics, ImportConfig, episode_seed
from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.errors import DamagedFileError
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.model.config import preset
from gato_robot.model.policy import GatoPolicy
from gato_robot.proprio import proprio_vector
from gato_robot.ros.convert import rgb_to_image_fields
from gato_robot.sim.expert import ExpertConfig
from gato_robot.sim.rollout import ExpertAgent, make_env

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float32, Float64MultiArray, Header  # noqa: E402

TYPES = get_typestore(Stores.ROS2_JAZZY)
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]
CAMERAS = ("front_left", "front_right")
PERIOD = 0.05
CLOCK_START_S = 1000.0  # the simulated clock at the first tick (a zero stamp means "unset" in ROS)
COMMAND_LATENCY_S = 0.01  # the command answering tick t is stamped this long after it
ARM_TOPIC, GRIPPER_TOPIC = "/forward_position_controller/commands", "/gripper_forward_controller/commands"
TOPICS = {**{f"/{name}/image_raw": Image for name in CAMERAS}, "/joint_states": JointState,
          ARM_TOPIC: Float64MultiArray, GRIPPER_TOPIC: Float64MultiArray, "/reward": Float32}
NODE_TOPICS = BagTopics.default(CAMERAS, command=ARM_TOPIC, command_kind="joint", gripper_command=GRIPPER_TOPIC,
                                reward="/reward")


def msgtype(message_class) -> str:
    return f"{message_class.__module__.split('.')[0]}/msg/{message_class.__name__}"


def ros_time(seconds: float):
    sec = int(seconds)
    return rclpy.time.Time(seconds=sec, nanoseconds=int(round((seconds - sec) * 1e9))).to_msg()


class SimulatedCell:
    """A simulated arm on real rclpy topics, and ``ros2 bag record --use-sim-time`` in miniature:
    raw subscriptions (the serialized CDR a rosbag2 stores) written with rosbags, each stamped by
    the simulation clock at the moment it was published."""

    def __init__(self, context):
        self.context = context
        self.cell = rclpy.create_node("simulated_cell", context=context)
        self.recorder = rclpy.create_node("bag_recorder", context=context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {topic: self.cell.create_publisher(kind, topic, qos) for topic, kind in TOPICS.items()}
        self.received: list[tuple[str, bytes]] = []
        for topic, kind in TOPICS.items():
            self.recorder.create_subscription(kind, topic, lambda raw, topic=topic: self.received.append((topic, raw)),
                                              qos, raw=True)
        self.executor = SingleThreadedExecutor(context=context)
        for node in (self.cell, self.recorder):
            self.executor.add_node(node)
        deadline = 100
        while any(p.get_subscription_count() == 0 for p in self.publishers.values()) and deadline:
            self.executor.spin_once(timeout_sec=0.05)
            deadline -= 1

    def publish(self, writer, connections, messages: list[tuple[str, object]], now_s: float) -> None:
        """Publish, then wait until the recorder has every message and write them at ``now_s``."""
        for topic, message in messages:
            self.publishers[topic].publish(message)
        for _ in range(400):
            if len(self.received) >= len(messages):
                break
            self.executor.spin_once(timeout_sec=0.01)
        assert len(self.received) == len(messages), f"recorder got {len(self.received)} of {len(messages)}"
        for topic, raw in self.received:
            writer.write(connections[topic], int(round(now_s * 1e9)), raw)
        self.received.clear()

    def record_expert_episode(self, bag, store: EpisodeStore, seed: int, max_steps: int = 400):
        """Drive the sim with the scripted expert (its clean action through the action path, as
        `sim generate` with zero noise), write the simulator's episode to ``store`` and the topics to ``bag``."""
        env = make_env("mujoco", "train")
        agent = ExpertAgent(ExpertConfig())  # no DART noise: the clean expert
        observation, info = env.reset(seed=seed)
        agent.reset(env, seed)
        sim_episode = store.writer("mujoco", "train", seed, "stack the red object on the blue object")
        last_command, success = None, False
        with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
            connections = {topic: writer.add_connection(topic, msgtype(kind), typestore=TYPES)
                           for topic, kind in TOPICS.items()}
            for tick in range(max_steps):
                now = CLOCK_START_S + tick * PERIOD
                width = float(observation["gripper_width"][0])
                sensors = [(f"/{name}/image_raw", Image(header=Header(stamp=ros_time(now)), **rgb_to_image_fields(observation[name])))
                           for name in CAMERAS]
                sensors.append(("/joint_states", JointState(
                    header=Header(stamp=ros_time(now)), name=ARM + FINGERS,
                    position=[*observation["joint_positions"], width / 2, width / 2],
                    velocity=[*observation["joint_velocities"], 0.0, 0.0])))
                self.publish(writer, connections, sensors, now)
                action = agent.act(observation, info)
                command = env.mapper(env.mapper.anchor(observation["joint_positions"], last_command), action)
                last_command = command.arm_positions
                self.publish(writer, connections, [
                    (ARM_TOPIC, Float64MultiArray(data=[float(v) for v in command.arm_positions])),
                    (GRIPPER_TOPIC, Float64MultiArray(data=[command.gripper_width / 2] * 2))], now + COMMAND_LATENCY_S)
                next_observation, reward, terminated, truncated, info = env.step_joint_command(command)
                self.publish(writer, connections, [("/reward", Float32(data=reward))], now + 2 * COMMAND_LATENCY_S)
                sim_episode.add({name: observation[name] for name in CAMERAS}, proprio_vector(observation), action, reward)
                observation = next_observation
                if terminated or truncated:
                    success = bool(terminated)
                    break
        env.close()
        return sim_episode.commit(success)

    def close(self) -> None:
        self.executor.shutdown()
        self.cell.destroy_node()
        self.recorder.destroy_node()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Five expert episodes recorded through rclpy topics into bags, and the simulator's own."""
    os.environ["ROS_DOMAIN_ID"] = str(1 + (os.getpid() + 37) % 100)
    context = rclpy.Context()
    rclpy.init(context=context)
    root = tmp_path_factory.mktemp("bags")
    sim_store = EpisodeStore(root / "sim-store", create=True)
    cell = SimulatedCell(context)
    try:
        bags, episodes = [], []
        for seed in range(5):
            bags.append(root / f"demo-{seed}")
            episodes.append(cell.record_expert_episode(bags[-1], sim_store, 9100 + seed))
    finally:
        cell.close()
        rclpy.shutdown(context=context)
    return root, bags, episodes


def test_recorded_bags_import_to_the_simulators_episodes(recorded, tmp_path):
    root, bags, episodes = recorded
    store = EpisodeStore(tmp_path / "store", create=True)
    importer = BagImporter(store, NODE_TOPICS)
    bounds = np.asarray(importer.spec.bounds)
    assert sum(e.success for e in episodes) >= 4  # the expert stacks; its episodes are worth importing
    for bag, episode in zip(bags, episodes):
        report = importer.import_bag(bag)  # success from the reward topic
        assert report.success == episode.success and report.steps == episode.steps
        assert report.late_ticks == {topic: 0 for topic in report.late_ticks}
        with EpisodeReader(report.episode) as imported, EpisodeReader(episode.path) as simulated:
            for name in CAMERAS:  # the same frames, through rclpy's serialization and back
                np.testing.assert_array_equal(imported.images(0, imported.steps)[name],
                                              simulated.images(0, simulated.steps)[name])
            np.testing.assert_allclose(imported.proprio(), simulated.proprio(), atol=1e-6)  # FK = the sim's TCP
            np.testing.assert_array_equal(imported.file["rewards"][()], simulated.file["rewards"][()])
            error = np.abs(imported.actions() - simulated.actions()) / bounds
            # The arm's action: recovered from the joint command by forward kinematics; the action
            # path is a damped least-squares step, exact to first order in one 50 ms period.
            assert np.percentile(error[:, :4], 95) < 0.05, np.percentile(error[:, :4], 95, axis=0)
            assert error[:, :4].mean() < 0.02
            np.testing.assert_allclose(imported.actions()[:, 4], simulated.actions()[:, 4], atol=1e-6)
    assert len(store) == len(bags)
    importer.import_bag(bags[0])  # again: the same episode file is replaced, nothing added
    assert len(store) == len(bags)
    assert store.episode_path("real", "real", episode_seed(bags[0])).is_file()


def test_actions_from_measured_poses_alone_follow_the_commands(recorded, tmp_path):
    """Without a command topic the action is the measured TCP motion: the arm lags its commands,
    so it agrees with the expert's action in sign and roughly in size, not to 1e-3."""
    _, bags, episodes = recorded
    store = EpisodeStore(tmp_path / "store", create=True)
    report = BagImporter(store, BagTopics.default(CAMERAS)).import_bag(bags[0], success=episodes[0].success)
    assert report.steps == episodes[0].steps - 1  # the last pose has no successor
    with EpisodeReader(report.episode) as imported, EpisodeReader(episodes[0].path) as simulated:
        measured, commanded = imported.actions(), simulated.actions()[:-1]
        moving = np.abs(commanded[:, :3]) > 0.5 * 0.07
        assert np.mean(np.sign(measured[:, :3][moving]) == np.sign(commanded[:, :3][moving])) > 0.9
        agreement = np.mean(np.sign(measured[:, 4]) == np.sign(commanded[:, 4]))
        assert agreement > 0.9, agreement  # the width rule lags the command by a tick or two


def test_finetune_on_imported_episodes_then_export(recorded, tmp_path):
    """The documented path: import bags -> fine-tune a pretrained checkpoint -> export ONNX."""
    _, bags, _ = recorded
    runner = CliRunner()
    store = tmp_path / "store"
    result = runner.invoke(app, ["data", "import-bag", *map(str, bags), "--store", str(store), "--command", "joint",
                                 "--command-topic", ARM_TOPIC, "--gripper-command-topic", GRIPPER_TOPIC,
                                 "--reward-topic", "/reward"])
    assert result.exit_code == 0, result.output
    assert "5 bag(s)" in result.output
    result = runner.invoke(app, ["data", "info", str(store)])
    assert result.exit_code == 0 and "kept by the 80% return filter 5" in result.output, result.output
    episode = EpisodeStore(store).paths()[0]
    result = runner.invoke(app, ["data", "sheet", str(episode), "--out", str(tmp_path / "sheet.png"), "--rows", "4"])
    assert result.exit_code == 0, result.output
    import cv2

    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (4 * (18 + 128), 2 * 128, 3)

    torch.manual_seed(0)
    pretrained = save_checkpoint(GatoPolicy(preset("tiny")), tmp_path / "pretrained")
    run = tmp_path / "run"
    result = runner.invoke(app, ["finetune", "--pretrained", str(pretrained), "--store", str(store),
                                 "--run", str(run), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "fine-tuned on 5 episodes" in result.output  # every usable imported episode by default
    result = runner.invoke(app, ["export", "onnx", str(run / "checkpoint"), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    from gato_robot.runtime.factory import load_runner

    tuned, initial = load_file(run / "checkpoint" / "model.safetensors"), load_file(pretrained / "model.safetensors")
    assert any(not torch.equal(tuned[name], initial[name]) for name in initial)  # the 3 steps trained it
    assert load_runner("onnxruntime", tmp_path / "onnx").config.timestep.camera_names == CAMERAS


def write_bag(path, topics: dict[str, str], messages: list[tuple[str, float, object]], storage=StoragePlugin.SQLITE3):
    """A bag written with rosbags alone: topic -> message type; (topic, bag time s, message)."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {topic: writer.add_connection(topic, kind, typestore=TYPES) for topic, kind in topics.items()}
        for topic, now, message in messages:
            writer.write(connections[topic], int(round(now * 1e9)),
                         TYPES.serialize_cdr(message, topics[topic]))
    return path


START_S = 100.0  # header stamps of the synthetic bags (a zero stamp means "unset" in ROS)


def sensor_messages(ticks: int, stamps=None, encoding: str = "rgb8", skip: set[int] = frozenset()):
    """Camera images and joint states at 20 Hz, header-stamped by ``stamps`` (default on the grid)."""
    Img, JS = TYPES.types["sensor_msgs/msg/Image"], TYPES.types["sensor_msgs/msg/JointState"]
    Header, Time = TYPES.types["std_msgs/msg/Header"], TYPES.types["builtin_interfaces/msg/Time"]
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.8])
    messages = []
    for tick, now in enumerate(stamps if stamps is not None else START_S + np.arange(ticks) * PERIOD):
        received = START_S + tick * PERIOD + 0.001  # the bag's own (receive) time stays in order
        if tick in skip:
            continue
        header = Header(stamp=Time(sec=int(now), nanosec=int(round((now - int(now)) * 1e9))), frame_id="")
        pixels = np.full((64, 64, 3), tick % 255, np.uint8)
        for name in CAMERAS:
            messages.append((f"/{name}/image_raw", received, Img(header=header, height=64, width=64, encoding=encoding,
                                                             is_bigendian=0, step=192, data=pixels.reshape(-1))))
        messages.append(("/joint_states", received, JS(header=header, name=ARM + FINGERS,
                                                  position=np.r_[q + 0.001 * tick, 0.04, 0.04],
                                                  velocity=np.zeros(9), effort=np.zeros(0))))
    return messages


SENSOR_TYPES = {**{f"/{name}/image_raw": "sensor_msgs/msg/Image" for name in CAMERAS},
                "/joint_states": "sensor_msgs/msg/JointState"}


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_a_good_synthetic_bag_fits_images_and_labels_success(tmp_path, storage):
    bag = write_bag(tmp_path / "good", SENSOR_TYPES, sensor_messages(10), storage)
    store = EpisodeStore(tmp_path / "store", create=True)
    report = BagImporter(store, BagTopics.default(CAMERAS)).import_bag(bag, success=True)
    assert report.steps == 9 and report.success
    with EpisodeReader(report.episode) as episode:
        assert episode.images(0, 1)["front_left"].shape == (1, 128, 128, 3)  # fitted to the training cameras
        assert episode.file.attrs["source_bag"] == "good"
        rewards = episode.file["rewards"][()]
        assert rewards[-1] == 1.0 and rewards[:-1].sum() == 0  # the return filter keeps a labelled success
    assert store.episodes(0.8)


def stamps_with(ticks: int, index: int, value: float) -> np.ndarray:
    stamps = START_S + np.arange(ticks) * PERIOD
    stamps[index] = START_S + value
    return stamps


@pytest.mark.parametrize("case, messages, topics, match", [
    ("missing topic", lambda: [m for m in sensor_messages(10) if m[0] != "/front_right/image_raw"],
     {k: v for k, v in SENSOR_TYPES.items() if k != "/front_right/image_raw"}, r"lacks topic\(s\) \['/front_right/image_raw'\]"),
    ("unsorted stamps", lambda: sensor_messages(10, stamps_with(10, 5, 0.1)), SENSOR_TYPES, "unsorted stamps"),
    ("duplicated stamps", lambda: sensor_messages(10, stamps_with(10, 5, 0.2)), SENSOR_TYPES, "duplicated stamps"),
    ("wrong encoding", lambda: sensor_messages(10, encoding="yuv422"), SENSOR_TYPES, "encoding 'yuv422'"),
    ("gap", lambda: sensor_messages(20, skip=set(range(5, 12))), SENSOR_TYPES, "no sample within 0.150 s"),
    ("wrong type", lambda: sensor_messages(10), {**SENSOR_TYPES, "/joint_states": "sensor_msgs/msg/JointState"},
     None),
])
def test_bad_bags_are_refused_by_name_and_nothing_is_written(tmp_path, case, messages, topics, match):
    if match is None:  # a topic with the wrong message type: the command topic carries images
        bag = write_bag(tmp_path / "bag", SENSOR_TYPES, sensor_messages(10))
        topics_arg = BagTopics.default(CAMERAS, command="/front_left/image_raw", command_kind="twist")
        match = r"topic /front_left/image_raw carries sensor_msgs/msg/Image, expected geometry_msgs"
    else:
        bag = write_bag(tmp_path / "bag", topics, messages())
        topics_arg = BagTopics.default(CAMERAS)
    store = EpisodeStore(tmp_path / "store", create=True)
    with pytest.raises(BagImportError, match=match) as error:
        BagImporter(store, topics_arg).import_bag(bag, success=True)
    assert str(bag) in str(error.value)
    assert list(store.root.iterdir()) == []  # nothing half-written


def test_truncated_and_missing_bags_and_missing_labels(tmp_path):
    bag = write_bag(tmp_path / "bag", SENSOR_TYPES, sensor_messages(10))
    store = EpisodeStore(tmp_path / "store", create=True)
    importer = BagImporter(store, BagTopics.default(CAMERAS))
    with pytest.raises(BagImportError, match="no success label"):
        importer.import_bag(bag)
    with pytest.raises(FileNotFoundError, match="rosbag2 not found"):
        importer.import_bag(tmp_path / "nope", success=True)
    database = next(bag.glob("*.db3"))
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 3])
    with pytest.raises(DamagedFileError, match="rosbag2"):
        importer.import_bag(bag, success=True)
    assert list(store.root.iterdir()) == []
    with pytest.raises(ValueError, match="command topic goes with command kind"):
        BagTopics.default(CAMERAS, command_kind="joint")
    with pytest.raises(ValueError, match="positive"):
        ImportConfig(max_age_s=0)
    shutil.rmtree(bag)
