"""Fitting a Keras model on tf.data, the same way in every Keras training stage."""

from __future__ import annotations

import sys
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from imgclf.errors import UserError
from imgclf.params import FitParams
from imgclf.sweep import trial
from imgclf.training import checkpoint, distribution
from imgclf.training.fitted import Fitted, log_dir


def class_weights(class_counts: Sequence[int], mode: str) -> dict[int, float] | None:
    """None, or "balanced" weights n / (classes * count), as scikit-learn computes them."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight must be none or balanced, got {mode!r}")
    total = sum(class_counts)
    return {index: total / (len(class_counts) * count) for index, count in enumerate(class_counts)}


def progress_verbosity() -> int:
    """Keras progress bars on a terminal (1); one line per epoch in logs (2)."""
    return 1 if sys.stdout.isatty() else 2


def endless(dataset: tf.data.Dataset | None) -> tuple[tf.data.Dataset | None, int | None]:
    """(dataset.repeat(), batches in one pass) for a finite dataset; anything else unchanged, None.

    Keras 3's fit() on a finite tf.data dataset makes two iterators per epoch and drops one, and
    tearing one down stalls the next epoch. One endless iterator for the whole fit, with steps =
    one pass, gives the same batches per epoch (the shuffle still reshuffles every pass).
    """
    if dataset is None:
        return None, None
    batches = int(dataset.cardinality())
    if batches <= 0:  # already endless, or unknown
        return dataset, None
    return dataset.repeat(), batches


class PredictedValidation(keras.callbacks.Callback):
    """val_loss and val_accuracy from predict() at each epoch's end, as evaluate() would give them.

    Under MirroredStrategy, Keras 3's evaluate() (and fit's validation) fails on a last batch that
    does not split evenly over the replicas (shapes [4,...] vs [3,...] in an AddN); predict() does
    not. Listed first, so TensorBoard and the history see the figures it adds.
    """

    def __init__(self, validation: tf.data.Dataset):
        super().__init__()
        self.validation = validation
        self.labels = np.concatenate([labels for _, labels in validation.as_numpy_iterator()])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = self.model.predict(self.validation, verbose=0)
        loss = keras.losses.categorical_crossentropy(self.labels, probabilities)
        matches = np.argmax(probabilities, axis=1) == np.argmax(self.labels, axis=1)
        if logs is not None:
            logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(loss)))
            logs["val_accuracy"] = float(np.mean(matches))


def early_stopping(settings: FitParams, stage: str, has_validation: bool, label_heads: Sequence[str]) -> keras.callbacks.Callback:
    """Stop after `patience` epochs without a better `monitor` on the validation hold-out; keep the best epoch's weights."""
    if not has_validation:
        raise UserError(f"{stage}.patience: {settings.patience}: early stopping watches the validation hold-out, and "
                        f"there is none: set data.validation_fraction above 0, or {stage}.patience: 0")
    if label_heads and settings.monitor == "val_accuracy":
        raise UserError(f"{stage}.monitor: val_accuracy is one head's, and data.label_columns has {len(label_heads)}: "
                        f"use val_loss (the sum of the heads' losses)")
    return keras.callbacks.EarlyStopping(monitor=settings.monitor, patience=settings.patience, restore_best_weights=True,
                                         verbose=1)


