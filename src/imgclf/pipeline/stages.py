"""The pipeline's stages, listed once: what each one is, what it trains, which params sections it reads.

The report, predict, the command line, the sweep, the stage skeleton and the MLflow run tags all read
this table; dvc.yaml runs the same stages in the same order, and a test checks each stage's `sections`
against its dvc.yaml `params:`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One DVC stage: its name is its script (stages/<name>.py), its MLflow run and models/<name>/."""

    name: str
    kind: str  # data (download, split) | features (bottleneck) | model (trains a classifier) | report | export
    sections: tuple[str, ...]  # the params.yaml sections it reads (dvc.yaml's params name keys of these)
    architecture: str | None = None  # what a model stage trains; None: params' cnn.architecture
    optimizer: str | None = None  # a model stage's optimizer
    uses_backbone: bool = False  # reads backbone.*: bottleneck and the stages built on its features
    inputs: tuple[str, ...] = ()  # a model or features stage's data deps in dvc.yaml (the folders and files it reads)
    resumable: bool = False  # trains in epochs or steps and resumes from its checkpoint (imgclf.training.checkpoint)

    @property
    def trains(self) -> bool:
        """Whether the stage trains a model (writes models/<name>/)."""
        return self.kind == "model"

    @property
    def reads_split(self) -> bool:
        """Whether the stage reads the split (its MLflow run logs the split's datasets)."""
        return self.kind in ("features", "model")


_SHARED = ("seed", "data", "image")
_SHOWN = ("mistakes",)  # every model stage draws its wrong test images
_SPLIT, _FEATURES = ("data/split",), ("data/features",)
STAGES = (
    Stage("download", "data", ("data",)),
    Stage("split", "data", ("seed", "data")),
    Stage("perceptron", "model", (*_SHARED, "mlflow", *_SHOWN, "perceptron"), "perceptron", "sgd",
          inputs=_SPLIT, resumable=True),
    Stage("convnet", "model", (*_SHARED, "mlflow", *_SHOWN, "convnet"), "convnet", "adam", inputs=_SPLIT, resumable=True),
    Stage("baseline", "model", (*_SHARED, "mlflow", *_SHOWN, "cnn", "train", "baseline"), None, "adam",
          inputs=_SPLIT, resumable=True),
    Stage("augmented", "model", (*_SHARED, "mlflow", *_SHOWN, "cnn", "augmentation", "train", "augmented"), None, "adam",
          inputs=_SPLIT, resumable=True),
    Stage("bottleneck", "features", (*_SHARED, "backbone", "bottleneck"), uses_backbone=True, inputs=_SPLIT),
    Stage("top", "model", (*_SHARED, "mlflow", *_SHOWN, "backbone", "train", "top"), "dense_head", "adam", True,
          inputs=_FEATURES, resumable=True),
    Stage("svm", "model", (*_SHARED, "mlflow", *_SHOWN, "backbone", "svm"), "linear_svm", "liblinear", True,
          inputs=_FEATURES),
    Stage("finetune", "model", (*_SHARED, "mlflow", *_SHOWN, "backbone", "augmentation", "train", "finetune"),
          "backbone+dense_head", "sgd", True, inputs=(*_SPLIT, "models/top"), resumable=True),
    Stage("report", "report", ("report", "mlflow")),
    Stage("export", "export", ("seed", "mlflow", "export")),
)
BY_NAME = {stage.name: stage for stage in STAGES}
MODEL_STAGES = tuple(stage.name for stage in STAGES if stage.trains)


def get(name: str) -> Stage:
    """The stage called `name`; a ValueError naming the stages for any other name."""
    if name not in BY_NAME:
        raise ValueError(f"{name!r} is not a pipeline stage: {', '.join(BY_NAME)}")
    return BY_NAME[name]
