"""Compiled runtime: ONNX export, ONNX Runtime vs PyTorch parity, TensorRT's CPU-side logic."""

import importlib.util
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from gato_robot.bench.policy_latency import random_observation
from gato_robot.cli import app
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.model.config import preset
from gato_robot.runtime.export import OPSET, export_checkpoint, file_digest
from gato_robot.runtime.factory import load_runner
from gato_robot.runtime.graphs import DECODE_INPUTS, OUTPUTS, PREFILL_INPUTS
from gato_robot.runtime.onnx_runner import OnnxRunner
from gato_robot.runtime.tensorrt_engine import (ENGINE_MANIFEST, build_engines, decode_profiles, ensure_engines,
                                                prefill_profiles, require_tensorrt)
from gato_robot.runtime.verify import verify_export
from gato_robot.tokenizer.sequence import GatoTokenizer
from tests.conftest import decisive_policy

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    checkpoint = save_checkpoint(decisive_policy(), root / "checkpoint")
    export = export_checkpoint(checkpoint, root / "onnx")
    return checkpoint, export


def test_graphs_have_the_documented_interface(exported):
    _, export = exported
    for path, inputs in ((export.prefill, PREFILL_INPUTS), (export.decode, DECODE_INPUTS)):
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == list(inputs)
        assert [o.name for o in model.graph.output] == list(OUTPUTS)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET
    prefill = onnx.load(str(export.prefill))
    token_dims = prefill.graph.input[0].type.tensor_type.shape.dim
    assert token_dims[0].dim_param and token_dims[1].dim_param, "prefill batch and token axes must be dynamic"
    decode = onnx.load(str(export.decode))
    dynamic = {i.name: [k for k, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param]
               for i in decode.graph.input}
    # decode: only the batch axis is dynamic (one token per row; the cache's fixed capacity)
    assert dynamic == {"action_token": [0], "cache_keys": [1], "cache_values": [1], "past_length": []}


def test_batched_onnxruntime_rows_decode_what_batch_one_runners_and_torch_decode(exported):
    """`sim eval` runs B episodes through one ONNX Runtime call per token: row i samples exactly what
    a batch-1 ONNX runner, and the batched torch runner, seeded the same way sample."""
    checkpoint, export = exported
    batched = load_runner("onnxruntime", export.directory, temperature=1.0, batch_size=3)
    torch_batched = load_runner("torch", checkpoint, temperature=1.0, batch_size=3)
    singles = [load_runner("onnxruntime", export.directory, temperature=1.0) for _ in range(3)]
    for runner in (batched, torch_batched):
        runner.seed(5, 6, 7)
    for runner, seed in zip(singles, (5, 6, 7)):
        runner.seed(seed)
    tokenizer = GatoTokenizer(batched.config.timestep)
    rng = np.random.default_rng(0)
    for _ in range(4):  # past the tiny context: eviction in lockstep
        observations = [tokenizer.encode_observation(random_observation(tokenizer, rng)) for _ in range(3)]
        rows = batched.act_batch(observations)
        np.testing.assert_array_equal(rows, np.stack([r.act(o) for r, o in zip(singles, observations)]))
        np.testing.assert_array_equal(rows, torch_batched.act_batch(observations))
    assert len({tuple(row) for row in rows}) == 3
    with pytest.raises(ValueError, match="expected 3 observations"):
        batched.act_batch(observations[:2])


def test_a_checkpoint_is_exported_once_beside_it_and_again_when_its_weights_change(exported, tmp_path):
    from gato_robot.runtime.export import EXPORT_MANIFEST, cached_export

    checkpoint, _ = exported
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    runner = load_runner("onnxruntime", copy)  # a checkpoint, not an export: exported on first use
    export_dir = copy / "onnx"
    assert (export_dir / "prefill.onnx").is_file() and runner.config == load_runner("torch", copy).config
    stamp = (export_dir / "prefill.onnx").stat().st_mtime_ns
    assert cached_export(copy) == export_dir and (export_dir / "prefill.onnx").stat().st_mtime_ns == stamp  # reused
    save_checkpoint(decisive_policy(seed=9), copy)  # new weights: the export is stale
    assert cached_export(copy) == export_dir and (export_dir / "prefill.onnx").stat().st_mtime_ns != stamp
    assert json.loads((export_dir / EXPORT_MANIFEST).read_text())["weights"] == file_digest(copy / "model.safetensors")
    tokenizer = GatoTokenizer(runner.config.timestep)
    tokens = tokenizer.encode_observation(random_observation(tokenizer, np.random.default_rng(3)))
    np.testing.assert_array_equal(load_runner("onnxruntime", copy).act(tokens), load_runner("torch", copy).act(tokens))


def _export_stamp(checkpoint: str) -> int:
    from gato_robot.runtime.export import PREFILL_FILE, cached_export

    return (cached_export(checkpoint) / PREFILL_FILE).stat().st_mtime_ns


