"""Training loops in low-level TensorFlow (tf.GradientTape, no Keras fit), with the chapter's summaries.

The model is a tf.Module with `train_step(images, labels, learning_rate)` and
`batch_metrics(images, labels)`, each returning (loss, accuracy), and `summarised_variables()`,
the variables whose mean, stddev, min, max and histogram go to TensorBoard every step.
"""

from __future__ import annotations

import time
from typing import Mapping, Protocol

import numpy as np
import tensorflow as tf

from imgclf import fit
from imgclf.data import pipeline
from imgclf.fit import Fitted
from imgclf.params import PerceptronParams


class LowLevelModel(Protocol):
    """What the loop needs of a low-level model."""

    def train_step(self, images: tf.Tensor, labels: tf.Tensor, learning_rate: float) -> tuple[tf.Tensor, tf.Tensor]: ...

    def batch_metrics(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]: ...

    def summarised_variables(self) -> Mapping[str, tf.Variable]: ...


def variable_summaries(name: str, variable: tf.Variable, step: int) -> None:
    """The chapter's summaries of a variable: mean, stddev, min, max and a histogram."""
    mean = tf.reduce_mean(variable)
    tf.summary.scalar(f"{name}/mean", mean, step=step)
    tf.summary.scalar(f"{name}/stddev", tf.sqrt(tf.reduce_mean(tf.square(variable - mean))), step=step)
    tf.summary.scalar(f"{name}/min", tf.reduce_min(variable), step=step)
    tf.summary.scalar(f"{name}/max", tf.reduce_max(variable), step=step)
    tf.summary.histogram(f"{name}/histogram", variable, step=step)


def evaluate(model: LowLevelModel, dataset: tf.data.Dataset) -> tuple[float, float]:
    """(mean loss, accuracy) over a batched dataset, weighted by batch size."""
    total_loss = total_hits = count = 0.0
    for images, labels in dataset:
        loss, accuracy = model.batch_metrics(images, labels)
        size = float(images.shape[0])
        total_loss, total_hits, count = total_loss + float(loss) * size, total_hits + float(accuracy) * size, count + size
    return total_loss / count, total_hits / count


def train(
    model: LowLevelModel,
    data: pipeline.SplitData,
    config: PerceptronParams,
    stage: str,
) -> Fitted:
    """`config.steps` SGD steps; per-step TensorBoard summaries; a Keras-style history per epoch.

    An epoch is one pass over the training images (steps_per_epoch batches); the last may be short.
    TensorBoard events go to logs/<stage>/{train,validation}/.
    """
    started = time.perf_counter()
    log_dir = fit.log_dir(stage)
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
            for name, variable in model.summarised_variables().items():
                variable_summaries(name, variable, step)
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
        print(f"{stage}: epoch {epoch}, step {step}/{config.steps}: "
              + ", ".join(f"{key} {values[-1]:.4f}" for key, values in history.items()), flush=True)
    train_writer.close()
    validation_writer.close()
    return Fitted(history, time.perf_counter() - started, config.steps * config.batch_size)
