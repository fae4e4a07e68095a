"""What a training run leaves for publishing: its per-epoch history and speed, and its TensorBoard folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from imgclf import paths


@dataclass(frozen=True)
class Fitted:
    """What a fit leaves for publishing: the per-epoch history and how long training took."""

    history: dict[str, list[float]]  # Keras names: loss, accuracy, val_loss, val_accuracy
    seconds: float  # run-specific: MLflow only, never a DVC output
    images: int = 0  # training images seen (steps x batch), for the throughput
    replicas: int = 1  # devices the training ran on in sync (train.distribute)

    def speed(self) -> dict[str, float]:
        """MLflow's run-specific figures: seconds, replicas, images/s overall and per replica."""
        per_second = self.images / self.seconds if self.seconds > 0 else 0.0
        return {"training_seconds": self.seconds, "replicas": self.replicas,
                "train_images_per_s": per_second, "train_images_per_s_per_replica": per_second / self.replicas}


def log_dir(stage: str, keep: bool = False) -> Path:
    """logs/<stage>/, emptied: the TensorBoard events of this run only (then logged to MLflow). `keep`: a run
    resumed from its checkpoint adds to the events of the epochs it resumes after."""
    folder = paths.tensorboard_dir(stage)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
