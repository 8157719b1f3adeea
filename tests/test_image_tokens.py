import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gato_robot.tokenizer.errors import TokenizationError
from gato_robot.tokenizer.image import image_to_patches, patch_position_intervals, sample_patch_positions


def test_patches_are_raster_order_and_normalized():
    image = np.zeros((32, 48, 3), np.uint8)  # 2 x 3 patches
    for index in range(6):
        row, col = divmod(index, 3)
        image[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = index * 40
    patches = image_to_patches(image)
    assert patches.shape == (6, 3, 16, 16) and patches.dtype == np.float32
    for index in range(6):
        expected = (index * 40 / 255 * 2 - 1) / 4
        np.testing.assert_allclose(patches[index], expected, atol=1e-6)


def test_pixel_extremes_map_to_plus_minus_a_quarter():
    patches = image_to_patches(np.stack([np.zeros((16, 16)), np.full((16, 16), 255), np.zeros((16, 16))], -1).astype(np.uint8))
    assert patches[0, 0].max() == pytest.approx(-0.25) and patches[0, 1].min() == pytest.approx(0.25)


def test_channels_stay_separate():
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 1] = 255
    patch = image_to_patches(image)[0]
    assert patch[1].min() == pytest.approx(0.25) and patch[0].max() == pytest.approx(-0.25)


@pytest.mark.parametrize("image, message", [
    (np.zeros((128, 128), np.uint8), "expected HxWx3 uint8, got shape \\(128, 128\\)"),
    (np.zeros((128, 128, 4), np.uint8), "got shape \\(128, 128, 4\\)"),
    (np.zeros((128, 128, 3), np.float32), "got dtype float32"),
    (np.zeros((120, 128, 3), np.uint8), "multiples of 16, got 120x128"),
])
def test_bad_images_are_rejected_with_a_clear_message(image, message):
    with pytest.raises(TokenizationError, match=message):
        image_to_patches(image, "cam")


def test_eval_positions_are_rounded_interval_means():
    rows, cols = patch_position_intervals(128, 128)
    assert rows.shape == (64, 2)
    np.testing.assert_array_equal(rows[:9, 0], [0] * 8 + [16])
    np.testing.assert_array_equal(cols[:9, 0], [0, 16, 32, 48, 64, 80, 96, 112, 0])
    np.testing.assert_array_equal(sample_patch_positions(rows, None)[::8], np.arange(8) * 16 + 8)


@given(st.integers(0, 2**32 - 1))
def test_training_positions_stay_inside_their_intervals(seed):
    rows, _ = patch_position_intervals(128, 64)
    sampled = sample_patch_positions(rows, np.random.default_rng(seed))
    assert np.all(sampled >= rows[:, 0]) and np.all(sampled < rows[:, 1]) and sampled.max() < 128
