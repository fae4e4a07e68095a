"""The top stage's work: the chapter's classifier on bottleneck features, a linear SVM beside it.

It writes and logs like every training stage (imgclf.evaluation) and says which backbone and
weights the features come from. imgclf.finetuning then starts from the head trained here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from imgclf import determinism, evaluation, features, paths, training
from imgclf.models.top import build_top
from imgclf.params import Params
from imgclf.tracking import StageRun

SVM_MAX_ITERATIONS = 10_000


def svm_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    c: float,
    seed: int,
) -> float:
    """Test accuracy of a linear SVM (LinearSVC, C=c) on standardized, flattened features."""
    model = make_pipeline(
        StandardScaler(), LinearSVC(C=c, dual="auto", random_state=seed, max_iter=SVM_MAX_ITERATIONS)
    )
    model.fit(train_features.reshape(len(train_features), -1), train_labels)
    predicted = model.predict(test_features.reshape(len(test_features), -1))
    return float(np.mean(predicted == test_labels))


def feature_dataset(
    values: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, seed: int | None = None
) -> tf.data.Dataset:
    """(features, one-hot labels) batches; reshuffled every epoch (seeded) when `seed` is given."""
    one_hot = np.eye(num_classes, dtype="float32")[labels]
    dataset = tf.data.Dataset.from_tensor_slices((values, one_hot))
    if seed is not None:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_top(params: Params, run: StageRun) -> dict[str, Any]:
    """Fit the top classifier and a linear SVM on data/features; evaluate both on test features."""
    facts = features.read_backbone_facts()
    class_names = features.read_classes()
    run.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    train = features.load(paths.FEATURES / "train.npz")
    test = features.load(paths.FEATURES / "test.npz")
    settings = params.top
    determinism.seed_everything(params.seed)
    determinism.set_precision("float32")  # a small head on float32 features: nothing to gain
    fit_rows, validation_rows = features.holdout(
        len(train.labels), params.data.validation_fraction, params.seed
    )
    num_classes = len(class_names)
    train_data = feature_dataset(
        train.features[fit_rows], train.labels[fit_rows], num_classes, settings.batch_size, params.seed
    )
    validation_data = None
    if len(validation_rows):
        validation_data = feature_dataset(
            train.features[validation_rows], train.labels[validation_rows], num_classes, settings.batch_size
        )
    model = build_top(train.features.shape[1:], num_classes, settings.units, settings.dropout)
    class_counts = np.bincount(train.labels[fit_rows], minlength=num_classes).tolist()
    started = time.perf_counter()
    history = training.fit(
        model, train_data, validation_data, settings, training.fresh_log_dir("top"), class_counts
    )
    seconds = time.perf_counter() - started
    svm = svm_accuracy(
        train.features[fit_rows], train.labels[fit_rows], test.features, test.labels,
        settings.svm_c, params.seed,
    )
    print(f"top: linear SVM (C={settings.svm_c}) test accuracy {svm:.4f}", flush=True)
    return evaluation.finish(
        "top", model, (test.features, test.labels), class_names, history.history, run,
        log_model=params.mlflow.log_model, training_seconds=seconds,
        extra_metrics=facts | {"svm_accuracy": svm, "train_images": int(len(fit_rows))},
    )
