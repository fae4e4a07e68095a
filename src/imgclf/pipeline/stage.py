"""Run one pipeline stage: load params, open its MLflow run, call its recipe, map errors to exit codes."""

from __future__ import annotations

import atexit
import errno
import gc
from typing import Callable, Sequence

from imgclf import params as params_module
from imgclf.errors import UserError, exit_with
from imgclf.tracking import datasets, runs, shared_params

Recipe = Callable[[params_module.Params, runs.StageRun], None]
# A full disk, a quota, a file-size limit (ulimit -f), a read-only file system: the user's to fix.
CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}

# A stage process would end with a garbage collection over everything TensorFlow, Keras and MLflow
# imported: 1.5 s of every TensorFlow stage's exit on 2 cores. Frozen at exit, those objects are
# freed without that pass. Nothing waits for it: outputs are complete and the run ended before exit
# (summary writers are closed explicitly), and exit handlers still run; only a reference cycle
# still alive then goes unfinalized, as the interpreter never promised otherwise. Any process that
# imports this module (a test session too) just exits faster.
atexit.register(gc.freeze)


def main(stage: str, sections: Sequence[str], recipe: Recipe) -> None:
    """Validate params.yaml, then run `recipe(params, tracked)` inside the stage's MLflow run.

    `sections` are the params sections the stage reads (dvc.yaml lists the same): they are logged
    to MLflow, resolved (`auto` replaced by the value used), flattened as `section.key`, and the fit
    settings again under the names every stage shares (`epochs`, `learning_rate`: tracking.shared_params).
    """
    try:
        config = params_module.load()
        flat = params_module.flatten(params_module.section_dict(config, *sections)) | shared_params.shared(stage, config)
        # The stages after split read it: logged as the run's datasets (train and test).
        reads_split = "data" in sections and stage not in ("download", "split")
        inputs = datasets.split_inputs(config.data.source, config.data.path) if reads_split else []
        dataset = config.data.source if "data" in sections else None
        with runs.stage_run(stage, config.mlflow.experiment, flat, dataset, inputs) as tracked:
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
