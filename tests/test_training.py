"""Training: data windows, exact resume after an interruption, schedule, learning curve."""

import numpy as np
import pytest

from gato_robot.data.dataset import EpisodeWindows
from gato_robot.data.episodes import EpisodeStore
from gato_robot.model.checkpoint import load_checkpoint
from gato_robot.model.config import preset
from gato_robot.tokenizer.ids import PAD_ID
from gato_robot.train.trainer import TrainConfig, learning_rate, train
from sim.rollout import ExpertAgent, make_env, run_episode


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "store"
    store = EpisodeStore(root, create=True)
    env = make_env("mujoco", "train")
    for seed in range(3):
        writer = store.writer("mujoco", "train", seed, "stack the red object on the blue object")
        result = run_episode(env, ExpertAgent(), seed, writer=writer)
        writer.commit(result.success)
    env.close()
    return root


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
    assert (tmp_path / "whole" / "learning_curve.png").stat().st_size > 5000
    assert not list((tmp_path / "split").glob(".checkpoint*"))  # no temporary checkpoint left behind
