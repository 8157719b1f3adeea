"""The grasp flag (``TimestepSpec.grasp_sensor``): one rule in the simulators, the recorded stores
and the control loop, and one more token only for policies that read it."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gato_robot.deploy.control import ControlLoop
from gato_robot.deploy.policy import GatoDeployment
from gato_robot.model.config import preset
from gato_robot.model.policy import GatoPolicy
from gato_robot.observation import Frame, JointCommand, JointSample, Observation
from gato_robot.proprio import GRASP_SENSOR, PROPRIO_OFFSETS, grasp_detected, grasp_flags
from gato_robot.robot.action_path import CartesianActionMapper
from gato_robot.runtime.torch_runner import TorchRunner
from gato_robot.task import RGB_STACKING
from gato_robot.tokenizer.errors import TokenizationError
from gato_robot.tokenizer.mulaw import tokenize_continuous
from gato_robot.tokenizer.sequence import GatoTokenizer, Modality
from tests.conftest import decisive_policy, make_observation

FLAG_TOKEN = {flag: int(tokenize_continuous(np.array([float(flag)]))[0]) for flag in (0, 1)}


def test_holding_means_commanded_closed_with_the_fingers_held_apart():
    assert grasp_detected(0.0, 0.045, 0.08) == 1.0  # closed on a 4.5 cm block
    assert grasp_detected(0.0, 0.062, 0.08) == 1.0  # a block wider than any training object reads the same
    assert grasp_detected(0.0, 0.001, 0.08) == 0.0  # closed on nothing
    assert grasp_detected(0.08, 0.045, 0.08) == 0.0  # commanded open
    # A recorded episode: the command in force is the previous timestep's action; it starts open.
    widths = np.array([0.08, 0.08, 0.032, 0.045, 0.045, 0.07, 0.08])
    actions = np.array([-1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    np.testing.assert_array_equal(grasp_flags(widths, actions, 0.08), [0, 0, 1, 1, 1, 0, 0])


def test_a_grasp_sensing_policy_reads_one_more_token_and_refuses_an_observation_without_it(spec, rng):
    sensing = replace(spec, grasp_sensor=True)
    assert sensing.observation_tokens == spec.observation_tokens + 1
    observation = make_observation(spec, rng)
    plain = GatoTokenizer(spec).encode_observation(observation)
    with pytest.raises(TokenizationError, match="no 'gripper_grasp' value"):
        GatoTokenizer(sensing).encode_observation(observation)
    for flag in (0, 1):
        tokens = GatoTokenizer(sensing).encode_observation(replace(observation, extras={GRASP_SENSOR: np.array([flag])}))
        assert tokens.token_ids[-2] == FLAG_TOKEN[flag] and tokens.modality[-2] == Modality.CONTINUOUS
        np.testing.assert_array_equal(np.delete(tokens.token_ids, -2), plain.token_ids)  # everything else as before
    for bad in ([2.0], [0.5], [np.nan], [0.0, 1.0]):  # the rule BC-IMP's deployment applies too (Observation.grasp_flag)
        with pytest.raises(TokenizationError, match="must be one value, 0 or 1"):
            GatoTokenizer(sensing).encode_observation(replace(observation, extras={GRASP_SENSOR: np.array(bad)}))
    assert np.array_equal(GatoTokenizer(spec).encode_observation(  # a policy without it ignores the value
        replace(observation, extras={GRASP_SENSOR: np.array([1.0])})).token_ids, plain.token_ids)


def test_the_simulator_the_store_and_training_windows_give_the_same_flags(tmp_path):
    """The scripted expert (no noise) grasps, carries and releases red in MuJoCo: the flag the
    simulator reports each tick is the one training windows compute from the recorded widths and
    actions, 1 while red is carried and 0 before the grasp."""
    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeReader, EpisodeStore
    from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode
    from gato_robot.tokenizer.sequence import TimestepSpec

    class FlagRecordingExpert(ExpertAgent):
        live: list[float] = []

        def act(self, observation, info):
            self.live.append(float(observation[GRASP_SENSOR][0]))
            return super().act(observation, info)

    env, agent, seed = make_env("mujoco", "train"), FlagRecordingExpert(), 3
    store = EpisodeStore(tmp_path / "store", create=True)
    writer = store.writer("mujoco", "train", seed, RGB_STACKING.instruction)
    result = run_episode(env, agent, seed, writer=writer)
    writer.commit(result.success)
    env.close()
    live = agent.live
    assert result.success and live[0] == 0.0 and sum(live) > 20  # carried red for over a second
    meta = store.episodes(0.0)[0]
    with EpisodeReader(meta.path) as reader:
        widths = reader.proprio(0, meta.steps)[:, PROPRIO_OFFSETS["gripper_width"]]
        recorded = grasp_flags(widths, reader.actions(0, meta.steps)[:, -1], env.scene.arm.max_gripper_width_m)
    np.testing.assert_array_equal(recorded, live)
    windows = EpisodeWindows(store, TimestepSpec(grasp_sensor=True), 4, min_return_fraction=0.0,
                             patch_position_jitter=False)
    for start in (0, int(np.argmax(recorded)) - 1, meta.steps - 4):  # windows across the grasp
        tokens = windows.sample(windows.locate(start), np.random.default_rng(0))
        flag_tokens = tokens.token_ids[tokens.modality == Modality.CONTINUOUS].reshape(4, -1)[:, -1]
        assert flag_tokens.tolist() == [FLAG_TOKEN[int(f)] for f in recorded[start:start + 4]]


def test_the_control_loop_reads_the_flag_off_its_own_gripper_command_and_the_measured_width(rng):
    torch.manual_seed(0)
    config = preset("tiny")
    config = replace(config, timestep=replace(config.timestep, grasp_sensor=True),
                     context_tokens=config.timestep.timestep_tokens + 1)
    loop = ControlLoop(GatoDeployment(TorchRunner(GatoPolicy(config)), RGB_STACKING.instruction),
                       CartesianActionMapper())
    home = np.asarray(loop.mapper.arm.home_joint_positions)
    loop.enable(JointSample(home, np.zeros(7), 0.08, 0.0))

    def flag_token(now: float, width: float) -> int:
        frames = {name: Frame(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), now)
                  for name in RGB_STACKING.camera_names}
        pending = loop.begin_tick(now, frames, JointSample(home, np.zeros(7), width, now))
        tokens = pending.encoded
        return int(tokens.token_ids[tokens.modality == Modality.CONTINUOUS][-1])

    assert flag_token(0.05, 0.08) == FLAG_TOKEN[0]  # enabled open
    loop.last_command = JointCommand(home, 0.0)  # the policy closed the gripper
    assert flag_token(0.10, 0.045) == FLAG_TOKEN[1]  # on a block
    assert flag_token(0.15, 0.0005) == FLAG_TOKEN[0]  # on nothing
    loop.last_command = JointCommand(home, 0.08)  # and opened it
    assert flag_token(0.20, 0.045) == FLAG_TOKEN[0]
    assert isinstance(Observation.from_sensors({**{n: np.zeros((2, 2, 3)) for n in ("a",)}, "joint_positions": home,
                                                "joint_velocities": np.zeros(7), "gripper_width": 0.04,
                                                "tcp_pose": np.zeros(7), GRASP_SENSOR: 1.0}, ("a",), "").extras[
        GRASP_SENSOR], np.ndarray)


def test_grasps_and_releases_weigh_more_in_the_loss_and_nothing_else_changes(tmp_path):
    """Gripper keyframes: the gripper target of the expert's grasp and release timesteps (its label
    changing sign) carries the weight; every other token of every window stays as without it, and
    the policy's loss is the weighted mean of its targets."""
    from tests.conftest import write_expert_store

    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeReader, EpisodeStore
    from gato_robot.model.policy import batch_to_torch
    from gato_robot.tokenizer.sequence import TimestepSpec, stack_sequences

    store = EpisodeStore(write_expert_store(tmp_path / "store", [3]))
    meta = store.episodes(0.0)[0]
    with EpisodeReader(meta.path) as reader:
        gripper = np.sign(reader.actions(0, meta.steps)[:, -1])
    expected = np.flatnonzero(gripper != np.concatenate([[-1.0], gripper[:-1]]))
    assert len(expected) >= 2  # a grasp and a release
    spec = TimestepSpec(grasp_sensor=True, action_order=(4, 0, 1, 2, 3))

    def window(weight, start):
        windows = EpisodeWindows(store, spec, 4, min_return_fraction=0.0, patch_position_jitter=False,
                                 gripper_keyframe_weight=weight)
        return windows.sample(windows.locate(start), np.random.default_rng(0))

    weighted_at = []
    for start in range(0, meta.steps - 3, 4):
        plain, weighted = window(1.0, start), window(20.0, start)
        np.testing.assert_array_equal(plain.token_ids, weighted.token_ids)
        changed = np.flatnonzero(plain.loss_mask != weighted.loss_mask)
        assert np.all(weighted.loss_mask[changed] == 20.0) and np.all(plain.loss_mask[changed] == 1.0)
        actions = np.flatnonzero(weighted.modality == Modality.ACTION).reshape(4, 5)
        assert set(changed) <= set(actions[:, 0])  # the gripper token, decoded first here
        weighted_at += [start + int(np.flatnonzero(actions[:, 0] == i)[0]) for i in changed]
    assert weighted_at == [t for t in expected if t < (meta.steps - 3) // 4 * 4]
    with pytest.raises(ValueError, match="gripper_keyframe_weight must be >= 1"):
        EpisodeWindows(store, spec, 1, min_return_fraction=0.0, gripper_keyframe_weight=0.5)
    with pytest.raises(ValueError, match="gripper_keyframes must be one of"):
        EpisodeWindows(store, spec, 1, min_return_fraction=0.0, gripper_keyframe_weight=2.0, gripper_keyframes="all")

    for kind, closed_after in (("releases", False), ("grasps", True)):  # one kind alone: the others stay at 1
        windows = EpisodeWindows(store, spec, 1, min_return_fraction=0.0, patch_position_jitter=False,
                                 gripper_keyframe_weight=20.0, gripper_keyframes=kind)
        weighted_kind = [t for t in range(meta.steps)
                         if windows.sample(windows.locate(t), np.random.default_rng(0)).loss_mask.max() == 20.0]
        assert weighted_kind == [t for t in expected if (gripper[t] > 0) == closed_after]
        assert weighted_kind  # the expert episode grasps and releases

    grasps = [t for t in expected if gripper[t] > 0]
    for size in (1, 4):  # the open targets just before each grasp too, also where a window ends before the grasp
        windows = EpisodeWindows(store, spec, size, min_return_fraction=0.0, patch_position_jitter=False,
                                 gripper_keyframe_weight=20.0, gripper_keyframes="grasps", grasp_lead=2)
        led = []
        for start in range(0, meta.steps - size + 1, size):
            sample = windows.sample(windows.locate(start), np.random.default_rng(0))
            actions = np.flatnonzero(sample.modality == Modality.ACTION).reshape(size, 5)
            led += [start + t for t in range(size) if sample.loss_mask[actions[t, 0]] == 20.0]
        assert led == sorted(t - lead for t in grasps for lead in (0, 1, 2) if t - lead < (meta.steps - size + 1) // size * size)
        assert all(gripper[t] < 0 for t in led if t not in grasps)  # the lead's targets are open ones
    with pytest.raises(ValueError, match="grasp_lead must be >= 0"):
        EpisodeWindows(store, spec, 1, min_return_fraction=0.0, gripper_keyframe_weight=2.0, grasp_lead=-1)

    torch.manual_seed(0)
    config = replace(preset("tiny", action_loss="hl_gauss"), timestep=spec)
    policy = GatoPolicy(replace(config, context_tokens=4 * spec.timestep_tokens))
    start = int(expected[1]) - 1  # a window holding the grasp
    plain, weighted = (batch_to_torch(stack_sequences([window(w, start)])) for w in (1.0, 20.0))
    with torch.no_grad():
        loss_plain, loss_weighted = float(policy.loss(plain)), float(policy.loss(weighted))
        targets = (plain["modality"][:, 1:] == Modality.ACTION).sum().item()
        flipped = plain.copy()  # every target but the keyframe's at weight 0 + epsilon: its own loss
        keyframe = torch.nonzero(weighted["loss_mask"] == 20.0)[0, 1].item()
        flipped["loss_mask"] = torch.where(plain["modality"] == Modality.ACTION, 1e-9, plain["loss_mask"])
        flipped["loss_mask"][0, keyframe] = 1.0
        keyframe_loss = float(policy.loss(flipped))
    assert loss_weighted == pytest.approx((loss_plain * targets + 19 * keyframe_loss) / (targets + 19), rel=1e-4)


def test_grasp_dropout_pads_the_flag_of_some_windows_and_nothing_else(tmp_path):
    """Grasp-flag dropout: in a dropped window every timestep's flag token is padding and every other
    token (the velocities, dropped or not on their own draw, included) is as without it; the same
    (seed, step) drops the same windows; a policy without the flag cannot drop it."""
    from tests.conftest import assert_window_dropout, write_expert_store

    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.tokenizer.sequence import TimestepSpec

    store = EpisodeStore(write_expert_store(tmp_path / "store", [4]))
    spec = TimestepSpec(grasp_sensor=True)

    def batch(dropout, spec=spec):
        windows = EpisodeWindows(store, spec, 2, min_return_fraction=0.0, patch_position_jitter=False,
                                 velocity_dropout=0.5, grasp_dropout=dropout)
        return windows.batch(seed=0, step=5, batch_size=64)

    clean, dropped = batch(0.0), batch(0.5)
    flag = np.zeros(clean["token_ids"].shape[1], bool)
    flag[[t * spec.timestep_tokens + spec.observation_tokens - 2 for t in range(2)]] = True  # before the separator
    assert np.isin(clean["token_ids"][:, flag], list(FLAG_TOKEN.values())).all()
    assert_window_dropout(clean, dropped, flag)
    np.testing.assert_array_equal(batch(0.5)["token_ids"], dropped["token_ids"])
    with pytest.raises(ValueError, match="needs a policy that reads the grasp flag"):
        batch(0.5, TimestepSpec())


def test_a_grasp_sensing_policy_exports_and_onnx_runtime_agrees_with_torch(tmp_path, rng):
    """The deployed path of a flag-reading policy: its one more token reaches the exported graph."""
    from gato_robot.model.checkpoint import save_checkpoint
    from gato_robot.runtime.export import export_checkpoint
    from gato_robot.runtime.factory import load_runner

    config = preset("tiny", action_loss="hl_gauss", image_encoder="conv_stem_global", action_inputs="query")
    config = replace(config, timestep=replace(config.timestep, grasp_sensor=True),
                     context_tokens=config.timestep.timestep_tokens + 1)
    checkpoint = save_checkpoint(decisive_policy(config), tmp_path / "checkpoint")
    export = export_checkpoint(checkpoint, tmp_path / "onnx")
    torch_runner = load_runner("torch", checkpoint, expectation="physical")
    onnx_runner = load_runner("onnxruntime", export.directory, expectation="physical")
    tokenizer = GatoTokenizer(torch_runner.config.timestep)
    observation = make_observation(tokenizer.spec, rng)
    for flag in (0.0, 1.0, 0.0):
        tokens = tokenizer.encode_observation(replace(observation, extras={GRASP_SENSOR: np.array([flag])}))
        assert len(tokens) == tokenizer.spec.observation_tokens
        np.testing.assert_array_equal(torch_runner.act(tokens), onnx_runner.act(tokens))