def test_two_processes_asking_for_one_export_at_once_share_it(exported, tmp_path):
    """Two evaluations started together on a fresh checkpoint: one exports, the other waits on the
    lock and reuses that export (the same file, not a second export renamed over the first)."""
    import multiprocessing

    checkpoint, _ = exported
    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        stamps = pool.map(_export_stamp, [str(copy)] * 2)
    assert stamps[0] == stamps[1] == (copy / "onnx" / "prefill.onnx").stat().st_mtime_ns
    assert not list(tmp_path.glob("checkpoint/onnx.partial-*"))  # no scratch left behind
    tokenizer = GatoTokenizer(load_runner("torch", copy).config.timestep)
    tokens = tokenizer.encode_observation(random_observation(tokenizer, np.random.default_rng(4)))
    np.testing.assert_array_equal(load_runner("onnxruntime", copy).act(tokens), load_runner("torch", copy).act(tokens))


def test_onnxruntime_matches_pytorch_on_1000_observations(exported):
    checkpoint, export = exported
    report = verify_export(checkpoint, export.directory, observations=1000, episode_steps=10)
    assert report.matching_actions == report.observations == 1000
    assert report.max_logit_diff < 1e-3  # float32 logits of magnitude ~10
    assert report.distinct_actions > 500  # the comparison is not between two constant outputs


def test_backends_agree_across_cache_eviction(exported):
    checkpoint, export = exported
    torch_runner, onnx_runner = load_runner("torch", checkpoint), load_runner("onnxruntime", export.directory)
    tokenizer = GatoTokenizer(torch_runner.config.timestep)
    rng = np.random.default_rng(5)
    lengths = []
    for _ in range(8):  # the tiny context holds 3 timesteps: the cache slides 5 times
        tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
        np.testing.assert_array_equal(torch_runner.act(tokens), onnx_runner.act(tokens))
        lengths.append(onnx_runner.cache.length)
    assert lengths == [164, 328, 492, 492, 492, 492, 492, 492]
    assert torch_runner.cache.length == onnx_runner.cache.length


