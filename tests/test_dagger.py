"""DAgger data: the policy drives, the expert's labels are stored, and the return filter keeps
relabelled episodes (their failures are what a policy must learn to recover from)."""

from dataclasses import replace

import numpy as np

from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.model.checkpoint import save_checkpoint
from sim.env_base import INSTRUCTION
from sim.relabel import RelabellingAgent
from sim.rollout import ExpertAgent, PolicyAgent, make_env, run_episode
from sim.scene import DEFAULT_SCENE
from tests.test_runtime import decisive_policy


def test_relabelled_episodes_store_expert_labels_and_bypass_the_return_filter(tmp_path):
    store = EpisodeStore(tmp_path / "store", create=True)
    env = make_env("mujoco", "train")
    for seed in (1, 2):  # two successful expert demonstrations set the expert return
        writer = store.writer("mujoco", "train", seed, INSTRUCTION)
        assert run_episode(env, ExpertAgent(), seed, writer=writer).success
        writer.commit(True)
    short = make_env("mujoco", "train", scene=replace(DEFAULT_SCENE, episode_steps=15))
    failed = store.writer("mujoco", "train", 3, INSTRUCTION)  # a failed demonstration: filtered out
    failed.commit(run_episode(short, ExpertAgent(), 3, writer=failed).success)
    checkpoint = save_checkpoint(decisive_policy(seed=2), tmp_path / "policy")
    relabeller = RelabellingAgent(PolicyAgent(str(checkpoint), temperature=1.0))
    writer = store.writer("mujoco", "train", 6_000_000, INSTRUCTION, relabelled=True)
    result = run_episode(short, relabeller, 6_000_000, writer=writer)
    meta = writer.commit(result.success)
    assert meta.relabelled and not result.success and meta.episode_return == 0

    kept = store.episodes(0.8)
    assert sorted(m.seed for m in kept) == [1, 2, 6_000_000]
    with EpisodeReader(meta.path) as reader:
        recorded = reader.actions()
    labels = np.array([s.label for s in relabeller.steps], dtype=np.float32)
    executed = np.array([s.action for s in relabeller.steps], dtype=np.float32)
    np.testing.assert_array_equal(recorded, labels)  # the expert's labels, not what the policy did
    assert not np.allclose(recorded, executed)
