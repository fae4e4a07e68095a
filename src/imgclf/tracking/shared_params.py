"""Shared names for shared meanings: each model run's fit settings under keys every stage uses alike.

The flattened params (`baseline.epochs`, `top.learning_rate`) stay for exactness; beside them each
training run logs `epochs`, `batch_size`, `learning_rate`, `optimizer`, `class_weight`, `precision`,
`architecture` and `backbone` where they apply, so the MLflow UI's compare view, parallel
coordinates and scatter plots line any two model runs up column by column. (`augmentation.*` is
one section read alike by augmented and finetune: its flattened names are shared already.)
"""

from __future__ import annotations

from typing import Any

from imgclf.params import Params

FIT_KEYS = ("epochs", "batch_size", "learning_rate", "class_weight", "steps")
# What each stage trains, and with which optimizer (fit.py: Adam unless the recipe passes one).
ARCHITECTURE = {"perceptron": "perceptron", "convnet": "convnet", "top": "dense_head", "svm": "linear_svm",
                "finetune": "backbone+dense_head"}  # baseline and augmented: cnn.architecture
OPTIMIZER = {"perceptron": "sgd", "convnet": "adam", "baseline": "adam", "augmented": "adam", "top": "adam",
             "svm": "liblinear", "finetune": "sgd"}
BACKBONE_STAGES = ("bottleneck", "top", "svm", "finetune")


def shared(stage: str, config: Params) -> dict[str, Any]:
    """The stage's fit settings under the shared keys (empty for stages that train nothing)."""
    values: dict[str, Any] = {}
    section = getattr(config, stage, None)
    if stage in OPTIMIZER:
        values["architecture"] = ARCHITECTURE.get(stage) or config.cnn.architecture
        values["optimizer"] = OPTIMIZER[stage]
        for key in FIT_KEYS:
            if hasattr(section, key):
                values[key] = getattr(section, key)
    if stage in ("baseline", "augmented"):
        values["precision"] = config.cnn.precision
    if stage in BACKBONE_STAGES:
        values["backbone"] = config.backbone.name
        values["precision"] = config.backbone.precision
        if stage == "bottleneck":
            values["batch_size"] = config.bottleneck.batch_size
    return values
