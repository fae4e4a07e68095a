"""The one error style users see: `imgclf: <what is wrong>: <what to do>`."""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """Bad input or configuration: printed as one line, exit code 2, no traceback."""

    exit_code = 2


def exit_with(error: UserError) -> NoReturn:
    """Print a UserError the one way users see it and exit with its code."""
    print(f"imgclf: {error}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


def require_extra(module: str, extra: str, what: str) -> None:
    """A UserError naming the optional extra to install when `module` (one of its packages) is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{what} needs the {extra} extra ({module} is not installed): pip install 'imgclf[{extra}]' "
                        f"(make install installs every extra)")