def full_batches(train: tf.data.Dataset, batch_size: int, replicas: int, stage: str) -> tf.data.Dataset:
    """An endless stream cut into full global batches, each split evenly over the replicas.

    Nothing is dropped: the stream is endless, so a pass's short last batch is topped up from the next.
    """
    if batch_size % replicas:
        raise UserError(f"{stage}.batch_size: {batch_size} does not split over {replicas} replicas "
                        f"(train.distribute: mirrored): use a multiple of {replicas}")
    return train.rebatch(batch_size, drop_remainder=True)


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    settings: FitParams,
    stage: str,
    class_counts: Sequence[int],
    *,
    steps_per_epoch: int | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> Fitted:
    """Compile (Adam unless `optimizer`, categorical cross-entropy, accuracy) and fit.

    `steps_per_epoch` is required for an endless `train` (e.g. from augmentation.augment_dataset).
    TensorBoard events go to logs/<stage>/. Call it inside `distribution.scope(params.train)`, where
    the model was built: with several replicas, every global batch is full and splits evenly.
    """
    if steps_per_epoch is None:
        if train.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("an endless training dataset needs steps_per_epoch")
        train, steps_per_epoch = endless(train)
    replicas = distribution.replicas()
    label_heads = head_columns(model)  # one softmax head per label column, or none
    if label_heads and settings.class_weight != "none":
        raise UserError(f"{stage}.class_weight: {settings.class_weight} weighs one label column's classes, and "
                        f"data.label_columns has {len(label_heads)}: use none")
    if label_heads and replicas > 1:
        raise UserError("train.distribute: mirrored: not with several label columns (data.label_columns) yet: use none")
    callbacks: list[keras.callbacks.Callback] = []
    stopping = early_stopping(settings, stage, validation is not None, label_heads) if settings.patience else None
    if replicas > 1:
        train = full_batches(train, settings.batch_size, replicas, stage)
        if validation is not None:
            callbacks.append(PredictedValidation(validation))  # before early stopping: it adds val_loss
            validation = None
    callbacks += [stopping] if stopping else []
    reporter = trial.active(stage)  # a search's trial: report the validation metric, stop if pruned
    callbacks += [Reporting(reporter)] if reporter else []
    validation, validation_steps = endless(validation)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(settings.learning_rate),
        loss={head: "categorical_crossentropy" for head in label_heads} if label_heads else "categorical_crossentropy",
        metrics={head: ["accuracy"] for head in label_heads} if label_heads else ["accuracy"],
    )
    checkpoints = checkpoint.active(stage)
    if checkpoints is not None and replicas > 1:
        checkpoints.refuse("a resumed mirrored fit does not yet give the bytes of an uninterrupted one, so a killed "
                           "run starts again from epoch 1 (train.distribute: none resumes where it was killed)")
    saving = Saving(checkpoints, settings.epochs, stopping)
    start, epochs = saving.restore(model)  # 0 and settings.epochs, unless resumed from a checkpoint
    events = log_dir(stage, keep=start > 0)
    started = time.perf_counter()
    if start < epochs:
        history = model.fit(
            # The seeded stream from where the checkpoint left it: the batches already trained on, skipped.
            train.skip(start * steps_per_epoch) if start else train,
            validation_data=validation,
            initial_epoch=start,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            class_weight=class_weights(class_counts, settings.class_weight),
            # No weight histograms: TensorBoard bins them through an N x 30 one-hot, gigabytes for the
            # chapter CNN's dense layer every epoch. Scalars and the graph are logged. Saving comes last:
            # it checkpoints what the others (early stopping, the mirrored validation) leave at an epoch's end.
            callbacks=callbacks + [keras.callbacks.TensorBoard(log_dir=str(events), histogram_freq=0), saving]
            + ([KillAtStep()] if checkpoint.test_kill_wanted("step") else []),
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
            verbose=progress_verbosity(),
        ).history
    else:  # every epoch was trained before the kill: do what the end of fit does, then on to publishing
        history = {}
        if stopping is not None and stopping.best_weights is not None:
            model.set_weights(stopping.best_weights)
    history = saving.history if saving.checkpoints else history
    seconds = saving.seconds_before + time.perf_counter() - started
    epochs_run = len(history.get("loss", [])) or settings.epochs  # fewer when early stopping stopped it
    images = epochs_run * steps_per_epoch * settings.batch_size  # the last batch of a pass may be short
    return Fitted(with_mean_accuracy(history, label_heads), seconds, images, replicas)


