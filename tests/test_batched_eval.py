"""Batched evaluation: episodes in lockstep with one batched policy call per tick give every
episode exactly what it gets alone (same env seed, same sampling seed)."""

from dataclasses import replace

import numpy as np
import pytest

from gato_robot.baselines.bc_imp import BCIMPAgent, BCIMPPolicy
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.proprio import proprio_vector
from gato_robot.runtime.factory import load_runner
from gato_robot.sim.evaluate import Job, chunk_jobs
from gato_robot.sim.rollout import PolicyAgent, make_env, run_episode, run_episodes_batched
from gato_robot.sim.scene import DEFAULT_SCENE
from tests.test_runtime import decisive_policy

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
    """`sim eval`'s Gato path: B loops sharing one batched runner send, row by row, the commands a
    lone ControlLoop sends for the same seed (gato_robot.sim.closed_loop.run_closed_loop); and the action path
    through SafetyLimits leaves these episodes where the environment's own action path puts them."""
    from gato_robot.sim.closed_loop import loop_for, run_closed_loop, run_control_loop_episodes

    seeds = [3, 8]
    lone_env = make_env("mujoco", "train", scene=SHORT)
    expected = []
    for seed in seeds:
        runner = load_runner("torch", checkpoint, temperature=1.0)
        runner.seed(seed)
        trace = run_closed_loop(lone_env, loop_for(lone_env, runner), SHORT.episode_steps, seed=seed)
        expected.append((len(trace.results), final_state(lone_env)))
        assert all(result.reason == "ok" for result in trace.results)
    envs = [make_env("mujoco", "train", scene=SHORT) for _ in seeds]
    results = run_control_loop_episodes(envs, load_runner("torch", checkpoint, temperature=1.0, batch_size=2), seeds)
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
    runner = load_runner("torch", checkpoint, batch_size=2)
    original = envs[1].step_joint_command

    def failed_encoder(command):  # the second env's joint reading is lost after its first step
        observation, *rest = original(command)
        observation["joint_positions"] = np.full(7, np.nan)
        return (observation, *rest)

    envs[1].step_joint_command = failed_encoder
    results = run_control_loop_episodes(envs, runner, [1, 2], record_frames=True)
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
    with pytest.raises(ValueError, match="needs the torch backend"):
        load_runner("onnxruntime", checkpoint, batch_size=2)


def test_bc_imp_acts_on_a_batch_as_on_single_observations():
    agent = BCIMPAgent(BCIMPPolicy())
    env = make_env("mujoco", "train", scene=SHORT)
    observations = [env.reset(seed=seed)[0] for seed in (1, 2, 3)]
    np.testing.assert_allclose(agent.act_batch(observations), np.stack([agent.act(o) for o in observations]),
                               atol=1e-5)


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
    rows = [row for row in cells if row and row[0] == "torch"]
    assert [row[1] for row in rows] == ["1", "2"]
    assert rows[0][3] == "1.00x" and float(rows[1][2]) > 0  # batch 1 is the reference; rates are positive
    assert all(float(cell) > 0 for row in rows for cell in row[4:7])  # policy, loop and env time each measured
