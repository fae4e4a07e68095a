"""The fine-tuning model: images -> backbone (frozen up to its last block) -> top's trained head."""

from __future__ import annotations

import keras

from imgclf import paths
from imgclf.errors import UserError
from imgclf.models import backbones
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
    expected = (tuple(extractor.output.shape[1:]), num_classes)
    found = (tuple(head.input_shape[1:]), int(head.output_shape[-1]))
    if found != expected:
        raise UserError(
            f"{paths.model_file('top')}: takes features {found[0]} into {found[1]} classes, but "
            f"{backbone.name} at {list(backbone.input_size)} gives {expected[0]} and "
            f"data/split has {expected[1]} classes: re-run bottleneck and top (dvc repro finetune)"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    outputs = head(extractor(inputs))
    return keras.Model(inputs, outputs, name=f"{backbone.name}_finetune"), frozen
