
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gato_robot.model.checkpoint import load_checkpoint, save_checkpoint
from gato_robot.model.config import GatoConfig, PRESETS, preset
from gato_robot.model.policy import INPUT_NAMES, GatoPolicy, batch_to_torch
from gato_robot.tokenizer.ids import CONTINUOUS_OFFSET, VOCAB_SIZE
from gato_robot.tokenizer.sequence import GatoTokenizer, Modality, TokenSequence, concat_sequences, stack_sequences

from .conftest import make_observation


def tiny_policy(seed: int = 0, **overrides) -> GatoPolicy:
    torch.manual_seed(seed)
    return GatoPolicy(preset("tiny", **overrides)).eval()


def episode(tokenizer: GatoTokenizer, rng, steps: int) -> TokenSequence:
    parts = [tokenizer.encode_timestep(make_observation(tokenizer.spec, rng), rng.uniform(-1, 1, 5)) for _ in range(steps)]
    return concat_sequences(parts)


def test_paper_presets_have_the_paper_shapes():
    shapes = {name: (c.n_layer, c.n_head, c.n_embd, c.d_ff, c.context_tokens) for name, c in PRESETS.items()}
    assert shapes["gato-79m"] == (8, 24, 768, 3072, 1024)
    assert shapes["gato-364m"] == (12, 12, 1536, 6144, 1024)
    assert shapes["gato-1.18b"] == (24, 16, 2048, 8192, 1024)
    with torch.device("meta"):
        counts = {name: GatoPolicy(PRESETS[name]).num_parameters() for name in ("gato-79m", "gato-364m", "gato-1.18b")}
    # Within 10% of the paper's names (our patch encoder and tied head differ in detail).
    assert counts["gato-79m"] == pytest.approx(79e6, rel=0.1)
    assert counts["gato-364m"] == pytest.approx(364e6, rel=0.1)
    assert counts["gato-1.18b"] == pytest.approx(1.18e9, rel=0.1)


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match="divisible by n_head"):
        GatoConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="multiple of 32"):
        GatoConfig(patch_channels=48)
    with pytest.raises(ValueError, match="does not fit the context"):
        GatoConfig(context_tokens=128)
    with pytest.raises(KeyError, match="unknown preset"):
        preset("gato-9000b")


def test_cached_prefill_and_decode_give_the_uncached_logits(tokenizer, rng):
    policy = tiny_policy()
    sequence = batch_to_torch(stack_sequences([episode(tokenizer, rng, 2)]))
    with torch.no_grad():
        full = policy.hidden(*(sequence[n] for n in INPUT_NAMES))
        cache = policy.new_cache()
        pieces, start = [], 0
        # prefill the first observation, decode tokens one by one, prefill the next observation
        for stop in [159, 160, 161, 162, 163, 164, 323, 324, 328]:
            piece = {n: sequence[n][:, start:stop] for n in INPUT_NAMES if n != "patches"}
            piece["patches"] = sequence["patches"]
            pieces.append(policy.hidden(*(piece[n] for n in INPUT_NAMES), cache=cache, past=cache.length))
            cache.advance()
            start = stop
    cached = torch.cat(pieces, dim=1)
    torch.testing.assert_close(policy.logits(cached), policy.logits(full), atol=1e-4, rtol=1e-4)


def test_act_with_cache_matches_act_without(tokenizer, rng):
    policy = tiny_policy(seed=3)
    cache, history = policy.new_cache(), []
    for _ in range(3):  # 3 x 164 tokens fit the tiny preset's 512-token context
        observation = tokenizer.encode_observation(make_observation(tokenizer.spec, rng))
        cached = policy.act(batch_to_torch(stack_sequences([observation])), cache)
        uncached = policy.act_uncached(batch_to_torch(stack_sequences([concat_sequences(history + [observation])])))
        torch.testing.assert_close(cached, uncached)
        assert cached.min() >= 0 and cached.max() < 1024
        history += [observation, TokenSequence.of_tokens(cached[0].numpy() + CONTINUOUS_OFFSET, Modality.ACTION, None)]
    assert cache.length == 3 * 164


