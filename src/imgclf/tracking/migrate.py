"""`python -m imgclf migrate-store --to URI`: copy the local store's runs to a team's tracking server.

Per run: params, every metric with its steps and timestamps, tags, start/end time and status, the
run's artifacts and its logged models (the Keras model, the served classifier) with their files.
Idempotent: a copied run carries the tag `imgclf.migrated_from = <source run id>` (set last, once
everything is copied) and is skipped next time; a copy cut short (tag `imgclf.migrating_from` only)
is deleted and redone. The registry's versions are not copied: the next `dvc repro` registers the
champion on the server.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient

from imgclf.tracking import store
from imgclf.tracking.pipeline_run import TAG_PARENT

TAG_FROM = "imgclf.migrated_from"
TAG_COPYING = "imgclf.migrating_from"
BATCH_PARAMS, BATCH_METRICS = 100, 1000


@dataclass
class Summary:
    copied: int = 0
    skipped: int = 0
    redone: int = 0
    metric_points: int = 0
    models: int = 0

    def line(self, source: str, target: str) -> str:
        return (f"migrate-store: {self.copied} run(s) copied ({self.metric_points} metric points, {self.models} "
                f"logged model(s)), {self.skipped} already there, {self.redone} interrupted copies redone: "
                f"{source} -> {target}")


def migrate(source_uri: str, target_uri: str) -> Summary:
    """Copy every active run of every experiment of the source store that the target lacks."""
    source = store.client(source_uri)
    target = store.client(target_uri)
    summary = Summary()
    for experiment in source.search_experiments(view_type=ViewType.ACTIVE_ONLY):
        runs = source.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=50000, order_by=["attributes.start_time ASC"])
        if not runs:
            continue
        runs = sorted(runs, key=lambda run: TAG_PARENT in run.data.tags)  # parents first: their copies' ids
        target_experiment = _target_experiment(target, experiment)
        done = _copies(target, target_experiment)
        copied = dict(done["finished"])  # source run id -> its copy's id (parents precede their stages)
        for run in runs:
            if run.info.run_id in copied:
                summary.skipped += 1
                continue
            for partial in done["partial"].get(run.info.run_id, []):
                target.delete_run(partial)
                summary.redone += 1
            copied[run.info.run_id] = _copy_run(source, target, run, target_experiment, summary, copied)
    return summary


def _target_experiment(target: MlflowClient, experiment) -> str:
    existing = target.get_experiment_by_name(experiment.name)
    if existing is not None:
        return existing.experiment_id
    tags = {key: value for key, value in experiment.tags.items() if not key.startswith("mlflow.note")}
    return target.create_experiment(experiment.name, tags=tags)


def _copies(target: MlflowClient, experiment_id: str) -> dict:
    """Copies done (source run id -> target run id), and unfinished copies (target run ids) by source run id."""
    finished, partial = {}, {}
    for run in target.search_runs([experiment_id], filter_string=f"tags.`{TAG_COPYING}` != ''",
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=50000):
        origin = run.data.tags[TAG_COPYING]
        if run.data.tags.get(TAG_FROM) == origin:
            finished[origin] = run.info.run_id
        else:
            partial.setdefault(origin, []).append(run.info.run_id)
    return {"finished": finished, "partial": partial}


def _copy_run(source: MlflowClient, target: MlflowClient, run, experiment_id: str, summary: Summary,
              copied: dict[str, str]) -> str:
    origin = run.info.run_id
    tags = dict(run.data.tags) | {TAG_COPYING: origin}
    if tags.get(TAG_PARENT) in copied:  # a stage run under its pipeline's run: under the parent's copy
        tags[TAG_PARENT] = copied[tags[TAG_PARENT]]
    copy = target.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
    new_id = copy.info.run_id
    params = [Param(key, value) for key, value in sorted(run.data.params.items())]
    for start in range(0, len(params), BATCH_PARAMS):
        target.log_batch(new_id, params=params[start:start + BATCH_PARAMS])
    metrics = [Metric(point.key, point.value, point.timestamp, point.step)
               for key in sorted(run.data.metrics) for point in source.get_metric_history(origin, key)]
    for start in range(0, len(metrics), BATCH_METRICS):
        target.log_batch(new_id, metrics=metrics[start:start + BATCH_METRICS])
    summary.metric_points += len(metrics)
    with tempfile.TemporaryDirectory(prefix="imgclf-migrate-") as scratch:
        if source.list_artifacts(origin):
            files = Path(source.download_artifacts(origin, "", scratch))
            target.log_artifacts(new_id, str(files))
    renamed = _copy_models(source, target, run, experiment_id, new_id, summary)
    retagged = [RunTag(key, renamed[value]) for key, value in run.data.tags.items() if value in renamed]
    target.log_batch(new_id, tags=retagged + [RunTag(TAG_FROM, origin)])
    target.set_terminated(new_id, status=run.info.status, end_time=run.info.end_time)
    summary.copied += 1
    return new_id


def _copy_models(source: MlflowClient, target: MlflowClient, run, experiment_id: str, new_run: str,
                 summary: Summary) -> dict[str, str]:
    """The run's logged models, files included; old model id -> new model id."""
    renamed = {}
    models = source.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    for model in models:
        copy = target.create_logged_model(experiment_id, name=model.name, source_run_id=new_run,
                                          tags=dict(model.tags), params=dict(model.params),
                                          model_type=model.model_type)
        with tempfile.TemporaryDirectory(prefix="imgclf-migrate-") as scratch:
            files = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path=scratch,
                                                        tracking_uri=source.tracking_uri)
            target.log_model_artifacts(copy.model_id, files)
        target.finalize_logged_model(copy.model_id, status=model.status)
        renamed[model.model_id] = copy.model_id
        summary.models += 1
    return renamed
