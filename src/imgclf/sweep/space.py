"""A search's space: `-S key=uniform(a,b)`, `loguniform(a,b)`, `int(a,b)`, `choice(v1,v2,...)` or a fixed value.

Every dimension is checked against params.yaml before anything runs: the key must exist, the range must
not be empty, and params.yaml with the key set to the range's ends (and a value inside it, and each
choice) must validate, so a trial never fails on a value its key does not take.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from imgclf import params as params_module
from imgclf.errors import UserError
from imgclf.params.checks import show

KINDS = ("uniform", "loguniform", "int", "choice")
SYNTAX = ("key=uniform(low,high) | key=loguniform(low,high) | key=int(low,high) | key=choice(v1,v2,...) | "
          "key=value")
_CALL = re.compile(r"^\s*([a-z]+)\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Dimension:
    """One key of the space: how its value is drawn (`kind` one of KINDS, or "fixed")."""

    key: str
    kind: str
    values: tuple  # (low, high) for ranges; the choices; (value,) when fixed

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.key}={show(self.values[0])}"
        return f"{self.key}={self.kind}({','.join(show(value) for value in self.values)})"

    def suggest(self, trial: Any) -> Any:
        """The value of this key in an Optuna trial (asked by its sampler)."""
        if self.kind == "uniform":
            return trial.suggest_float(self.key, *self.values)
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, *self.values, log=True)
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.values)
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        return self.values[0]

    def probes(self) -> list:
        """Values a trial may give this key, to check against params.yaml's schema."""
        if self.kind in ("uniform", "loguniform"):
            low, high = self.values
            return [low, high, low + (high - low) * 0.37]  # an inside value that is not a whole number
        if self.kind == "int":
            return list(self.values)
        return list(self.values)


def override(key: str, value: Any) -> str:
    """`key=value` as `dvc exp run -S` reads it (Hydra's grammar; YAML types)."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float):
        text = repr(value)
        mantissa, exponent, power = text.partition("e")
        if exponent and "." not in mantissa:  # YAML 1.1 reads 1e-07 as a string, 1.0e-07 as a number
            text = f"{mantissa}.0e{power}"
        return f"{key}={text}"
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_./-]+", value):
        return f"{key}='{value}'"
    return f"{key}={value}"


def parse(texts: Sequence[str], params_file: Path = Path(params_module.PARAMS_FILE)) -> list[Dimension]:
    """The dimensions of `-S` texts, checked against params_file; a UserError naming the first bad one."""
    if not texts:
        raise UserError(f"search: no space: pass -S {SYNTAX} (one per key)")
    raw = params_module.load_raw(params_file)
    dimensions: list[Dimension] = []
    for text in texts:
        dimension = _dimension(text)
        if dimension.key in {known.key for known in dimensions}:
            raise UserError(f"search -S {text}: {dimension.key} is given twice: keep one")
        _check(dimension, raw, text)
        dimensions.append(dimension)
    if all(dimension.kind == "fixed" for dimension in dimensions):
        raise UserError("search: every -S is a fixed value: give at least one range or choice (" + SYNTAX + ")")
    return dimensions


def given(text: str, dimensions: Sequence[Dimension]) -> dict[str, Any]:
    """A trial's values given by hand (`--enqueue "key=value key=value"`), each inside its dimension."""
    by_key = {dimension.key: dimension for dimension in dimensions if dimension.kind != "fixed"}
    values: dict[str, Any] = {}
    for item in text.split():
        key, separator, raw = item.partition("=")
        if not separator or key not in by_key:
            raise UserError(f"search --enqueue {text}: {item}: give key=value for a key the space varies "
                            f"({', '.join(by_key) or 'none'})")
        dimension, value = by_key[key], _scalar(raw, item)
        if dimension.kind == "choice":
            inside = value in dimension.values
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            inside = False
        else:
            inside = dimension.values[0] <= value <= dimension.values[1] and (dimension.kind != "int" or isinstance(value, int))
        if not inside:
            raise UserError(f"search --enqueue {text}: {show(value)} is outside {dimension.describe()}")
        values[key] = float(value) if dimension.kind in ("uniform", "loguniform") else value
    if not values:
        raise UserError(f"search --enqueue {text!r}: give key=value pairs, separated by spaces")
    return values


def _dimension(text: str) -> Dimension:
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise UserError(f"search -S {text}: use {SYNTAX}, key a params.yaml key (dotted: baseline.learning_rate)")
    call = _CALL.match(value)
    if call is None:
        if "," in value and not value.strip().startswith("["):
            raise UserError(f"search -S {text}: a grid's v1,v2 is not a search space: use {key}=choice({value.strip()})")
        return Dimension(key, "fixed", (_scalar(value, text),))
    kind, inside = call.groups()
    if kind not in KINDS:
        raise UserError(f"search -S {text}: {kind}(...) is not a distribution: use one of {', '.join(KINDS)}")
    values = tuple(_scalar(item, text) for item in _split(inside))
    if kind == "choice":
        if not values or len(set(map(repr, values))) != len(values):
            raise UserError(f"search -S {text}: choice needs distinct values (choice(a,b,...))")
        if any(not isinstance(value, (str, int, float, bool)) for value in values):
            raise UserError(f"search -S {text}: choice takes numbers, words and true/false (no lists or null)")
        return Dimension(key, kind, values)
    if len(values) != 2 or not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        raise UserError(f"search -S {text}: {kind} takes two numbers: {kind}(low,high)")
    low, high = values
    if kind == "int" and not all(isinstance(value, int) for value in values):
        raise UserError(f"search -S {text}: int takes two whole numbers: int(low,high)")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UserError(f"search -S {text}: the range is empty: give low < high")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"search -S {text}: loguniform needs 0 < low < high")
    return Dimension(key, kind, (float(low), float(high)) if kind != "int" else (low, high))


def _split(inside: str) -> list[str]:
    return [item.strip() for item in inside.split(",")] if inside.strip() else []


def _scalar(text: str, whole: str) -> Any:
    """A number as Python reads it (1e-4 included, which YAML 1.1 keeps a string), else YAML's value."""
    for number in (int, float):
        try:
            return number(text.strip())
        except ValueError:
            pass
    try:
        return yaml.safe_load(text.strip())
    except yaml.YAMLError:
        raise UserError(f"search -S {whole}: {text.strip()!r} does not parse as a value") from None


def _check(dimension: Dimension, raw: dict, text: str) -> None:
    """The key exists in params.yaml and every probe value of the dimension validates there."""
    node: Any = raw
    for part in dimension.key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"search -S {text}: params.yaml has no key {dimension.key}")
        node = node[part]
    if isinstance(node, dict):
        raise UserError(f"search -S {text}: {dimension.key} is a section, not a value: name one of its keys")
    for value in dimension.probes():
        candidate = copy.deepcopy(raw)
        # The value as the trial's `-S` gives it to DVC, read back as YAML (DVC's own reading of the override)
        params_module.set_dotted(candidate, dimension.key, params_module.yaml_value(override("_", value).partition("=")[2]))
        try:
            params_module.resolve(params_module.parse(candidate))
        except UserError as error:
            reason = str(error).removeprefix(f"{params_module.PARAMS_FILE}: ")
            raise UserError(f"search -S {text}: {show(value)} is not a value {dimension.key} takes ({reason})") from None
