import re

import pytest
from typer.testing import CliRunner

from gato_robot.cli import app

runner = CliRunner()


def all_commands(typer_app, prefix=()):
    import typer.main

    group = typer.main.get_command(typer_app)
    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + (name,))
    yield from walk(group, prefix)


@pytest.mark.parametrize("command", list(all_commands(app)), ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def test_bench_policy_prints_cached_and_uncached_latency():
    result = runner.invoke(app, ["bench", "policy", "--preset", "tiny", "--steps", "3"])
    assert result.exit_code == 0, result.output
    rows = {name: re.search(rf"{name}\s*│\s*([\d.]+)\s*│\s*([\d.]+)", result.output) for name in ("KV-cached", "uncached")}
    assert all(rows.values()), result.output
    assert all(float(m.group(1)) > 0 for m in rows.values())
    # The printed speed-up is the ratio of the two medians in the table (not a figure of its own).
    speedup = float(re.search(r"speed-up of the cache \(median\): ([\d.]+)x", result.output).group(1))
    ratio = float(rows["uncached"].group(1)) / float(rows["KV-cached"].group(1))
    assert speedup == pytest.approx(ratio, rel=0.1, abs=0.06)


def test_model_init_then_demo_loads_it(tmp_path):
    result = runner.invoke(app, ["model", "init", "--out", str(tmp_path / "ckpt"), "--preset", "tiny"])
    assert result.exit_code == 0 and (tmp_path / "ckpt" / "model.safetensors").is_file()
    result = runner.invoke(app, ["demo", "--checkpoint", str(tmp_path / "ckpt"), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "tcp_vx" in result.output and "observation -> action" in result.output


def test_demo_with_a_missing_checkpoint_names_it(tmp_path):
    result = runner.invoke(app, ["demo", "--checkpoint", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "error:" in result.output and "checkpoint directory not found" in result.output


def test_sim_eval_rejects_bad_counts_and_a_missing_policy_before_any_worker_starts():
    runner = CliRunner()
    result = runner.invoke(app, ["sim", "eval", "--episodes", "-3"])
    assert result.exit_code == 2 and "Invalid value for '--episodes'" in result.output  # at parse time
    result = runner.invoke(app, ["sim", "eval", "--policy", "./missing-policy", "--episodes", "1"])
    assert result.exit_code == 2 and "policy not found: './missing-policy'" in result.output
    assert "episode/s" not in result.output  # no progress bar was started


@pytest.mark.parametrize("arguments, option", [
    (["train", "--store", ".", "--run", "r", "--steps", "0"], "--steps"),
    (["train", "--store", ".", "--run", "r", "--batch-size", "0"], "--batch-size"),
    (["train", "--store", ".", "--run", "r", "--weight-decay", "-0.1"], "--weight-decay"),
    (["sim", "generate", "--out", "o", "--episodes", "0"], "--episodes"),
    (["sim", "dagger", "--store", "s", "--policy", "p", "--temperature", "-1"], "--temperature"),
    (["sim", "eval", "--workers", "0"], "--workers"),
    (["replay", ".", "--model", "m", "--rate-hz", "0"], "--rate-hz"),
    (["finetune-sweep", "--pretrained", ".", "--store", ".", "--triplet", "t", "--eval-episodes", "0"],
     "--eval-episodes"),
    (["train", "--store", "./no-such-store", "--run", "r"], "--store"),
    (["replay", "./no-such-bag", "--model", "m"], "bag"),
])
def test_counts_rates_and_temperatures_are_checked_when_parsed(arguments, option):
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output
