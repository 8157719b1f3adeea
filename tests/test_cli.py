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
    assert all(float(m.group(1)) > 0 and float(m.group(2)) >= float(m.group(1)) for m in rows.values())
    assert "speed-up of the cache" in result.output


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
    assert result.exit_code == 2 and "episodes, workers and batch size must be >= 1" in result.output
    result = runner.invoke(app, ["sim", "eval", "--policy", "./missing-policy", "--episodes", "1"])
    assert result.exit_code == 2 and "policy not found: './missing-policy'" in result.output
    assert "episode/s" not in result.output  # no progress bar was started