class Saving(keras.callbacks.Callback):
    """The stage's checkpoint at each epoch's end (imgclf.training.checkpoint): the model's and the
    optimizer's variables (Keras' seed generators included), the epochs done, the history so far and
    early stopping's state; and, when the stage resumes, all that restored into the compiled model.
    Outside a stage (`checkpoints` None) it only records the history."""

    def __init__(self, checkpoints: checkpoint.Checkpoints | None, epochs: int,
                 stopping: keras.callbacks.EarlyStopping | None):
        super().__init__()
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.stopping = stopping
        self.history: dict[str, list[float]] = {}
        self.stopping_state: dict | None = None  # early stopping's, restored again after fit resets it
        self.seconds_before = 0.0  # training time of the runs before this one
        self.started = time.perf_counter()

    @staticmethod
    def state(model: keras.Model) -> list:
        """Every variable a resumed fit needs, in a fixed order (the optimizer built first if need be)."""
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        return list(model.variables) + list(model.optimizer.variables)

    def restore(self, model: keras.Model) -> tuple[int, int]:
        """(first epoch to train, epochs to train up to): from the checkpoint if there is one to resume."""
        saved = self.checkpoints.resume_line(self.epochs) if self.checkpoints else None
        if saved is None:
            return 0, self.epochs
        state = self.state(model)
        checkpoint.restore(state, saved.arrays[: len(state)])
        self.history = {key: list(values) for key, values in saved.history.items()}
        self.seconds_before = saved.seconds
        if self.stopping is not None and "stopping" in saved.extra:
            self.stopping_state = dict(saved.extra["stopping"]) | {"best_weights": saved.arrays[len(state):] or None}
            self.resume_stopping()
        return saved.done, saved.done if saved.extra.get("stopped") else self.epochs

    def resume_stopping(self) -> None:
        """Early stopping as the checkpoint left it: its wait, best value and epoch, best weights."""
        for name, value in (self.stopping_state or {}).items():
            setattr(self.stopping, name, value)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        self.resume_stopping()  # EarlyStopping.on_train_begin, listed before, has just reset it

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.checkpoints is None or not self.checkpoints.enabled:
            return
        variables = self.state(self.model)
        extra: dict = {"stopped": bool(self.model.stop_training)}
        if self.stopping is not None:
            extra["stopping"] = {"wait": self.stopping.wait, "best": self.stopping.best,
                                 "best_epoch": self.stopping.best_epoch, "stopped_epoch": self.stopping.stopped_epoch}
            variables += list(self.stopping.best_weights or [])
        seconds = self.seconds_before + time.perf_counter() - self.started
        self.checkpoints.save(epoch + 1, self.epochs, variables, self.history, extra, seconds)


class Reporting(keras.callbacks.Callback):
    """A search trial's hook (imgclf.sweep.trial) at each epoch's end: its validation metric reported,
    the fit stopped by `trial.Pruned` when the study's pruner says so."""

    def __init__(self, reporter: trial.Reporter):
        super().__init__()
        self.reporter = reporter

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.reporter.epoch_end(epoch + 1, logs or {})


class KillAtStep(keras.callbacks.Callback):
    """The kill-and-resume tests' hook (checkpoint.TEST_KILL): SIGKILL before training step N of the stage."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        checkpoint.test_kill("step", int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) + 1)


def head_columns(model: keras.Model) -> list[str]:
    """The label columns of a model with one softmax head per column (its outputs a dict by column); else []."""
    try:
        output = model.output
    except AttributeError:  # a Sequential model never called on a tensor: one output
        return []
    return list(output) if isinstance(output, dict) else []


def with_mean_accuracy(history: dict[str, list[float]], label_heads: Sequence[str]) -> dict[str, list[float]]:
    """Keras' history as lists; with several heads, plus `accuracy` (and `val_accuracy`): their mean per epoch,
    the figure the leaderboard ranks such a model by (loss is already their sum)."""
    history = {key: list(values) for key, values in history.items()}
    for prefix in ("", "val_"):
        columns = [history[f"{prefix}{head}_accuracy"] for head in label_heads if f"{prefix}{head}_accuracy" in history]
        if label_heads and len(columns) == len(label_heads):
            history[f"{prefix}accuracy"] = [float(np.mean(values)) for values in zip(*columns, strict=True)]
    return history
