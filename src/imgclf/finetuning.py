"""The finetune stage's work: the backbone with top's trained head, its last block trained on images.

The head is loaded from models/top/model.keras (a DVC dependency: finetune starts from top's
weights), every backbone layer before the last convolutional block is frozen (the table in
imgclf.models.backbones), and training uses SGD with momentum on images augmented exactly like the
augmented stage's. It writes and logs like every training stage.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras

from imgclf import augmentation, paths, training
from imgclf.errors import UserError
from imgclf.models import backbones
from imgclf.params import Params
from imgclf.tracking import StageRun


def load_head(path: Path | None = None) -> keras.Model:
    """top's trained classifier from models/top/model.keras (safe_mode: no code in the file runs)."""
    path = path or paths.model_file("top")
    if not path.is_file():
        raise UserError(f"{path}: not found: run the top stage first (dvc repro top)")
    return keras.models.load_model(path, safe_mode=True)


def build_finetune_model(
    params: Params,
    head: keras.Model,
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | None,
) -> tuple[keras.Model, int]:
    """(images -> backbone -> top's head, number of frozen backbone layers)."""
    extractor = backbones.build_extractor(params.backbone, params.seed, weights, input_shape)
    frozen = backbones.freeze_up_to_last_block(backbones.base_of(extractor), params.backbone.name)
    expected = (tuple(extractor.output.shape[1:]), num_classes)
    found = (tuple(head.input_shape[1:]), int(head.output_shape[-1]))
    if found != expected:
        raise UserError(
            f"{paths.model_file('top')}: takes features {found[0]} into {found[1]} classes, but "
            f"{params.backbone.name} at {list(params.backbone.input_size)} gives {expected[0]} and "
            f"data/split has {expected[1]} classes: re-run bottleneck and top (dvc repro finetune)"
        )
    inputs = keras.Input(shape=input_shape, name="image")
    outputs = head(extractor(inputs))
    return keras.Model(inputs, outputs, name=f"{params.backbone.name}_finetune"), frozen


def finetune(params: Params, run: StageRun) -> dict[str, Any]:
    """Fine-tune the backbone's last block and top's head on augmented images; evaluate on test."""
    backbone = params.backbone
    backbones.check_input_size(backbone.name, backbone.input_size)
    backbones.check_precision(backbone.precision)
    weights = backbones.resolve_weights(backbone)  # an offline `imagenet` stops here
    facts = backbones.describe(backbone)
    run.set_tags({"backbone": facts["backbone"], "weights": facts["weights"]})
    if not paths.model_file("top").is_file():
        raise UserError(f"{paths.model_file('top')}: not found: run the top stage first (dvc repro top)")
    # Filled in by build() inside train_classifier, read by it when writing the metrics.
    extra_metrics: dict[str, Any] = dict(facts)

    def build(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
        # Loaded here, after train_classifier seeded everything: Dropout's seed generator is
        # created at load time, and an unseeded one makes every run different.
        head = load_head()
        model, frozen = build_finetune_model(params, head, input_shape, num_classes, weights)
        extra_metrics["frozen_layers"] = frozen
        return model

    settings = params.finetune
    return training.train_classifier(
        "finetune", params, run, settings, build,
        precision=backbone.precision,
        augment=functools.partial(
            augmentation.augment_dataset, augmentation=params.augmentation, seed=params.seed
        ),
        rescale=False,  # raw 0..255: the model applies the backbone's own preprocess_input
        optimizer=keras.optimizers.SGD(learning_rate=settings.learning_rate, momentum=settings.momentum),
        extra_metrics=extra_metrics,
    )
