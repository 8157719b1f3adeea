"""`gato-robot train` under torchrun (2 CPU processes, gloo on loopback): the same loss curve and
weights as one process with the same global batch, and a run stopped at world size 2 resumes at 1."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gato_robot.data.episodes import EpisodeStore
from tests.conftest import write_expert_store

from gato_robot.train.trainer import TrainConfig, train

ARGS = ["--preset", "tiny", "--steps", "6", "--batch-size", "4", "--window", "1", "--checkpoint-every", "2",
        "--no-patch-jitter", "--random-shift", "4", "--action-loss", "hl_gauss"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_expert_store(tmp_path_factory.mktemp("ddp") / "store", range(2))


def torchrun(processes: int, *args: str, command: str = "train") -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                             str(processes), "-m", "gato_robot.cli", command, *args],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def single_process(store, run, stop_at=None) -> None:
    config = TrainConfig(preset="tiny", steps=6, batch_size=4, window_timesteps=1, checkpoint_every=2,
                         patch_position_jitter=False, random_shift_px=4, action_loss="hl_gauss")
    train(store, run, config, progress=False, stop_at=stop_at)


def losses_and_weights(run):
    state = torch.load(run / "checkpoint" / "training_state.pt", weights_only=False)
    return state["losses"], load_file(run / "checkpoint" / "model.safetensors")


def assert_same_run(a, b, steps: int = 6):
    (losses_a, weights_a), (losses_b, weights_b) = losses_and_weights(a), losses_and_weights(b)
    assert len(losses_a) == len(losses_b) == steps
    torch.testing.assert_close(torch.tensor(losses_a), torch.tensor(losses_b), rtol=1e-4, atol=1e-5)
    assert_same_weights(weights_a, weights_b)


def assert_same_weights(weights_a, weights_b):
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], rtol=1e-3, atol=1e-5, msg=name)


def test_two_processes_equal_one_with_the_same_global_batch(store, tmp_path):
    single_process(store, tmp_path / "one")
    torchrun(2, "--store", str(store), "--run-dir", str(tmp_path / "two"), *ARGS)
    assert_same_run(tmp_path / "one", tmp_path / "two")
    import json

    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2


def test_a_run_stopped_at_world_size_two_resumes_at_one(store, tmp_path):
    single_process(store, tmp_path / "straight")
    torchrun(2, "--store", str(store), "--run-dir", str(tmp_path / "resumed"), *ARGS, "--stop-at", "3")
    assert len(losses_and_weights(tmp_path / "resumed")[0]) == 3
    single_process(store, tmp_path / "resumed")  # the rest in one process
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_sharded_run_equals_one_process_and_moves_between_sharded_and_replicated(store, tmp_path):
    """FSDP2 at 2 processes: the same curve and weights as one process; stopped sharded at step 2,
    continued in one process to step 4 (name-keyed optimizer state into a plain optimizer), then
    sharded again to the end (index-keyed state into the shards): still the same run."""
    single_process(store, tmp_path / "one")
    torchrun(2, "--store", str(store), "--run-dir", str(tmp_path / "fsdp"), *ARGS, "--sharding", "fsdp")
    assert_same_run(tmp_path / "one", tmp_path / "fsdp")
    run = tmp_path / "moved"
    torchrun(2, "--store", str(store), "--run-dir", str(run), *ARGS, "--sharding", "fsdp", "--stop-at", "2")
    state = torch.load(run / "checkpoint" / "training_state.pt", weights_only=False)
    assert all(isinstance(name, str) for name in state["optimizer"]["state"])  # gathered from the shards
    single_process(store, run, stop_at=4)
    assert len(losses_and_weights(run)[0]) == 4
    torchrun(2, "--store", str(store), "--run-dir", str(run), *ARGS, "--sharding", "fsdp")
    assert_same_run(tmp_path / "one", run)


def test_the_bc_imp_baseline_trains_the_same_on_two_processes(store, tmp_path):
    import json

    from gato_robot.baselines.bc_imp import BCIMPTrainConfig, train_bc_imp

    one = train_bc_imp(store, tmp_path / "one", BCIMPTrainConfig(steps=4, batch_size=4, random_shift_px=4),
                       progress=False)
    torchrun(2, "--store", str(store), "--out", str(tmp_path / "two"), "--steps", "4", "--batch-size", "4",
             "--random-shift", "4", command="train-baseline")
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and two["samples"] == one["samples"] == 16
    assert abs(two["final_loss"] - one["final_loss"]) < 1e-4 * max(1.0, one["final_loss"])
    assert_same_weights(load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors"))


def test_finetuning_from_scratch_runs_the_same_on_two_processes(store, tmp_path):
    from gato_robot.model.checkpoint import save_checkpoint
    from gato_robot.model.config import preset
    from gato_robot.model.policy import GatoPolicy
    from gato_robot.train.finetune import FinetuneConfig, finetune

    torch.manual_seed(0)
    pretrained = save_checkpoint(GatoPolicy(preset("tiny", context_tokens=preset("tiny").timestep.timestep_tokens)),
                                 tmp_path / "pretrained")
    finetune(pretrained, store, tmp_path / "one", FinetuneConfig(episodes=None, steps=3),
             arm="scratch", progress=False)
    torchrun(2, "--pretrained", str(pretrained), "--store", str(store), "--run-dir", str(tmp_path / "two"), "--steps", "3",
             "--scratch", command="finetune")
    assert_same_run(tmp_path / "one", tmp_path / "two", steps=3)
    assert_same_weights(load_file(tmp_path / "one" / "init" / "model.safetensors"),
                        load_file(tmp_path / "two" / "init" / "model.safetensors"))


def test_sharding_is_checked_before_a_run_starts():
    from gato_robot.train.distributed import Cluster
    from gato_robot.train.trainer import check_sharding

    assert check_sharding(TrainConfig(sharding="fsdp"), Cluster(0, 2))
    assert not check_sharding(TrainConfig(sharding="fsdp"), Cluster())  # one process: nothing to shard
    with pytest.raises(ValueError, match="unknown sharding 'zero3'"):
        check_sharding(TrainConfig(sharding="zero3"), Cluster(0, 2))
    with pytest.raises(ValueError, match="not supported with --sharding fsdp"):
        check_sharding(TrainConfig(sharding="fsdp", ema_decay=0.999), Cluster(0, 2))


def test_a_global_batch_that_does_not_split_is_refused(store, tmp_path):
    from gato_robot.train.distributed import Cluster

    with pytest.raises(ValueError, match="multiple of the number of processes"):
        Cluster(0, 3).shard(4)
    assert list(Cluster(1, 2).shard(4)) == [2, 3]


def test_bench_train_prints_the_scaling_ratio(store):
    from typer.testing import CliRunner

    from gato_robot.cli import app

    result = CliRunner().invoke(app, ["bench", "train", "--store", str(store), "--processes", "1,2", "--steps", "3",
                                      "--batch-size", "4", "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.strip().startswith("│") and "x" in line]
    assert len(rows) == 2 and "1.00x" in rows[0], result.output


def test_stores_generated_apart_merge_into_one(tmp_path):
    """Generation spread over machines: disjoint seed ranges into stores of their own, then merged."""
    from typer.testing import CliRunner

    from gato_robot.cli import app

    runner = CliRunner()
    for name, seed, noise in (("a", 0, "0.1"), ("b", 1, "0.1"), ("clash", 0, "0.3")):
        result = runner.invoke(app, ["sim", "generate", "--out", str(tmp_path / name), "--episodes", "1", "--seed",
                                     str(seed), "--noise", noise, "--workers", "1"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--into", str(tmp_path / "all")])
    assert result.exit_code == 0 and "copied 2 episodes" in result.output, result.output
    result = runner.invoke(app, ["data", "merge", str(tmp_path / "a"), "--into", str(tmp_path / "all")])
    assert "copied 0 episodes" in result.output and "1 already there" in result.output, result.output
    result = runner.invoke(app, ["data", "merge", str(tmp_path / "clash"), "--into", str(tmp_path / "all")])
    assert result.exit_code == 2 and "different episodes under one name" in result.output, result.output
    assert len(EpisodeStore(tmp_path / "all")) == 2
    assert not list((tmp_path / "all").glob(".*"))  # no temporary file left behind
