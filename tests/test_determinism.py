"""Seeding and precision switches."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from imgclf.training import determinism


def test_seed_everything_repeats_every_generator():
    determinism.seed_everything(5)
    first = (np.random.rand(), tf.random.uniform([3]).numpy())
    determinism.seed_everything(5)
    second = (np.random.rand(), tf.random.uniform([3]).numpy())
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])


def test_seeded_keras_models_start_identical():
    def weights() -> list[np.ndarray]:
        determinism.seed_everything(3)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).get_weights()

    for first, second in zip(weights(), weights(), strict=True):
        np.testing.assert_array_equal(first, second)


def test_set_precision():
    try:
        determinism.set_precision("mixed_bfloat16")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    finally:
        determinism.set_precision("float32")
