"""The policy recipe's options: conv-stem image encoder, HL-Gauss action loss, expectation decoding,
proprioception standardization and random-shift augmentation (each beside the paper's choice)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gato_robot.bench.policy_latency import random_observation
from gato_robot.data.dataset import random_shift
from gato_robot.model.checkpoint import save_checkpoint
from gato_robot.model.config import GatoConfig, preset
from gato_robot.model.embedding import spatial_soft_argmax
from gato_robot.model.policy import GatoPolicy, batch_to_torch, greedy, hl_gauss_targets
from gato_robot.runtime.base import MOTION_DIMS, choose_bin
from gato_robot.runtime.export import export_checkpoint
from gato_robot.runtime.factory import load_runner
from gato_robot.tokenizer.image import image_to_patches
from gato_robot.tokenizer.mulaw import bins_to_continuous, continuous_to_bins
from gato_robot.tokenizer.sequence import GatoTokenizer, Modality, stack_sequences
from tests.conftest import decisive_policy


def encoder_and_two_images(encoder_name: str, seed: int):
    """A tiny policy's image encoder (seeded) and two random 128x128 camera images."""
    torch.manual_seed(0)
    encoder = GatoPolicy(preset("tiny", image_encoder=encoder_name)).embed.patch_encoder
    rng = np.random.default_rng(seed)
    return encoder, [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(2)]


def encoded_patches(config: GatoConfig, image: np.ndarray) -> torch.Tensor:
    torch.manual_seed(0)
    encoder = GatoPolicy(config).embed.patch_encoder
    patches = torch.from_numpy(image_to_patches(image))[None]
    with torch.no_grad():
        return encoder(patches)[0]


@pytest.mark.parametrize("encoder, crosses_borders", [("patch_resnet", False), ("conv_stem", True)])
def test_only_the_conv_stem_sees_across_patch_borders(encoder, crosses_borders):
    config = preset("tiny", image_encoder=encoder)
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    changed = image.copy()
    changed[0:16, 16:32] = 255 - changed[0:16, 16:32]  # patch (0, 1) only
    before, after = encoded_patches(config, image), encoded_patches(config, changed)
    assert not torch.allclose(before[1], after[1])  # the changed patch's own token changes
    for neighbour in (0, 2, 9):  # left, right, below-right: changed only by an encoder that crosses borders
        assert torch.allclose(before[neighbour], after[neighbour]) != crosses_borders
    if crosses_borders:  # far away only GroupNorm's image-wide statistics move, far less than a neighbour
        assert (before[63] - after[63]).norm() < 0.2 * (before[0] - after[0]).norm()


def test_whole_image_tokens_are_one_code_per_camera():
    encoder, images = encoder_and_two_images("conv_stem_whole", seed=3)
    patches = torch.from_numpy(np.concatenate([image_to_patches(image) for image in images]))[None]
    with torch.no_grad():
        tokens = encoder(patches)[0]
    torch.testing.assert_close(tokens[:64], tokens[:1].expand(64, -1))  # one code for all of camera 0
    torch.testing.assert_close(tokens[64:], tokens[64:65].expand(64, -1))
    assert not torch.allclose(tokens[0], tokens[64])  # the cameras' codes differ


def test_spatial_soft_argmax_finds_the_peak_cell_and_interpolates_between_cells():
    logits = torch.full((1, 2, 8, 8), -1e4)
    logits[0, 0, 0, 7] = 0.0  # channel 0 peaks in the top-right cell
    logits[0, 1, 3, 2] = logits[0, 1, 4, 2] = 0.0  # channel 1 between two cells of column 2
    points = spatial_soft_argmax(logits, torch.tensor(1.0))[0]
    cell = torch.linspace(-1.0, 1.0, 8)
    torch.testing.assert_close(points, torch.stack([cell[0], (cell[3] + cell[4]) / 2, cell[7], cell[2]]))


def test_keypoints_follow_a_bright_square_across_the_image():
    torch.manual_seed(0)
    encoder = GatoPolicy(preset("tiny", image_encoder="conv_stem_keypoints")).embed.patch_encoder
    def keypoints(top: int, left: int) -> torch.Tensor:
        image = np.zeros((128, 128, 3), dtype=np.uint8)
        image[top:top + 24, left:left + 24] = 255
        with torch.no_grad():
            features = encoder.features(torch.from_numpy(image_to_patches(image))[None])
            return spatial_soft_argmax(encoder.keypoint_logits(features), encoder.log_temperature.exp())[0]

    left, right = keypoints(52, 8), keypoints(52, 96)
    columns = right[32:] - left[32:]  # the second half are column coordinates
    assert (columns.abs() > 1e-3).float().mean() > 0.5  # most keypoints move with the square...
    assert torch.allclose(keypoints(52, 8), left)  # ...and only because it moved


