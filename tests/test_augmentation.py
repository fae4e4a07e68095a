"""The fused random affine augmentation: geometry, determinism, the dataset wrapper."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from imgclf.training import augmentation

from helpers.presets import NONE

SEED = tf.constant([7, 0], tf.int64)


def images(count: int = 4, side: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((count, side, side, 1)).astype("float32")


def test_no_transform_is_identity():
    batch = images()
    output = augmentation.from_params(NONE)(batch, seed=SEED).numpy()
    np.testing.assert_allclose(output, batch, atol=1e-6)


def test_flip_mirrors_exactly_about_half_the_images():
    batch = images(count=64)
    layer = augmentation.from_params(dataclasses.replace(NONE, horizontal_flip=True))
    output = layer(batch, seed=SEED).numpy()
    mirrored = [np.allclose(out, image[:, ::-1], atol=1e-6) for out, image in zip(output, batch, strict=True)]
    unchanged = [np.allclose(out, image, atol=1e-6) for out, image in zip(output, batch, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 16 < sum(mirrored) < 48


def test_translation_moves_a_dot_and_keeps_it_whole():
    batch = np.zeros((1, 21, 21, 1), "float32")
    batch[0, 10, 10, 0] = 1.0
    layer = augmentation.RandomAffine(translation=0.3)
    transforms = layer.transforms(tf.shape(batch), SEED).numpy()[0]
    output = layer(batch, seed=SEED).numpy()[0, :, :, 0]
    # Output pixel (x, y) samples input (x + a02, y + a12): the dot moves by (-a02, -a12).
    expected = np.round([10 - transforms[5], 10 - transforms[2]]).astype(int)
    assert np.unravel_index(output.argmax(), output.shape) == tuple(expected)
    assert output.sum() > 0.99  # one bilinear resampling, nothing lost


def test_one_resampling_composes_all_transforms():
    layer = augmentation.RandomAffine(zoom=0.3, shear=0.3, rotation=0.1, translation=0.1, horizontal_flip=True)
    transforms = layer.transforms(tf.constant([8, 28, 28, 1]), SEED).numpy()
    assert transforms.shape == (8, 8)
    np.testing.assert_array_equal(transforms[:, 6:], 0.0)  # affine, not projective
    linear = transforms[:, [0, 1, 3, 4]].reshape(8, 2, 2)
    determinants = np.abs(np.linalg.det(linear))  # zoom^2 (rotation, shear, flip keep area)
    assert np.all(determinants > 0.7**2 - 1e-5) and np.all(determinants < 1.3**2 + 1e-5)
    assert len(np.unique(np.round(transforms[:, 0], 6))) == 8  # per image, not per batch


def test_same_seed_same_output_other_batch_other_output():
    layer = augmentation.RandomAffine(zoom=0.3, rotation=0.05, translation=0.1)
    batch = images()
    first = layer(batch, seed=SEED).numpy()
    np.testing.assert_array_equal(first, layer(batch, seed=SEED).numpy())
    assert not np.array_equal(first, layer(batch, seed=tf.constant([7, 1], tf.int64)).numpy())


def test_augment_dataset_is_endless_deterministic_and_keeps_labels():
    batch = images(count=6)
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
    dataset = tf.data.Dataset.from_tensor_slices((batch, labels)).batch(3)
    params = dataclasses.replace(NONE, zoom=0.2, rotation=0.05)

    def first_batches(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        augmented = augmentation.augment_dataset(dataset, params, seed=3)
        return [(x.numpy(), y.numpy()) for x, y in augmented.take(count)]

    assert augmentation.augment_dataset(dataset, params, seed=3).cardinality() == tf.data.INFINITE_CARDINALITY
    run_one, run_two = first_batches(4), first_batches(4)
    for (x1, y1), (x2, y2) in zip(run_one, run_two, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(run_one[0][1], labels[:3])
    assert not np.array_equal(run_one[0][0], run_one[2][0])  # epoch 2 gets new transforms


def test_vertical_flip_mirrors_exactly_about_half_the_images_upside_down():
    batch = images(count=64)
    output = augmentation.from_params(dataclasses.replace(NONE, vertical_flip=True))(batch, seed=SEED).numpy()
    mirrored = [np.allclose(out, image[::-1], atol=1e-6) for out, image in zip(output, batch, strict=True)]
    unchanged = [np.allclose(out, image, atol=1e-6) for out, image in zip(output, batch, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 16 < sum(mirrored) < 48


def test_new_transforms_off_leave_the_existing_ones_untouched():
    """The vertical flip, crop and channel shift draw from their own stream: off, nothing moves."""
    old = augmentation.RandomAffine(zoom=0.3, shear=0.3, rotation=0.1, translation=0.1, horizontal_flip=True)
    new = augmentation.from_params(dataclasses.replace(NONE, zoom=0.3, shear=0.3, rotation=0.1, translation=0.1,
                                                       horizontal_flip=True))
    batch = images(count=8)
    np.testing.assert_array_equal(old(batch, seed=SEED).numpy(), new(batch, seed=SEED).numpy())


def test_crop_keeps_the_fraction_asked_anywhere_inside_and_resizes_it_back():
    layer = augmentation.from_params(dataclasses.replace(NONE, crop=0.5))
    side = 21
    transforms = layer.transforms(tf.constant([64, side, side, 1]), SEED).numpy()
    linear = transforms[:, [0, 1, 3, 4]]
    np.testing.assert_allclose(linear, np.tile([0.5, 0.0, 0.0, 0.5], (64, 1)), atol=1e-6)  # half of each side
    # The output's corner pixels sample inside the image: the crop window never leaves it.
    for corner_x, corner_y in ((0, 0), (side - 1, side - 1)):
        x = transforms[:, 0] * corner_x + transforms[:, 1] * corner_y + transforms[:, 2]
        y = transforms[:, 3] * corner_x + transforms[:, 4] * corner_y + transforms[:, 5]
        assert x.min() >= -1e-4 and x.max() <= side - 1 + 1e-4 and y.min() >= -1e-4 and y.max() <= side - 1 + 1e-4
    assert np.ptp(transforms[:, 2]) > 2 and np.ptp(transforms[:, 5]) > 2  # at random positions
    # Each output is exactly its crop window, resized back bilinearly (tf.image.crop_and_resize's sampling).
    batch = images(count=64, side=side)
    output = layer(batch, seed=SEED).numpy()
    top, left = transforms[:, 5], transforms[:, 2]
    boxes = np.stack([top, left, top + 0.5 * (side - 1), left + 0.5 * (side - 1)], axis=1) / (side - 1)
    expected = tf.image.crop_and_resize(batch, boxes, np.arange(64), [side, side]).numpy()
    np.testing.assert_allclose(output, expected, atol=1e-4)


def test_channel_shift_adds_one_value_per_image_to_every_channel_within_range():
    rng = np.random.default_rng(1)
    batch = rng.integers(80, 176, size=(32, 8, 8, 3)).astype("uint8")
    batch[:, 0, 0, :] = 0  # each image's own min and max: the shift is clipped to them, as Keras does
    batch[:, 0, 1, :] = 255
    layer = augmentation.from_params(dataclasses.replace(NONE, channel_shift=0.2))
    output = layer(batch, seed=SEED).numpy().astype(int)
    shift = output[:, 2:, 2:, :] - batch[:, 2:, 2:, :].astype(int)
    per_image = shift.reshape(32, -1)
    assert np.all(per_image.max(axis=1) - per_image.min(axis=1) <= 1)  # one value (rounding: +-1) for all channels
    assert np.abs(per_image).max() <= 0.2 * 255 + 1 and len(np.unique(per_image[:, 0])) > 10
    assert output.min() >= 0 and output.max() <= 255
    np.testing.assert_array_equal(output, layer(batch, seed=SEED).numpy())  # deterministic under the seed
    assert not np.array_equal(output, layer(batch, seed=tf.constant([8, 0], tf.int64)).numpy())


def test_every_transform_on_is_deterministic_under_the_seed_and_keeps_uint8():
    params = dataclasses.replace(NONE, zoom=0.2, shear=0.2, rotation=0.05, translation=0.1, horizontal_flip=True,
                                 vertical_flip=True, crop=0.8, channel_shift=0.1)
    batch = (images(count=6) * 255).astype("uint8")
    dataset = tf.data.Dataset.from_tensor_slices((batch, np.eye(6, dtype="float32"))).batch(3)
    first = [x.numpy() for x, _ in augmentation.augment_dataset(dataset, params, seed=5).take(4)]
    second = [x.numpy() for x, _ in augmentation.augment_dataset(dataset, params, seed=5).take(4)]
    other = [x.numpy() for x, _ in augmentation.augment_dataset(dataset, params, seed=6).take(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True)) and first[0].dtype == np.uint8
    assert not np.array_equal(first[0], other[0])
