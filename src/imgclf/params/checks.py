"""Value checks for params.yaml: each returns the cleaned value or raises ValueError(<what is allowed>)."""

from __future__ import annotations

import math
import re
from dataclasses import field
from typing import Any, Callable


def integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    """An integer in [low, high] (high None: no upper bound); bools are not integers."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer{_range_text(low, high)}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be an integer{_range_text(low, high)}")
        return value

    return check


def _range_text(low: float, high: float | None) -> str:
    return f" >= {low}" if high is None else f" in [{low}, {high}]"


def number(low: float, high: float, *, high_open: bool = False, low_open: bool = False):
    """A finite number in the interval; `*_open` leaves that end out."""
    allowed = f"must be a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(allowed)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(allowed)
        if value < low or (low_open and value == low):
            raise ValueError(allowed)
        if value > high or (high_open and value == high):
            raise ValueError(allowed)
        return value

    return check


def choice(*allowed: Any) -> Callable[[Any], Any]:
    """One of `allowed`, compared by value; a bool matches only a bool choice (True is not 1)."""
    def check(value: Any) -> Any:
        if not any(isinstance(option, bool) == isinstance(value, bool) and option == value for option in allowed):
            raise ValueError("must be one of " + ", ".join(show(option) for option in allowed))
        return value

    return check


def count_or_all(low: int) -> Callable[[Any], int | str]:
    """An integer >= low, or all."""

    def check(value: Any) -> int | str:
        if value == "all":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"must be an integer >= {low} or all")
        return value

    return check


def boolean(value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def text(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def model_name(value: Any) -> str:
    """A registered model name that reads the same in a models:/<name>@<alias> URI."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", value):
        raise ValueError("must be letters, digits, '.', '_' or '-' (it is used in models:/<name>@champion)")
    return value


def optional_path(value: Any) -> str | None:
    """null or a non-empty path string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be null or a path to a file")
    return value


def size(value: Any) -> str | tuple[int, int]:
    """auto or [height, width] in pixels."""
    allowed = "must be auto or [height, width], integers in [8, 1024]"
    if value == "auto":
        return value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(allowed)
    if any(isinstance(side, bool) or not isinstance(side, int) or not 8 <= side <= 1024 for side in value):
        raise ValueError(allowed)
    return (value[0], value[1])


def checkpoint_every(value: Any) -> str:
    """epoch, steps:N (N >= 1) or none: how often a training stage saves the state it resumes from."""
    if isinstance(value, str) and (value in ("epoch", "none") or re.fullmatch(r"steps:[1-9][0-9]*", value)):
        return value
    raise ValueError("must be epoch, steps:N (N an integer >= 1) or none")


def int_list(low: int, high: int, length: int | None = None) -> Callable[[Any], tuple[int, ...]]:
    """A non-empty list of integers in [low, high]; of exactly `length` entries when given."""
    count = "a non-empty list" if length is None else f"a list of {length}"
    allowed = f"must be {count} integers in [{low}, {high}]".replace("list integers", "list of integers")

    def check(value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or not value or (length is not None and len(value) != length):
            raise ValueError(allowed)
        if any(isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high for item in value):
            raise ValueError(allowed)
        return tuple(value)

    return check


def weights(value: Any) -> str:
    """imagenet, none, or a path to a weights file."""
    if value in ("imagenet", "none"):
        return value
    if isinstance(value, str) and value.strip() and value.endswith((".h5", ".weights.h5", ".keras")):
        return value
    raise ValueError("must be imagenet, none, or a path to a .h5 weights file")


def trainable_part(value: Any) -> str:
    """last_block, blocks:N (N >= 1), all or head."""
    if value in ("last_block", "all", "head"):
        return value
    if isinstance(value, str) and re.fullmatch(r"blocks:[1-9][0-9]*", value):
        return value
    raise ValueError("must be last_block, blocks:N (the last N blocks, N >= 1), all or head")


def column_names(reserved: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    """A non-empty list of distinct column names (letters, digits, '_', '-'), none of `reserved`."""
    allowed = (f"must be a non-empty list of distinct column names (letters, digits, '_', '-'), "
               f"none of {', '.join(reserved)}")

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not value or len(set(map(str, value))) != len(value):
            raise ValueError(allowed)
        if any(not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in reserved
               for name in value):
            raise ValueError(allowed)
        return tuple(value)

    return check


def subset(*allowed: str) -> Callable[[Any], tuple[str, ...]]:
    """A non-empty list of distinct values, each one of `allowed`, kept in the order given."""
    text_allowed = "must be a non-empty list of distinct values from " + ", ".join(allowed)

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not value or len(set(map(str, value))) != len(value):
            raise ValueError(text_allowed)
        if any(isinstance(item, bool) or item not in allowed for item in value):
            raise ValueError(text_allowed)
        return tuple(value)

    return check


def spec(check: Callable[[Any], Any]) -> Any:
    """A dataclass field validated by `check` (a value check, or a section's dataclass)."""
    return field(metadata={"check": check})


def show(value: Any) -> str:
    """A value as params.yaml would spell it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(str(key) for key in value) + "}"  # a section: its keys suffice
    return str(value)