def test_the_whole_image_code_reaches_every_token_of_its_own_image_only():
    encoder, images = encoder_and_two_images("conv_stem_global", seed=2)
    changed = images[0].copy()
    changed[0:16, 16:32] = 255 - changed[0:16, 16:32]  # patch (0, 1) of camera 0 only
    def tokens(first):
        patches = torch.from_numpy(np.concatenate([image_to_patches(first), image_to_patches(images[1])]))[None]
        with torch.no_grad():
            return encoder(patches)[0]

    before, after = tokens(images[0]), tokens(changed)
    # without the code a far token moves < 0.2x a neighbour (test above); the code moves it as much
    assert (before[63] - after[63]).norm() > 0.2 * (before[0] - after[0]).norm()
    torch.testing.assert_close(before[64:], after[64:])  # the other camera's tokens are its own


def test_conv_stem_reassembles_the_images_the_tokenizer_cut():
    encoder, images = encoder_and_two_images("conv_stem", seed=1)
    patches = torch.from_numpy(np.concatenate([image_to_patches(i) for i in images]))[None]  # 2 cameras
    with torch.no_grad():
        tokens = encoder(patches)[0]
        for camera, image in enumerate(images):
            pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() * (2 / 255) - 1
            centred = torch.nn.functional.pad(pixels[..., 8:, 8:], (0, 8, 0, 8))
            direct = encoder.proj(encoder.body(centred).flatten(2).transpose(1, 2))[0]
            torch.testing.assert_close(tokens[64 * camera:64 * (camera + 1)], direct, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not a whole number of 8x8-patch images"):
        encoder(patches[:, :100])


def test_hl_gauss_targets_are_a_discretized_gaussian_around_the_target_bin():
    bins = torch.tensor([0, 500, 1023])
    targets = hl_gauss_targets(bins, 1024, sigma_bins=2.0)
    torch.testing.assert_close(targets.sum(-1), torch.ones(3))
    assert targets.argmax(-1).tolist() == [0, 500, 1023]
    middle = targets[1]
    torch.testing.assert_close(middle[499], middle[501])  # symmetric about the target's centre
    assert middle[500] > middle[501] > middle[502] > middle[503] > middle[510]
    assert 0.15 < float(middle[500]) < 0.25  # sigma 2 bins: ~0.197 of the mass in the centre bin
    assert float(hl_gauss_targets(bins, 1024, sigma_bins=0.05)[1, 500]) > 0.999  # -> one-hot


def test_hl_gauss_loss_is_ordinal_and_the_paper_loss_is_not(tokenizer, rng):
    """A prediction two bins off costs less than one two hundred bins off under HL-Gauss; the
    one-hot loss cannot tell them apart."""
    spec = tokenizer.spec
    sequence = tokenizer.encode_timestep(random_observation(tokenizer, rng), np.full(spec.action_dim, 0.3))
    batch = batch_to_torch(stack_sequences([sequence]))
    target_bin = int(batch["token_ids"][0, -1]) - 32000
    losses = {}
    for loss in ("vocab_ce", "hl_gauss"):
        policy = GatoPolicy(preset("tiny", action_loss=loss))
        for offset in (2, 200):
            def peaked(hidden, offset=offset):
                logits = torch.full((*hidden.shape[:-1], 1024), -30.0)
                logits[..., target_bin + offset] = 30.0
                return logits
            policy.action_logits = peaked
            policy.logits = lambda hidden, peaked=peaked: torch.nn.functional.pad(peaked(hidden), (32000, 2), value=-30.0)
            losses[loss, offset] = float(policy.loss(batch))
    assert losses["hl_gauss", 2] < losses["hl_gauss", 200] - 5  # 52.7 vs 60 nats for these delta predictions
    assert losses["vocab_ce", 2] == pytest.approx(losses["vocab_ce", 200], rel=1e-3)


def test_expectation_mse_adds_the_squared_error_of_the_physical_mean(tokenizer, rng):
    """Two modes, at the target bin and at the bin of -1: HL-Gauss sees a half-right prediction,
    the expectation term the physical mean (target - 1) / 2 away from the target."""
    spec = tokenizer.spec
    sequence = tokenizer.encode_timestep(random_observation(tokenizer, rng), np.full(spec.action_dim, 0.3))
    batch = batch_to_torch(stack_sequences([sequence]))
    target_bin = int(batch["token_ids"][0, -1]) - 32000
    low_bin = int(continuous_to_bins(-1.0))

    def two_modes(hidden):
        logits = torch.full((*hidden.shape[:-1], 1024), -30.0)
        logits[..., [target_bin, low_bin]] = 30.0
        return logits
    losses = {}
    for weight in (0.0, 4.0):
        policy = GatoPolicy(preset("tiny", action_loss="hl_gauss", expectation_mse_weight=weight))
        policy.action_logits = two_modes
        losses[weight] = float(policy.loss(batch))
    values = bins_to_continuous(np.array([target_bin, low_bin]))
    target_bins = (batch["token_ids"][0, 1:][batch["modality"][0, 1:] == int(Modality.ACTION)] - 32000).numpy()
    assert (target_bins == target_bin).all()  # every action dimension is 0.3
    expected_error = ((values.mean() - values[0]) ** 2)
    assert losses[4.0] - losses[0.0] == pytest.approx(4.0 * expected_error, rel=1e-4)
    with pytest.raises(ValueError, match="expectation_mse_weight needs action_loss 'hl_gauss'"):
        preset("tiny", expectation_mse_weight=1.0)
    with pytest.raises(ValueError, match="expectation_mse_weight must be >= 0"):
        preset("tiny", action_loss="hl_gauss", expectation_mse_weight=-1.0)


def test_expectation_decoding_takes_the_mean_bin_and_nan_logits_raise():
    logits = np.full(1024, -np.inf)
    logits[[100, 300]] = 0.0  # two equal modes
    logits = np.where(np.isfinite(logits), logits, -1e9)
    rng = np.random.default_rng(0)
    assert choose_bin(logits, 0.0, rng, expectation="companded") == 200
    assert choose_bin(logits, 0.0, rng) == 100  # argmax: the first mode
    nan = np.full(1024, np.nan)
    for temperature, expectation in ((0.0, "off"), (1.0, "off"), (0.0, "companded"), (0.0, "physical"), (0.0, "median")):
        with pytest.raises(ValueError, match="non-finite action logits"):
            choose_bin(nan, temperature, rng, expectation)
    with pytest.raises(ValueError, match="non-finite action logits"):
        greedy(torch.from_numpy(nan)[None], 0)  # GatoPolicy.act's default chooser
    assert 4 not in MOTION_DIMS and MOTION_DIMS == (0, 1, 2, 3)  # the gripper is never averaged


def test_physical_expectation_averages_decoded_values_not_bin_indices():
    """An even mix of "hold still" and "full speed": the companded mean is pulled toward zero
    (the companding crowds bins near 0), the physical mean is halfway, as an MSE regressor's."""
    zero, full = int(continuous_to_bins(0.0)), int(continuous_to_bins(1.0))
    logits = np.full(1024, -1e9)
    logits[[zero, full]] = 0.0
    rng = np.random.default_rng(0)
    physical = float(bins_to_continuous(choose_bin(logits, 0.0, rng, expectation="physical")))
    companded = float(bins_to_continuous(choose_bin(logits, 0.0, rng, expectation="companded")))
    assert physical == pytest.approx(0.5 * (bins_to_continuous(zero) + bins_to_continuous(full)), abs=0.02)
    assert 0.05 < companded < 0.15  # +0.09: the stall of results/policy-diagnosis.md
    peaked = np.full(1024, -1e9)
    peaked[700] = 0.0
    assert choose_bin(peaked, 0.0, rng, expectation="physical") == 700  # one mode: its own bin
    with pytest.raises(ValueError, match="expectation must be one of"):
        choose_bin(peaked, 0.0, rng, expectation="mode")


def test_median_decodes_the_heavier_mode_and_ignores_the_companding():
    """60% "full speed", 40% "hold still": both means land between the modes, the median on the
    heavier one; with one mode all three decodings agree."""
    zero, full = int(continuous_to_bins(0.0)), int(continuous_to_bins(1.0))
    rng = np.random.default_rng(0)
    logits = np.full(1024, -1e9)
    logits[zero], logits[full] = np.log(0.4), np.log(0.6)
    assert choose_bin(logits, 0.0, rng, expectation="median") == full
    assert zero < choose_bin(logits, 0.0, rng, expectation="companded") < full
    logits[zero], logits[full] = np.log(0.6), np.log(0.4)
    assert choose_bin(logits, 0.0, rng, expectation="median") == zero
    spread = -0.5 * ((np.arange(1024) - 300.0) / 20.0) ** 2  # one symmetric mode in bins
    assert choose_bin(spread, 0.0, rng, expectation="median") == 300
    assert choose_bin(spread, 0.0, rng, expectation="companded") == 300


def test_proprio_statistics_change_the_tokens_and_travel_with_the_config(spec, rng):
    observation = random_observation(GatoTokenizer(spec), rng)
    mean = tuple(np.asarray(observation.proprio) - 0.001)
    standardized = replace(spec, proprio_mean=mean, proprio_std=(0.01,) * spec.proprio_dim)
    raw_tokens = GatoTokenizer(spec).encode_observation(observation).token_ids
    std_tokens = GatoTokenizer(standardized).encode_observation(observation).token_ids
    proprio = slice(spec.observation_tokens - spec.proprio_dim - 1, spec.observation_tokens - 1)
    assert not np.array_equal(raw_tokens[proprio], std_tokens[proprio])
    assert np.all(std_tokens[proprio] == std_tokens[proprio][0])  # every value is +0.1 std
    np.testing.assert_array_equal(raw_tokens[:proprio.start], std_tokens[:proprio.start])
    config = replace(preset("tiny"), timestep=standardized)
    assert GatoConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="22 values each"):
        replace(spec, proprio_mean=(0.0,) * 3, proprio_std=(1.0,) * 3)
    with pytest.raises(ValueError, match="positive standard deviations"):
        replace(spec, proprio_mean=(0.0,) * 22, proprio_std=(0.0,) * 22)


