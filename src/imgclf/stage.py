"""Run one pipeline stage: load params, open its MLflow run, call its recipe, map errors to exit codes."""

from __future__ import annotations

import errno
from typing import Callable, Sequence

from imgclf import params as params_module
from imgclf.errors import UserError, exit_with
from imgclf.tracking import runs

Recipe = Callable[[params_module.Params, runs.StageRun], None]
# A full disk, a quota, a file-size limit (ulimit -f), a read-only file system: the user's to fix.
CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def main(stage: str, sections: Sequence[str], recipe: Recipe) -> None:
    """Validate params.yaml, then run `recipe(params, tracked)` inside the stage's MLflow run.

    `sections` are the params sections the stage reads (dvc.yaml lists the same): they are logged
    to MLflow, resolved (`auto` replaced by the value used), flattened as `section.key`.
    """
    try:
        config = params_module.load()
        flat = params_module.flatten(params_module.section_dict(config, *sections))
        with runs.stage_run(stage, config.mlflow.experiment, flat) as tracked:
            recipe(config, tracked)
    except UserError as error:
        exit_with(error)
    except OSError as error:
        if error.errno not in CANNOT_WRITE:
            raise
        exit_with(UserError(
            f"{stage}: cannot write {error.filename or 'its outputs'} ({error.strerror}): free disk space "
            f"(or raise the limit), then run it again: no partial output was kept"
        ))
