"""The BC-IMP baseline: trains on the store, round-trips, acts inside the action bounds in the harness."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from gato_robot.baselines.bc_imp import BCIMPPolicy, BCIMPTrainConfig, load, train_bc_imp
from gato_robot.deploy.policy import checkpoint_kind
from gato_robot.data.episodes import EpisodeStore
from gato_robot.sim.evaluate import EvalConfig, evaluate
from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("bcimp") / "store"
    store = EpisodeStore(root, create=True)
    env = make_env("mujoco", "test-3-prism")
    writer = store.writer("mujoco", "test-3-prism", 0, "stack the red object on the blue object")
    writer.commit(run_episode(env, ExpertAgent(), 0, writer=writer).success)
    env.close()
    return root


def test_bc_imp_learns_round_trips_and_acts_in_the_harness(store, tmp_path):
    summary = train_bc_imp(store, tmp_path / "bc", BCIMPTrainConfig(steps=30, batch_size=8, learning_rate=1e-3),
                           progress=False)
    assert np.mean(summary["losses"][-5:]) < np.mean(summary["losses"][:5])
    assert checkpoint_kind(tmp_path / "bc") == "bc_imp"  # declared by its config, not guessed
    loaded = load(tmp_path / "bc")
    images = torch.randint(0, 256, (2, 2, 128, 128, 3), dtype=torch.uint8)
    proprio = torch.randn(2, 22)
    from safetensors.torch import load_file

    written = load_file(str(tmp_path / "bc" / "model.safetensors"))
    assert written.keys() == loaded.state_dict().keys()
    assert all(torch.equal(value, written[name]) for name, value in loaded.state_dict().items())  # the file, loaded
    torch.manual_seed(123)
    with torch.no_grad():
        out = loaded(images, proprio)
        fresh = BCIMPPolicy(loaded.config).eval()(images, proprio)
    assert out.shape == (2, 5) and not torch.allclose(out, fresh, atol=1e-3)  # trained weights, not an initialization
    report = evaluate(EvalConfig(str(tmp_path / "bc"), triplets="test-3-prism", episodes=1))
    assert report.per_triplet["test-3-prism"].episodes == 1


class QuadraticCritic(torch.nn.Module):
    """Q(s, a) = -|a - a_best|^2 whatever the state: an improvement step must favour data actions
    near a_best."""

    def __init__(self, best: torch.Tensor):
        super().__init__()
        self.best = best
        self.unused = torch.nn.Linear(1, 1)

    def features(self, images, proprio):
        return torch.zeros(images.shape[0], 1)

    def value(self, features, actions):
        return -((actions - self.best) ** 2).sum(-1)


def test_crr_weights_the_actions_the_critic_prefers():
    """Two data actions in the same state: the critic's favourite and its opposite. The policy loss
    is the exp(advantage / beta)-weighted squared error (CRR), so the favourite dominates it."""
    from gato_robot.baselines.crr import CRRConfig, crr_losses

    torch.manual_seed(0)
    policy = BCIMPPolicy().eval()
    best = torch.tensor([0.5, 0.0, 0.0, 0.0, 1.0])
    critic = QuadraticCritic(best)
    image = torch.randint(0, 256, (1, 2, 128, 128, 3), dtype=torch.uint8)
    batch = {"images": image.repeat(2, 1, 1, 1, 1), "proprio": torch.zeros(2, 22),
             "actions": torch.stack([best, -best]), "rewards": torch.zeros(2)}
    batch["next_images"], batch["next_proprio"] = batch["images"], batch["proprio"]
    config = CRRConfig(beta=0.5)
    losses = crr_losses(policy, critic, policy, critic, batch, config, torch.Generator().manual_seed(0))

    with torch.no_grad():  # the same computation by hand
        mean_action = policy(batch["images"], batch["proprio"])
        noise = torch.randn((config.action_samples, *mean_action.shape), generator=torch.Generator().manual_seed(0))
        draws = (mean_action + config.policy_std * noise).clamp(-1, 1)
        value = torch.stack([critic.value(None, d) for d in draws]).mean(0)
        weights = torch.exp((critic.value(None, batch["actions"]) - value) / config.beta).clamp(max=config.max_weight)
        errors = ((mean_action - batch["actions"]) ** 2).sum(-1)
    assert weights[0] > 10 * weights[1]  # the favourite's weight, against its opposite's
    assert losses["policy"].item() == pytest.approx(float((weights * errors).mean()), rel=1e-5)
    assert float(losses["weight"]) == pytest.approx(float(weights.mean()), rel=1e-5)
    # the TD target of a zero reward is discount x Q(s', pi(s')) = discount x Q(s, pi(s)) here
    target = config.discount * critic.value(None, mean_action)
    expected_td = torch.nn.functional.mse_loss(critic.value(None, batch["actions"]), target)
    assert losses["critic"].item() == pytest.approx(float(expected_td), rel=1e-5)


def test_improve_baseline_runs_on_expert_data_and_rollouts(store, tmp_path):
    from typer.testing import CliRunner

    from gato_robot.cli import app

    train_bc_imp(store, tmp_path / "bc", BCIMPTrainConfig(steps=3, batch_size=4), progress=False)
    runner = CliRunner()
    result = runner.invoke(app, ["sim", "rollouts", "--store", str(tmp_path / "rollouts"), "--policy",
                                 str(tmp_path / "bc"), "--triplets", "test-3-prism", "--episodes", "1", "--workers", "1"])
    assert result.exit_code == 0, result.output
    rollout = EpisodeStore(tmp_path / "rollouts").episodes()
    assert len(rollout) == 1 and not rollout[0].relabelled  # the policy's own actions, not a labeller's
    result = runner.invoke(app, ["improve-baseline", "--bc", str(tmp_path / "bc"), "--store", str(store), "--store",
                                 str(tmp_path / "rollouts"), "--out", str(tmp_path / "bc-imp"), "--steps", "3",
                                 "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    improved, original = load(tmp_path / "bc-imp"), load(tmp_path / "bc")
    assert any(not torch.equal(a, b) for a, b in zip(improved.state_dict().values(), original.state_dict().values()))
    report = evaluate(EvalConfig(policy=str(tmp_path / "bc-imp"), triplets="test-3-prism", episodes=1))
    assert report.episodes == 1


def test_bc_imp_with_gatos_action_bins_and_proprio_learns_and_decodes_as_gato(store, tmp_path):
    """The bridge options of the recipe ablation: Gato's 1024 mu-law action bins with HL-Gauss
    targets, no joint velocities, standardized proprioception. Its actions are bin centres decoded
    as the shipped Gato decodes; the joint velocities cannot change them; the statistics are the
    store's, kept in the config; CRR refuses a head it cannot improve."""
    from gato_robot.data.dataset import proprio_statistics
    from gato_robot.baselines.bc_imp import BCIMPConfig
    from gato_robot.baselines.crr import improve_bc_imp
    from gato_robot.tokenizer.mulaw import bins_to_continuous, continuous_to_bins
    from gato_robot.tokenizer.sequence import JOINT_VELOCITY_FREE

    model = BCIMPConfig(action_head="hl_gauss", proprio_keep=JOINT_VELOCITY_FREE)
    summary = train_bc_imp(store, tmp_path / "bins", BCIMPTrainConfig(steps=30, batch_size=8, learning_rate=1e-3,
                                                                     model=model, standardize_proprio=True),
                           progress=False)
    assert np.mean(summary["losses"][-5:]) < np.mean(summary["losses"][:5])
    loaded = load(tmp_path / "bins")
    mean, std = proprio_statistics(EpisodeStore(store).episodes())
    assert loaded.config == replace(model, proprio_mean=tuple(mean), proprio_std=tuple(std))  # survives the round trip
    images = torch.randint(0, 256, (3, 2, 128, 128, 3), dtype=torch.uint8)
    proprio = torch.randn(3, 22)
    assert loaded(images, proprio).shape == (3, 5, 1024)
    actions = loaded.act(images, proprio)
    assert actions.shape == (3, 5)  # bin centres, as Gato's (the last one is 1.035: denormalize clips it)
    np.testing.assert_array_equal(bins_to_continuous(continuous_to_bins(actions)), actions)
    with torch.no_grad():
        argmax = bins_to_continuous(loaded(images, proprio).argmax(-1).numpy())
    np.testing.assert_array_equal(loaded.act(images, proprio, "off"), argmax)  # the decoding is selectable
    moved = proprio.clone()
    moved[:, 7:14] += 5.0  # joint velocities only
    np.testing.assert_array_equal(loaded.act(images, moved), actions)
    with pytest.raises(ValueError, match="action_head"):
        BCIMPConfig(action_head="softmax")
    with pytest.raises(ValueError, match="proprio_mean and proprio_std"):
        BCIMPConfig(proprio_mean=tuple(mean))
    with pytest.raises(ValueError, match="tanh action head"):
        improve_bc_imp(tmp_path / "bins", [store], tmp_path / "crr")
    report = evaluate(EvalConfig(str(tmp_path / "bins"), triplets="test-3-prism", episodes=1))
    assert report.per_triplet["test-3-prism"].episodes == 1


