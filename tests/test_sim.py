"""Both simulators, the scripted expert, the episode store and the evaluation harness (real
MuJoCo and PyBullet, headless)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gato_robot.data.episodes import EpisodeReader, EpisodeStore
from gato_robot.proprio import PROPRIO_DIM
from gato_robot.sim.evaluate import EvalConfig, evaluate, wilson_interval
from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode
from gato_robot.sim.triplets import TEST_TRIPLETS

ENGINES = ("mujoco", "pybullet")


@pytest.fixture(scope="module")
def envs():
    made = {engine: make_env(engine, "test-3-prism") for engine in ENGINES}
    yield made
    for env in made.values():
        env.close()


def red_centroid(image: np.ndarray) -> np.ndarray:
    red = (image[..., 0] > 120) & (image[..., 1] < 70) & (image[..., 2] < 70)
    assert red.sum() > 15, "red object not visible"
    rows, cols = np.nonzero(red)
    return np.array([cols.mean(), rows.mean()])


def test_engines_share_observation_spec(envs):
    observations = {engine: env.reset(seed=4)[0] for engine, env in envs.items()}
    mj, pb = observations["mujoco"], observations["pybullet"]
    assert mj.keys() == pb.keys() == set(envs["mujoco"].observation_space.spaces)
    for key in mj:
        assert mj[key].shape == pb[key].shape and mj[key].dtype == pb[key].dtype, key
        assert envs["mujoco"].observation_space[key].contains(mj[key]) or key == "joint_velocities"
    assert mj["front_left"].shape == (128, 128, 3) and mj["front_left"].dtype == np.uint8
    np.testing.assert_allclose(mj["joint_positions"], pb["joint_positions"], atol=0.01)
    np.testing.assert_allclose(mj["tcp_pose"], pb["tcp_pose"], atol=0.01)


def test_cameras_see_the_same_scene_from_the_same_poses(envs):
    for engine, env in envs.items():
        observation, info = env.reset(seed=11)
        red = info["objects"]["red"].position
        for camera in env.scene.cameras:
            expected = camera.project(red[None])[0]
            assert np.linalg.norm(red_centroid(observation[camera.name]) - expected) < 4.0, (engine, camera.name)
    mj, _ = envs["mujoco"].reset(seed=11)
    pb, _ = envs["pybullet"].reset(seed=11)
    for camera in ("front_left", "front_right"):
        assert np.linalg.norm(red_centroid(mj[camera]) - red_centroid(pb[camera])) < 3.0, camera


def test_same_seed_same_episode(envs):
    for env in envs.values():
        first, info_a = env.reset(seed=21)
        trajectory_a = [env.step(np.array([0.03, -0.02, -0.04, 0.3, 0.5]))[0] for _ in range(5)]
        second, info_b = env.reset(seed=21)
        trajectory_b = [env.step(np.array([0.03, -0.02, -0.04, 0.3, 0.5]))[0] for _ in range(5)]
        np.testing.assert_array_equal(first["front_left"], second["front_left"])
        for a, b in zip(trajectory_a, trajectory_b):
            np.testing.assert_allclose(a["joint_positions"], b["joint_positions"], atol=1e-9)
        np.testing.assert_allclose(info_a["objects"]["red"].position, info_b["objects"]["red"].position)


def test_bad_actions_are_rejected(envs):
    env = envs["mujoco"]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 5 finite values"):
        env.step(np.array([0.0, np.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="expected 5 finite values"):
        env.step(np.zeros(4))


@pytest.mark.parametrize("engine", ENGINES)
def test_expert_stacks_every_test_triplet(engine):
    for triplet in TEST_TRIPLETS:
        env = make_env(engine, triplet.name, render_cameras=False)
        results = [run_episode(env, ExpertAgent(), seed) for seed in range(2)]
        poses = env.object_poses()
        env.close()
        assert all(r.success for r in results), (engine, triplet.name, results)
        assert poses["red"].position[2] > poses["blue"].position[2] + 0.02


def test_episode_store_round_trip_and_filter(tmp_path):
    store = EpisodeStore(tmp_path / "store", create=True)
    env = make_env("mujoco", "train")
    result = run_episode(env, ExpertAgent(), 3, writer=(writer := store.writer("mujoco", "train", 3, "stack")))
    meta = writer.commit(result.success)
    failed = store.writer("mujoco", "train", 4, "stack")
    failed.add({"front_left": np.zeros((128, 128, 3), np.uint8), "front_right": np.zeros((128, 128, 3), np.uint8)},
               np.zeros(PROPRIO_DIM), np.zeros(5), 0.0)
    failed.commit(False)
    assert len(store) == 2 and meta.success and meta.steps == result.steps and meta.episode_return > 0
    assert [m.seed for m in store.episodes(min_return_fraction=0.8)] == [3]
    with EpisodeReader(meta.path) as reader:
        images = reader.images(5, 7)
        assert images["front_left"].shape == (2, 128, 128, 3) and reader.proprio().shape == (result.steps, PROPRIO_DIM)
        assert np.abs(reader.actions()).max() <= 1.0
    with pytest.raises(FileNotFoundError, match="episode store not found"):
        EpisodeStore(tmp_path / "missing")


def test_return_filter_is_relative_to_the_typical_expert_return(tmp_path):
    store = EpisodeStore(tmp_path / "returns", create=True)
    image = {"front_left": np.zeros((8, 8, 3), np.uint8)}
    for seed, rewards in enumerate([[1.0] * 10, [1.0] * 10, [1.0] * 19, [0.0] * 10, [1.0] * 9, [1.0] * 7]):
        writer = store.writer("mujoco", "train", seed, "stack")
        for reward in rewards:
            writer.add(image, np.zeros(PROPRIO_DIM), np.zeros(5), reward)
        writer.commit(success=sum(rewards) > 0)
    # Median return 9.5: one long-held success (19) must not raise the bar above the others.
    assert [m.seed for m in store.episodes(min_return_fraction=0.8)] == [0, 1, 2, 4]
    assert len(store.episodes()) == 6


def test_killing_generate_keeps_every_completed_episode(tmp_path):
    out = tmp_path / "store"
    command = [sys.executable, "-m", "gato_robot.cli", "sim", "generate", "--out", str(out), "--episodes", "40",
               "--workers", "1", "--engine", "mujoco"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("episode-*.h5"))) < 2:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    store = EpisodeStore(out)
    metas = store.episodes()
    assert 2 <= len(metas) < 40
    for meta in metas:  # every committed file is complete and readable
        with EpisodeReader(meta.path) as reader:
            assert reader.actions().shape == (meta.steps, 5)
            assert reader.images(meta.steps - 1, meta.steps)["front_right"].shape == (1, 128, 128, 3)
    # Running it again continues: committed seeds are skipped, only the missing ones are generated.
    seeds = sorted(m.seed for m in metas)
    before = {m.path: m.path.stat().st_mtime_ns for m in metas}
    command[command.index("40")] = str(seeds[-1] + 2)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{len(seeds)} already there" in finished.stdout.replace("\n", " ")
    assert sorted(m.seed for m in store.episodes()) == list(range(seeds[-1] + 2))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-3) and high == pytest.approx(0.9565, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_evaluate_combines_training_and_test_triplets():
    report = evaluate(EvalConfig("expert", triplets="train,test-4", episodes=2))  # a prefix names test-4-flat
    assert list(report.per_triplet) == ["train", "test-4-flat"]
    assert [row.episodes for row in report.per_triplet.values()] == [2, 2]
    # The scripted expert stacks every episode (250/250 on the test triplets, results/expert-mujoco-test.json).
    assert [row.successes for row in report.per_triplet.values()] == [2, 2]
    assert report.success_rate == 1.0
    written = report.to_json()  # the file layout the tables read
    assert written["overall"]["success_rate"] == 1.0 and written["per_triplet"]["train"]["successes"] == 2
    assert written["policy"] == "expert" and written["episodes_per_triplet"] == 2


def test_evaluate_reports_per_triplet_with_videos(tmp_path):
    report = evaluate(EvalConfig("expert", triplets="test-4-flat", episodes=2, video_dir=tmp_path / "videos"))
    row = report.per_triplet["test-4-flat"]
    assert row.episodes == 2 and row.successes == 2 and row.ci95[0] > 0.15
    video = Path(row.videos[0])
    assert video.is_file() and video.stat().st_size > 10_000
    assert report.success_rate == 1.0


def test_sim_eval_command_prints_a_table_and_writes_the_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from gato_robot.cli import app

    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["sim", "eval", "--policy", "expert", "--triplets", "test-2-holes", "--episodes",
                                      "1", "--workers", "1", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "test-2-holes" in result.output and "100.0%" in result.output
    data = json.loads(report.read_text())
    assert data["per_triplet"]["test-2-holes"]["successes"] == 1 and data["engine"] == "mujoco"
    bad = CliRunner().invoke(app, ["sim", "eval", "--engine", "gazebo", "--episodes", "1", "--workers", "1"])
    assert bad.exit_code == 2 and "unknown engine 'gazebo'" in bad.output


def test_relabelling_the_expert_with_itself_agrees_and_a_frozen_policy_does_not():
    from gato_robot.sim.relabel import RelabellingAgent, agreement
    from gato_robot.sim.rollout import ExpertAgent, make_env, run_episode

    env = make_env("mujoco", "train", render_cameras=False)
    relabeller = RelabellingAgent(ExpertAgent())
    result = run_episode(env, relabeller, seed=3)
    stats = agreement(relabeller.steps)
    assert result.success and len(relabeller.steps) == result.steps
    # The labels are read off the state (ScriptedExpert.label), the expert's actions off its phase
    # machine: they differ only in the few ticks around a phase change (tests/test_dagger.py).
    assert all(stats[f"{axis}_sign_agreement"] == 1.0 for axis in ("tcp_vx", "tcp_vy"))
    assert stats["tcp_vz_sign_agreement"] > 0.85 and stats["gripper_agreement"] > 0.95
    assert stats["final_red_distance_xy"] < 0.02  # it ends above the stacked red object

    class Frozen:  # holds still with the gripper open: the expert wants to move and, later, to close
        needs_cameras = False

        def reset(self, env, seed):
            pass

        def act(self, observation, info):
            return np.array([0.0, 0.0, 0.0, 0.0, -1.0])

    relabeller = RelabellingAgent(Frozen())
    run_episode(env, relabeller, seed=3)
    env.close()
    stats = agreement(relabeller.steps)
    assert stats["tcp_vz_sign_agreement"] == 0.0  # sign(0) never matches a moving expert
    assert stats["final_red_distance_xy"] == pytest.approx(np.linalg.norm(relabeller.steps[0].red_offset[:2]), abs=1e-3)


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                    reason="reads child processes from Linux /proc/PID/task/TID/children")
def test_sigterm_ends_a_pooled_run_with_its_workers(tmp_path):
    store, log = tmp_path / "store", tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        run = subprocess.Popen([sys.executable, "-m", "gato_robot.cli", "sim", "generate", "--out", str(store),
                                "--engine", "mujoco", "--triplets", "train", "--episodes", "40", "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=stderr)
        deadline, workers = time.monotonic() + 120, set()
        while time.monotonic() < deadline and len(workers) < 2 and run.poll() is None:
            workers = _children(run.pid)  # the pool's two workers
            time.sleep(0.2)
        assert len(workers) >= 2, f"the pool never started: {log.read_text()[-2000:]}"
        time.sleep(3)  # the workers are inside episodes
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-2000:]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "pool workers outlived the terminated run"
    assert len(EpisodeStore(store).episodes(0.0) if store.exists() else []) < 40  # it did stop early
