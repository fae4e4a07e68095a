"""Run one pipeline stage: load params, open its MLflow run, call its recipe, map errors to exit codes."""

from __future__ import annotations

import atexit
import contextlib
import errno
import gc
from pathlib import Path
from typing import Callable, Iterator

import matplotlib

from imgclf import params as params_module
from imgclf.errors import UserError, exit_with
from imgclf.params.checks import show
from imgclf.pipeline import deps, stages
from imgclf.tracking import datasets, runs, shared_params, store
from imgclf.training import checkpoint

Recipe = Callable[[params_module.Params, runs.StageRun], None]
# A full disk, a quota, a file-size limit (ulimit -f), a read-only file system: the user's to fix.
CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def freeze_at_exit() -> None:
    """Freeze the heap when the process exits, so its last garbage collection skips all that TensorFlow,
    Keras and MLflow imported (benchmarks/README.md has the cost). Outputs are complete and the run has
    ended by then; only a reference cycle still alive goes unfinalized, as Python never promised otherwise."""
    atexit.unregister(gc.freeze)  # once, however many stages one process runs (tests run several)
    atexit.register(gc.freeze)


@contextlib.contextmanager
def _checkpoints(stage: stages.Stage, config: params_module.Params, flat: dict, code_root: Path
                 ) -> Iterator[checkpoint.Checkpoints | None]:
    """A training stage's checkpoints (imgclf.training.checkpoint), keyed by its code, data deps and params."""
    if not stage.resumable:
        yield None
        return
    code = deps.imports(code_root, [stage.name])[stage.name]
    made_under = checkpoint.fingerprint(flat, code_root, code, stage.inputs)
    with checkpoint.opened(stage.name, made_under, config.train.checkpoint) as saved:
        yield saved


def main(recipe: Recipe) -> None:
    """Validate params.yaml, then run `recipe(params, tracked)` inside the stage's MLflow run.

    The stage is the recipe's script (stages/<name>.py); imgclf.pipeline.stages says which params
    sections it reads (dvc.yaml lists the same): they are logged to MLflow, resolved (`auto` replaced
    by the value used), flattened as `section.key`, and the fit settings again under the names every
    stage shares (`epochs`, `learning_rate`: tracking.shared_params).
    """
    script = Path(recipe.__code__.co_filename)
    stage = stages.get(script.stem)
    freeze_at_exit()
    matplotlib.use("Agg")  # plots go to files: no display
    store.configure_client()
    try:
        config = params_module.load()
        autos = params_module.resolved_autos(config, stage.sections)
        if autos:
            print("params: auto -> " + ", ".join(f"{key}={show(value)}" for key, value in autos.items()),
                  flush=True)
        flat = params_module.flatten(params_module.section_dict(config, *stage.sections)) | shared_params.shared(stage, config)
        inputs = datasets.split_inputs(config.data.source, config.data.path) if stage.reads_split else []
        dataset = config.data.source if "data" in stage.sections else None
        with _checkpoints(stage, config, flat, script.parents[1]) as saved:
            resume = saved.run_id if saved else None
            with runs.stage_run(stage.name, config.mlflow.experiment, flat, dataset, inputs, resume) as tracked:
                if saved:
                    saved.begin(tracked.run_id)
                recipe(config, tracked)
    except UserError as error:
        exit_with(error)
    except OSError as error:
        if error.errno not in CANNOT_WRITE:
            raise
        exit_with(UserError(
            f"{stage.name}: cannot write {error.filename or 'its outputs'} ({error.strerror}): free disk space "
            f"(or raise the limit), then run it again: no partial output was kept"
        ))
