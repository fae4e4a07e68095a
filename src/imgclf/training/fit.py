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
from imgclf.training import distribution
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
    validation, validation_steps = endless(validation)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(settings.learning_rate),
        loss={head: "categorical_crossentropy" for head in label_heads} if label_heads else "categorical_crossentropy",
        metrics={head: ["accuracy"] for head in label_heads} if label_heads else ["accuracy"],
    )
    events = log_dir(stage)
    started = time.perf_counter()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=settings.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps,
        class_weight=class_weights(class_counts, settings.class_weight),
        # No weight histograms: TensorBoard bins them through an N x 30 one-hot, gigabytes for the
        # chapter CNN's dense layer every epoch. Scalars and the graph are logged.
        callbacks=callbacks + [keras.callbacks.TensorBoard(log_dir=str(events), histogram_freq=0)],
        shuffle=False,  # the tf.data pipeline shuffles (seeded)
        verbose=progress_verbosity(),
    )
    seconds = time.perf_counter() - started
    epochs = len(history.history.get("loss", [])) or settings.epochs  # fewer when early stopping stopped it
    images = epochs * steps_per_epoch * settings.batch_size  # the last batch of a pass may be short
    return Fitted(with_mean_accuracy(history.history, label_heads), seconds, images, replicas)


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