def test_velocity_noise_reaches_only_a_policy_that_sees_the_joint_velocities(store, tmp_path):
    """``velocity_noise`` changes BC-IMP's training only through the 7 joint velocities: a run that
    sees them ends elsewhere, a run without them ends bit-identical to its noise-free twin."""
    from gato_robot.baselines.bc_imp import BCIMPConfig
    from gato_robot.proprio import proprio_keep_for

    def weights(name, noise, joint_velocities=True):
        model = BCIMPConfig(proprio_keep=proprio_keep_for(joint_velocities=joint_velocities))
        train_bc_imp(store, tmp_path / name, BCIMPTrainConfig(steps=2, batch_size=4, velocity_noise=noise, model=model),
                     progress=False)
        return torch.cat([p.detach().flatten() for p in load(tmp_path / name).parameters()])

    assert not torch.equal(weights("noisy", 1.0), weights("clean", 0.0))
    assert torch.equal(weights("novel-noisy", 1.0, joint_velocities=False), weights("novel-clean", 0.0, False))


def test_bc_imp_reads_the_grasp_flag_as_gatos_training_windows_do(store, tmp_path):
    """``--grasp-sensor``: every recorded timestep's flag is the one Gato's windows read
    (:func:`grasp_flags` over the episode); the trained policy's action depends on it; without it the
    network and the deployment refuse (the loop holds); `sim eval` feeds it through the ControlLoop."""
    from typer.testing import CliRunner

    from gato_robot.action_spec import RGB_STACKING_ACTIONS
    from gato_robot.baselines.bc_imp import recorded_grasp_flag
    from gato_robot.baselines.crr import improve_bc_imp
    from gato_robot.cli import app
    from gato_robot.data.dataset import RECORDING_ARM
    from gato_robot.data.episodes import EpisodeReader
    from gato_robot.deploy.policy import load_policy
    from gato_robot.observation import Observation
    from gato_robot.proprio import GRASP_SENSOR, PROPRIO_OFFSETS, grasp_flags

    meta = EpisodeStore(store).episodes()[0]
    reader = EpisodeReader(meta.path)
    proprio, actions = reader.proprio(0, meta.steps), reader.actions(0, meta.steps)
    expected = grasp_flags(proprio[:, PROPRIO_OFFSETS["gripper_width"]], actions[:, -1], RECORDING_ARM.max_gripper_width_m)
    flags = np.concatenate([recorded_grasp_flag(reader, t, proprio[t], RGB_STACKING_ACTIONS) for t in range(meta.steps)])
    reader.close()
    np.testing.assert_array_equal(flags, expected)
    assert 0 < expected.sum() < meta.steps  # held while carried only

    result = CliRunner().invoke(app, ["train-baseline", "--store", str(store), "--out", str(tmp_path / "bc"), "--steps",
                                      "20", "--batch-size", "8", "--lr", "1e-3", "--grasp-sensor"])
    assert result.exit_code == 0, result.output
    loaded = load(tmp_path / "bc")
    assert loaded.config.grasp_sensor
    images = torch.randint(0, 256, (2, 2, 128, 128, 3), dtype=torch.uint8)
    state = torch.randn(2, 22)
    with torch.no_grad():
        assert not torch.allclose(loaded(images, state, torch.zeros(2, 1)), loaded(images, state, torch.ones(2, 1)))
        with pytest.raises(ValueError, match="reads the grasp flag"):
            loaded(images, state)
    deployed = load_policy(tmp_path / "bc")
    camera_images = {name: images[0, i].numpy() for i, name in enumerate(deployed.inputs.camera_names)}
    with pytest.raises(ValueError, match="no 'gripper_grasp' value"):
        deployed.encode(Observation(camera_images, state[0].double().numpy()))
    with pytest.raises(ValueError, match="0 or 1"):
        deployed.encode(Observation(camera_images, state[0].double().numpy(), extras={GRASP_SENSOR: np.array([0.5])}))
    with pytest.raises(ValueError, match="grasp flag to its critic"):
        improve_bc_imp(tmp_path / "bc", [store], tmp_path / "crr")
    report = evaluate(EvalConfig(str(tmp_path / "bc"), triplets="test-3-prism", episodes=1))
    assert report.per_triplet["test-3-prism"].episodes == 1


