"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012), one of the chapter's "bigger models", trainable from scratch.

Five convolutional layers (96 11x11, 256 5x5, 384, 384, 256 3x3, ReLU), overlapping 3x3 max pooling
after the first, second and fifth, two fully connected layers with dropout, and local response
normalization after the first two convolutions as an option (`cnn.local_response_normalization`).
Scaled to the input: the first convolution is the paper's 11x11 stride 4 from 128 px on, 5x5 stride 2
from 64 px, 3x3 stride 1 below (28x28 digits); "same" padding keeps every side at least 1; the fully
connected layers have `cnn.dense_units` units (the paper: 4096) and `cnn.dropout`.
"""

from __future__ import annotations

import keras
from keras import layers

from imgclf.models.layers import LocalResponseNormalization
from imgclf.params import CnnParams

FILTERS = (96, 256, 384, 384, 256)


def first_convolution(side: int) -> tuple[int, int]:
    """(kernel, stride) of the first convolution for images `side` pixels high or wide."""
    if side >= 128:
        return 11, 4
    if side >= 64:
        return 5, 2
    return 3, 1


def body(x: keras.KerasTensor, config: CnnParams) -> keras.KerasTensor:
    """[0, 1] pixels -> the features its head classifies."""
    kernel, stride = first_convolution(min(x.shape[1:3]))
    x = layers.Conv2D(FILTERS[0], kernel, strides=stride, padding="same", activation="relu", name="conv1")(x)
    if config.local_response_normalization:
        x = LocalResponseNormalization(name="lrn1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(FILTERS[1], 5, padding="same", activation="relu", name="conv2")(x)
    if config.local_response_normalization:
        x = LocalResponseNormalization(name="lrn2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    for index, filters in enumerate(FILTERS[2:], start=3):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index}")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = layers.Dense(config.dense_units, activation="relu", name=name)(x)
        x = layers.Dropout(config.dropout, name=f"{name}_dropout")(x)
    return x
