"""The fused random affine augmentation: geometry, determinism, the dataset wrapper."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from imgclf import augmentation
from imgclf.params import AugmentationParams

SEED = tf.constant([7, 0], tf.int64)
NONE = AugmentationParams(horizontal_flip=False, zoom=0.0, shear=0.0, rotation=0.0, translation=0.0)


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