def test_proprio_token_ids_of_many_states_are_each_state_s_observation_tokens(spec, rng):
    """The batched proprioception tokenization (scripts/proprio_coverage.py) gives every state the
    tokens its observation gets at deployment, standardized and with values left out."""
    mean = tuple(rng.normal(0.0, 0.1, spec.proprio_dim))
    kept = replace(spec, proprio_mean=mean, proprio_std=(0.05,) * spec.proprio_dim, proprio_keep=(0, 3, 14, 15, 21))
    tokenizer = GatoTokenizer(kept)
    observations = [random_observation(tokenizer, rng) for _ in range(4)]
    batched = tokenizer.proprio_token_ids(np.stack([np.asarray(o.proprio) for o in observations]))
    assert batched.shape == (4, 5)
    start = kept.observation_tokens - kept.proprio_tokens - 1
    for row, observation in zip(batched, observations):
        np.testing.assert_array_equal(row, tokenizer.encode_observation(observation).token_ids[start:start + 5])
    assert len(np.unique(batched)) > 5  # the states differ


def test_random_shift_crops_a_shifted_copy_deterministically():
    frames = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    shifted = random_shift(frames, 4, np.random.default_rng(7))
    assert shifted.shape == frames.shape and shifted.dtype == np.uint8
    np.testing.assert_array_equal(shifted, random_shift(frames, 4, np.random.default_rng(7)))
    top, left = np.random.default_rng(7).integers(0, 9, size=2)
    dy, dx = top - 4, left - 4  # crop offset relative to the original image
    interior = shifted[:, 8:-8, 8:-8]
    np.testing.assert_array_equal(interior, frames[:, 8 + dy:120 + dy, 8 + dx:120 + dx])


