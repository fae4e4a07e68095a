"""The sweep's points: DVC's Hydra sweep syntax expanded, each point checked against params.yaml."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from imgclf import params as params_module
from imgclf.errors import UserError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")  # a DVC experiment name that is also a git ref part


@dataclass(frozen=True)
class Point:
    """One experiment of the sweep: its DVC experiment name and its `-S` overrides."""

    name: str
    overrides: tuple[str, ...]
    targets: tuple[str, ...] = ()  # stages to run (`dvc exp run <targets>`); none: the whole pipeline

    def describe(self) -> str:
        return " ".join(self.overrides)


def points(overrides: Sequence[str], prefix: str, params_file: Path = Path(params_module.PARAMS_FILE),
           taken: frozenset[str] = frozenset()) -> list[Point]:
    """Every combination of the overrides (`key=v1,v2` sweeps, `key=v` fixed), named <prefix>-<n>.

    Numbering continues after the names already `taken` (earlier sweeps' experiments), so a second
    sweep with the same prefix adds experiments instead of replacing them. A syntax error stops the
    sweep here; whether each point makes a valid params.yaml is `invalid`'s to say.
    """
    from dvc.utils.hydra import get_hydra_sweeps

    if not NAME.match(prefix):
        raise UserError(f"sweep --name {prefix!r}: use letters, digits, - and _ (starting with a letter)")
    if not overrides:
        raise UserError("sweep: nothing to sweep: pass -S key=v1,v2 (one or more)")
    try:
        grid = [tuple(point[params_file.name]) for point in get_hydra_sweeps({params_file.name: list(overrides)})]
    except Exception as error:  # DVC's InvalidArgumentError, Hydra's OverrideParseException, ...
        raise UserError(f"sweep -S {' '.join(overrides)}: {str(error).splitlines()[0]}") from error
    used = [int(name.rsplit("-", 1)[1]) for name in taken
            if name.startswith(prefix + "-") and name.rsplit("-", 1)[1].isdigit()]
    first = max(used, default=0) + 1
    return [Point(f"{prefix}-{first + index}", point) for index, point in enumerate(grid)]


def invalid(point: Point, params_file: Path = Path(params_module.PARAMS_FILE)) -> str | None:
    """Why params.yaml with this point's overrides (applied as DVC will) does not validate; None if it does."""
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory(prefix="imgclf-sweep-") as folder:
        candidate = Path(folder) / params_file.name
        shutil.copy(params_file, candidate)
        try:
            apply_overrides(candidate, list(point.overrides))
        except Exception as error:  # noqa: BLE001 - Hydra and DVC raise many types for a bad override
            cause = error.__cause__ or error  # DVC's "Invalid `--set-param` value" hides Hydra's reason
            return f"{str(cause).splitlines()[0]} (params.yaml has no such key, or the value does not parse)"
        try:
            params_module.load(candidate)
        except UserError as error:
            return str(error).replace(str(candidate), params_file.name)
    return None
