"""Classifier heads: the chapter's top classifier on backbone features, and it composed with its backbone."""

from __future__ import annotations

from typing import Mapping

import keras
from keras import layers

from imgclf import paths
from imgclf.errors import UserError
from imgclf.params import BackboneParams


def top(
    feature_shape: tuple[int, ...], num_classes: int, units: int = 256, dropout_rate: float = 0.5, name: str = "top",
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
        name=name,
    )


def on_images(
    extractor: keras.Model, head: keras.Model, backbone: BackboneParams, num_classes: int, name: str,
    by_column: Mapping[str, keras.Model] | None = None,
) -> keras.Model:
    """uint8 images -> extractor (backbone) -> head: one image classifier (top's deployable model, finetune's).
    `by_column` (several label columns: every head by its column, `head` among them): the model's outputs
    are a dict by column, each head on the same features.

    A UserError when `head` does not fit: it was trained on other features or classes.
    """
    expected = (tuple(extractor.output.shape[1:]), num_classes)
    found = (tuple(head.input_shape[1:]), int(head.output_shape[-1]))
    if found != expected:
        raise UserError(
            f"{paths.top_head_file()}: takes features {found[0]} into {found[1]} classes, but "
            f"{backbone.name} at {list(backbone.input_size)} gives {expected[0]} and "
            f"data/split has {expected[1]} classes: re-run bottleneck and top (dvc repro finetune)"
        )
    inputs = keras.Input(shape=extractor.input_shape[1:], dtype="uint8", name="image")
    features = extractor(inputs)
    if by_column:
        return keras.Model(inputs, {column: model(features) for column, model in by_column.items()}, name=name)
    return keras.Model(inputs, head(features), name=name)

