"""Classifier heads on backbone features: the chapter's top classifier (reused by finetune)."""

from __future__ import annotations

import keras
from keras import layers


def top(
    feature_shape: tuple[int, ...], num_classes: int, units: int = 256, dropout_rate: float = 0.5
) -> keras.Model:
    """Flatten, Dense(units, relu), Dropout, Dense(num_classes, softmax) on backbone features.

    The chapter ends with Dense(1, activation="softmax"): a softmax over one unit is always 1, so
    that model predicts the same class for every image. One unit per class fixes it (and works
    for more than two classes).
    """
    return keras.Sequential(
        [
            keras.Input(shape=feature_shape, name="features"),
            layers.Flatten(name="top_flatten"),
            layers.Dense(units, activation="relu", name="top_dense"),
            layers.Dropout(dropout_rate, name="top_dropout"),
            # float32 softmax even under a mixed-precision policy: stable probabilities.
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="top_predictions"),
        ],
        name="top",
    )