def test_bc_imp_weighs_grasps_and_releases_as_gatos_windows_do(store, tmp_path):
    """``--gripper-keyframe-weight``: BC-IMP's keyframes of each recorded timestep are those of
    Gato's windows (:func:`gripper_keyframe_mask` over the episode, each kind), and its loss is the
    weighted mean of its targets, for both action heads."""
    from gato_robot.action_spec import RGB_STACKING_ACTIONS
    from gato_robot.baselines.bc_imp import BCIMPConfig, recorded_keyframe
    from gato_robot.data.dataset import GRIPPER_KEYFRAMES, gripper_keyframe_mask
    from gato_robot.data.episodes import EpisodeReader

    meta = EpisodeStore(store).episodes()[0]
    with EpisodeReader(meta.path) as reader:
        gripper = reader.actions(0, meta.steps)[:, -1]
        for kinds in GRIPPER_KEYFRAMES:
            marked = [recorded_keyframe(reader, t, RGB_STACKING_ACTIONS, kinds) for t in range(meta.steps)]
            np.testing.assert_array_equal(marked, gripper_keyframe_mask(gripper, -1.0, kinds))
            led = [recorded_keyframe(reader, t, RGB_STACKING_ACTIONS, kinds, grasp_lead=2) for t in range(meta.steps)]
            np.testing.assert_array_equal(led, gripper_keyframe_mask(gripper, -1.0, kinds, grasp_lead=2))
            assert sum(led) == sum(marked) + 2 * int(gripper_keyframe_mask(gripper, -1.0, "grasps").sum())
    assert gripper_keyframe_mask(gripper, -1.0, "grasps").any() and gripper_keyframe_mask(gripper, -1.0, "releases").any()

    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 2, 128, 128, 3), dtype=torch.uint8)
    proprio, actions = torch.randn(3, 22), np.random.default_rng(0).uniform(-0.9, 0.9, (3, 5))
    weights = torch.ones(3, 5)
    weights[1, 4] = 20.0  # one keyframe's gripper target
    alone = torch.full((3, 5), 1e-9)
    alone[1, 4] = 1.0  # that target's own loss
    for head in ("tanh", "hl_gauss"):
        policy = BCIMPPolicy(BCIMPConfig(action_head=head))
        with torch.no_grad():
            plain, weighted, keyframe = (float(policy.loss(images, proprio, actions, weights=w))
                                         for w in (None, weights, alone))
        assert weighted == pytest.approx((plain * 15 + 19 * keyframe) / (15 + 19), rel=1e-4)
        assert weighted != pytest.approx(plain, rel=1e-4)

    with pytest.raises(ValueError, match="gripper_keyframe_weight must be >= 1"):
        BCIMPTrainConfig(gripper_keyframe_weight=0.5)
    with pytest.raises(ValueError, match="gripper_keyframes must be one of"):
        BCIMPTrainConfig(gripper_keyframe_weight=2.0, gripper_keyframes="all")
    summary = train_bc_imp(store, tmp_path / "kf", BCIMPTrainConfig(steps=2, batch_size=4, gripper_keyframe_weight=50.0),
                           progress=False)
    assert np.isfinite(summary["final_loss"])
