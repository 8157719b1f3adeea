"""Every reader turns a damaged file into DamagedFileError naming it (issue "Bad files"): truncated,
bit-flipped, empty and wrong-type copies of valid files, drawn by hypothesis.

A bit flip may land where no format can notice it (a weight's low bits, an HDF5 padding byte):
then the file must still load, never fail with another error type. Every other damage must fail
with the project's error, the path in its message.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from gato_robot.calibration.errors import CalibrationError
from gato_robot.calibration.files import CameraInfo, Extrinsics, read_camera_info, read_extrinsics, write_camera_info, \
    write_extrinsics
from gato_robot.calibration.poses import read_poses, write_poses
from gato_robot.robot.action_path import CartesianActionMapper
from gato_robot.baselines import bc_imp
from gato_robot.cli.calibrate import _load_images
from gato_robot.deploy.control import ControlLoop
from gato_robot.deploy.policy import load_policy
from gato_robot.data.episodes import EpisodeReader, EpisodeStore, verify_episode
from gato_robot.errors import DamagedFileError
from gato_robot.model.checkpoint import load_checkpoint, save_checkpoint
from gato_robot.model.config import preset
from gato_robot.model.policy import GatoPolicy
from gato_robot.deploy.replay import ReplayTopics, replay_bag
from gato_robot.ros.convert import MessageError
from gato_robot.robot.description import PANDA
from gato_robot.runtime.export import export_onnx
from gato_robot.runtime.onnx_runner import OnnxRunner

DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.95)),
    st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(0, 7)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("wrong type"), st.sampled_from([b"\x89PNG\r\n\x1a\n" + bytes(64), b'{"kind": 3}', b"- a\n- b\n",
                                                      bytes(range(256)) * 4])),
)
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def damage(source: Path, target: Path, how: tuple) -> None:
    """Write ``source``'s bytes to ``target`` with damage ``how``."""
    data = bytearray(source.read_bytes())
    if how[0] == "truncate":
        data = data[:int(len(data) * how[1])]
    elif how[0] == "flip":
        data[min(int(len(data) * how[1]), len(data) - 1)] ^= 1 << how[2]
    elif how[0] == "empty":
        data = bytearray()
    else:
        data = bytearray(how[1])
    target.write_bytes(bytes(data))


