"""Finding runs: by tags, newest first, and the runs behind the outputs recorded in dvc.lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient

from imgclf.tracking import lineage
from imgclf.tracking.tags import TAG_STAGE, TAG_STAGE_HASH


def _tag_filter(tags: Mapping[str, str]) -> str:
    clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    return " and ".join(clauses + ["attributes.status = 'FINISHED'"])


def finished_runs(client: MlflowClient, experiment: str, tags: Mapping[str, str]) -> list[Any]:
    """FINISHED runs of the named experiment carrying all `tags`, newest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs(
        [found.experiment_id], _tag_filter(tags), order_by=["attributes.start_time DESC"], max_results=5000
    )


def latest_run(client: MlflowClient, experiment: str, tags: Mapping[str, str]) -> Any | None:
    """The newest FINISHED run with all `tags`, or None."""
    runs = finished_runs(client, experiment, tags)
    return runs[0] if runs else None


def latest_by_stage(client: MlflowClient, experiment: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """{stage: newest FINISHED run} among the stage runs carrying all `tags` (not their pipeline's run)."""
    latest: dict[str, Any] = {}
    for run in finished_runs(client, experiment, tags):
        if TAG_STAGE in run.data.tags:
            latest.setdefault(run.data.tags[TAG_STAGE], run)
    return latest


def runs_from_lock(client: MlflowClient, experiment: str, lock_file: Path = Path(lineage.LOCK_FILE)) -> dict[str, Any]:
    """For each stage in dvc.lock, the MLflow run whose fingerprint matches (restored or not)."""
    found: dict[str, Any] = {}
    for stage, stage_hash in lineage.locked_fingerprints(lock_file).items():
        run = latest_run(client, experiment, {TAG_STAGE: stage, TAG_STAGE_HASH: stage_hash})
        if run is not None:
            found[stage] = run
    return found


def run_link(uri: str) -> Callable[[Any], str]:
    """A run's address in the MLflow UI: the tracking server's own, or `make ui`'s for a local store."""
    parsed = urlparse(uri)
    base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":") if parsed.scheme in ("http", "https") \
        else "http://127.0.0.1:5000"  # make ui
    return lambda run: f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
