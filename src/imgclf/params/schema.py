"""The sections of params.yaml as typed dataclasses: one field per key, each with its check.

Every training stage fitted by Keras shares one fit schema (`FitParams`: epochs, batch_size,
learning_rate, class_weight); a stage's own extras are the fields its section adds beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgclf.data.catalog import SOURCES
from imgclf.params.checks import (
    boolean,
    checkpoint_every,
    choice,
    column_names,
    count_or_all,
    int_list,
    integer,
    model_name,
    number,
    optional_path,
    size,
    spec,
    subset,
    text,
    trainable_part,
    weights,
)

# The split manifest's own columns (and the CSV's path): a label column cannot be one of them.
RESERVED_COLUMNS = ("path", "class", "split", "sha256", "width", "height", "shard", "offset", "size")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
ARCHITECTURES = ("simple_cnn", "alexnet", "squeezenet", "stn")
BACKBONES = ("vgg16", "resnet50", "inception_v3", "densenet121", "mobilenet_v2")


@dataclass(frozen=True)
class DataParams:
    source: str = spec(choice(*SOURCES))
    label_mode: str = spec(choice("fine", "coarse"))
    label_columns: tuple[str, ...] = spec(column_names(RESERVED_COLUMNS))
    archive: str | None = spec(optional_path)
    path: str = spec(text)
    train_per_class: int | str = spec(count_or_all(1))
    test_per_class: int | str = spec(count_or_all(1))
    test_fraction: float = spec(number(0.0, 1.0, low_open=True, high_open=True))
    non_rgb: str = spec(choice("convert", "skip"))
    max_image_pixels: int = spec(integer(64 * 64, 89_000_000))  # Pillow refuses more (its bomb guard)
    validation_fraction: float = spec(number(0.0, 0.5, high_open=True))
    storage: str = spec(choice("auto", "folders", "shards"))
    shards_from: int = spec(integer(1))


@dataclass(frozen=True)
class ImageParams:
    size: Any = spec(size)
    color_mode: str = spec(choice("auto", "grayscale", "rgb"))


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = spec(text)
    log_model: bool = spec(boolean)
    registered_model: str = spec(model_name)


@dataclass(frozen=True)
class PerceptronParams:
    """The chapter's low-level loop counts SGD steps, not epochs, and has no class weights."""

    learning_rate: float = spec(number(0.0, 10.0, low_open=True))
    batch_size: int = spec(integer(1, 65536))
    steps: int = spec(integer(1))
    init_stddev: float = spec(number(0.0, 1.0))


@dataclass(frozen=True)
class ConvnetParams:
    """The chapter's low-level convnet: Adam steps, not epochs; test-set summaries every few steps."""

    learning_rate: float = spec(number(0.0, 10.0, low_open=True))
    batch_size: int = spec(integer(1, 65536))
    steps: int = spec(integer(1))
    layout: str = spec(choice("auto", "chapter", "photo"))
    filters: tuple[int, ...] = spec(int_list(1, 2048, length=2))
    dense_units: int = spec(integer(1, 65536))
    dropout: float = spec(number(0.0, 1.0, high_open=True))
    test_summary_steps: int = spec(integer(0))


@dataclass(frozen=True)
class CnnParams:
    architecture: str = spec(choice(*ARCHITECTURES))
    layout: str = spec(choice("auto", "chapter", "photo"))
    filters: tuple[int, ...] = spec(int_list(1, 2048))
    dense_units: int = spec(integer(1, 65536))
    dropout: float = spec(number(0.0, 1.0, high_open=True))
    precision: str = spec(choice(*PRECISIONS))
    local_response_normalization: bool = spec(boolean)


@dataclass(frozen=True)
class FitParams:
    """The fit schema every Keras training stage shares."""

    epochs: int = spec(integer(1, 10_000))
    batch_size: int = spec(integer(1, 65536))
    learning_rate: float = spec(number(0.0, 10.0, low_open=True))
    class_weight: str = spec(choice("none", "balanced"))
    patience: int = spec(integer(0, 10_000))  # early stopping: 0 = off
    monitor: str = spec(choice("val_loss", "val_accuracy"))