def expect_damage_named(load, path: Path, how: tuple, also: tuple[type[BaseException], ...] = ()) -> None:
    """``load()`` raises DamagedFileError (or one of ``also``, the format's own validation error)
    naming ``path``; for a bit flip it may instead succeed."""
    try:
        load()
    except (DamagedFileError, *also) as error:
        assert str(path) in str(error) or path.name in str(error), error
        return
    assert how[0] == "flip", f"{how}: the damaged file {path} loaded without an error"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """One valid file of every format the project reads."""
    from gato_robot.sim.rollout import make_env

    root = tmp_path_factory.mktemp("valid")
    torch.manual_seed(0)
    policy = GatoPolicy(preset("tiny"))
    files = {"checkpoint": save_checkpoint(policy, root / "checkpoint")}
    export_onnx(policy, root / "onnx", files["checkpoint"])
    files["onnx"] = root / "onnx"
    bc = bc_imp.BCIMPPolicy(bc_imp.BCIMPConfig())
    (root / "bc").mkdir()
    (root / "bc" / "config.json").write_text(json.dumps({**asdict(bc.config), "kind": bc_imp.KIND}))
    from safetensors.torch import save_model

    save_model(bc, str(root / "bc" / "model.safetensors"))
    files["bc"] = root / "bc"

    store = EpisodeStore(root / "store", create=True)
    env = make_env("mujoco", "train")
    writer = store.writer("mujoco", "train", 0, "stack the red object on the blue object")
    observation, _ = env.reset(seed=0)
    for _ in range(12):
        writer.add({c: observation[c] for c in ("front_left", "front_right")}, np.zeros(22), np.zeros(5), 0.0)
    writer.commit(False)
    env.close()
    files["episode"] = next((root / "store").glob("episode-*.h5"))

    files["camera_info"] = write_camera_info(CameraInfo("front_left", 640, 480, np.array(
        [[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), np.zeros(5)), root / "front_left.camera_info.yaml")
    files["extrinsics"] = write_extrinsics(Extrinsics("front_left", "base", np.eye(4)), root / "front_left.extrinsics.yaml")
    files["poses"] = write_poses({"view000": np.eye(4), "view001": np.eye(4)}, root / "robot_poses.yaml")
    (root / "images").mkdir()
    cv2.imwrite(str(root / "images" / "view000.png"), np.full((48, 64, 3), 128, np.uint8))
    files["image"] = root / "images" / "view000.png"

    types = get_typestore(Stores.ROS2_JAZZY)
    JointState = types.types["sensor_msgs/msg/JointState"]
    Time, Header = types.types["builtin_interfaces/msg/Time"], types.types["std_msgs/msg/Header"]
    with Writer(root / "bag", version=9, storage_plugin=StoragePlugin.SQLITE3) as bag:
        connection = bag.add_connection("/joint_states", JointState.__msgtype__, typestore=types)
        for tick in range(5):
            message = JointState(header=Header(stamp=Time(sec=0, nanosec=tick * 50_000_000), frame_id=""),
                                 name=[*PANDA.arm_joints, *PANDA.finger_joints],
                                 position=np.array([*PANDA.home_joint_positions, 0.04, 0.04]),
                                 velocity=np.zeros(9), effort=np.zeros(0))
            bag.write(connection, tick * 50_000_000, types.serialize_cdr(message, JointState.__msgtype__))
    files["bag"] = root / "bag"
    return files


def copy_dir(source: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    return Path(shutil.copytree(source, target))


DIRECTORY_FORMATS = {  # fixture key -> (loader of the directory, the files it reads)
    "checkpoint": (load_checkpoint, ("config.json", "model.safetensors")),
    "bc": (bc_imp.load, ("config.json", "model.safetensors")),
    "onnx": (OnnxRunner, ("config.json", "prefill.onnx", "decode.onnx")),
}


@pytest.mark.parametrize("kind", list(DIRECTORY_FORMATS))
@SETTINGS
@given(how=DAMAGE, index=st.integers(0, 2))
def test_damaged_checkpoint_or_export(valid, tmp_path, kind, how, index):
    """A Gato checkpoint, a BC-IMP checkpoint or an ONNX export with one of its files damaged."""
    load, files = DIRECTORY_FORMATS[kind]
    which = files[index % len(files)]
    directory = copy_dir(valid[kind], tmp_path / kind)
    damage(valid[kind] / which, directory / which, how)
    expect_damage_named(lambda: load(directory), directory / which, how)


@SETTINGS
@given(how=DAMAGE)
def test_damaged_episode(valid, tmp_path, how):
    path = tmp_path / valid["episode"].name
    damage(valid["episode"], path, how)
    check = verify_episode(path)
    if how[0] == "flip" and check.problem is None:
        return  # a byte no dataset uses: still intact by its checksum
    assert check.problem, how

    def read_all():
        with EpisodeReader(path) as reader:
            reader.images(0, reader.steps)
            reader.proprio(), reader.actions()
    if how[0] != "flip":
        expect_damage_named(read_all, path, how)


@SETTINGS
@given(how=DAMAGE, which=st.sampled_from(["camera_info", "extrinsics", "poses"]))
def test_damaged_calibration_yaml(valid, tmp_path, how, which):
    path = tmp_path / valid[which].name
    damage(valid[which], path, how)
    read = {"camera_info": read_camera_info, "extrinsics": read_extrinsics, "poses": read_poses}[which]
    # An empty YAML file is no mapping at all: "what is missing" (CalibrationError) names it too.
    expect_damage_named(lambda: read(path), path, how, also=(CalibrationError,))


@SETTINGS
@given(how=DAMAGE)
def test_damaged_calibration_image(valid, tmp_path, how):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    path = folder / valid["image"].name
    damage(valid["image"], path, how)
    expect_damage_named(lambda: _load_images(folder), path, how)


@SETTINGS
@given(how=DAMAGE, which=st.sampled_from(["metadata.yaml", "bag.db3"]))
def test_damaged_bag(valid, tmp_path, how, which):
    bag = copy_dir(valid["bag"], tmp_path / "bag")
    which = which if which == "metadata.yaml" else next(p.name for p in bag.iterdir() if p.suffix == ".db3")
    damage(valid["bag"] / which, bag / which, how)
    loop = ControlLoop(load_policy(valid["checkpoint"]), CartesianActionMapper())
    # a flip inside a message (a joint's name, an image's encoding) leaves a readable bag whose message
    # the stack cannot use: named with the bag, topic and time
    expect_damage_named(lambda: replay_bag(bag, loop, ReplayTopics(cameras={})), bag, how, also=(MessageError,))


def test_a_bag_message_the_stack_cannot_use_is_named_with_its_bag_topic_and_time(valid, tmp_path):
    """Found by the bit flips above: a flip turned 'panda_joint7' into 'panda^joint7'."""
    bag = copy_dir(valid["bag"], tmp_path / "bag")
    database = next(p for p in bag.iterdir() if p.suffix == ".db3")
    data = database.read_bytes()
    assert data.count(b"panda_joint7") >= 1
    database.write_bytes(data.replace(b"panda_joint7", b"panda^joint7"))
    loop = ControlLoop(load_policy(valid["checkpoint"]), CartesianActionMapper())
    with pytest.raises(MessageError, match=r"topic /joint_states at [0-9.]+ s: joint state lacks joint\(s\) \['panda_joint7'\]") as error:
        replay_bag(bag, loop, ReplayTopics(cameras={}))
    assert str(bag) in str(error.value)


@pytest.mark.parametrize("field", ["duration", "starting_time"])
def test_a_bag_whose_metadata_times_are_text_is_named_as_damaged(valid, tmp_path, field):
    """rosbags checks most metadata fields itself but lets a duration or start time of the wrong type
    escape as a bare TypeError (found by the bit flips above: a digit flipped into a letter)."""
    import yaml

    bag = copy_dir(valid["bag"], tmp_path / "bag")
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())
    times = metadata["rosbag2_bagfile_information"][field]
    times[next(iter(times))] = "2OO000000"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    loop = ControlLoop(load_policy(valid["checkpoint"]), CartesianActionMapper())
    with pytest.raises(DamagedFileError, match="not a readable rosbag2") as error:
        replay_bag(bag, loop, ReplayTopics(cameras={}))
    assert error.value.path == bag


def test_the_cli_names_a_damaged_file_in_one_line_and_debug_shows_the_traceback(valid, tmp_path):
    from typer.testing import CliRunner

    from gato_robot.cli import app

    directory = copy_dir(valid["checkpoint"], tmp_path / "checkpoint")
    damage(valid["checkpoint"] / "model.safetensors", directory / "model.safetensors", ("truncate", 0.5))
    # Checked before any worker or progress bar starts: a damaged policy never reaches the pool.
    result = CliRunner().invoke(app, ["sim", "eval", "--policy", str(directory), "--episodes", "1", "--workers", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{directory / 'model.safetensors'}: cannot load the policy's weights" in " ".join(result.output.split())
    assert "episode/s" not in result.output
    debug = CliRunner().invoke(app, ["--debug", "sim", "eval", "--policy", str(directory), "--episodes", "1"])
    assert isinstance(debug.exception, DamagedFileError) and debug.exception.path == directory / "model.safetensors"


def test_a_damaged_file_error_survives_a_worker_process():
    """Raised in an evaluation worker, the error must unpickle in the parent (else the pool hangs)."""
    import pickle

    error = pickle.loads(pickle.dumps(DamagedFileError("/data/episode-1.h5", "truncated")))
    assert isinstance(error, DamagedFileError) and error.path == Path("/data/episode-1.h5")
    assert str(error) == "/data/episode-1.h5: truncated"
