"""Run one pipeline stage: load params, open its MLflow run, call its work, map errors to exit codes."""

from __future__ import annotations

from typing import Callable, Sequence

from imgclf import params as params_module
from imgclf import tracking
from imgclf.errors import UserError, exit_with

Work = Callable[[params_module.Params, tracking.StageRun], None]


def run(stage: str, sections: Sequence[str], work: Work) -> None:
    """Validate params.yaml, then run `work(params, run)` inside the stage's MLflow run.

    `sections` are the params sections the stage reads (dvc.yaml lists the same): they are logged
    to MLflow, resolved (`auto` replaced by the value used), flattened as `section.key`.
    """
    try:
        config = params_module.load()
        flat = params_module.flatten(params_module.section_dict(config, *sections))
        with tracking.stage_run(stage, config.mlflow.experiment, flat) as active:
            work(config, active)
    except UserError as error:
        exit_with(error)
