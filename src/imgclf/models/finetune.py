"""The fine-tuning model: images -> backbone (frozen up to its last block) -> top's trained head."""

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
) -> tuple[keras.Model, int]:
    """(images -> backbone -> head, number of frozen backbone layers); `weights` from resolve_weights."""
    extractor = backbones.build_extractor(backbone, seed, weights, input_shape)
    frozen = backbones.freeze_up_to_last_block(backbones.base_of(extractor), backbone.name)
    return heads.on_images(extractor, head, backbone, num_classes, f"{backbone.name}_finetune"), frozen
