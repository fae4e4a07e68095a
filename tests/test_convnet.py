"""convnet: the chapter's low-level TensorFlow convnet, its TensorBoard summaries and graph, its Keras twin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from imgclf.models import convnet
from imgclf.params import ConvnetParams

SUMMARISED = {f"{layer}/{what}" for layer in convnet.LAYERS for what in ("mean", "stddev", "min", "max", "histogram")}


def small(**overrides) -> ConvnetParams:
    values = dict(learning_rate=0.001, batch_size=8, steps=4, layout="chapter", filters=(4, 8), dense_units=16, dropout=0.4,
                  test_summary_steps=2)
    return ConvnetParams(**(values | overrides))


def test_the_keras_twin_predicts_what_the_low_level_network_computes():
    model = convnet.ConvNet((28, 28, 1), 3, small(), seed=7)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28, 1), dtype=np.uint8)
    labels = tf.one_hot([0, 1, 2, 0, 1], 3)
    model.train_step(images, labels)  # trained a step: the copy must carry trained values
    logits, outputs = model.forward(tf.constant(images), training=False)
    assert outputs["pool2"].shape == (5, 5, 5, 8)  # 28 -> 26 -> 13 -> 11 -> 5, as the chapter's 5*5*128
    twin = model.to_keras((28, 28, 1))
    np.testing.assert_allclose(twin.predict(images, verbose=0), tf.nn.softmax(logits).numpy(), atol=1e-5)


def test_dropout_only_while_training_and_seeded():
    def outputs(seed: int, training: bool) -> np.ndarray:
        model = convnet.ConvNet((16, 16, 1), 2, small(), seed=seed)
        images = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 1), dtype=np.uint8)
        return model.forward(tf.constant(images), training=training)[0].numpy()

    np.testing.assert_array_equal(outputs(1, True), outputs(1, True))
    assert not np.array_equal(outputs(1, True), outputs(1, False))
    assert not np.array_equal(outputs(1, False), outputs(2, False))


def test_photo_layout_averages_the_last_map_so_the_dense_layer_stays_small():
    model = convnet.ConvNet((150, 150, 3), 2, small(layout="photo"), seed=0)
    assert tuple(model.dense_kernel.shape) == (8, 16)  # not 35 * 35 * 8
    images = np.random.default_rng(0).integers(0, 256, size=(2, 150, 150, 3), dtype=np.uint8)
    logits, _ = model.forward(tf.constant(images), training=False)
    np.testing.assert_allclose(model.to_keras((150, 150, 3)).predict(images, verbose=0), tf.nn.softmax(logits).numpy(),
                               atol=1e-5)


def test_summaries_cover_a_whole_batch_of_digits_and_a_bounded_sample_of_photos():
    digits = convnet.ConvNet((28, 28, 1), 10, small(filters=(64, 128)), seed=0)
    photos = convnet.ConvNet((150, 150, 3), 2, small(filters=(64, 128), layout="photo"), seed=0)
    assert digits.summary_images >= 100 and photos.summary_images == 5_000_000 // (74 * 74 * 64)
    images = tf.constant(np.zeros((20, 150, 150, 3), np.uint8))
    _, outputs = photos.forward(images, training=False)
    assert outputs["conv1"].shape == (photos.summary_images, 74, 74, 64)  # stride 2: a quarter of the work


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match="too small"):
        convnet.ConvNet((8, 8, 1), 2, small(), seed=0)


def test_stage_writes_the_chapter_summaries_and_the_graph(tiny_training, run_stage_script, workspace):
    tiny_training({"convnet.steps": 6, "convnet.batch_size": 8, "convnet.filters": [4, 8], "convnet.dense_units": 16,
                   "convnet.test_summary_steps": 2})
    run_stage_script("convnet")

    metrics = json.loads((workspace / "metrics" / "convnet.json").read_text())
    assert metrics["steps"] == 6 and 0.0 <= metrics["accuracy"] <= 1.0
    # 16 -> 14 -> 7 -> 5 -> 2: 2 * 2 * 8 features into the dense layer
    assert metrics["trainable_params"] == (3 * 3 * 1 * 4 + 4) + (3 * 3 * 4 * 8 + 8) + (2 * 2 * 8 * 16 + 16) + (16 * 3 + 3)
    logs = workspace / "logs" / "convnet"
    train = EventAccumulator(str(logs / "train"), size_guidance={"tensors": 0})
    train.Reload()
    assert SUMMARISED | {"loss", "accuracy"} <= set(train.Tags()["tensors"])
    assert [event.step for event in train.Tensors("conv1/histogram")] == [1, 2, 3, 4, 5, 6]
    test = EventAccumulator(str(logs / "test"), size_guidance={"tensors": 0})
    test.Reload()
    assert SUMMARISED | {"loss", "accuracy"} <= set(test.Tags()["tensors"])
    assert [event.step for event in test.Tensors("accuracy")] == [2, 4, 6]
    graph = train.Graph()
    scopes = {node.name.split("/")[0] for node in graph.node}
    for function in graph.library.function:
        scopes |= {node.name.split("/")[0] for node in function.node_def}
    assert set(convnet.LAYERS) | {"loss", "optimiser"} <= scopes, sorted(scopes)
