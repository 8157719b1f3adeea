"""Batched evaluation: episodes in lockstep with one batched policy call per tick give every
episode exactly what it gets alone (same env seed, same sampling seed)."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from gato_robot.baselines.bc_imp import BCIMPPolicy
from gato_robot.deploy.policy import BCIMPDeployment, load_policy
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.observation import Observation
from gato_robot.proprio import proprio_vector
from gato_robot.runtime.factory import load_runner
from gato_robot.sim.evaluate import Job, chunk_jobs
from gato_robot.sim.rollout import PolicyAgent, make_env, run_episode, run_episodes_batched
from gato_robot.sim.scene import DEFAULT_SCENE
from tests.conftest import decisive_policy

SHORT = replace(DEFAULT_SCENE, episode_steps=12)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(decisive_policy(seed=4), tmp_path_factory.mktemp("batched") / "checkpoint")


def final_state(env) -> np.ndarray:
    return proprio_vector(env._observation())


@pytest.mark.parametrize("expectation", ["off", "physical"])
def test_lockstep_batch_reproduces_each_episode_alone(checkpoint, expectation):
    seeds = [3, 8, 21]
    alone_env = make_env("mujoco", "train", scene=SHORT)
    alone = PolicyAgent(str(checkpoint), "torch", temperature=1.0, expectation=expectation)
    expected = []
    for seed in seeds:
        result = run_episode(alone_env, alone, seed)
        expected.append((result.steps, result.success, final_state(alone_env)))
    envs = [make_env("mujoco", "train", scene=SHORT) for _ in seeds]
    batched = PolicyAgent(str(checkpoint), "torch", temperature=1.0, expectation=expectation, batch_size=3)
    results = run_episodes_batched(envs, batched, seeds)
    for (steps, success, state), result, env in zip(expected, results, envs):
        assert (result.steps, result.success) == (steps, success)
        np.testing.assert_allclose(final_state(env), state, atol=1e-9)
    assert [r.seed for r in results] == seeds and [r.triplet for r in results] == [e.triplet.name for e in envs]
    assert len({tuple(np.round(final_state(env), 6)) for env in envs}) == 3  # the episodes differ


def test_control_loop_batch_scores_what_one_loop_per_episode_sends(checkpoint):
    """`sim eval`'s path: B loops sharing one batched policy send, row by row, the commands a
    lone ControlLoop sends for the same seed (gato_robot.sim.closed_loop.run_closed_loop); and the action path
    through SafetyLimits leaves these episodes where the environment's own action path puts them."""
    from gato_robot.sim.closed_loop import loop_for, run_closed_loop, run_control_loop_episodes

    seeds = [3, 8]
    lone_env = make_env("mujoco", "train", scene=SHORT)
    expected = []
    for seed in seeds:
        policy = load_policy(checkpoint, temperature=1.0, expectation="off")  # sampled: seeds matter
        policy.seed(seed)
        trace = run_closed_loop(lone_env, loop_for(lone_env, policy), SHORT.episode_steps, seed=seed)
        expected.append((len(trace.results), final_state(lone_env)))
        assert all(result.reason == "ok" for result in trace.results)
    envs = [make_env("mujoco", "train", scene=SHORT) for _ in seeds]
    results = run_control_loop_episodes(envs, load_policy(checkpoint, temperature=1.0, expectation="off", batch_size=2),
                                        seeds)
    for (steps, state), result, env in zip(expected, results, envs):
        assert (result.steps, result.held) == (steps, "")
        np.testing.assert_allclose(final_state(env), state, atol=1e-9)
    action_path = PolicyAgent(str(checkpoint), "torch", temperature=1.0, expectation="off")
    for seed, env in zip(seeds, envs):
        run_episode(lone_env, action_path, seed)
        np.testing.assert_allclose(final_state(lone_env), final_state(env), atol=1e-6)


def test_a_held_tick_ends_its_episode_with_the_reason(checkpoint):
    from gato_robot.sim.closed_loop import run_control_loop_episodes

    envs = [make_env("mujoco", "train", scene=SHORT) for _ in range(2)]
    policy = load_policy(checkpoint, batch_size=2)
    original = envs[1].step_joint_command

    def failed_encoder(command):  # the second env's joint reading is lost after its first step
        observation, *rest = original(command)
        observation["joint_positions"] = np.full(7, np.nan)
        return (observation, *rest)

    envs[1].step_joint_command = failed_encoder
    results = run_control_loop_episodes(envs, policy, [1, 2], record_frames=True)
    assert results[0].held == "" and results[0].steps == SHORT.episode_steps
    assert len(results[0].frames) == SHORT.episode_steps and results[0].frames[0].shape == (128, 256, 3)  # video
    assert results[1].held and not results[1].success and results[1].steps < SHORT.episode_steps


