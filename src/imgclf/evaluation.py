"""Scoring a classifier on the test split: predictions, accuracy, loss, macro and per-class figures."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import precision_recall_fscore_support

INPUT_EXAMPLE_SIZE = 5
# Cross-entropy clips probabilities like Keras does, so `loss` matches model.evaluate.
EPSILON = 1e-7

TestData = tf.data.Dataset | tuple[np.ndarray, np.ndarray]


def predict(model: keras.Model, test: TestData) -> tuple[np.ndarray, np.ndarray]:
    """(integer labels, class probabilities) over the whole test split, in its order."""
    if isinstance(test, tf.data.Dataset):
        labels = np.concatenate([batch_labels.numpy() for _, batch_labels in test])
        probabilities = model.predict(test, verbose=0)
    else:
        images, labels = test
        probabilities = model.predict(images, batch_size=256, verbose=0)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    return labels.astype(np.int64), np.asarray(probabilities, dtype=np.float64)


def input_example(test: TestData) -> np.ndarray:
    """A few test images, as the MLflow model's input example (and signature)."""
    if isinstance(test, tf.data.Dataset):
        images = next(iter(test.unbatch().batch(INPUT_EXAMPLE_SIZE).take(1)))[0]
        return np.asarray(images)
    return np.asarray(test[0][:INPUT_EXAMPLE_SIZE])


def test_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, macro and per-class precision/recall/F1."""
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(class_names)), zero_division=0
    )
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "loss": float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0)))),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "test_images": int(len(labels)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
        },
    }
