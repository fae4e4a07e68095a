"""The model registry: the leaderboard's best classifier as `<mlflow.registered_model>@champion`.

One version per distinct winning run: a re-run whose winner is the same run only re-points the
alias. Each version carries the stage, pipeline id, data hash, git commit and test metrics as
tags. What is registered is the run's served classifier (imgclf.tracking.logged_models), so
`models:/<name>@champion` is what `make serve` serves and `predict --model best` loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from imgclf.errors import UserError
from imgclf.tracking import store
from imgclf.tracking.tags import TAG_CLASSIFIER_MODEL, TAG_COMMIT, TAG_DATA_HASH, TAG_PIPELINE, TAG_STAGE

ALIAS = "champion"
VERSION_METRICS = ("accuracy", "f1_macro", "loss", "precision_macro", "recall_macro")


@dataclass(frozen=True)
class Registered:
    """What register_champion did."""

    name: str
    version: str
    stage: str
    run_id: str
    created: bool  # a new version; False: the winner's version existed, only the alias moved (or stayed)


def champion_uri(name: str) -> str:
    """models:/<name>@champion."""
    return f"models:/{name}@{ALIAS}"


def register_champion(client: MlflowClient, uri: str, name: str, run: Any) -> Registered:
    """Register `run`'s classifier under `name` (unless a version of that run exists) and point `champion` at it."""
    tags = run.data.tags
    stage = tags.get(TAG_STAGE, run.info.run_name)
    model_id = tags.get(TAG_CLASSIFIER_MODEL)
    if not model_id:
        raise UserError(f"the best stage, {stage}, logged no classifier in run {run.info.run_id} "
                        f"(mlflow.log_model: false?): set mlflow.log_model: true and re-run it to register it")
    with store.store_lock(uri):
        existing = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
        if existing:
            version, created = max(existing, key=lambda found: int(found.version)), False
        else:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="imgclf: the leaderboard's best image classifier")
            version = client.create_model_version(
                name, source=f"models:/{model_id}", run_id=run.info.run_id, tags=version_tags(stage, run),
                model_id=model_id,
            )
            created = True
        client.set_registered_model_alias(name, ALIAS, version.version)
    return Registered(name, str(version.version), stage, run.info.run_id, created)


def version_tags(stage: str, run: Any) -> dict[str, str]:
    """Stage, pipeline id, data hash, git commit and test metrics of the run a version comes from."""
    tags: Mapping[str, str] = run.data.tags
    metrics: Mapping[str, float] = run.data.metrics
    found = {
        "stage": stage,
        "pipeline_id": tags.get(TAG_PIPELINE, ""),
        "data_hash": tags.get(TAG_DATA_HASH, ""),
        "git_commit": tags.get(TAG_COMMIT, ""),
    }
    found |= {f"test_{key}": f"{metrics[key]:.4f}" for key in VERSION_METRICS if key in metrics}
    return found


def champion(client: MlflowClient, name: str, where: str) -> Any:
    """The version `champion` points at; a UserError saying how to make one when there is none."""
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        raise UserError(f"no registered model {name!r} with alias {ALIAS!r} in {where}: run `make repro` "
                        f"(its report stage registers the leaderboard's best model)") from None
