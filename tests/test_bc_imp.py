"""The BC-IMP baseline: trains on the store, round-trips, acts inside the action bounds in the harness."""

import numpy as np
import pytest
import torch

from gato_robot.baselines.bc_imp import BCIMPPolicy, BCIMPTrainConfig, is_bc_imp_checkpoint, load, train_bc_imp
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
    assert is_bc_imp_checkpoint(tmp_path / "bc") and not is_bc_imp_checkpoint(store)
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
