"""Typed params: load `params.yaml`, validate every key, resolve `auto` values from the data.

Every knob of the pipeline lives in params.yaml. A bad value stops the stage with one line,
`imgclf: params.yaml: <key> = <value>: <what is allowed>`, and exit code 2. DVC's
`dvc exp run -S key=value` writes into params.yaml, so overrides pass through the same checks;
tests, benchmarks and CI apply dotted overrides with `apply_overrides`, the same way.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from imgclf.data.catalog import COARSE_CLASSES, SOURCES
from imgclf.errors import UserError
from imgclf.params.checks import show
from imgclf.params.schema import (
    AugmentationParams,
    BackboneParams,
    BottleneckParams,
    CnnParams,
    ConvnetParams,
    DataParams,
    ExportParams,
    FinetuneParams,
    FitParams,
    ImageParams,
    MistakesParams,
    MlflowParams,
    Params,
    PerceptronParams,
    ReportParams,
    SvmParams,
    TopParams,
    TrainParams,
)

__all__ = [
    "AugmentationParams", "BackboneParams", "BottleneckParams", "CnnParams", "ConvnetParams", "DataParams",
    "ExportParams", "FinetuneParams", "FitParams", "ImageParams", "MistakesParams", "MlflowParams", "Params", "PerceptronParams",
    "ReportParams", "SvmParams", "TopParams", "TrainParams", "apply_overrides", "flatten", "load", "parse", "resolve",
    "resolved_autos", "section_dict", "set_dotted",
]

PARAMS_FILE = "params.yaml"
MAX_WHITENING_PIXELS = 64 * 64  # ZCA's matrix is (H x W x C)^2: 600 MB in float32 at 64x64 RGB
# `layout: auto` picks the chapter's layout (flatten into the dense layer) for images at most this many
# pixels on a side, and the photo layout (more conv/pool blocks, global pooling) above.
SMALL_IMAGE_SIDE = 64


def _bad(key: str, value: Any, allowed: str) -> UserError:
    return UserError(f"{PARAMS_FILE}: {key} = {show(value)}: {allowed}")


def _build(cls: type, raw: Any, prefix: str = "") -> Any:
    """Validate the mapping `raw` against dataclass `cls`; `prefix` names it in errors."""
    if not isinstance(raw, dict):
        if not prefix:
            raise UserError(f"{PARAMS_FILE}: must be a mapping of sections: see docs/reference/params.md")
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
            raise UserError(f"{PARAMS_FILE}: {key} is missing: add it (docs/reference/params.md lists every key)")
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


class _Loader(yaml.SafeLoader):
    """yaml.safe_load, except that 1e-07 is a number, as YAML 1.2 (DVC's ruamel) reads it: PyYAML's YAML 1.1
    wants a dot in the mantissa and reads a string, and `dvc exp run -S key=1e-7` writes params.yaml so."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_value(text: str) -> Any:
    """A YAML value as params.yaml's reader reads it."""
    return yaml.load(text, Loader=_Loader)


class _UniqueKeyLoader(_Loader):
    """_Loader, except that a repeated key is an error instead of a silent override."""

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


def resolved_autos(params: Params, sections: tuple[str, ...]) -> dict[str, Any]:
    """{key: the value it resolved to} for each `auto` in params.yaml's `sections` (params: the resolved ones).

    data.storage stays `auto` here: the download and split stages resolve it by counting the images, and say so."""
    raw = load_raw()
    chosen = {}
    for key, value in flatten(section_dict(params, *sections)).items():
        section, *rest = key.split(".")
        written = raw.get(section)
        for part in rest:
            written = written.get(part) if isinstance(written, dict) else None
        if written == "auto" and value != "auto":
            chosen[key] = value
    return chosen


def load_raw(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as written (no checks, no resolution): {} when it cannot be read."""
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml, then resolve its `auto` values for the data source and image size."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found: run from the project root (where dvc.yaml is)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as error:
        raise UserError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: fix the syntax") from None
    return resolve(parse(raw))


def resolve(params: Params) -> Params:
    """Replace every `auto` with the value the data implies: image size and colour by the source, the layouts by
    the resolved image size, flips by whether the source is photos (each logged, so explicit)."""
    source = SOURCES[params.data.source]
    if params.data.label_columns != ("label",) and source.name != "csv":
        raise _bad("data.label_columns", params.data.label_columns,
                   "label columns come from a labels CSV: set data.source: csv, or leave [label]")
    if params.data.label_mode == "coarse" and source.name not in COARSE_CLASSES:
        raise _bad("data.label_mode", "coarse", f"only {', '.join(COARSE_CLASSES)} has coarse labels: use fine")
    image = params.image
    if image.size == "auto":
        image = dataclasses.replace(image, size=source.image_size)
    if image.color_mode == "auto":
        image = dataclasses.replace(image, color_mode=source.color_mode)
    layout = "chapter" if max(image.size) <= SMALL_IMAGE_SIDE else "photo"  # what the images are, whatever the source
    cnn = params.cnn
    if cnn.layout == "auto":
        cnn = dataclasses.replace(cnn, layout=layout)
    convnet = params.convnet
    if convnet.layout == "auto":
        convnet = dataclasses.replace(convnet, layout=layout)
    augmentation = params.augmentation
    if augmentation.horizontal_flip == "auto":
        augmentation = dataclasses.replace(augmentation, horizontal_flip=source.photo)
    if augmentation.whitening and image.size[0] * image.size[1] > MAX_WHITENING_PIXELS:
        raise _bad("augmentation.whitening", True, f"ZCA whitening takes images of at most 64x64 pixels "
                   f"(image.size is {image.size[0]}x{image.size[1]}): set image.size, or whitening: false")
    backbone = params.backbone
    if backbone.input_size == "auto":
        # VGG16 & co. need at least 32x32; small digits are upsized to that.
        side = tuple(max(32, length) for length in image.size)
        backbone = dataclasses.replace(backbone, input_size=side)
    return dataclasses.replace(
        params, image=image, cnn=cnn, convnet=convnet, augmentation=augmentation, backbone=backbone
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


def set_dotted(mapping: dict, dotted: str, value: Any) -> None:
    """mapping["a"]["b"] = value for dotted = "a.b", the way `dvc exp run -S` names keys."""
    *parents, last = dotted.split(".")
    for key in parents:
        mapping = mapping[key]
    mapping[last] = value


def apply_overrides(params_file: str | Path, overrides: Mapping[str, Any]) -> None:
    """Write dotted overrides (e.g. a profile such as profiles/tiny.yaml) into a params.yaml."""
    path = Path(params_file)
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    for dotted, value in overrides.items():
        set_dotted(raw, dotted, value)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