def test_fourier_value_embedding_is_ordinal_and_only_touches_continuous_tokens():
    from gato_robot.tokenizer.ids import CONTINUOUS_OFFSET, SEPARATOR_ID

    torch.manual_seed(0)
    value = GatoPolicy(preset("tiny", continuous_embedding="table_fourier")).embed.value
    ids = torch.tensor([[5, SEPARATOR_ID, CONTINUOUS_OFFSET + 500, CONTINUOUS_OFFSET + 501, CONTINUOUS_OFFSET + 900]])
    with torch.no_grad():
        out = value(ids)[0]
    assert out[0].abs().max() == 0 and out[1].abs().max() == 0  # text and separator: the table alone
    near, far = (out[2] - out[3]).norm(), (out[2] - out[4]).norm()
    assert 0 < near < 0.35 * far  # neighbouring bins embed alike from the start; far bins do not
    assert GatoPolicy(preset("tiny")).embed.value is None  # the paper's table, unchanged
    with pytest.raises(ValueError, match="unknown continuous_embedding"):
        preset("tiny", continuous_embedding="mlp")


def test_value_mlp_embedding_gives_an_unseen_bin_the_embedding_of_its_neighbours():
    """value_mlp: a continuous token's embedding is a function of its value alone (no table row), so
    training the embedding at some bins moves the bins next to them too, never a text token."""
    from gato_robot.tokenizer.ids import CONTINUOUS_OFFSET

    torch.manual_seed(0)
    embed = GatoPolicy(preset("tiny", continuous_embedding="value_mlp")).embed
    zeros = {name: torch.zeros(1, 3, dtype=torch.long) for name in ("obs_positions", "patch_rows", "patch_cols")}
    ids = torch.tensor([[7, CONTINUOUS_OFFSET + 600, CONTINUOUS_OFFSET + 601]])

    def embedded():
        return embed(ids, zeros["obs_positions"], zeros["patch_rows"], zeros["patch_cols"],
                     torch.full((1, 3), -1), torch.zeros(1, 0, 3, 16, 16))[0]

    with torch.no_grad():
        before = embedded()
        table_row_600 = embed.token.weight[CONTINUOUS_OFFSET + 600].clone()
        embed.token.weight[CONTINUOUS_OFFSET + 600] += 5.0  # the table row is not used for continuous ids
        np.testing.assert_allclose(embedded(), before)
        embed.token.weight[CONTINUOUS_OFFSET + 600] = table_row_600
    optimizer = torch.optim.Adam(embed.value.parameters(), lr=1e-2)
    target = torch.randn(before.shape[-1])
    for _ in range(50):  # fit bin 600 only
        optimizer.zero_grad()
        (embedded()[1] - target).pow(2).sum().backward()
        optimizer.step()
    with torch.no_grad():
        after = embedded()
    assert (after[1] - target).norm() < 0.5 * (before[1] - target).norm()
    assert (after[2] - target).norm() < 0.6 * (before[2] - target).norm()  # bin 601 was never trained
    np.testing.assert_allclose(after[0], before[0])  # a text token keeps its table row


