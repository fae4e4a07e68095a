"""cnn.architecture: the chapter's bigger models, each built at the sizes users train, trained a step, saved and loaded."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.inference import model_file
from imgclf.models import architectures, layers
from imgclf.params.schema import ARCHITECTURES

from helpers.presets import CHAPTER

SHAPES = {(28, 28, 1): "chapter", (150, 150, 3): "photo"}


def config(architecture: str, shape: tuple[int, int, int], **overrides) -> object:
    return dataclasses.replace(CHAPTER, architecture=architecture, layout=SHAPES.get(shape, "photo"), **overrides)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_builds_trains_a_step_and_round_trips(architecture, shape, tmp_path):
    keras.utils.set_random_seed(0)
    model = architectures.build(shape, 3, config(architecture, shape))
    assert model.input.dtype == "uint8" and model.output_shape == (None, 3) and model.layers[-1].name == "class"
    images = np.random.default_rng(0).integers(0, 256, size=(4, *shape), dtype=np.uint8)
    labels = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    before = [weight.copy() for weight in model.get_weights()]
    model.train_on_batch(images, labels)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    model_file.save(model, tmp_path / "model.keras")
    loaded = model_file.load(tmp_path / "model.keras", "")
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    print(f"{architecture} at {shape}: {model.count_params():,} parameters")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_builds_at_224px(architecture):
    model = architectures.build((224, 224, 3), 1000, config(architecture, (224, 224, 3)))
    assert model.output_shape == (None, 1000)


def test_alexnet_local_response_normalization_is_an_option():
    plain = architectures.build((150, 150, 3), 2, config("alexnet", (150, 150, 3)))
    with_lrn = architectures.build((150, 150, 3), 2, config("alexnet", (150, 150, 3), local_response_normalization=True))
    kinds = [type(layer).__name__ for layer in with_lrn.layers]
    assert kinds.count("LocalResponseNormalization") == 2 and "LocalResponseNormalization" not in {
        type(layer).__name__ for layer in plain.layers}
    assert with_lrn.get_layer("conv1").kernel.shape == (11, 11, 3, 96)  # the paper's first layer at photo size
    assert plain.count_params() == with_lrn.count_params()


def test_the_sampler_starts_at_the_identity_and_learns_its_transform():
    images = tf.constant(np.random.default_rng(1).random((2, 9, 7, 3)), tf.float32)
    sampler = layers.AffineSampler()
    np.testing.assert_allclose(sampler([images, tf.zeros([2, 6])]).numpy(), images.numpy(), atol=1e-5)
    shift = tf.constant([[0, 0, 2.0 / 6, 0, 0, 0]] * 2, tf.float32)  # x in [-1, 1]: 2/6 is one pixel of 7
    np.testing.assert_allclose(sampler([images, shift]).numpy()[:, :, :-1], images.numpy()[:, :, 1:], atol=1e-5)
    offsets = tf.Variable(tf.zeros([2, 6]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sampler([images, offsets]) * tf.range(7, dtype=tf.float32)[None, None, :, None])
    assert np.abs(tape.gradient(loss, offsets).numpy()).max() > 0  # gradients reach the localisation net


def test_stn_trains_its_localisation_net_end_to_end():
    keras.utils.set_random_seed(0)
    model = architectures.build((28, 28, 1), 3, config("stn", (28, 28, 1)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)
    model.train_on_batch(images, np.eye(3, dtype="float32")[np.arange(8) % 3])
    assert np.abs(model.get_layer("loc_affine").get_weights()[1]).max() > 0


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_baseline_trains_each_architecture_on_the_offline_default(architecture, raw_mnist_sample, write_params, mlflow_store,
                                                                   run_stage_script, workspace):
    write_params({"data.train_per_class": 20, "data.test_per_class": 5, "baseline.epochs": 1, "baseline.batch_size": 32,
                  "cnn.architecture": architecture, "mlflow.log_model": False})
    run_stage_script("split")
    run_stage_script("baseline")
    metrics = json.loads((workspace / "metrics" / "baseline.json").read_text())
    assert metrics["test_images"] == 50 and 0.0 <= metrics["accuracy"] <= 1.0
    loaded = model_file.load(workspace / "models" / "baseline" / "model.keras", "")
    assert loaded.name.startswith({"simple_cnn": "simple_cnn", "alexnet": "alexnet", "squeezenet": "squeezenet",
                                   "stn": "stn"}[architecture])
