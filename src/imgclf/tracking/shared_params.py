"""Shared names for shared meanings: each model run's fit settings under keys every stage uses alike.

The flattened params (`baseline.epochs`, `top.learning_rate`) stay for exactness; beside them each
training run logs `epochs`, `batch_size`, `learning_rate`, `optimizer`, `class_weight`, `patience`, `monitor`, `precision`,
`architecture` and `backbone` where they apply, so the MLflow UI's compare view, parallel
coordinates and scatter plots line any two model runs up column by column. (`augmentation.*` is
one section read alike by augmented and finetune: its flattened names are shared already.)
"""

from __future__ import annotations

from typing import Any

from imgclf.params import Params
from imgclf.pipeline.stages import Stage

FIT_KEYS = ("epochs", "batch_size", "learning_rate", "class_weight", "patience", "monitor", "steps")


def shared(stage: Stage, config: Params) -> dict[str, Any]:
    """The stage's fit settings under the shared keys (empty for stages that train nothing)."""
    values: dict[str, Any] = {}
    section = getattr(config, stage.name, None)
    if stage.trains:
        values["architecture"] = stage.architecture or config.cnn.architecture
        values["optimizer"] = stage.optimizer
        for key in FIT_KEYS:
            if hasattr(section, key):
                values[key] = getattr(section, key)
    if "cnn" in stage.sections:
        values["precision"] = config.cnn.precision
    if stage.uses_backbone:
        values["backbone"] = config.backbone.name
        values["precision"] = config.backbone.precision
        if stage.name == "bottleneck":
            values["batch_size"] = config.bottleneck.batch_size
    return values
