"""rosbag2 replay reproduces the live loop; message conversion agrees with rclpy and rosbags."""

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from typer.testing import CliRunner

from gato_robot.robot.action_path import CartesianActionMapper
from gato_robot.cli import app
from gato_robot.deploy.control import ControlLoop
from gato_robot.deploy.policy import load_policy
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.model.config import preset
from gato_robot.model.policy import GatoPolicy
from gato_robot.deploy.replay import ReplayTopics, replay_bag
from gato_robot.ros.convert import MessageError, image_to_rgb, joint_state_to_sample, rgb_to_image_fields
from gato_robot.observation import Frame, JointSample
from gato_robot.sim.rollout import make_env

TYPES = get_typestore(Stores.ROS2_JAZZY)
ARM = [f"panda_joint{i}" for i in range(1, 8)]
FINGERS = ["panda_finger_joint1", "panda_finger_joint2"]


def ros_time(seconds: float):
    sec = int(seconds)
    return TYPES.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def header(seconds: float):
    return TYPES.types["std_msgs/msg/Header"](stamp=ros_time(seconds), frame_id="")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    return save_checkpoint(GatoPolicy(preset("tiny")), tmp_path_factory.mktemp("replay") / "tiny")


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_replay_reproduces_the_live_commands_bit_for_bit(tmp_path, checkpoint, storage):
    """Live: MuJoCo driven by ControlLoop for 40 ticks, every sensor sample written to a rosbag2 as
    it is fed to the loop. Replay: the same policy over the bag must send identical commands."""
    env = make_env("mujoco", "test-1-slanted")
    live = ControlLoop(load_policy(checkpoint), CartesianActionMapper())
    bag = tmp_path / "episode"
    Image, JointState = TYPES.types["sensor_msgs/msg/Image"], TYPES.types["sensor_msgs/msg/JointState"]
    commands = []
    with Writer(bag, version=9, storage_plugin=storage) as writer:
        connections = {name: writer.add_connection(f"/{name}/image_raw", Image.__msgtype__, typestore=TYPES)
                       for name in ("front_left", "front_right")}
        joints_connection = writer.add_connection("/joint_states", JointState.__msgtype__, typestore=TYPES)
        observation, _ = env.reset(seed=7)
        for tick in range(40):
            now = tick * 0.05
            width = float(observation["gripper_width"][0])
            frames = {name: Frame(observation[name], now) for name in connections}
            joints = JointSample(observation["joint_positions"], observation["joint_velocities"], width, now)
            if tick == 0:
                live.enable(joints)
            for name, connection in connections.items():
                fields = rgb_to_image_fields(observation[name])
                fields["data"] = np.frombuffer(fields["data"], np.uint8)
                message = Image(header=header(now), **fields)
                writer.write(connection, int(now * 1e9), TYPES.serialize_cdr(message, Image.__msgtype__))
            message = JointState(header=header(now), name=ARM + FINGERS,
                                 position=np.r_[observation["joint_positions"], width / 2, width / 2],
                                 velocity=np.r_[observation["joint_velocities"], 0.0, 0.0], effort=np.zeros(0))
            writer.write(joints_connection, int(now * 1e9), TYPES.serialize_cdr(message, JointState.__msgtype__))
            result = live.tick(now, frames, joints)
            commands.append(result.command)
            observation, *_ = env.step_joint_command(result.command)
    env.close()

    replayed = replay_bag(bag, ControlLoop(load_policy(checkpoint), CartesianActionMapper()),
                          ReplayTopics.default(("front_left", "front_right")))
    assert replayed.states == ["active"] * 40
    np.testing.assert_array_equal(replayed.arm_commands, np.stack([c.arm_positions for c in commands]))
    np.testing.assert_array_equal(replayed.gripper_commands, [c.gripper_width for c in commands])

    out = tmp_path / "commands.npz"
    result = CliRunner().invoke(app, ["replay", str(bag), "--model", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "40 ticks (40 active, 0 held)" in result.output
    np.testing.assert_array_equal(np.load(out)["arm_commands"], replayed.arm_commands)


def test_replay_names_missing_topics_and_bags(tmp_path, checkpoint):
    loop = ControlLoop(load_policy(checkpoint), CartesianActionMapper())
    with pytest.raises(FileNotFoundError, match="rosbag2 not found"):
        replay_bag(tmp_path / "nope", loop, ReplayTopics.default(("front_left", "front_right")))
    bag = tmp_path / "joints-only"
    with Writer(bag, version=9) as writer:
        writer.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=TYPES)
    with pytest.raises(ValueError, match="lacks topic"):
        replay_bag(bag, loop, ReplayTopics.default(("front_left", "front_right")))


def rclpy_image(**fields):
    from sensor_msgs.msg import Image

    message = Image()
    for key, value in fields.items():
        setattr(message, key, value)
    return message


def test_image_conversion_agrees_between_rclpy_and_rosbags():
    from rclpy.serialization import serialize_message

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    message = rclpy_image(**rgb_to_image_fields(rgb))
    decoded = TYPES.deserialize_cdr(serialize_message(message), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_rgb(message), rgb)
    np.testing.assert_array_equal(image_to_rgb(decoded), rgb)
    assert (decoded.height, decoded.width, decoded.step, decoded.encoding) == (6, 5, 15, "rgb8")


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "rgb16-be", "rgb16-le", "mono16-le"])
def test_encodings_steps_and_byte_order(encoding):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    name, _, order = encoding.partition("-")
    if name == "bgr8":
        pixels = rgb[..., ::-1]
    elif name in ("rgba8", "bgra8"):
        body = rgb if name == "rgba8" else rgb[..., ::-1]
        pixels = np.concatenate([body, np.full((4, 3, 1), 255, np.uint8)], axis=2)
    elif name.startswith("mono"):
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
        pixels = rgb[..., :1]
    else:
        pixels = rgb
    if name.endswith("16"):
        pixels = pixels.astype(">u2" if order == "be" else "<u2") * 257
    raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(4, -1)
    padded = np.concatenate([raw, np.zeros((4, 7), np.uint8)], axis=1)  # 7 bytes of row padding
    message = rclpy_image(height=4, width=3, encoding=name, is_bigendian=int(order == "be"),
                          step=padded.shape[1], data=padded.tobytes())
    np.testing.assert_array_equal(image_to_rgb(message), rgb)


def test_bad_messages_are_named():
    with pytest.raises(MessageError, match="encoding 'yuv422' is not supported"):
        image_to_rgb(rclpy_image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)))
    with pytest.raises(MessageError, match="step 5 is smaller than"):
        image_to_rgb(rclpy_image(height=2, width=2, encoding="rgb8", step=5, data=bytes(10)))
    with pytest.raises(MessageError, match="expected step x height = 12"):
        image_to_rgb(rclpy_image(height=2, width=2, encoding="rgb8", step=6, data=bytes(8)))
    from sensor_msgs.msg import JointState

    message = JointState(name=ARM[:6] + FINGERS, position=[0.0] * 8)
    with pytest.raises(MessageError, match=r"lacks joint\(s\) \['panda_joint7'\]"):
        joint_state_to_sample(message, tuple(ARM), tuple(FINGERS), 0.0)
    shuffled = JointState(name=FINGERS + ARM[::-1], position=[0.01, 0.02, *range(7, 0, -1)])
    sample = joint_state_to_sample(shuffled, tuple(ARM), tuple(FINGERS), 1.5)
    np.testing.assert_array_equal(sample.positions, np.arange(1, 8))
    assert sample.gripper_width == pytest.approx(0.03) and np.all(sample.velocities == 0)