def test_fourier_frequencies_reach_the_policy_and_one_frequency_embeds_neighbours_alike():
    """`train --fourier-frequencies 1`: the run's model reads proprioception through [c, sin pi c, cos pi c]
    only, so neighbouring bins embed far closer, relative to distant ones, than with the default 8."""
    from gato_robot.tokenizer.ids import CONTINUOUS_OFFSET
    from gato_robot.train.trainer import TrainConfig, model_config

    config = model_config(TrainConfig(preset="tiny", continuous_embedding="value_mlp", fourier_frequencies=1))
    assert config.fourier_frequencies == 1

    def neighbour_to_far_ratio(frequencies: int) -> float:
        torch.manual_seed(0)
        value = GatoPolicy(replace(config, fourier_frequencies=frequencies)).embed.value
        ids = torch.tensor([[CONTINUOUS_OFFSET + 500 + step for step in range(0, 400, 4)]])
        with torch.no_grad():
            out = value(ids)[0]
        return float((out[1:] - out[:-1]).norm(dim=-1).mean() / (out[-1] - out[0]).norm())

    smooth, default = neighbour_to_far_ratio(1), neighbour_to_far_ratio(8)
    assert smooth < 0.05 < default  # 4 bins apart: nearly the same with one frequency, not with eight


@pytest.mark.parametrize("options", [
    {"image_encoder": "conv_stem"}, {"image_encoder": "conv_stem", "continuous_embedding": "table_fourier"},
    {"image_encoder": "conv_stem_global"}, {"image_encoder": "conv_stem_global", "continuous_embedding": "value_mlp"},
    {"image_encoder": "conv_stem_whole"}, {"image_encoder": "conv_stem_keypoints", "action_inputs": "query"},
    {"image_encoder": "conv_stem_global", "action_head": "untied"},
    {"image_encoder": "conv_stem_global", "action_inputs": "query"}], ids=lambda o: "-".join(o.values()))
def test_conv_stem_hl_gauss_policy_exports_and_the_backends_agree(tmp_path, rng, options):
    policy = decisive_policy(preset("tiny", action_loss="hl_gauss", **options), seed=3)
    checkpoint = save_checkpoint(policy, tmp_path / "checkpoint")
    export = export_checkpoint(checkpoint, tmp_path / "onnx")
    for expectation in ("off", "companded", "physical", "median"):
        torch_runner = load_runner("torch", checkpoint, expectation=expectation)
        onnx_runner = load_runner("onnxruntime", export.directory, expectation=expectation)
        tokenizer = GatoTokenizer(torch_runner.config.timestep)
        chosen = set()
        for _ in range(6):
            tokens = tokenizer.encode_observation(random_observation(tokenizer, rng))
            expected = torch_runner.act(tokens)
            np.testing.assert_array_equal(expected, onnx_runner.act(tokens))
            chosen.add(tuple(expected.tolist()))
        assert len(chosen) > 1


