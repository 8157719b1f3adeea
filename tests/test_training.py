"""Training: data windows, exact resume after an interruption, schedule, learning curve."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from gato_robot.data.dataset import EpisodeWindows
from gato_robot.data.episodes import EpisodeStore
from tests.conftest import write_expert_store
from gato_robot.model.checkpoint import load_checkpoint
from gato_robot.model.config import preset
from gato_robot.tokenizer.ids import PAD_ID
from gato_robot.train.trainer import TrainConfig, learning_rate, train
from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_expert_store(tmp_path_factory.mktemp("train") / "store", range(3))


def test_windows_are_tokenized_like_deployment_and_deterministic(store):
    spec = preset("tiny").timestep
    windows = EpisodeWindows(EpisodeStore(store), spec, window_timesteps=2)
    assert len(windows) == windows.timesteps - 3  # one start per timestep, minus (window - 1) per episode
    first, again = windows.batch(seed=3, step=5, batch_size=2), windows.batch(seed=3, step=5, batch_size=2)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert first["token_ids"].shape == (2, 2 * spec.timestep_tokens)
    actions = first["token_ids"][:, spec.observation_tokens:spec.timestep_tokens]
    assert actions.min() >= 32000 and actions.max() < 33024
    assert first["loss_mask"].sum() == 2 * 2 * (spec.action_dim + 8)
    assert not np.any(first["token_ids"] == PAD_ID)
    windows.close()


def test_training_window_must_fit_the_preset_context():
    from gato_robot.train.trainer import model_config

    assert model_config(TrainConfig(preset="gato-79m", window_timesteps=6)).context_tokens == 6 * 164
    with pytest.raises(ValueError, match="exceed the 1024-token context"):
        model_config(TrainConfig(preset="gato-79m", window_timesteps=7))


def test_schedule_warms_up_then_decays():
    config = TrainConfig(steps=100, warmup_steps=10, learning_rate=1e-3, min_learning_rate=1e-4)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 99) == pytest.approx(1e-4, rel=0.01)
    rates = [learning_rate(config, s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_interrupted_training_resumes_exactly(store, tmp_path):
    config = TrainConfig(preset="tiny", steps=12, batch_size=2, window_timesteps=2, checkpoint_every=4,
                         warmup_steps=3, learning_rate=3e-3)
    whole = train(store, tmp_path / "whole", config, progress=False)
    first = train(store, tmp_path / "split", config, progress=False, stop_at=6)
    assert first["steps"] == 6
    resumed = train(store, tmp_path / "split", config, progress=False)
    assert resumed["losses"] == whole["losses"]  # bit-identical curve
    assert whole["losses"][-1] < whole["losses"][0]
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint"), load_checkpoint(tmp_path / "split" / "checkpoint")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert np.array_equal(x.numpy(), y.numpy()), name
    curve = cv2.imread(str(tmp_path / "whole" / "learning_curve.png"))  # decodes, and is not one flat colour
    assert curve is not None and curve.shape[1] > 300 and curve.std() > 10
    assert a.config.context_tokens == 2 * a.config.timestep.timestep_tokens  # deployment context = training window
    assert not list((tmp_path / "split").glob(".checkpoint*"))  # no temporary checkpoint left behind
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["samples"] == 12 * 2 * 2 and summary["wall_time_s"] > 0  # wall time summed over both sessions
    for change in ({"steps": 20}, {"batch_size": 3}, {"seed": 1}, {"window_timesteps": 1}):
        with pytest.raises(ValueError, match=f"{next(iter(change))} .* -> "):  # one schedule, one recipe per run
            train(store, tmp_path / "split", replace(config, **change), progress=False)
    train(store, tmp_path / "split", replace(config, checkpoint_every=6), progress=False)  # bookkeeping may change
    longer = train(store, tmp_path / "split", replace(config, steps=14), progress=False, warm_restart=True)
    assert longer["steps"] == 14  # a new length only when asked for explicitly


def test_weight_average_is_what_the_checkpoint_holds_and_resumes_exactly(store, tmp_path):
    import torch

    config = TrainConfig(preset="tiny", steps=8, batch_size=2, window_timesteps=2, checkpoint_every=4,
                         warmup_steps=2, learning_rate=3e-3, ema_decay=0.5)
    whole = train(store, tmp_path / "whole", config, progress=False)
    train(store, tmp_path / "split", config, progress=False, stop_at=4)
    resumed = train(store, tmp_path / "split", config, progress=False)
    assert resumed["losses"] == whole["losses"]  # the trained weights resumed, not the average
    averaged, again = load_checkpoint(tmp_path / "whole" / "checkpoint"), load_checkpoint(tmp_path / "split" / "checkpoint")
    state = torch.load(tmp_path / "whole" / "checkpoint" / "training_state.pt", weights_only=False)
    assert state["averaged_steps"] == 8
    differs = False
    for name, value in averaged.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name  # the average resumed exactly too
        differs |= not torch.equal(value, state["trained_weights"][name])
    assert differs  # the checkpoint deploys the average, not the last trained weights
    with pytest.raises(ValueError, match="ema_decay must be in"):
        train(store, tmp_path / "bad", replace(config, ema_decay=1.0), progress=False)


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_last_complete_one(store, tmp_path):
    config = TrainConfig(preset="tiny", steps=6, batch_size=2, window_timesteps=1, checkpoint_every=3, warmup_steps=1)
    whole = train(store, tmp_path / "whole", config, progress=False)
    train(store, tmp_path / "killed", config, progress=False, stop_at=3)
    import torch

    from gato_robot.train.trainer import STATE_FILE

    run = tmp_path / "killed"
    state = torch.load(run / "checkpoint" / STATE_FILE, weights_only=False)
    state["losses"][0] = 123.0  # a marker: only a run that resumes from this checkpoint reports it
    torch.save(state, run / "checkpoint" / STATE_FILE)
    (run / "checkpoint").rename(run / ".checkpoint.old")  # the state a kill between the two renames leaves
    (run / ".checkpoint.123.tmp").mkdir()  # and a half-written next checkpoint
    resumed = train(store, run, config, progress=False)
    assert resumed["losses"] == [123.0] + whole["losses"][1:]  # continued from step 3, not from scratch
    assert not (run / ".checkpoint.old").exists() and not list(run.glob(".checkpoint.*.tmp"))


def test_recipe_options_train_and_store_proprio_statistics(store, tmp_path):
    config = TrainConfig(preset="tiny", steps=3, batch_size=2, window_timesteps=1, checkpoint_every=3, warmup_steps=1,
                         image_encoder="conv_stem", action_loss="hl_gauss", standardize_proprio=True, random_shift_px=4)
    summary = train(store, tmp_path / "run", config, progress=False)
    assert np.isfinite(summary["final_loss"])
    policy = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert policy.config.image_encoder == "conv_stem" and policy.config.action_loss == "hl_gauss"
    mean, std = np.array(policy.config.timestep.proprio_mean), np.array(policy.config.timestep.proprio_std)
    assert mean.shape == std.shape == (22,) and np.all(std >= 1e-2)
    from gato_robot.data.episodes import EpisodeReader

    episodes = EpisodeStore(store).episodes(config.min_return_fraction)
    proprio = []
    for meta in episodes:
        with EpisodeReader(meta.path) as reader:
            proprio.append(reader.proprio())
    np.testing.assert_allclose(mean, np.concatenate(proprio).mean(axis=0), rtol=1e-5, atol=1e-6)  # SI units


def test_few_shot_arms_start_from_pretrained_and_from_random_weights(store, tmp_path):
    from gato_robot.model.checkpoint import save_checkpoint
    from gato_robot.model.policy import GatoPolicy
    from gato_robot.train.finetune import FinetuneConfig, finetune

    save_checkpoint(GatoPolicy(preset("tiny")), tmp_path / "pretrained")
    config = FinetuneConfig(episodes=2, steps=3, timesteps_per_batch=4, window_timesteps=2, warmup_steps=1,
                            checkpoint_every=3)
    tuned = finetune(tmp_path / "pretrained", store, tmp_path / "tuned", config, "pretrained", progress=False)
    scratch = finetune(tmp_path / "pretrained", store, tmp_path / "scratch", config, "scratch", progress=False)
    assert tuned["steps"] == scratch["steps"] == 3
    pretrained = load_checkpoint(tmp_path / "pretrained").state_dict()
    init = load_checkpoint(tmp_path / "scratch" / "init").state_dict()
    after = load_checkpoint(tmp_path / "tuned" / "checkpoint").state_dict()
    assert init.keys() == pretrained.keys()
    assert not np.allclose(init["embed.token.weight"].numpy(), pretrained["embed.token.weight"].numpy())  # a fresh init
    assert not np.allclose(after["embed.token.weight"].numpy(), pretrained["embed.token.weight"].numpy())  # it trained
    assert tuned["losses"][0] != scratch["losses"][0]
    with pytest.raises(ValueError, match="3 usable episodes; 5 were asked for"):
        finetune(tmp_path / "pretrained", store, tmp_path / "too-many", FinetuneConfig(episodes=5, steps=1),
                 progress=False)
    with pytest.raises(ValueError, match="unknown fine-tuning arm"):
        finetune(tmp_path / "pretrained", store, tmp_path / "x", config, "frozen", progress=False)


def test_expert_data_records_clean_labels_while_executing_noisy_actions(tmp_path):
    from gato_robot.sim.expert import ExpertConfig

    class Recording(ExpertAgent):
        def act(self, observation, info):
            executed = super().act(observation, info)
            self.pairs.append((executed, self.last_label.copy()))
            return executed

    agent = Recording(ExpertConfig(noise_std=0.2))
    agent.pairs = []
    store = EpisodeStore(tmp_path / "dart", create=True)
    env = make_env("mujoco", "train")
    writer = store.writer("mujoco", "train", 5, "stack the red object on the blue object")
    result = run_episode(env, agent, 5, writer=writer)
    writer.commit(result.success)
    env.close()
    meta = store.episodes()[0]
    from gato_robot.data.episodes import EpisodeReader

    recorded = EpisodeReader(meta.path).actions(0, meta.steps)
    executed = np.array([e for e, _ in agent.pairs])
    labels = np.array([label for _, label in agent.pairs])
    np.testing.assert_allclose(recorded, labels, atol=1e-6)
    assert np.abs(executed[:, :4] - labels[:, :4]).mean() > 0.005  # the noise was executed, not recorded
    np.testing.assert_array_equal(executed[:, 4], labels[:, 4])  # the gripper command is never perturbed


def test_few_shot_sweep_writes_curve_and_resumes(store, tmp_path):
    import csv

    from gato_robot.model.checkpoint import save_checkpoint
    from gato_robot.model.policy import GatoPolicy
    from gato_robot.train.finetune import FinetuneConfig
    from gato_robot.sim.fewshot import StepsRule, SweepConfig, run_sweep

    save_checkpoint(GatoPolicy(preset("tiny")), tmp_path / "pretrained")
    config = SweepConfig(tmp_path / "pretrained", store, tmp_path / "sweep", "test-4-flat", episode_counts=(1,),
                         eval_episodes=1, workers=1, steps_rule=StepsRule(base=1, per_episode=1),  # 2 steps at N=1
                         finetune=FinetuneConfig(timesteps_per_batch=4, window_timesteps=2, warmup_steps=1))
    csv_path = run_sweep(config)
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["episodes"], r["arm"]) for r in rows] == [("1", "pretrained"), ("1", "scratch")]
    assert all(r["eval_episodes"] == "1" and r["steps"] == "2" and 0 <= float(r["success_rate"]) <= 1 for r in rows)
    plot = cv2.imread(str(csv_path.with_suffix(".png")))  # the curve plot decodes and is not one flat colour
    assert plot is not None and plot.std() > 10
    mtime = csv_path.stat().st_mtime_ns
    run_sweep(config)  # everything is done: nothing is retrained or re-evaluated
    assert csv_path.stat().st_mtime_ns == mtime


def test_history_probe_measures_each_window_position_like_the_training_loss(store):
    import torch
    import torch.nn.functional as F

    from gato_robot.model.policy import GatoPolicy, batch_to_torch
    from gato_robot.train.diagnostics import action_loss_by_window_position

    torch.manual_seed(0)
    policy = GatoPolicy(preset("tiny")).eval()
    spec = policy.config.timestep
    windows = EpisodeWindows(EpisodeStore(store), spec, window_timesteps=2, patch_position_jitter=False)
    rows = action_loss_by_window_position(policy, windows, batches=1, batch_size=3, seed=7)
    assert [(r.position, r.targets) for r in rows] == [(0, 3 * spec.action_dim), (1, 3 * spec.action_dim)]
    # Independently: full-vocabulary logits of the forward pass, restricted to the 1024 bins.
    batch = batch_to_torch(windows.batch(7, 0, 3))
    with torch.no_grad():
        logits = policy(*(batch[n] for n in ("token_ids", "obs_positions", "patch_rows", "patch_cols", "image_index",
                                             "patches")))
    for row in rows:
        first = row.position * spec.timestep_tokens + spec.observation_tokens
        targets = batch["token_ids"][:, first:first + spec.action_dim] - 32000
        bins = logits[:, first - 1:first - 1 + spec.action_dim, 32000:33024]
        expected = F.cross_entropy(bins.reshape(-1, 1024), targets.reshape(-1)).item()
        assert row.cross_entropy == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="exceed the policy's context"):
        action_loss_by_window_position(policy, EpisodeWindows(EpisodeStore(store), spec, window_timesteps=4), 1)
    windows.close()


def test_grasp_probe_reads_the_gripper_token_after_expert_and_own_motion(store):
    import torch

    from gato_robot.action_spec import GRIPPER_FIRST
    from gato_robot.model.policy import GatoPolicy
    from gato_robot.train.diagnostics import grasp_decision

    episodes = EpisodeStore(store).episodes()
    torch.manual_seed(0)
    motion_first = grasp_decision(GatoPolicy(preset("tiny")).eval(), episodes)
    assert motion_first.states >= 1 and 0 <= motion_first.close_probability_own <= 1
    assert motion_first.close_probability_teacher != pytest.approx(motion_first.close_probability_own, abs=1e-6)
    config = replace(preset("tiny"), timestep=replace(preset("tiny").timestep, action_order=GRIPPER_FIRST))
    first = grasp_decision(GatoPolicy(config).eval(), episodes)  # the gripper token sees no motion token
    assert first.states == motion_first.states
    assert first.close_probability_teacher == pytest.approx(first.close_probability_own, abs=1e-6)


def test_a_damaged_episode_is_found_by_verify_and_skipped_or_fatal_in_training(store, tmp_path, caplog):
    import logging
    import shutil
    import threading

    from typer.testing import CliRunner

    from gato_robot.cli import app
    from gato_robot.data.episodes import EpisodeReader, verify_episode
    from gato_robot.errors import DamagedFileError

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    victim, *intact = sorted(copy.glob("episode-*.h5"))
    assert all(verify_episode(p).checked and verify_episode(p).problem is None for p in (victim, *intact))
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)  # a disk error in the image chunks
    victim.write_bytes(bytes(data))
    meta = EpisodeStore(copy).meta(victim)  # the header survives; the data does not
    with pytest.raises(DamagedFileError, match=victim.name), EpisodeReader(victim) as reader:
        for start in range(meta.steps):
            reader.images(start, start + 1)
    assert verify_episode(victim).problem and all(verify_episode(p).problem is None for p in intact)
    result = CliRunner().invoke(app, ["data", "verify", str(copy)])
    assert result.exit_code == 1 and victim.name in result.output and "2 intact, 1 damaged" in result.output
    data[len(data) // 3:2 * len(data) // 3] = bytes(2 * len(data) // 3 - len(data) // 3)  # a third of it: hit at once
    victim.write_bytes(bytes(data))
    outcome: dict = {}

    def run(skip_damaged, steps, run_dir):
        config = TrainConfig(preset="tiny", steps=steps, batch_size=4, window_timesteps=1, checkpoint_every=steps,
                             skip_damaged=skip_damaged)
        try:
            outcome[skip_damaged] = train(copy, run_dir, config, progress=False)
        except DamagedFileError as error:
            outcome[skip_damaged] = error

    worker = threading.Thread(target=run, args=(False, 40, tmp_path / "stops"), daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), "training hung on a damaged episode"
    assert isinstance(outcome[False], DamagedFileError) and victim.name in str(outcome[False])
    with caplog.at_level(logging.WARNING):
        run(True, 40, tmp_path / "skips")  # the default: leave it out, say which, finish
    assert outcome[True]["steps"] == 40
    assert any("skipping damaged episode" in r.getMessage() and victim.name in r.getMessage() for r in caplog.records)
    truncated = tmp_path / "header-only.h5"
    truncated.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DamagedFileError, match="header-only.h5: not a readable episode"):
        EpisodeStore.meta(truncated)
    assert "unreadable" in verify_episode(truncated).problem


def test_damaged_checkpoint_files_are_named(tmp_path):
    import torch

    from gato_robot.errors import DamagedFileError
    from gato_robot.model.checkpoint import save_checkpoint
    from gato_robot.model.policy import GatoPolicy

    torch.manual_seed(0)
    directory = save_checkpoint(GatoPolicy(preset("tiny")), tmp_path / "checkpoint")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DamagedFileError, match=r"model.safetensors: cannot load the policy's weights"):
        load_checkpoint(directory)
    (directory / "config.json").write_text('{"n_layer": 2\n"n_head": 2}')
    with pytest.raises(DamagedFileError, match=r"config.json: not a policy config \(JSONDecodeError"):
        load_checkpoint(directory)


def test_heldout_metrics_are_logged_at_each_checkpoint_and_survive_a_resume(store, tmp_path):
    """Held-out action CE and physical action error: one row per checkpoint, kept across a resume,
    and equal to a direct evaluation of the saved weights (so the numbers are the checkpoint's)."""
    from gato_robot.train.validation import heldout_batch, heldout_metrics

    config = TrainConfig(preset="tiny", steps=6, batch_size=2, window_timesteps=1, checkpoint_every=2, warmup_steps=1,
                         learning_rate=3e-3, action_loss="hl_gauss", gripper_first=True, heldout_store=str(store),
                         heldout_windows=8)
    train(store, tmp_path / "run", config, progress=False, stop_at=4)
    summary = train(store, tmp_path / "run", config, progress=False)
    rows = summary["heldout"]
    assert [row["step"] for row in rows] == [2, 4, 6]
    assert rows[-1]["action_cross_entropy"] < rows[0]["action_cross_entropy"]  # training on the same store lowers it
    policy = load_checkpoint(tmp_path / "run" / "checkpoint")
    windows = EpisodeWindows(EpisodeStore(store), policy.config.timestep, 1, min_return_fraction=0.0,
                             patch_position_jitter=False)
    direct = heldout_metrics(policy, heldout_batch(windows, 8), 6)
    windows.close()
    assert direct.action_cross_entropy == pytest.approx(rows[-1]["action_cross_entropy"], rel=1e-5)
    assert direct.action_error == pytest.approx(rows[-1]["action_error"], rel=1e-5)
    assert len(direct.action_error) == 5 and all(0 <= e < 300 for e in direct.action_error)
    with pytest.raises(ValueError, match="held-out window count"):
        heldout_batch(windows, 0)
