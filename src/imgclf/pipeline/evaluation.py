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
    """(integer labels, class probabilities) over the whole test split, in its order.

    A model with one head per label column gives {column: labels}, {column: probabilities}.
    """
    if isinstance(test, tf.data.Dataset):
        batches = [batch_labels for _, batch_labels in test]
        if batches and isinstance(batches[0], dict):
            labels = {column: np.concatenate([batch[column].numpy() for batch in batches]) for column in batches[0]}
        else:
            labels = np.concatenate([batch.numpy() for batch in batches])
        probabilities = model.predict(test, verbose=0)
    else:
        images, labels = test
        probabilities = model.predict(images, batch_size=256, verbose=0)
    if isinstance(probabilities, dict):
        return ({column: _indices(labels[column]) for column in probabilities},
                {column: np.asarray(values, dtype=np.float64) for column, values in probabilities.items()})
    return _indices(labels), np.asarray(probabilities, dtype=np.float64)


def _indices(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    return (labels.argmax(axis=1) if labels.ndim == 2 else labels).astype(np.int64)


def heads_metrics(
    labels: dict[str, np.ndarray], probabilities: dict[str, np.ndarray], label_heads: dict[str, Sequence[str]]
) -> dict[str, Any]:
    """Several heads' test metrics: each head's in `heads`, and the summary the leaderboard ranks by: the
    mean of the heads' accuracy and macro precision/recall/F1, the sum of their losses (the training loss)."""
    each = {column: test_metrics(labels[column], probabilities[column], names) for column, names in label_heads.items()}
    return {
        "accuracy": float(np.mean([metrics["accuracy"] for metrics in each.values()])),
        "loss": float(np.sum([metrics["loss"] for metrics in each.values()])),
        **{key: float(np.mean([metrics[key] for metrics in each.values()]))
           for key in ("precision_macro", "recall_macro", "f1_macro")},
        "test_images": next(iter(each.values()))["test_images"],
        "heads": each,
    }


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