def test_an_untied_action_head_predicts_without_the_rows_that_embed_proprioception():
    from gato_robot.tokenizer.ids import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS

    torch.manual_seed(0)
    hidden = torch.randn(3, 64)
    for head, moves in (("tied", True), ("untied", False)):
        policy = GatoPolicy(preset("tiny", action_loss="hl_gauss", action_head=head))
        before = policy.action_logits(hidden).detach().clone()
        assert before.shape == (3, NUM_CONTINUOUS_BINS)
        with torch.no_grad():
            policy.embed.token.weight[CONTINUOUS_OFFSET:CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS] += 1.0
        assert (not torch.allclose(policy.action_logits(hidden), before)) == moves
    with pytest.raises(ValueError, match="untied.*hl_gauss"):
        preset("tiny", action_head="untied")
    with pytest.raises(ValueError, match="unknown action_head"):
        preset("tiny", action_loss="hl_gauss", action_head="shared")


class FirstBinRecorder:
    """A chooser that decodes dimension 0 to ``first_bin`` and the rest greedily, keeping the logits."""

    def __init__(self, first_bin: int):
        self.first_bin, self.logits = first_bin, []

    def __call__(self, logits: torch.Tensor, dimension: int) -> torch.Tensor:
        self.logits.append(logits.clone())
        return torch.full((logits.shape[0],), self.first_bin) if dimension == 0 else logits.argmax(-1)


def test_query_action_inputs_predict_every_dimension_from_the_observation_alone(rng):
    """Gato's action tokens embed their bins, so dimension 1's logits move with the bin fed for
    dimension 0; with ``action_inputs="query"`` they do not (and the observation still matters)."""
    for action_inputs, conditioned in (("tokens", True), ("query", False)):
        torch.manual_seed(1)
        policy = GatoPolicy(preset("tiny", action_loss="hl_gauss", action_inputs=action_inputs)).eval()
        tokenizer = GatoTokenizer(policy.config.timestep)
        observations = [batch_to_torch(stack_sequences([tokenizer.encode_observation(random_observation(tokenizer, rng))]))
                        for _ in range(2)]
        second = []  # dimension 1's logits
        for observation, first_bin in ((observations[0], 100), (observations[0], 900), (observations[1], 100)):
            chooser = FirstBinRecorder(first_bin)
            policy.act(observation, policy.new_cache(), choose=chooser)
            second.append(chooser.logits[1])
        assert (not torch.allclose(second[0], second[1], atol=1e-5)) == conditioned
        assert not torch.allclose(second[0], second[2], atol=1e-5)  # another observation, other logits
    with pytest.raises(ValueError, match="unknown action_inputs"):
        preset("tiny", action_inputs="none")


def test_joint_velocities_can_be_left_out_of_the_tokens(spec, rng):
    from gato_robot.tokenizer.sequence import JOINT_VELOCITY_FREE

    lean = replace(spec, proprio_keep=JOINT_VELOCITY_FREE)
    assert lean.observation_tokens == spec.observation_tokens - 7
    observation = random_observation(GatoTokenizer(spec), rng)
    full, kept = GatoTokenizer(spec).encode_observation(observation), GatoTokenizer(lean).encode_observation(observation)
    start = spec.observation_tokens - spec.proprio_dim - 1
    proprio_full, proprio_kept = full.token_ids[start:start + 22], kept.token_ids[start:start + 15]
    np.testing.assert_array_equal(proprio_kept, np.delete(proprio_full, range(7, 14)))
    moving = replace(observation, proprio=np.asarray(observation.proprio).copy())
    moving.proprio[7:14] += 1.0  # other joint velocities: the lean tokens cannot tell
    np.testing.assert_array_equal(GatoTokenizer(lean).encode_observation(moving).token_ids, kept.token_ids)
    config = replace(preset("tiny"), timestep=lean, context_tokens=lean.timestep_tokens)
    assert GatoConfig.from_dict(json.loads(config.to_json())) == config
    policy = GatoPolicy(config)
    runner_tokens = stack_sequences([kept])
    assert policy.act(batch_to_torch(runner_tokens), policy.new_cache()).shape == (1, 5)
    with pytest.raises(ValueError, match="distinct indices"):
        replace(spec, proprio_keep=(0, 0))