def test_batched_runner_rows_match_batch_one_runners(checkpoint):
    from gato_robot.bench.policy_latency import random_observation
    from gato_robot.tokenizer.sequence import GatoTokenizer

    batched = load_runner("torch", checkpoint, temperature=1.0, batch_size=2)
    singles = [load_runner("torch", checkpoint, temperature=1.0) for _ in range(2)]
    batched.seed(5, 6)
    for runner, seed in zip(singles, (5, 6)):
        runner.seed(seed)
    tokenizer = GatoTokenizer(batched.config.timestep)
    rng = np.random.default_rng(0)
    for _ in range(4):
        observations = [tokenizer.encode_observation(random_observation(tokenizer, rng)) for _ in range(2)]
        rows = batched.act_batch(observations)
        for row, runner, observation in zip(rows, singles, observations):
            np.testing.assert_array_equal(row, runner.act(observation))
    with pytest.raises(ValueError, match="expected 2 observations"):
        batched.act_batch(observations[:1])
    with pytest.raises(ValueError, match="needs the torch or onnxruntime backend"):
        load_runner("tensorrt", checkpoint, batch_size=2)


def test_bc_imp_acts_on_a_batch_as_on_single_observations():
    torch.manual_seed(0)
    policy = BCIMPDeployment(BCIMPPolicy())
    env = make_env("mujoco", "train", scene=SHORT)
    encoded = [policy.encode(Observation.from_sensors(env.reset(seed=seed)[0], policy.inputs.camera_names, ""))
               for seed in (1, 2, 3)]
    np.testing.assert_allclose(policy.act_batch(encoded), np.concatenate([policy.act_batch([e]) for e in encoded]),
                               atol=1e-5)
    images, proprio, _ = encoded[0]
    with pytest.raises(ValueError, match="camera 'front_left'"):  # the loop holds on it
        policy.encode(Observation({"front_left": images[0][:64], "front_right": images[1]}, proprio.astype(float)))
    with pytest.raises(ValueError, match="22 finite values"):
        policy.encode(Observation({"front_left": images[0], "front_right": images[1]}, np.full(22, np.nan)))


def test_bc_imp_is_scored_through_the_control_loop_as_one_loop_per_episode(tmp_path):
    """BC-IMP runs under the same ControlLoop as Gato (`sim eval` scores both by it): two loops
    sharing one batched BC-IMP send, row by row, what a lone loop sends; and the loop is the one
    the node would run (SafetyLimits, watchdog), not the environment's action path."""
    from gato_robot.baselines.bc_imp import save
    from gato_robot.sim.closed_loop import loop_for, run_closed_loop, run_control_loop_episodes

    torch.manual_seed(1)
    save(BCIMPPolicy(), tmp_path / "bc")
    seeds, lone_env, expected = [4, 9], make_env("mujoco", "train", scene=SHORT), []
    for seed in seeds:
        policy = load_policy(tmp_path / "bc")
        assert policy.kind == "bc_imp"
        trace = run_closed_loop(lone_env, loop_for(lone_env, policy), SHORT.episode_steps, seed=seed)
        assert all(result.reason == "ok" for result in trace.results)
        expected.append(final_state(lone_env))
    envs = [make_env("mujoco", "train", scene=SHORT) for _ in seeds]
    results = run_control_loop_episodes(envs, load_policy(tmp_path / "bc", batch_size=2), seeds)
    for state, result, env in zip(expected, results, envs):
        assert (result.steps, result.held) == (SHORT.episode_steps, "")
        np.testing.assert_allclose(final_state(env), state, atol=1e-6)
    assert not np.allclose(expected[0], expected[1])  # two scenes, two motions


def test_jobs_are_chunked_per_triplet_and_decoding_with_work_for_every_worker():
    def job(triplet, seed, policy="p", store=None):
        return Job("mujoco", triplet, seed, policy, "torch", False, store, 0.0, 1.0)

    jobs = [job("train", s) for s in range(10)] + [job("test-1-slanted", s) for s in range(3)]
    chunks = chunk_jobs(jobs, batch_size=8, workers=2)
    assert sorted(len(c) for c in chunks) == [1, 2, 5, 5]  # 10 -> 5 + 5 (two workers), 3 -> 2 + 1
    assert all(len({j.triplet for j in c}) == 1 for c in chunks)
    assert sum(len(c) for c in chunks) == 13
    experts = chunk_jobs([job("train", s, policy="expert") for s in range(4)], batch_size=8, workers=1)
    assert [len(c) for c in experts] == [1, 1, 1, 1]


def test_bench_eval_prints_rates_and_ratios_to_batch_one(checkpoint):
    from typer.testing import CliRunner

    from gato_robot.cli import app

    result = CliRunner().invoke(app, ["bench", "eval", "--policy", str(checkpoint), "--batch-size", "1",
                                      "--batch-size", "2", "--backend", "torch", "--steps", "3"])
    assert result.exit_code == 0, result.output
    cells = [[c.strip() for c in line.replace("│", "|").split("|") if c.strip()] for line in result.output.splitlines()]
    rows = [row for row in cells if len(row) == 8 and row[1] == "torch"]
    assert [(row[0], row[2]) for row in rows] == [("checkpoint", "1"), ("checkpoint", "2"), ("bc-imp", "1"),
                                                   ("bc-imp", "2")]  # the baseline through the same loop
    assert rows[0][4] == "1.00x" and float(rows[1][3]) > 0  # batch 1 is the reference; rates are positive
    assert all(float(cell) > 0 for row in rows for cell in row[5:8])  # policy, loop and env time each measured
    ratio = float(re.search(r"ratio (\d+\.\d+)", result.output).group(1))  # Gato s/episode over BC-IMP's
    per_episode = [60 / float(row[3]) for row in rows]
    assert ratio == pytest.approx(min(per_episode[:2]) / min(per_episode[2:]), rel=0.05)