def test_cache_slides_by_whole_timesteps_and_rebases_positions(tokenizer, rng):
    """With one layer the cached keys depend on their own tokens only, so after eviction the
    cached policy must act exactly like an uncached one on the window that remains."""
    policy = tiny_policy(seed=5, n_layer=1)
    cache, history = policy.new_cache(), []
    for step in range(6):
        observation = tokenizer.encode_observation(make_observation(tokenizer.spec, rng))
        cached = policy.act(batch_to_torch(stack_sequences([observation])), cache)
        previous_timesteps = cache.length // 164 - 1  # what the cache kept besides this timestep
        window = history[len(history) - 2 * previous_timesteps:]
        uncached = policy.act_uncached(batch_to_torch(stack_sequences([concat_sequences(window + [observation])])))
        torch.testing.assert_close(cached, uncached)
        history += [observation, TokenSequence.of_tokens(cached[0].numpy() + CONTINUOUS_OFFSET, Modality.ACTION, None)]
        assert cache.length % 164 == 0 and cache.length <= 512
    assert cache.length == 3 * 164


def test_sampled_actions_follow_the_seed(tokenizer, rng):
    from gato_robot.runtime.torch_runner import TorchRunner

    runner = TorchRunner(tiny_policy(), temperature=1.0)
    tokens = tokenizer.encode_observation(make_observation(tokenizer.spec, rng))
    draws = []
    for seed in (7, 7, 8):
        runner.reset()
        runner.seed(seed)
        draws.append(runner.act(tokens))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_loss_is_masked_cross_entropy_over_text_and_action_targets(tokenizer, rng):
    policy = tiny_policy()
    batch = batch_to_torch(stack_sequences([episode(tokenizer, rng, 2), episode(tokenizer, rng, 1)]))
    loss = policy.loss(batch)
    logits = policy(*(batch[n] for n in INPUT_NAMES))
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB_SIZE), batch["token_ids"][:, 1:].reshape(-1), reduction="none")
    mask = batch["loss_mask"][:, 1:].reshape(-1)
    torch.testing.assert_close(loss, (ce * mask).sum() / mask.sum(), atol=1e-5, rtol=1e-5)
    # 13 targets (8 text, 5 action) per timestep, 3 timesteps; each sequence's first token has no predecessor.
    assert mask.sum() == 13 * 3 - 2
    no_targets = dict(batch, loss_mask=torch.zeros_like(batch["loss_mask"]))
    with pytest.raises(ValueError, match="no text or action targets"):
        policy.loss(no_targets)


def test_tiny_model_overfits_one_episode(tokenizer, rng):
    torch.manual_seed(0)
    policy = GatoPolicy(preset("tiny"))
    batch = batch_to_torch(stack_sequences([episode(tokenizer, rng, 3)]))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_checkpoint_round_trip_and_missing_files(tmp_path, tokenizer, rng):
    policy = tiny_policy(seed=11)
    save_checkpoint(policy, tmp_path / "ckpt", metadata={"preset": "tiny"})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == policy.config
    batch = batch_to_torch(stack_sequences([episode(tokenizer, rng, 1)]))
    with torch.no_grad():
        torch.testing.assert_close(loaded(*(batch[n] for n in INPUT_NAMES)), policy(*(batch[n] for n in INPUT_NAMES)))
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ckpt")


def test_context_overflow_is_an_error(tokenizer, rng):
    policy = tiny_policy()
    batch = batch_to_torch(stack_sequences([episode(tokenizer, rng, 4)]))  # 656 > 512 tokens
    with pytest.raises(ValueError, match="exceeds the context of 512 tokens"):
        policy(*(batch[n] for n in INPUT_NAMES))


def test_patch_embedding_keeps_colour_of_uniform_patches():
    """A uniformly red patch and a uniformly grey one must embed differently: the block may not
    normalize a patch's colour away."""
    import torch

    from gato_robot.model.config import preset
    from gato_robot.model.embedding import PatchResNetV2Block

    torch.manual_seed(0)
    block = PatchResNetV2Block(preset("cpu-small"))
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.25  # pixel 255 -> +1 / sqrt(16)
    grey = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        difference = (block(red[None]) - block(grey[None])).abs().max().item()  # (batch, patches, 3, 16, 16)
    assert difference > 1e-2