def test_planar_position_can_be_left_out_so_the_images_must_say_where_the_gripper_is(spec, rng):
    from gato_robot.proprio import PLANAR_POSITION
    from gato_robot.train.trainer import TrainConfig, model_config

    keep = model_config(TrainConfig(joint_velocities=False, planar_position=False)).timestep.proprio_keep
    assert keep == (14, 17, 18, 19, 20, 21)  # gripper width, TCP z, TCP orientation
    assert model_config(TrainConfig(planar_position=False)).timestep.proprio_keep == tuple(range(7, 15)) + keep[1:]
    lean = replace(spec, proprio_keep=keep)
    observation = random_observation(GatoTokenizer(spec), rng)
    tokens = GatoTokenizer(lean).encode_observation(observation).token_ids
    moved = replace(observation, proprio=np.asarray(observation.proprio).copy())
    moved.proprio[list(PLANAR_POSITION)] += 0.05  # the arm elsewhere in the plane: the tokens cannot tell
    np.testing.assert_array_equal(GatoTokenizer(lean).encode_observation(moved).token_ids, tokens)
    moved.proprio[17] += 0.05  # higher: they can
    assert not np.array_equal(GatoTokenizer(lean).encode_observation(moved).token_ids, tokens)


def test_gripper_first_order_tokenizes_decodes_and_maps_expectation_to_the_motion_tokens(spec, tmp_path):
    from gato_robot.action_spec import GRIPPER_FIRST

    assert GRIPPER_FIRST == (4, 0, 1, 2, 3)
    ordered = replace(spec, action_order=GRIPPER_FIRST)
    action = np.array([-0.9, -0.1, 0.0, 0.3, 1.0])
    plain, first = GatoTokenizer(spec).encode_action(action), GatoTokenizer(ordered).encode_action(action)
    np.testing.assert_array_equal(first.token_ids, plain.token_ids[list(GRIPPER_FIRST)])
    np.testing.assert_allclose(GatoTokenizer(ordered).decode_action(first.token_ids), action, atol=0.01)
    np.testing.assert_allclose(GatoTokenizer(ordered).decode_action(np.stack([first.token_ids] * 3)),
                               np.stack([action] * 3), atol=0.01)  # batched rows too
    config = replace(preset("tiny"), timestep=ordered)
    assert GatoConfig.from_dict(json.loads(config.to_json())) == config
    checkpoint = save_checkpoint(GatoPolicy(config).eval(), tmp_path / "checkpoint")
    runner = load_runner("torch", checkpoint, expectation="companded")
    assert [GRIPPER_FIRST[i] for i in runner.expectation_dims] == list(MOTION_DIMS)  # token 0 (gripper) is sampled
    with pytest.raises(ValueError, match="permutation of 0..4"):
        replace(spec, action_order=(4, 0, 1, 2, 2))


def test_proprio_noise_perturbs_only_the_proprioception_seen_and_only_the_noised_dimensions(tmp_path):
    """Training-time proprioception noise: the images, text and the action targets of a window stay
    exactly as stored; only the noised dimension's tokens move, and zero noise changes nothing."""
    from tests.conftest import write_expert_store

    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.proprio import PROPRIO_OFFSETS
    from gato_robot.tokenizer.sequence import TimestepSpec

    store = EpisodeStore(write_expert_store(tmp_path / "store", [3]))
    spec = TimestepSpec()

    def batch(noise):
        windows = EpisodeWindows(store, spec, 1, min_return_fraction=0.0, patch_position_jitter=False,
                                 proprio_noise_std=noise)
        return windows.batch(seed=0, step=0, batch_size=16)

    clean, width = batch(None), PROPRIO_OFFSETS["gripper_width"]
    for key, value in batch(np.zeros(22)).items():
        np.testing.assert_array_equal(value, clean[key])
    noisy = batch(np.eye(22)[width] * 0.01)  # 1 cm on the gripper width alone
    proprio = spec.observation_tokens - spec.proprio_dim - 1  # index of the first proprio token
    moved = np.flatnonzero(np.any(noisy["token_ids"] != clean["token_ids"], axis=0))
    assert moved.tolist() == [proprio + width]
    assert np.mean(noisy["token_ids"][:, proprio + width] != clean["token_ids"][:, proprio + width]) > 0.5
    np.testing.assert_array_equal(noisy["patches"], clean["patches"])
    with pytest.raises(ValueError, match="22 values >= 0"):
        batch(np.full(3, 0.1))


