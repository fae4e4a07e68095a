"""Typed params: load `params.yaml`, validate every key, resolve `auto` values per data source.

Every knob of the pipeline lives in params.yaml. A bad value stops the stage with one line,
`imgclf: params.yaml: <key> = <value>: <what is allowed>`, and exit code 2. DVC's
`dvc exp run -S key=value` writes into params.yaml, so overrides pass through the same checks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from imgclf.data.catalog import SOURCES
from imgclf.errors import UserError

PARAMS_FILE = "params.yaml"


# --- value checks: each returns the cleaned value or raises ValueError(<what is allowed>) -------


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer{_range_text(low, high)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be an integer{_range_text(low, high)}")
        return value

    return check


def _range_text(low: float, high: float | None) -> str:
    return f" >= {low}" if high is None else f" in [{low}, {high}]"


def _float(low: float, high: float, *, high_open: bool = False, low_open: bool = False):
    text = f"must be a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(text)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(text)
        if value < low or (low_open and value == low):
            raise ValueError(text)
        if value > high or (high_open and value == high):
            raise ValueError(text)
        return value

    return check


def _choice(*allowed: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ValueError("must be one of " + ", ".join(_show(choice) for choice in allowed))
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _optional_path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be null or a path to a file")
    return value


def _size(value: Any) -> str | tuple[int, int]:
    allowed = "must be auto or [height, width], integers in [8, 1024]"
    if value == "auto":
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(allowed)
    if any(isinstance(side, bool) or not isinstance(side, int) or not 8 <= side <= 1024 for side in value):
        raise ValueError(allowed)
    return (value[0], value[1])


def _int_list(low: int, high: int) -> Callable[[Any], tuple[int, ...]]:
    allowed = f"must be a non-empty list of integers in [{low}, {high}]"

    def check(value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(allowed)
        if any(isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high for item in value):
            raise ValueError(allowed)
        return tuple(value)

    return check


def _weights(value: Any) -> str:
    if value in ("imagenet", "none"):
        return value
    if isinstance(value, str) and value.strip() and value.endswith((".h5", ".weights.h5", ".keras")):
        return value
    raise ValueError("must be imagenet, none, or a path to a .h5 weights file")


def _spec(check: Callable[[Any], Any], help_text: str = "") -> Any:
    return field(metadata={"check": check, "help": help_text})


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(str(key) for key in value) + "}"  # a section: its keys suffice
    return str(value)


# --- sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataParams:
    source: str = _spec(_choice(*SOURCES))
    archive: str | None = _spec(_optional_path)
    train_per_class: int = _spec(_int(1))
    test_per_class: int = _spec(_int(1))
    non_rgb: str = _spec(_choice("convert", "skip"))
    max_image_pixels: int = _spec(_int(64 * 64, 89_000_000))  # Pillow refuses more (its bomb guard)
    validation_fraction: float = _spec(_float(0.0, 0.5, high_open=True))


@dataclass(frozen=True)
class ImageParams:
    size: Any = _spec(_size)
    color_mode: str = _spec(_choice("auto", "grayscale", "rgb"))


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = _spec(_text)
    log_model: bool = _spec(_bool)


@dataclass(frozen=True)
class PerceptronParams:
    learning_rate: float = _spec(_float(0.0, 10.0, low_open=True))
    batch_size: int = _spec(_int(1, 65536))
    steps: int = _spec(_int(1))
    init_stddev: float = _spec(_float(0.0, 1.0))


@dataclass(frozen=True)
class CnnParams:
    layout: str = _spec(_choice("auto", "chapter", "photo"))
    filters: tuple[int, ...] = _spec(_int_list(1, 2048))
    dense_units: int = _spec(_int(1, 65536))
    dropout: float = _spec(_float(0.0, 1.0, high_open=True))
    precision: str = _spec(_choice("float32", "mixed_bfloat16", "mixed_float16"))


@dataclass(frozen=True)
class FitParams:
    epochs: int = _spec(_int(1, 10_000))
    batch_size: int = _spec(_int(1, 65536))
    learning_rate: float = _spec(_float(0.0, 10.0, low_open=True))
    class_weight: str = _spec(_choice("none", "balanced"))


@dataclass(frozen=True)
class AugmentationParams:
    horizontal_flip: Any = _spec(_choice("auto", True, False))
    zoom: float = _spec(_float(0.0, 0.9))
    shear: float = _spec(_float(0.0, 1.0))
    rotation: float = _spec(_float(0.0, 0.5))
    translation: float = _spec(_float(0.0, 0.5))


@dataclass(frozen=True)
class BackboneParams:
    name: str = _spec(_choice("vgg16", "resnet50", "inception_v3", "densenet121", "mobilenet_v2"))
    weights: str = _spec(_weights)
    input_size: Any = _spec(_size)
    precision: str = _spec(_choice("float32", "mixed_bfloat16", "mixed_float16"))


@dataclass(frozen=True)
class BottleneckParams:
    batch_size: int = _spec(_int(1, 65536))


@dataclass(frozen=True)
class TopParams:
    epochs: int = _spec(_int(1, 10_000))
    batch_size: int = _spec(_int(1, 65536))
    learning_rate: float = _spec(_float(0.0, 10.0, low_open=True))
    class_weight: str = _spec(_choice("none", "balanced"))
    units: int = _spec(_int(1, 65536))
    dropout: float = _spec(_float(0.0, 1.0, high_open=True))
    svm_c: float = _spec(_float(0.0, 1e6, low_open=True))


@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = _spec(_int(1, 10_000))
    batch_size: int = _spec(_int(1, 65536))
    learning_rate: float = _spec(_float(0.0, 10.0, low_open=True))
    class_weight: str = _spec(_choice("none", "balanced"))
    momentum: float = _spec(_float(0.0, 1.0, high_open=True))


@dataclass(frozen=True)
class ReportParams:
    sort_by: str = _spec(_choice("accuracy", "f1_macro", "loss"))


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml, validated."""

    seed: int = _spec(_int(0, 2**31 - 1))
    data: DataParams = _spec(DataParams)
    image: ImageParams = _spec(ImageParams)
    mlflow: MlflowParams = _spec(MlflowParams)
    perceptron: PerceptronParams = _spec(PerceptronParams)
    cnn: CnnParams = _spec(CnnParams)
    baseline: FitParams = _spec(FitParams)
    augmentation: AugmentationParams = _spec(AugmentationParams)
    augmented: FitParams = _spec(FitParams)
    backbone: BackboneParams = _spec(BackboneParams)
    bottleneck: BottleneckParams = _spec(BottleneckParams)
    top: TopParams = _spec(TopParams)
    finetune: FinetuneParams = _spec(FinetuneParams)
    report: ReportParams = _spec(ReportParams)


