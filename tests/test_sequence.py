import dataclasses

import numpy as np
import pytest

from gato_robot.tokenizer.errors import TokenizationError
from gato_robot.tokenizer.ids import PAD_ID, SEPARATOR_ID
from gato_robot.tokenizer.sequence import Modality, NO_POSITION, concat_sequences, stack_sequences

from .conftest import INSTRUCTION, make_observation


def test_timestep_layout_text_images_proprio_separator_actions(tokenizer, spec, rng):
    step = tokenizer.encode_timestep(make_observation(spec, rng), np.linspace(-1, 1, 5))
    expected = ([Modality.TEXT] * 8 + [Modality.IMAGE] * 128 + [Modality.CONTINUOUS] * 22
                + [Modality.SEPARATOR] + [Modality.ACTION] * 5)
    assert len(step) == spec.timestep_tokens == 164
    np.testing.assert_array_equal(step.modality, expected)
    assert step.token_ids[158] == SEPARATOR_ID
    assert step.patches.shape == (128, 3, 16, 16)
    np.testing.assert_array_equal(step.image_index[8:136], np.arange(128))


def test_loss_mask_is_text_and_actions_only(tokenizer, spec, rng):
    step = tokenizer.encode_timestep(make_observation(spec, rng), np.zeros(5))
    is_target = np.isin(step.modality, [Modality.TEXT, Modality.ACTION]) & (step.token_ids != PAD_ID)
    np.testing.assert_array_equal(step.loss_mask, is_target.astype(np.float32))
    assert step.loss_mask[159:].sum() == 5 and step.loss_mask[8:159].sum() == 0


def test_local_positions_number_observation_tokens_and_skip_actions(tokenizer, spec, rng):
    step = tokenizer.encode_timestep(make_observation(spec, rng), np.zeros(5))
    np.testing.assert_array_equal(step.obs_positions[:159], np.arange(159))
    assert np.all(step.obs_positions[159:] == NO_POSITION)


def test_short_instruction_is_padded_without_loss(spec, rng):
    from gato_robot.tokenizer.sequence import GatoTokenizer

    tokenizer = GatoTokenizer(dataclasses.replace(spec, text_tokens=12))
    obs = make_observation(tokenizer.spec, rng)
    tokens = tokenizer.encode_observation(obs)
    assert np.all(tokens.token_ids[8:12] == PAD_ID) and np.all(tokens.loss_mask[8:12] == 0)


def test_eval_and_training_patch_positions(tokenizer, spec, rng):
    obs = make_observation(spec, rng)
    eval_a, eval_b = tokenizer.encode_observation(obs), tokenizer.encode_observation(obs)
    np.testing.assert_array_equal(eval_a.patch_rows, eval_b.patch_rows)
    train = tokenizer.encode_observation(obs, rng=np.random.default_rng(0))
    images = train.modality == Modality.IMAGE
    assert np.any(train.patch_rows[images] != eval_a.patch_rows[images])
    assert np.all(np.abs(train.patch_rows[images] - eval_a.patch_rows[images]) <= 8)


def test_concat_and_stack_reindex_patches_and_pad(tokenizer, spec, rng):
    one = tokenizer.encode_timestep(make_observation(spec, rng), np.zeros(5))
    two = concat_sequences([one, tokenizer.encode_timestep(make_observation(spec, rng), np.ones(5))])
    assert two.image_index[164 + 8] == 128
    batch = stack_sequences([one, two])
    assert batch["token_ids"].shape == (2, 328) and batch["patches"].shape == (2, 256, 3, 16, 16)
    assert np.all(batch["token_ids"][0, 164:] == PAD_ID) and batch["loss_mask"][0, 164:].sum() == 0
    assert np.all(batch["image_index"][0, 164:] == -1)


@pytest.mark.parametrize("mutate, message", [
    (lambda o: dataclasses.replace(o, images={"front_left": o.images["front_left"]}), "missing camera"),
    (lambda o: dataclasses.replace(o, images={**o.images, "front_right": np.zeros((480, 640, 3), np.uint8)}),
     "camera 'front_right': expected 128x128x3 uint8, got 480x640x3"),
    (lambda o: dataclasses.replace(o, proprio=np.zeros(21)), r"proprio: expected shape \(22,\), got \(21,\)"),
    (lambda o: dataclasses.replace(o, proprio=np.r_[np.zeros(21), np.nan]), r"NaN/Inf at index \[21\]"),
    (lambda o: dataclasses.replace(o, instruction=INSTRUCTION + " and then put the green block next to the red block"),
     "encodes to .* tokens; the policy's layout holds 8"),
])
def test_bad_observations_are_rejected(tokenizer, spec, rng, mutate, message):
    with pytest.raises(TokenizationError, match=message):
        tokenizer.encode_observation(mutate(make_observation(spec, rng)))


def test_action_shape_is_checked_and_decodes(tokenizer):
    with pytest.raises(TokenizationError, match=r"action: expected shape \(5,\)"):
        tokenizer.encode_action(np.zeros(4))
    action = np.array([-0.9, -0.1, 0.0, 0.3, 1.0])
    np.testing.assert_allclose(tokenizer.decode_action(tokenizer.encode_action(action).token_ids), action, atol=0.01)
