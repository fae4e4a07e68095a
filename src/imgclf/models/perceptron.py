"""The chapter's first model: softmax regression on flattened pixels, in low-level TensorFlow.

Variables, tf.GradientTape and a plain SGD update (no keras.Model in the training loop), with
the chapter's TensorBoard summaries. The trained W, b are then wrapped in a tiny Keras model
(Flatten + Dense softmax) so the stage saves and logs it like every other model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from imgclf import determinism, evaluation, training
from imgclf.data import pipeline
from imgclf.params import Params, PerceptronParams
from imgclf.tracking import StageRun

STAGE = "perceptron"


class SoftmaxRegression(tf.Module):
    """logits = flatten(images) @ W + b, trained by plain SGD on the mean cross-entropy."""

    def __init__(self, num_features: int, num_classes: int, init_stddev: float, seed: int):
        super().__init__(name="softmax_regression")
        initial = tf.random.stateless_normal([num_features, num_classes], seed=[seed, 0], stddev=init_stddev)
        self.weights = tf.Variable(initial, name="weights")
        self.biases = tf.Variable(tf.zeros([num_classes]), name="biases")

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """Unnormalised class scores for a batch of images."""
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        return tf.matmul(flat, self.weights) + self.biases

    @tf.function
    def train_step(self, images: tf.Tensor, labels: tf.Tensor, learning_rate: float) -> tuple[tf.Tensor, tf.Tensor]:
        """One SGD step on a batch; returns the batch's (loss, accuracy) before the update."""
        with tf.GradientTape() as tape:
            logits = self.logits(images)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        weights_gradient, biases_gradient = tape.gradient(loss, [self.weights, self.biases])
        self.weights.assign_sub(learning_rate * weights_gradient)
        self.biases.assign_sub(learning_rate * biases_gradient)
        return loss, _accuracy(labels, logits)

    @tf.function
    def batch_metrics(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(loss, accuracy) of a batch without training."""
        logits = self.logits(images)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        return loss, _accuracy(labels, logits)

    def to_keras(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """The learned W, b as Flatten + Dense(softmax): a model to save and log with the keras flavor."""
        inputs = keras.Input(shape=input_shape, name="image")
        dense = keras.layers.Dense(self.biases.shape[0], activation="softmax", name="class")
        model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)), name="softmax_regression")
        dense.set_weights([self.weights.numpy(), self.biases.numpy()])
        return model


def _accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def variable_summaries(name: str, variable: tf.Variable, step: int) -> None:
    """The chapter's summaries of a variable: mean, stddev, min, max and a histogram."""
    mean = tf.reduce_mean(variable)
    tf.summary.scalar(f"{name}/mean", mean, step=step)
    tf.summary.scalar(f"{name}/stddev", tf.sqrt(tf.reduce_mean(tf.square(variable - mean))), step=step)
    tf.summary.scalar(f"{name}/min", tf.reduce_min(variable), step=step)
    tf.summary.scalar(f"{name}/max", tf.reduce_max(variable), step=step)
    tf.summary.histogram(f"{name}/histogram", variable, step=step)


def evaluate(model: SoftmaxRegression, dataset: tf.data.Dataset) -> tuple[float, float]:
    """(mean loss, accuracy) over a batched dataset, weighted by batch size."""
    total_loss = total_hits = count = 0.0
    for images, labels in dataset:
        loss, accuracy = model.batch_metrics(images, labels)
        size = float(images.shape[0])
        total_loss, total_hits, count = total_loss + float(loss) * size, total_hits + float(accuracy) * size, count + size
    return total_loss / count, total_hits / count


def train(
    model: SoftmaxRegression,
    data: pipeline.SplitData,
    config: PerceptronParams,
    log_dir: Path,
) -> dict[str, list[float]]:
    """`config.steps` SGD steps; per-step TensorBoard summaries; a Keras-style history per epoch.

    An epoch is one pass over the training images (steps_per_epoch batches); the last may be short.
    """
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    train_writer = tf.summary.create_file_writer(str(log_dir / "train"))
    validation_writer = tf.summary.create_file_writer(str(log_dir / "validation"))
    epoch_losses: list[float] = []
    epoch_accuracies: list[float] = []
    batches = data.train.repeat().take(config.steps)
    for step, (images, labels) in enumerate(batches, start=1):
        loss, accuracy = model.train_step(images, labels, config.learning_rate)
        epoch_losses.append(float(loss))
        epoch_accuracies.append(float(accuracy))
        with train_writer.as_default():
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("accuracy", accuracy, step=step)
            variable_summaries("weights", model.weights, step)
            variable_summaries("biases", model.biases, step)
        if step % data.steps_per_epoch and step != config.steps:
            continue
        history["loss"].append(float(np.mean(epoch_losses)))
        history["accuracy"].append(float(np.mean(epoch_accuracies)))
        epoch_losses, epoch_accuracies = [], []
        if data.validation is not None:
            validation_loss, validation_accuracy = evaluate(model, data.validation)
            history.setdefault("val_loss", []).append(validation_loss)
            history.setdefault("val_accuracy", []).append(validation_accuracy)
            with validation_writer.as_default():
                tf.summary.scalar("loss", validation_loss, step=step)
                tf.summary.scalar("accuracy", validation_accuracy, step=step)
        epoch = len(history["loss"])
        print(f"perceptron: epoch {epoch}, step {step}/{config.steps}: "
              + ", ".join(f"{key} {values[-1]:.4f}" for key, values in history.items()), flush=True)
    train_writer.close()
    validation_writer.close()
    return history


def train_perceptron(params: Params, run: StageRun) -> dict[str, Any]:
    """The perceptron stage: load data/split, train, then write and log like every training stage."""
    determinism.seed_everything(params.seed)
    config = params.perceptron
    data = pipeline.load_split(params, config.batch_size)
    model = SoftmaxRegression(math.prod(data.input_shape), len(data.class_names), config.init_stddev, params.seed)
    started = time.perf_counter()
    history = train(model, data, config, training.fresh_log_dir(STAGE))
    seconds = time.perf_counter() - started
    return evaluation.finish(
        STAGE, model.to_keras(data.input_shape), data.test, data.class_names, history, run,
        log_model=params.mlflow.log_model, training_seconds=seconds,
        extra_metrics={"steps": config.steps, "train_images": data.train_size},
    )
