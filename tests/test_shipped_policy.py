"""The policy shipped in the package (the README main command's default)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gato_robot.action_spec import RGB_STACKING_ACTIONS
from gato_robot.deploy.policy import load_policy
from gato_robot.model.checkpoint import load_checkpoint
from gato_robot.policies import DEFAULT_POLICY, resolve_policy, shipped_policies
from gato_robot.runtime.decoding import DEPLOYED_EXPECTATION, DEPLOYED_TEMPERATURE
from gato_robot.sim.env_base import INSTRUCTION
from gato_robot.sim.rollout import make_env

REPOSITORY = Path(__file__).resolve().parents[1]


def test_default_policy_is_shipped_small_and_loads_as_float32():
    assert DEFAULT_POLICY in shipped_policies()
    directory = resolve_policy(DEFAULT_POLICY)
    weights = f"{directory}/model.safetensors"
    import os

    assert os.path.getsize(weights) < 15 * 2**20  # stored as float16
    policy = load_checkpoint(directory)
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    # Trained on 1-timestep windows (no history, results/diagnostics.md): it attends over exactly that.
    assert policy.config.context_tokens == policy.config.timestep.timestep_tokens
    # Portable: the tokenizer's text model is named, not a path on the machine that trained it.
    assert json.loads(open(f"{directory}/config.json").read())["timestep"]["text_model"] == "instructions.model"
    card = open(f"{directory}/README.md").read()
    assert "gato-robot train" in card
    # The card's figures are the recorded evaluations of these weights (results/shipped/).
    for name in ("gato-mujoco-train", "gato-mujoco-test"):
        report = json.loads((REPOSITORY / "results" / "shipped" / f"{name}.json").read_text())
        successes = sum(row["successes"] for row in report["per_triplet"].values())
        episodes = sum(row["episodes"] for row in report["per_triplet"].values())
        assert report["policy"] == DEFAULT_POLICY and f"{successes}/{episodes}" in card, name


def test_default_policy_acts_as_deployed_and_reads_the_scene():
    env = make_env("mujoco", "train")
    observations = [env.reset(seed=seed)[0] for seed in (0, 1)]
    env.close()
    from gato_robot.sim.rollout import PolicyAgent

    agent = PolicyAgent(DEFAULT_POLICY)  # the defaults are the shipped decoding
    runner = agent.policy.runner
    assert (runner.temperature, runner.expectation) == (DEPLOYED_TEMPERATURE, DEPLOYED_EXPECTATION)
    assert agent.policy.kind == "gato" and load_policy(DEFAULT_POLICY, instruction=INSTRUCTION).kind == "gato"
    actions = []
    for observation in (*observations, observations[0]):
        agent.reset(None, 0)
        actions.append(agent.act(observation, {}))
    np.testing.assert_array_equal(actions[0], actions[2])  # deterministic: replayable from a bag
    assert not np.allclose(actions[0], actions[1])  # two scenes, two actions


@pytest.mark.parametrize("name, samples", [("bc-imp", "120k"), ("bc-imp-240k", "240k")])
def test_shipped_bc_imp_baseline_loads_by_name_and_acts_in_bounds(name, samples):
    from gato_robot.sim.rollout import PolicyAgent

    assert name in shipped_policies()
    card = open(f"{resolve_policy(name)}/README.md").read()
    assert "train-baseline" in card and samples in card
    env = make_env("mujoco", "train")
    observations = [env.reset(seed=seed)[0] for seed in (0, 1)]
    env.close()
    agent = PolicyAgent(name, batch_size=2)  # resolved by name, recognized as BC-IMP by its config
    actions = agent.act_batch(observations, [{}, {}])
    bounds = np.asarray(RGB_STACKING_ACTIONS.bounds)
    assert actions.shape == (2, 5) and np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= bounds + 1e-9)
    assert not np.allclose(actions[0], actions[1])  # it reads the scene: two scenes, two actions


def test_shipped_policy_reproduces_its_golden_actions():
    """Recorded observations -> the exact bins the shipped weights chose when they were recorded
    (`scripts/golden_actions.py`), by argmax, by expectation and sampled with fixed seeds."""
    from pathlib import Path

    from gato_robot.policies.golden import DECODINGS, golden_bins

    golden = np.load(Path(__file__).parent / "data" / f"golden-{DEFAULT_POLICY}.npz")
    images = {key.removeprefix("image_"): golden[key] for key in golden.files if key.startswith("image_")}
    assert len(images) == 2 and golden["proprio"].shape == (5, 22)
    replayed = golden_bins(DEFAULT_POLICY, str(golden["instruction"]), images, golden["proprio"])
    for name in DECODINGS:
        np.testing.assert_array_equal(replayed[name], golden[f"bins_{name}"], err_msg=name)
    assert len({tuple(row) for row in golden["bins_greedy"]}) > 1  # five different states, not one answer
