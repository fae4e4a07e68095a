"""The fine-tuning model: images -> backbone (frozen up to the blocks finetune.trainable names) -> top's trained head."""

from __future__ import annotations

from typing import Mapping, Sequence

import keras

from imgclf.models import backbones, heads
from imgclf.params import BackboneParams


def build(
    backbone: BackboneParams,
    seed: int,
    weights: str | None,
    head: keras.Model,
    input_shape: tuple[int, int, int],
    num_classes: int,
    trainable: str,
    label_heads: Mapping[str, Sequence[str]] | None = None,
) -> tuple[keras.Model, int]:
    """(images -> backbone -> head, number of frozen backbone layers); `weights` from resolve_weights.

    `trainable` (the chapter's guideline table): last_block, blocks:N (the last N blocks), all, or head
    (the backbone frozen, and in each head only its output layer trained). `label_heads` ({column: class
    names}, several label columns): top's head answers the first column, and every other column gets a new
    head of top's shape (units, dropout) on the same features, initialised from the seed.
    """
    blocks = backbones.trained_blocks(backbone.name, trainable)
    extractor = backbones.build_extractor(backbone, seed, weights, input_shape)
    frozen = backbones.freeze(backbones.base_of(extractor), backbone.name, blocks)
    by_column = None
    if label_heads:
        first, *others = label_heads
        units, dropout = head.get_layer("top_dense").units, head.get_layer("top_dropout").rate
        feature_shape = tuple(extractor.output.shape[1:])
        by_column = {first: head} | {column: heads.top(feature_shape, len(label_heads[column]), units, dropout,
                                                       name=f"top_{column}") for column in others}
    if trainable == "head":
        for model in by_column.values() if by_column else [head]:
            for layer in model.layers[:-1]:
                layer.trainable = False
    return heads.on_images(extractor, head, backbone, num_classes, f"{backbone.name}_finetune", by_column), frozen
