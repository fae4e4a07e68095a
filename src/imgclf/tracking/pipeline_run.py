"""One parent run per pipeline execution (one `dvc repro`, one DVC experiment); the stage runs are its children.

The first stage of a pipeline id creates the parent (`imgclf.role = pipeline`, named after the DVC
experiment or the pipeline id); every stage run is tagged `mlflow.parentRunId`, so the MLflow UI
shows one expandable row per execution. The parent is RUNNING while a stage runs and takes each
stage's outcome when it ends; the report stage adds the leaderboard, the champion's figures and a
link to every stage's run, those restored from DVC's run-cache included. Stages of one pipeline run
one after another, so one parent per pipeline id needs no lock beyond the store's own.
"""

from __future__ import annotations

import os
from typing import Mapping

from mlflow.tracking import MlflowClient

from imgclf.sweep import trial
from imgclf.tracking.tags import TAG_COMMIT, TAG_DIRTY, TAG_EXP_NAME, TAG_PIPELINE

TAG_ROLE = "imgclf.role"
ROLE = "pipeline"
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"  # the run's description in the UI


def ensure_parent(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str:
    """The parent run of this pipeline id (created by its first stage), marked RUNNING."""
    pipeline = tags[TAG_PIPELINE]
    found = client.search_runs(
        [experiment_id], f"tags.`{TAG_PIPELINE}` = '{pipeline}' and tags.`{TAG_ROLE}` = '{ROLE}'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    experiment = tags.get(TAG_EXP_NAME)
    where = f"DVC experiment {experiment}" if experiment else "dvc repro"
    parent_tags = {TAG_PIPELINE: pipeline, TAG_ROLE: ROLE, TAG_COMMIT: tags[TAG_COMMIT], TAG_DIRTY: tags[TAG_DIRTY],
                   "mlflow.source.git.commit": tags[TAG_COMMIT],
                   TAG_NOTE: f"Pipeline {pipeline}: {where} at commit {tags[TAG_COMMIT][:10]}"
                             f"{' (dirty)' if tags[TAG_DIRTY] == 'true' else ''}; its stages are the rows beneath."}
    if experiment:
        parent_tags[TAG_EXP_NAME] = experiment
    search = os.environ.get(trial.ENV_RUN)
    if search:  # a search's trial: the pipeline's run nests under the study's
        parent_tags[TAG_PARENT] = search
    run = client.create_run(experiment_id, run_name=f"pipeline {experiment or pipeline}", tags=parent_tags)
    return run.info.run_id


def stage_ended(client: MlflowClient, parent_id: str, status: str) -> None:
    """The parent takes the outcome of its latest stage (FINISHED once the report has run)."""
    client.set_terminated(parent_id, status=status)


def description(stage: str, tags: Mapping[str, str], dataset: str | None, metrics: Mapping[str, float]) -> str:
    """One line: what the run is (stage, data, headline metric) and where it came from (commit, experiment)."""
    what = [stage]
    if dataset:
        digest = tags.get("imgclf.data_hash", "")
        what.append(f"on {dataset}" + (f" ({digest[:12]})" if digest else ""))
    if "accuracy" in metrics:
        what.append(f"test accuracy {metrics['accuracy']:.4f}")
    origin = f"commit {tags[TAG_COMMIT][:10]}" + (" (dirty)" if tags.get(TAG_DIRTY) == "true" else "")
    if tags.get(TAG_EXP_NAME):
        origin += f", DVC experiment {tags[TAG_EXP_NAME]}"
    return f"{', '.join(what)}; from {origin}, pipeline {tags[TAG_PIPELINE]}"
