import numpy as np
import pytest
import torch

from gato_robot.observation import Observation
from gato_robot.tokenizer.sequence import GatoTokenizer, TimestepSpec

INSTRUCTION = "stack the red object on the blue object"


def make_observation(spec: TimestepSpec, rng: np.random.Generator) -> Observation:
    images = {name: rng.integers(0, 256, (spec.image_height, spec.image_width, 3), dtype=np.uint8)
              for name in spec.camera_names}
    return Observation(images=images, proprio=rng.normal(size=spec.proprio_dim), instruction=INSTRUCTION)


@pytest.fixture
def spec() -> TimestepSpec:
    return TimestepSpec()


@pytest.fixture
def tokenizer(spec) -> GatoTokenizer:
    return GatoTokenizer(spec)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def write_expert_store(root, seeds, triplet: str = "train"):
    """An episode store of scripted-expert MuJoCo episodes (the real simulator, no DART noise)."""
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode

    store = EpisodeStore(root, create=True)
    env = make_env("mujoco", triplet)
    for seed in seeds:
        writer = store.writer("mujoco", triplet, seed, INSTRUCTION)
        writer.commit(run_episode(env, ExpertAgent(), seed, writer=writer).success)
    env.close()
    return root


def decisive_policy(config=None, seed: int = 0):
    """A Gato policy (``config``; default the tiny preset) with random weights scaled up so attention
    is sharp and the greedy action depends on the input (the default init gives near-uniform
    attention and one constant action), in eval mode."""
    from gato_robot.model.config import preset
    from gato_robot.model.policy import GatoPolicy

    torch.manual_seed(seed)
    policy = GatoPolicy(config if config is not None else preset("tiny"))
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if weight.dim() > 1:
                weight.normal_(0.0, 1.0 if "token" in name else 3.0 / weight.shape[-1] ** 0.5)
    return policy.eval()


def assert_window_dropout(clean: dict, dropped: dict, padded: np.ndarray) -> None:
    """Window dropout at probability 0.5 over a batch of 64: about half the windows have every
    token at the ``padded`` positions (a mask over a window's tokens) padding, and every other
    token is as in ``clean``, the same batch without the dropout."""
    from gato_robot.tokenizer.ids import PAD_ID

    rows = np.flatnonzero(np.any(dropped["token_ids"] != clean["token_ids"], axis=1))
    assert 10 < len(rows) < 54  # about half of 64 windows
    assert np.all(dropped["token_ids"][np.ix_(rows, np.flatnonzero(padded))] == PAD_ID)
    np.testing.assert_array_equal(dropped["token_ids"][:, ~padded], clean["token_ids"][:, ~padded])
