"""Training loops in low-level TensorFlow (tf.GradientTape, no Keras fit), with the chapter's summaries.

The model is a tf.Module whose `train_step(images, labels)` (one update) and `batch_metrics(images,
labels)` (no update) each return (loss, accuracy, tensors): the tensors the chapter summarises in
TensorBoard (mean, stddev, min, max, histogram) — the perceptron's weights and biases, the convnet's
layer outputs.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Protocol

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata

from imgclf.data import tfdata
from imgclf.params import ConvnetParams, PerceptronParams
from imgclf.sweep import trial
from imgclf.training import checkpoint
from imgclf.training.fitted import Fitted, log_dir

HISTOGRAM_BUCKETS = 30  # tf.summary.histogram's default
StepResult = tuple[tf.Tensor, tf.Tensor, Mapping[str, tf.Tensor]]


class LowLevelModel(Protocol):
    """What the loop needs of a low-level model."""

    def train_step(self, images: tf.Tensor, labels: tf.Tensor) -> StepResult: ...  # a tf.function

    def batch_metrics(self, images: tf.Tensor, labels: tf.Tensor) -> StepResult: ...

    def state(self) -> list[tf.Variable]: ...  # every variable training changes, in a fixed order (checkpoints)


def variable_summaries(name: str, variable: tf.Tensor, step: int) -> None:
    """The chapter's `add_variable_summary`: mean, stddev, min, max and a histogram."""
    mean, stddev, minimum, maximum, buckets = _statistics(tf.convert_to_tensor(variable))
    tf.summary.scalar(f"{name}/mean", mean, step=step)
    tf.summary.scalar(f"{name}/stddev", stddev, step=step)
    tf.summary.scalar(f"{name}/min", minimum, step=step)
    tf.summary.scalar(f"{name}/max", maximum, step=step)
    with tf.summary.experimental.summary_scope(f"{name}/histogram", "histogram_summary") as (tag, _):
        tf.summary.write(tag, buckets, step=step, metadata=histogram_metadata.create_summary_metadata(None, None))


