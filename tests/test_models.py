"""Model builders: the chapter's simple CNN, its photo layout, the low-level softmax regression."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from imgclf.models import architectures, perceptron

from helpers.presets import CHAPTER


def test_chapter_layout_is_the_chapters_model():
    model = architectures.build((28, 28, 1), 10, CHAPTER)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    # uint8 pixels in, rescaled inside (a deployed model takes image files' pixels as they are).
    assert model.input.dtype == "uint8" and kinds[0] == "Rescaling"
    assert kinds[1:] == ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.output_shape == (None, 10) and model.layers[-1].activation.__name__ == "softmax"
    convolutions = 64 * 9 + 64 + 128 * 64 * 9 + 128
    dense = 12 * 12 * 128 * 1024 + 1024 + 1024 * 10 + 10
    assert model.count_params() == convolutions + dense


def test_photo_layout_stays_small_at_150px():
    photo = dataclasses.replace(CHAPTER, layout="photo")
    model = architectures.build((150, 150, 3), 2, photo)
    assert any(isinstance(layer, layers.GlobalAveragePooling2D) for layer in model.layers)
    assert sum(isinstance(layer, layers.Conv2D) for layer in model.layers) == 4
    assert model.count_params() < 1_000_000  # the literal chapter model: ~700 M


def test_unresolved_layout_is_refused():
    with pytest.raises(ValueError, match="resolved"):
        architectures.build((28, 28, 1), 10, dataclasses.replace(CHAPTER, layout="auto"))


def test_softmax_regression_learns_and_exports_to_keras():
    rng = np.random.default_rng(0)
    labels = np.eye(2, dtype="float32")[rng.integers(0, 2, 64)]
    # uint8 pixels, as the pipeline yields them: the model rescales them itself.
    images = np.round(255 * (rng.random((64, 4, 4, 1)) * 0.1 + 0.85 * labels[:, :1, None, None])).astype("uint8")
    model = perceptron.SoftmaxRegression(16, 2, init_stddev=0.0, learning_rate=0.5, seed=1)
    first_loss, *_ = model.train_step(images, labels)
    for _ in range(20):
        loss, accuracy, _ = model.train_step(images, labels)
    assert float(loss) < float(first_loss) and float(accuracy) == 1.0
    exported = model.to_keras((4, 4, 1))
    assert exported.input.dtype == "uint8"
    np.testing.assert_allclose(
        exported.predict(images, verbose=0), tf.nn.softmax(model.logits(images)).numpy(), atol=1e-6
    )