def test_proprio_dropout_pads_every_proprioception_token_of_some_windows_and_nothing_else(tmp_path):
    """Modality dropout: a dropped window's proprioception tokens are all padding (their positions
    kept); its images, text, separator and action targets, and every other window, stay exactly
    as without it; the same (seed, step) drops the same windows."""
    from tests.conftest import write_expert_store

    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.tokenizer.ids import PAD_ID
    from gato_robot.tokenizer.sequence import Modality, TimestepSpec

    store = EpisodeStore(write_expert_store(tmp_path / "store", [3]))

    def batch(dropout):
        windows = EpisodeWindows(store, TimestepSpec(), 1, min_return_fraction=0.0, patch_position_jitter=False,
                                 random_shift_px=2, proprio_dropout=dropout)
        return windows.batch(seed=0, step=3, batch_size=64)

    clean, dropped = batch(0.0), batch(0.5)
    proprio = clean["modality"] == Modality.CONTINUOUS
    rows = np.flatnonzero(np.any(dropped["token_ids"] != clean["token_ids"], axis=1))
    assert 10 < len(rows) < 54  # about half of 64 windows
    assert np.all(dropped["token_ids"][rows][proprio[rows]] == PAD_ID)
    np.testing.assert_array_equal(dropped["token_ids"][~proprio], clean["token_ids"][~proprio])
    for key in ("patches", "obs_positions", "loss_mask", "modality"):
        np.testing.assert_array_equal(dropped[key], clean[key])
    np.testing.assert_array_equal(batch(0.5)["token_ids"], dropped["token_ids"])
    with pytest.raises(ValueError, match=r"proprio_dropout must be in \[0, 1\)"):
        batch(1.0)


def test_velocity_dropout_pads_the_joint_velocity_tokens_of_some_windows_and_nothing_else(tmp_path):
    """Past-motion dropout: in a dropped window every timestep's 7 joint-velocity tokens are padding
    and every other token (the other proprioception included) is as without it; the same (seed,
    step) drops the same windows; a policy that never sees the velocities cannot drop them."""
    from tests.conftest import assert_window_dropout, write_expert_store

    from gato_robot.data.dataset import EpisodeWindows
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.proprio import JOINT_VELOCITIES, proprio_keep_for
    from gato_robot.tokenizer.sequence import TimestepSpec

    store = EpisodeStore(write_expert_store(tmp_path / "store", [4]))
    spec = TimestepSpec()

    def batch(dropout, spec=spec):
        windows = EpisodeWindows(store, spec, 2, min_return_fraction=0.0, patch_position_jitter=False,
                                 velocity_dropout=dropout)
        return windows.batch(seed=0, step=5, batch_size=64)

    clean, dropped = batch(0.0), batch(0.5)
    first = spec.observation_tokens - spec.proprio_dim - 1  # the first proprio token of the first timestep
    velocity = np.zeros(clean["token_ids"].shape[1], bool)
    for timestep in range(2):
        velocity[timestep * spec.timestep_tokens + first + np.array(JOINT_VELOCITIES)] = True
    assert_window_dropout(clean, dropped, velocity)
    np.testing.assert_array_equal(batch(0.5)["token_ids"], dropped["token_ids"])
    with pytest.raises(ValueError, match="needs a policy that sees the joint velocities"):
        batch(0.5, TimestepSpec(proprio_keep=proprio_keep_for(joint_velocities=False)))


def test_velocity_noise_blurs_the_joint_velocities_alone_by_their_own_spread(tmp_path):
    """``velocity_noise`` x each velocity's std on the 7 velocities, on top of ``proprio_noise`` x
    every dimension's std; both off: no noise at all."""
    from tests.conftest import write_expert_store

    from gato_robot.data.dataset import proprio_noise_std, proprio_statistics
    from gato_robot.data.episodes import EpisodeStore
    from gato_robot.proprio import JOINT_VELOCITIES

    episodes = EpisodeStore(write_expert_store(tmp_path / "store", [3])).episodes(0.0)
    std = proprio_statistics(episodes)[1]
    assert proprio_noise_std(episodes) is None
    velocities = np.zeros(22, bool)
    velocities[list(JOINT_VELOCITIES)] = True
    noise = proprio_noise_std(episodes, velocity_noise=1.0)
    np.testing.assert_allclose(noise[velocities], std[velocities])
    assert np.all(noise[~velocities] == 0) and np.all(noise[velocities] > 0)
    both = proprio_noise_std(episodes, proprio_noise=0.1, velocity_noise=1.0)
    np.testing.assert_allclose(both, 0.1 * std + velocities * std)
