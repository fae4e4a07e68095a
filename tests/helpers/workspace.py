"""The repo, stage command lines and tiny training data: what fixtures and tests build workspaces from."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# search_runs filter for the stage runs, leaving out each pipeline's parent run (imgclf.role = pipeline)
STAGE_RUNS = "tags.`dvc.stage` != ''"

# Training stages on tiny data: 16x16, 3 classes, a tiny CNN, 1 epoch, no MLflow model unless asked.
TINY_TRAINING = {
    "image.size": [16, 16],
    "data.validation_fraction": 0.2,
    "perceptron.steps": 6,
    "perceptron.batch_size": 8,
    "cnn.filters": [4, 8],
    "cnn.dense_units": 16,
    "baseline.epochs": 1,
    "baseline.batch_size": 8,
    "augmented.epochs": 1,
    "augmented.batch_size": 8,
    "mlflow.log_model": False,
}

# Transfer stages (bottleneck, top, finetune) on tiny data, no MLflow model unless asked.
TINY_TRANSFER = {
    "image.size": [16, 16],
    "data.validation_fraction": 0.2,
    "bottleneck.batch_size": 8,
    "top.epochs": 3,
    "top.batch_size": 8,
    "finetune.epochs": 1,
    "finetune.batch_size": 8,
    "mlflow.log_model": False,
}


def stage_argv(name: str) -> list[str]:
    """The command line that runs one stage, as dvc.yaml runs it."""
    return [sys.executable, "-m", f"stages.{name}"]


def pattern_image(label: int, index: int, size: tuple[int, int], rgb: bool) -> Image.Image:
    """A learnable image: a bright bar whose position encodes the class, plus seeded noise."""
    height, width = size
    rng = np.random.default_rng([label, index])
    pixels = rng.integers(0, 60, size=(height, width), dtype=np.uint8)
    band = max(1, height // 6)
    row = (label * 2 * band) % max(1, height - band)
    pixels[row:row + band, :] = 230
    if rgb:
        return Image.fromarray(np.stack([pixels, np.roll(pixels, 1, axis=1), pixels[::-1]], axis=-1), "RGB")
    return Image.fromarray(pixels, "L")