def test_runner_rejects_a_foreign_layout_and_missing_files(exported, tmp_path):
    _, export = exported
    runner = OnnxRunner(export.directory)
    tokenizer = GatoTokenizer(runner.config.timestep)
    tokens = tokenizer.encode_observation(random_observation(tokenizer, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="observation has 164 tokens; the policy's layout expects 159"):
        runner.act(tokenizer.encode_timestep(random_observation(tokenizer, np.random.default_rng(0)), np.zeros(5)))
    assert runner.act(tokens).shape == (5,)
    with pytest.raises(FileNotFoundError, match="prefill.onnx"):
        OnnxRunner(tmp_path)
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        load_runner("tflite", export.directory)


def test_tensorrt_profiles_are_sized_from_the_config():
    config = preset("gato-1.18b")
    profiles = {p.name: p for p in prefill_profiles(config)}
    assert profiles["token_ids"].opt == (1, config.timestep.observation_tokens)
    assert profiles["token_ids"].max == (1, config.context_tokens)
    assert profiles["patches"].opt == (1, 128, 3, 16, 16)
    assert all(p.min[1] >= 1 for p in profiles.values())
    cache = (config.n_layer, 1, config.n_head, config.context_tokens, config.head_dim)
    assert profiles["cache_keys"].min == profiles["cache_keys"].max == cache  # the engines run the arm's batch 1
    decode = {p.name: p for p in decode_profiles(config)}
    assert set(decode) == {"action_token", "cache_keys", "cache_values"}  # every dynamic decode input
    assert all(p.min == p.opt == p.max for p in decode.values())  # static: capturable in a CUDA graph


def test_engine_cache_rebuilds_exactly_when_graphs_precision_tensorrt_or_gpu_change(exported, tmp_path):
    """The cache logic of ensure_engines, with a builder that writes placeholder engines: the real
    TensorRT build needs a GPU and runs in the GPU-only tests."""
    _, export = exported
    onnx_dir = tmp_path / "onnx"
    shutil.copytree(export.directory, onnx_dir)
    builds = []

    def build(onnx, out, precision):
        builds.append(precision)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("prefill.engine", "decode.engine"):
            (out / name).write_bytes(b"engine")

    here = ("10.3.0", "NVIDIA H200 (sm_90)")
    engine_dir, reason = ensure_engines(onnx_dir, platform=here, build=build)
    assert engine_dir == onnx_dir / "tensorrt-fp16" and reason.startswith("no prefill.engine")
    assert ensure_engines(onnx_dir, platform=here, build=build) == (engine_dir, None)  # reused
    assert "tensorrt '10.3.0' -> '10.4.0'" in ensure_engines(onnx_dir, platform=("10.4.0", here[1]), build=build)[1]
    assert "gpu" in ensure_engines(onnx_dir, platform=("10.4.0", "NVIDIA L4 (sm_89)"), build=build)[1]
    assert ensure_engines(onnx_dir, platform=("10.4.0", "NVIDIA L4 (sm_89)"), build=build, force=True)[1] == \
        "force rebuild requested"
    with open(onnx_dir / "decode.onnx", "ab") as graph:  # a re-export
        graph.write(b"\0")
    assert "ONNX graphs changed" in ensure_engines(onnx_dir, platform=("10.4.0", "NVIDIA L4 (sm_89)"), build=build)[1]
    assert len(builds) == 5

    def crash(onnx, out, precision):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        ensure_engines(onnx_dir, platform=here, build=crash)
    assert not (engine_dir / ENGINE_MANIFEST).exists()  # half-built engines never look current
    assert ensure_engines(onnx_dir, platform=here, build=build)[1].startswith("no engines.json")
    with pytest.raises(FileNotFoundError, match="expected the output of `gato-robot export onnx`"):
        ensure_engines(tmp_path / "empty", platform=here, build=build)


HAS_TENSORRT = not NO_GPU and importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(not HAS_TENSORRT, reason="needs an NVIDIA GPU and the tensorrt package")
@pytest.mark.parametrize("precision, identical, within", [("fp32", 0.95, 2), ("fp16", 0.8, 8)])
def test_tensorrt_engines_choose_the_torch_actions(exported, tmp_path, rng, precision, identical, within):
    """Engines built as the node builds them (ensure_engines) against the torch policy, greedy, on
    random observations: fp32 (TF32 matmuls) nearly always the same bins, fp16 close to them."""
    checkpoint, export = exported
    engine_dir, reason = ensure_engines(export.directory, tmp_path / precision, precision)
    assert reason is not None and ensure_engines(export.directory, engine_dir, precision)[1] is None
    torch_runner, engine_runner = load_runner("torch", checkpoint), load_runner("tensorrt", engine_dir)
    tokenizer = GatoTokenizer(torch_runner.config.timestep)
    expected, got = [], []
    for _ in range(20):
        tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
        torch_runner.reset(), engine_runner.reset()
        expected.append(torch_runner.act(tokens))
        got.append(engine_runner.act(tokens))
    expected, got = np.stack(expected), np.stack(got)
    assert len({tuple(row) for row in expected}) > 1  # the actions depend on the input
    assert np.mean(expected == got) >= identical and np.abs(expected - got).max() <= within


@pytest.mark.skipif(not NO_GPU, reason="checks the error a machine without a GPU gives")
def test_tensorrt_without_a_gpu_fails_with_a_clear_error(exported):
    _, export = exported
    with pytest.raises(RuntimeError, match="TensorRT needs an NVIDIA GPU"):
        require_tensorrt()
    with pytest.raises(RuntimeError, match="TensorRT needs an NVIDIA GPU"):
        build_engines(export.directory)
    with pytest.raises(RuntimeError, match="TensorRT needs an NVIDIA GPU"):
        load_runner("tensorrt", export.directory)
    result = CliRunner().invoke(app, ["export", "tensorrt", str(export.directory)])
    assert result.exit_code == 2 and "NVIDIA GPU" in result.output


def test_bench_runtime_compares_backends_side_by_side(exported):
    checkpoint, _ = exported
    result = CliRunner().invoke(app, ["bench", "runtime", "--checkpoint", str(checkpoint), "--steps", "20"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "onnxr" in result.output
    assert "roofline:" in result.output and "ms floor per action" in result.output
    assert "backends chose identical actions on every step: True" in result.output


def test_choose_bin_is_argmax_at_zero_temperature_and_samples_the_softmax_above():
    from gato_robot.runtime.base import choose_bin

    logits = np.array([0.0, 1.0, 2.0, -1.0])
    rng = np.random.default_rng(0)
    assert choose_bin(logits, 0.0, rng) == 2
    assert choose_bin(logits, 1e-6, rng) == 2
    draws = np.bincount([choose_bin(logits, 1.0, rng) for _ in range(4000)], minlength=4) / 4000
    softmax = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(draws, softmax, atol=0.03)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        choose_bin(logits, -1.0, rng)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_sampled_actions_are_reproducible_per_episode_seed_and_differ_from_greedy(exported, backend):
    checkpoint, export = exported
    path = checkpoint if backend == "torch" else export.directory
    sampler, greedy = load_runner(backend, path, temperature=3.0), load_runner(backend, path)
    tokenizer = GatoTokenizer(sampler.config.timestep)
    observations = [tokenizer.encode_observation(random_observation(tokenizer, np.random.default_rng(i)))
                    for i in range(4)]

    def episode(runner, seed):
        runner.reset()
        runner.seed(seed)
        return np.array([runner.act(tokens) for tokens in observations])

    first, again, other = episode(sampler, 7), episode(sampler, 7), episode(sampler, 8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, episode(greedy, 7))
    assert first.min() >= 0 and first.max() < 1024
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        load_runner(backend, path, temperature=-0.5)
