"""The chapter's simple CNN (`cnn.architecture: simple_cnn`), and the output layer every architecture ends with."""

from __future__ import annotations

import keras
from keras import layers

from imgclf.params import CnnParams

# Photo layout: add conv/pool blocks until the feature map is at most this many pixels on a side.
PHOTO_MAX_FEATURE_SIDE = 8


def simple_cnn_body(x: keras.KerasTensor, cnn: CnnParams) -> keras.KerasTensor:
    """The chapter's `simple_cnn` (layout "chapter") or its photo-sized variant (layout "photo"), up to its head.

    chapter: Conv2D(filters[i], 3x3, relu) for each entry of `filters` (64, 128), MaxPool 2x2,
        Dropout, Flatten, Dense(dense_units, relu), Dropout, Dense(num_classes, softmax). Exactly
        the chapter's model for 28x28 digits (18k features into Dense 1024), with a softmax over
        all classes instead of the chapter's Dense(1, softmax), which always outputs 1.
    photo: the literal model at 150x150x3 flattens 73x73x128 features into Dense 1024 (~700 M
        weights). As in the Keras blog's cats-vs-dogs convnet, each `filters` entry becomes a
        Conv2D + MaxPool block, and blocks with the last filter count are added until the
        feature map is at most 8 px on a side (150 px: 4 blocks); then GlobalAveragePooling2D
        instead of Flatten, so the dense layer's size does not grow with the image.
    """
    if cnn.layout not in ("chapter", "photo"):
        raise ValueError(f"cnn.layout must be resolved to chapter or photo, got {cnn.layout!r}")
    if cnn.layout == "chapter":
        for filters in cnn.filters:
            x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(cnn.dropout)(x)
        x = layers.Flatten()(x)
    else:
        side = min(x.shape[1:3])
        block_filters = list(cnn.filters)
        while _side_after(side, len(block_filters)) > PHOTO_MAX_FEATURE_SIDE:
            block_filters.append(cnn.filters[-1])
        for filters in block_filters:
            x = layers.Conv2D(filters, 3, activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(cnn.dropout)(x)
        x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(cnn.dense_units, activation="relu")(x)
    return layers.Dropout(cnn.dropout)(x)


def classifier(x: keras.KerasTensor, num_classes: int, name: str = "class") -> keras.KerasTensor:
    """The output layer (a head) of every architecture but squeezenet: float32 softmax even under a
    mixed-precision policy (numerically stable probabilities), named `class` (one head) or `class_<column>`."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def _side_after(side: int, blocks: int) -> int:
    """Feature-map side after `blocks` (valid 3x3 conv, 2x2 max-pool) blocks."""
    for _ in range(blocks):
        if side < 4:
            break
        side = (side - 2) // 2
    return side
