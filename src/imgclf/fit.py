"""Fitting a Keras model on tf.data, the same way in every Keras training stage."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from imgclf import paths
from imgclf.params import FitParams


@dataclass(frozen=True)
class Fitted:
    """What a fit leaves for publishing: the per-epoch history and how long training took."""

    history: dict[str, list[float]]  # Keras names: loss, accuracy, val_loss, val_accuracy
    seconds: float  # run-specific: MLflow only, never a DVC output


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


def log_dir(stage: str) -> Path:
    """logs/<stage>/, emptied: the TensorBoard events of this run only (then logged to MLflow)."""
    folder = paths.tensorboard_dir(stage)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


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
    TensorBoard events go to logs/<stage>/.
    """
    if steps_per_epoch is None:
        if train.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("an endless training dataset needs steps_per_epoch")
        train, steps_per_epoch = endless(train)
    validation, validation_steps = endless(validation)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(settings.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
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
        callbacks=[keras.callbacks.TensorBoard(log_dir=str(events), histogram_freq=0)],
        shuffle=False,  # the tf.data pipeline shuffles (seeded)
        verbose=progress_verbosity(),
    )
    return Fitted({key: list(values) for key, values in history.history.items()}, time.perf_counter() - started)
