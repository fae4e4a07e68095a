"""The fine-tuning model: images -> backbone (frozen up to the blocks finetune.trainable names) -> top's trained head."""

from __future__ import annotations

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
) -> tuple[keras.Model, int]:
    """(images -> backbone -> head, number of frozen backbone layers); `weights` from resolve_weights.

    `trainable` (the chapter's guideline table): last_block, blocks:N (the last N blocks), all, or head
    (the backbone frozen, and in the head only its output layer trained).
    """
    blocks = backbones.trained_blocks(backbone.name, trainable)
    extractor = backbones.build_extractor(backbone, seed, weights, input_shape)
    frozen = backbones.freeze(backbones.base_of(extractor), backbone.name, blocks)
    if trainable == "head":
        for layer in head.layers[:-1]:
            layer.trainable = False
    return heads.on_images(extractor, head, backbone, num_classes, f"{backbone.name}_finetune"), frozen
