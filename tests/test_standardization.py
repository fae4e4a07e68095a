"""Featurewise normalization and ZCA whitening: fitted on the train split, inside the saved model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from imgclf.inference import model_file
from imgclf.models import architectures
from imgclf.training import standardization

from helpers.presets import CHAPTER, NONE


def correlated_images(count: int = 600, side: int = 4, channels: int = 2) -> np.ndarray:
    """uint8 images whose pixels are strongly correlated and whose channels differ in mean and spread."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(count, side, side, 1))
    smooth = base + np.roll(base, 1, axis=1) + np.roll(base, 1, axis=2)
    scales = np.array([20.0, 45.0][:channels])
    means = np.array([70.0, 160.0][:channels])
    return np.clip(means + smooth * scales, 0, 255).round().astype("uint8")


def batches(images: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, np.zeros((len(images), 2), "float32"))).batch(64)


def test_nothing_asked_nothing_fitted():
    statistics = standardization.fit(batches(correlated_images()), NONE)
    assert standardization.layers(statistics, (4, 4, 2)) == []


def test_normalization_gives_each_channel_mean_0_and_std_1_on_train():
    images = correlated_images()
    statistics = standardization.fit(batches(images), dataclasses.replace(NONE, normalization=True))
    (normalization,) = standardization.layers(statistics, (4, 4, 2))
    out = normalization(images.astype("float32") / 255.0).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("normalization", [False, True])
def test_whitening_decorrelates_the_training_pixels(normalization):
    images = correlated_images()
    params = dataclasses.replace(NONE, normalization=normalization, whitening=True, whitening_epsilon=1e-9)
    made = standardization.layers(standardization.fit(batches(images), params), (4, 4, 2))
    assert [layer.name for layer in made] == ["featurewise_normalization", "zca_whitening"][1 - normalization:]
    x = images.astype("float32") / 255.0
    for layer in made:
        x = layer(x)
    flat = x.numpy().reshape(len(images), -1)
    before = np.corrcoef((images.reshape(len(images), -1)).T)
    assert np.abs(before - np.eye(32)).max() > 0.5  # neighbours were correlated
    np.testing.assert_allclose(np.cov(flat.T, bias=True), np.eye(32), atol=2e-3)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-4)


def test_the_fitted_layers_live_in_the_saved_model_and_load_in_safe_mode(tmp_path):
    images = correlated_images(side=8, channels=1)
    params = dataclasses.replace(NONE, normalization=True, whitening=True)
    made = standardization.layers(standardization.fit(batches(images), params), (8, 8, 1))
    config = dataclasses.replace(CHAPTER, filters=(4, 8), dense_units=8)
    model = architectures.build((8, 8, 1), 3, config, made)
    model_file.save(model, tmp_path / "model.keras")
    loaded = model_file.load(tmp_path / "model.keras", "")
    np.testing.assert_array_equal(loaded.predict(images[:16], verbose=0), model.predict(images[:16], verbose=0))
    assert {"featurewise_normalization", "zca_whitening"} <= {layer.name for layer in loaded.layers}


def test_augmented_stage_standardizes_inside_its_model(tiny_training, run_stage_script, workspace):
    tiny_training({"augmentation.normalization": True, "augmentation.whitening": True, "augmentation.crop": 0.9,
                   "augmentation.channel_shift": 0.1, "augmentation.vertical_flip": True})
    run_stage_script("augmented")
    loaded = model_file.load(workspace / "models" / "augmented" / "model.keras", "")
    normalization = loaded.get_layer("featurewise_normalization")
    assert normalization.mean.shape[-1] == 1 and float(np.ravel(normalization.mean)[0]) > 0.05
    assert loaded.get_layer("zca_whitening").components.shape == (16 * 16, 16 * 16)
    metrics = json.loads((workspace / "metrics" / "augmented.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