def _bad(key: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{PARAMS_FILE}: {key} = {_show(value)}: {allowed}")


def _build(cls: type, raw: Any, prefix: str = "") -> Any:
    """Validate the mapping `raw` against dataclass `cls`; `prefix` names it in errors."""
    if not isinstance(raw, dict):
        if not prefix:
            raise UserError(f"{PARAMS_FILE}: must be a mapping of sections: see the README's params table")
        raise _bad(prefix, raw, "must be a mapping of keys")
    known = {item.name: item for item in fields(cls)}
    for key in raw:
        if key not in known:
            name = f"{prefix}.{key}" if prefix else str(key)
            raise _bad(name, raw[key], "unknown key; allowed: " + ", ".join(known))
    values = {}
    for name, item in known.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            raise UserError(f"{PARAMS_FILE}: {key} is missing: add it (see the README's params table)")
        check = item.metadata["check"]
        if dataclasses.is_dataclass(check):
            values[name] = _build(check, raw[name], key)
            continue
        try:
            values[name] = check(raw[name])
        except ValueError as error:
            raise _bad(key, raw[name], str(error)) from None
    return cls(**values)


def parse(raw: Any) -> Params:
    """Validate a params mapping (as read from YAML) into typed Params."""
    return _build(Params, raw)


class DuplicateKeyError(Exception):
    """A key set twice in one mapping: YAML would silently keep the last value."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a repeated key is an error instead of a silent override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # unhashable keys: SafeLoader's own error follows
            if key in seen:
                raise DuplicateKeyError(
                    f"{key} is set twice (line {key_node.start_mark.line + 1}): keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml, then resolve its `auto` values for the data source."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found: run from the project root (where dvc.yaml is)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as error:
        raise UserError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: fix the syntax") from None
    return resolve(parse(raw))


def resolve(params: Params) -> Params:
    """Replace every `auto` with the value the data source implies (logged, so explicit)."""
    source = SOURCES[params.data.source]
    image = params.image
    if image.size == "auto":
        image = dataclasses.replace(image, size=source.image_size)
    if image.color_mode == "auto":
        image = dataclasses.replace(image, color_mode=source.color_mode)
    cnn = params.cnn
    if cnn.layout == "auto":
        cnn = dataclasses.replace(cnn, layout="photo" if source.photo else "chapter")
    augmentation = params.augmentation
    if augmentation.horizontal_flip == "auto":
        augmentation = dataclasses.replace(augmentation, horizontal_flip=source.photo)
    backbone = params.backbone
    if backbone.input_size == "auto":
        # VGG16 & co. need at least 32x32; small digits are upsized to that.
        side = tuple(max(32, length) for length in image.size)
        backbone = dataclasses.replace(backbone, input_size=side)
    return dataclasses.replace(
        params, image=image, cnn=cnn, augmentation=augmentation, backbone=backbone
    )


def section_dict(params: Params, *sections: str) -> dict[str, Any]:
    """The named sections as plain nested dicts (tuples as lists), e.g. for JSON or MLflow."""
    return {name: _plain(getattr(params, name)) for name in sections}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"top.units": 256, ...}, the way MLflow params are named."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