@dataclass(frozen=True)
class TrainParams:
    """How the training stages spread over devices (the Keras ones) and how often they save a checkpoint (all)."""

    distribute: str = spec(choice("none", "mirrored"))
    checkpoint: str = spec(checkpoint_every)


@dataclass(frozen=True)
class AugmentationParams:
    horizontal_flip: Any = spec(choice("auto", True, False))
    zoom: float = spec(number(0.0, 0.9))
    shear: float = spec(number(0.0, 1.0))
    rotation: float = spec(number(0.0, 0.5))
    translation: float = spec(number(0.0, 0.5))
    vertical_flip: bool = spec(boolean)
    crop: float = spec(number(0.1, 1.0))
    channel_shift: float = spec(number(0.0, 1.0))
    normalization: bool = spec(boolean)
    whitening: bool = spec(boolean)
    whitening_epsilon: float = spec(number(0.0, 1.0, low_open=True))


@dataclass(frozen=True)
class BackboneParams:
    name: str = spec(choice(*BACKBONES))
    weights: str = spec(weights)
    input_size: Any = spec(size)
    precision: str = spec(choice(*PRECISIONS))


@dataclass(frozen=True)
class BottleneckParams:
    batch_size: int = spec(integer(1, 65536))


@dataclass(frozen=True)
class TopParams(FitParams):
    units: int = spec(integer(1, 65536))
    dropout: float = spec(number(0.0, 1.0, high_open=True))


@dataclass(frozen=True)
class SvmParams:
    """The linear SVM on bottleneck features: no epochs, no batches."""

    c: float = spec(number(0.0, 1e6, low_open=True))
    class_weight: str = spec(choice("none", "balanced"))
    calibration_folds: int = spec(integer(2, 20))


@dataclass(frozen=True)
class FinetuneParams(FitParams):
    momentum: float = spec(number(0.0, 1.0, high_open=True))
    trainable: str = spec(trainable_part)


@dataclass(frozen=True)
class MistakesParams:
    """What every model stage shows of its wrong test predictions (plots/<stage>/mistakes.png, gradcam.png)."""

    per_class: int = spec(integer(1, 20))


@dataclass(frozen=True)
class ReportParams:
    sort_by: str = spec(choice("accuracy", "f1_macro", "loss"))


# The export stage's formats, in the order it writes and reports them (imgclf.inference.export).
EXPORT_FORMATS = ("saved_model", "tflite_float32", "tflite_dynamic_int8", "tflite_int8", "onnx")


@dataclass(frozen=True)
class ExportParams:
    """What the export stage converts (the champion or every model stage), into which formats."""

    stages: str = spec(choice("champion", "all"))
    formats: tuple[str, ...] = spec(subset(*EXPORT_FORMATS))
    calibration_images: int = spec(integer(1, 10_000))  # tflite_int8: train images that set the int8 ranges
    onnx_opset: int = spec(integer(13, 21))


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml, validated."""

    seed: int = spec(integer(0, 2**31 - 1))
    data: DataParams = spec(DataParams)
    image: ImageParams = spec(ImageParams)
    mlflow: MlflowParams = spec(MlflowParams)
    perceptron: PerceptronParams = spec(PerceptronParams)
    convnet: ConvnetParams = spec(ConvnetParams)
    cnn: CnnParams = spec(CnnParams)
    train: TrainParams = spec(TrainParams)
    baseline: FitParams = spec(FitParams)
    augmentation: AugmentationParams = spec(AugmentationParams)
    augmented: FitParams = spec(FitParams)
    backbone: BackboneParams = spec(BackboneParams)
    bottleneck: BottleneckParams = spec(BottleneckParams)
    top: TopParams = spec(TopParams)
    svm: SvmParams = spec(SvmParams)
    finetune: FinetuneParams = spec(FinetuneParams)
    mistakes: MistakesParams = spec(MistakesParams)
    report: ReportParams = spec(ReportParams)
    export: ExportParams = spec(ExportParams)
