"""Fit a compiled Keras classifier on tf.data, the same way in every training stage."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import keras
import tensorflow as tf

from imgclf import determinism, evaluation, paths
from imgclf.data import pipeline
from imgclf.params import Params
from imgclf.tracking import StageRun

ModelBuilder = Callable[[tuple[int, int, int], int], keras.Model]  # (input_shape, num_classes)
DatasetTransform = Callable[[tf.data.Dataset], tf.data.Dataset]


class FitSettings(Protocol):
    """The fit params every training section has (baseline, augmented, top, finetune)."""

    epochs: int
    batch_size: int
    learning_rate: float
    class_weight: str


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


def fresh_log_dir(stage: str) -> Path:
    """logs/<stage>/, emptied: the TensorBoard events of this run only (then logged to MLflow)."""
    folder = paths.tensorboard_dir(stage)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def endless(dataset: tf.data.Dataset | None) -> tuple[tf.data.Dataset | None, int | None]:
    """(dataset.repeat(), batches in one pass) for a finite dataset; anything else unchanged, None.

    Keras 3.15's fit() on a finite tf.data dataset makes two iterators per epoch and throws one
    away; on this 2-core machine tearing it down stalled the next epoch by 4-5 s every other
    epoch (a 1,000-photo epoch: 10 s instead of 4.9 s; benchmarks/input_pipeline.py). One
    endless iterator for the whole fit with steps = one pass gives the same batches per epoch
    (the shuffle still reshuffles every pass) without the stalls.
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
    settings: FitSettings,
    log_dir: Path,
    class_counts: Sequence[int],
    *,
    steps_per_epoch: int | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> keras.callbacks.History:
    """Compile (Adam unless `optimizer`, categorical cross-entropy, accuracy) and fit.

    `steps_per_epoch` is required for an endless `train` (e.g. from augmentation.augment_dataset).
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
    return model.fit(
        train,
        validation_data=validation,
        epochs=settings.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps,
        class_weight=class_weights(class_counts, settings.class_weight),
        # No weight histograms: TensorBoard bins them through an N x 30 one-hot, 2.3 GB for the
        # chapter CNN's 19 M-weight dense layer, every epoch. Scalars and the graph are logged.
        callbacks=[keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0)],
        shuffle=False,  # the tf.data pipeline shuffles (seeded)
        verbose=progress_verbosity(),
    )


def train_classifier(
    stage: str,
    params: Params,
    run: StageRun,
    settings: FitSettings,
    build_model: ModelBuilder,
    *,
    precision: str = "float32",
    augment: DatasetTransform | None = None,
    rescale: bool = True,
    optimizer: keras.optimizers.Optimizer | None = None,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seed, load data/split, build, fit and evaluate a classifier; write and log everything.

    `augment` turns the batched training dataset into an endless augmented one
    (e.g. functools.partial(augmentation.augment_dataset, augmentation=..., seed=...)).
    """
    determinism.seed_everything(params.seed)
    determinism.set_precision(precision)
    data = pipeline.load_split(params, settings.batch_size, rescale=rescale)
    train = data.train if augment is None else augment(data.train)
    model = build_model(data.input_shape, len(data.class_names))
    log_dir = fresh_log_dir(stage)
    started = time.perf_counter()
    history = fit(
        model, train, data.validation, settings, log_dir, data.class_counts,
        steps_per_epoch=data.steps_per_epoch if augment is not None else None,
        optimizer=optimizer,
    )
    seconds = time.perf_counter() - started
    return evaluation.finish(
        stage, model, data.test, data.class_names, history.history, run,
        log_model=params.mlflow.log_model, training_seconds=seconds,
        extra_metrics={"train_images": data.train_size} | dict(extra_metrics or {}),
    )