@tf.function(reduce_retracing=True)
def _statistics(data: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(mean, stddev, min, max, histogram buckets) of a tensor, in one traced function.

    The buckets are tf.summary.histogram's (30 equal ones between min and max, rows of [left edge,
    right edge, count]; one value: every edge is it and the last bucket holds every count), counted
    with tf.histogram_fixed_width: TensorBoard counts them through an N x 30 float64 one-hot, which
    costs more than the convnet's training step itself.
    """
    data = tf.reshape(tf.cast(data, tf.float32), [-1])
    mean = tf.reduce_mean(data)
    stddev = tf.sqrt(tf.reduce_mean(tf.square(data - mean)))
    minimum, maximum = tf.reduce_min(data), tf.reduce_max(data)
    low, high = tf.cast(minimum, tf.float64), tf.cast(maximum, tf.float64)
    size = tf.cast(tf.size(data), tf.float64)
    counts = tf.cond(
        high > low,
        lambda: tf.cast(tf.histogram_fixed_width(data, tf.stack([minimum, maximum]), nbins=HISTOGRAM_BUCKETS), tf.float64),
        lambda: tf.one_hot(HISTOGRAM_BUCKETS - 1, HISTOGRAM_BUCKETS, on_value=size, dtype=tf.float64),
    )
    edges = low + (high - low) * tf.range(HISTOGRAM_BUCKETS + 1, dtype=tf.float64) / HISTOGRAM_BUCKETS
    buckets = tf.stack([edges[:-1], edges[1:], counts], axis=1)
    return mean, stddev, minimum, maximum, buckets


def _summaries(loss: tf.Tensor, accuracy: tf.Tensor, tensors: Mapping[str, tf.Tensor], step: int) -> None:
    tf.summary.scalar("loss", loss, step=step)
    tf.summary.scalar("accuracy", accuracy, step=step)
    for name, tensor in tensors.items():
        variable_summaries(name, tensor, step)


def evaluate(model: LowLevelModel, dataset: tf.data.Dataset) -> tuple[float, float]:
    """(mean loss, accuracy) over a batched dataset, weighted by batch size."""
    total_loss = total_hits = count = 0.0
    for images, labels in dataset:
        loss, accuracy, _ = model.batch_metrics(images, labels)
        size = float(images.shape[0])
        total_loss, total_hits, count = total_loss + float(loss) * size, total_hits + float(accuracy) * size, count + size
    return total_loss / count, total_hits / count


def train(
    model: LowLevelModel,
    data: tfdata.SplitData,
    config: PerceptronParams | ConvnetParams,
    stage: str,
    *,
    test_every: int = 0,
    graph: bool = False,
) -> Fitted:
    """`config.steps` training steps; per-step TensorBoard summaries; a Keras-style history per epoch.

    An epoch is one pass over the training images (steps_per_epoch batches); the last may be short.
    TensorBoard events go to logs/<stage>/: train/ every step, validation/ at each epoch's end, and
    with `test_every` test/ every that many steps (loss and accuracy on the whole test split, the
    summarised tensors of its first batch). `graph`: the traced train step goes to train/ (the
    graph tab).
    """
    started = time.perf_counter()
    checkpoints = checkpoint.active(stage)
    saved = checkpoints.resume_line(config.steps, "step") if checkpoints else None
    start = saved.done if saved else 0
    if saved:
        checkpoint.restore(model.state(), saved.arrays)
    every = checkpoint.steps_between(checkpoints.setting, data.steps_per_epoch) if checkpoints else None
    events = log_dir(stage, keep=start > 0)
    history: dict[str, list[float]] = saved.history if saved else {"loss": [], "accuracy": []}
    folders = ("train", "validation", "test") if test_every else ("train", "validation")
    writers = {name: tf.summary.create_file_writer(str(events / name)) for name in folders}
    first_test_batch = next(iter(data.test)) if test_every else None
    reporter = trial.active(stage)  # a search's trial: report the validation metric, stop if pruned
    # The per-step figures of the epoch under way (a checkpoint between two epoch ends keeps them).
    epoch_losses: list[float] = saved.extra["epoch_losses"] if saved else []
    epoch_accuracies: list[float] = saved.extra["epoch_accuracies"] if saved else []
    # The seeded stream from where the checkpoint left it: the batches already trained on, skipped.
    batches = data.train.repeat().skip(start).take(config.steps - start)
    for step, (images, labels) in enumerate(batches, start=start + 1):
        checkpoint.test_kill("step", step)
        loss, accuracy, tensors = model.train_step(images, labels)
        epoch_losses.append(float(loss))
        epoch_accuracies.append(float(accuracy))
        with writers["train"].as_default():
            if graph and step == 1:  # the traced step, as TensorBoard's graph tab shows it
                tf.summary.graph(model.train_step.get_concrete_function(images, labels).graph)
            _summaries(loss, accuracy, tensors, step)
        if test_every and step % test_every == 0:
            test_loss, test_accuracy = evaluate(model, data.test)
            with writers["test"].as_default():
                _summaries(tf.constant(test_loss), tf.constant(test_accuracy), model.batch_metrics(*first_test_batch)[2], step)
        if step % data.steps_per_epoch == 0 or step == config.steps:
            _end_epoch(model, data, history, epoch_losses, epoch_accuracies, writers["validation"], step)
            epoch_losses, epoch_accuracies = [], []
            print(f"{stage}: epoch {len(history['loss'])}, step {step}/{config.steps}: "
                  + ", ".join(f"{key} {values[-1]:.4f}" for key, values in history.items()), flush=True)
            if reporter:
                reporter.epoch_end(len(history["loss"]), {key: values[-1] for key, values in history.items()})
        if every and (step % every == 0 or step == config.steps):
            seconds = (saved.seconds if saved else 0.0) + time.perf_counter() - started
            checkpoints.save(step, config.steps, model.state(), history,
                             {"epoch_losses": epoch_losses, "epoch_accuracies": epoch_accuracies}, seconds)
    for writer in writers.values():
        writer.close()
    seconds = (saved.seconds if saved else 0.0) + time.perf_counter() - started
    return Fitted(history, seconds, config.steps * config.batch_size)


def _end_epoch(model: LowLevelModel, data: tfdata.SplitData, history: dict[str, list[float]], losses: list[float],
               accuracies: list[float], writer: Any, step: int) -> None:
    """An epoch's history entry: the mean of its steps' figures, and the validation hold-out's."""
    history["loss"].append(float(np.mean(losses)))
    history["accuracy"].append(float(np.mean(accuracies)))
    if data.validation is not None:
        validation_loss, validation_accuracy = evaluate(model, data.validation)
        history.setdefault("val_loss", []).append(validation_loss)
        history.setdefault("val_accuracy", []).append(validation_accuracy)
        with writer.as_default():
            tf.summary.scalar("loss", validation_loss, step=step)
            tf.summary.scalar("accuracy", validation_accuracy, step=step)
