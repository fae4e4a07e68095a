"""A stage's MLflow run: opened named after the stage, closed FINISHED, FAILED or KILLED; what it logs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import mlflow
import psutil
from mlflow.entities import DatasetInput
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from imgclf.errors import UserError
from imgclf.tracking import pipeline_run, store
from imgclf.tracking.tags import TAG_DATA_HASH, TAG_END_REASON, TAG_HOST, TAG_PID, data_hash, stage_tags


def close_stale_runs(client: MlflowClient, experiment: str, keep: str | None = None) -> int:
    """Mark KILLED the RUNNING runs of this host whose process is gone (SIGKILL, power loss), but `keep`
    (the run a stage resumes from its checkpoint)."""
    host = socket.gethostname()
    closed = 0
    for run in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'"):
        if run.data.tags.get(TAG_HOST) != host or run.info.run_id == keep:
            continue
        pid = int(run.data.tags.get(TAG_PID, "0") or 0)
        if pid and psutil.pid_exists(pid) and pid != os.getpid():
            continue
        client.set_tag(run.info.run_id, TAG_END_REASON, f"process {pid} ended without closing the run")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed += 1
    return closed


class StageRun:
    """The active run of one stage: what a stage may log."""

    def __init__(self, client: MlflowClient, run_id: str, uri: str, parent_id: str | None = None,
                 resumed: bool = False):
        self.client = client
        self.run_id = run_id
        self.uri = uri
        self.parent_id = parent_id  # the pipeline's run (the report stage logs the leaderboard there)
        # A run a killed execution began: what that execution already logged at a step is not logged again
        # (one point per step; a store's unique keys would refuse a second at the same step and time).
        self.resumed = resumed

    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log flattened params ("top.units": 256)."""
        self._log_batches(params=[mlflow.entities.Param(key, _param_text(value)) for key, value in sorted(flat.items())])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics, optionally at a step (epoch)."""
        self._log_batches(metrics=[
            mlflow.entities.Metric(key, float(value), 0, step or 0) for key, value in sorted(metrics.items())
        ])

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        """Per-epoch curves as metrics with step = epoch (1-based).

        Keras names (loss, accuracy, val_loss, ...) become train_loss, train_accuracy, val_loss, ...:
        plain `accuracy` and `loss` are reserved for the final test figures.
        """
        self._log_batches(metrics=[
            mlflow.entities.Metric(key if key.startswith("val_") else f"train_{key}", float(value), 0, epoch)
            for key, values in sorted(history.items())
            for epoch, value in enumerate(values, start=1)
        ])

    def _not_yet_logged(self, metrics: list) -> list:
        if not self.resumed or not metrics:
            return metrics
        logged = {(point.key, point.step) for key in {metric.key for metric in metrics}
                  for point in self.client.get_metric_history(self.run_id, key)}
        return [metric for metric in metrics if (metric.key, metric.step) not in logged]

    def _log_batches(self, params: list | None = None, metrics: list | None = None) -> None:
        # MLflow takes at most 100 params or 1000 metrics per batch.
        metrics = self._not_yet_logged(metrics or [])
        with store.store_lock(self.uri):
            for start in range(0, len(params or []), 100):
                self.client.log_batch(self.run_id, params=params[start:start + 100])
            for start in range(0, len(metrics or []), 500):
                self.client.log_batch(self.run_id, metrics=metrics[start:start + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags."""
        with store.store_lock(self.uri):
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def log_pipeline(self, tags: Mapping[str, str], metrics: Mapping[str, float], files: Sequence[Path]) -> None:
        """Tags, metrics and files on the pipeline's run (what the report stage sums up there)."""
        if self.parent_id is None:
            return
        with store.store_lock(self.uri):
            self.client.log_batch(self.parent_id, tags=[mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()],
                                  metrics=[mlflow.entities.Metric(k, float(v), 0, 0) for k, v in metrics.items()])
            for path in files:
                if Path(path).exists():
                    self.client.log_artifact(self.parent_id, str(path))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file or a folder into the run's artifacts."""
        path = Path(path)
        with store.store_lock(self.uri):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, path: Path) -> None:
        """A PNG into the run's images (the UI's image view), keyed by its file name: mistakes, gradcam."""
        from PIL import Image

        with store.store_lock(self.uri), Image.open(path) as picture:
            self.client.log_image(self.run_id, picture.convert("RGB"), key=Path(path).stem, step=0)


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, flat_params: Mapping[str, Any], dataset: str | None = None,
              inputs: Sequence[DatasetInput] = (), resume: str | None = None) -> Iterator[StageRun]:
    """One MLflow run named after the stage, a child of its pipeline's run: FINISHED on success,
    FAILED/KILLED otherwise; `inputs` (the split it reads, from `dataset`) logged as its datasets.

    `resume`: the run id of this stage's execution that was killed (its checkpoint's): that run goes on,
    RUNNING again, rather than a second one beside it (a new run if the store no longer has it)."""
    uri = store.tracking_uri()
    store.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    tags = stage_tags(stage)
    with store.store_lock(uri):  # creating the client creates (migrates) a new SQLite store: one at a time
        client = MlflowClient(uri)
        experiment_key = store.experiment_id(client, experiment, uri)
        resume = _resumable(client, resume, experiment_key)
        close_stale_runs(client, experiment_key, keep=resume)
        parent = pipeline_run.ensure_parent(client, experiment_key, tags)
        tags[pipeline_run.TAG_PARENT] = parent
        tags[pipeline_run.TAG_NOTE] = pipeline_run.description(stage, tags, dataset, {})
        if resume:
            run = mlflow.start_run(run_id=resume)
            client.log_batch(resume, tags=[mlflow.entities.RunTag(key, str(value)) for key, value in tags.items()])
            with contextlib.suppress(MlflowException):
                client.delete_tag(resume, TAG_END_REASON)
        else:
            run = mlflow.start_run(experiment_id=experiment_key, run_name=stage, tags=tags)
        if inputs and not resume:
            _log_inputs(client, run.info.run_id, list(inputs))
    active = StageRun(client, run.info.run_id, uri, parent, resumed=bool(resume))
    active.log_params(flat_params)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    status, reason = "FAILED", "exception"
    try:
        yield active
        if TAG_DATA_HASH not in tags and data_hash():  # the split stage made the manifest just now
            tags[TAG_DATA_HASH] = data_hash()
            active.set_tags({TAG_DATA_HASH: tags[TAG_DATA_HASH]})
        metrics = client.get_run(active.run_id).data.metrics
        active.set_tags({pipeline_run.TAG_NOTE: pipeline_run.description(stage, tags, dataset, metrics)})
        status, reason = "FINISHED", ""
    except KeyboardInterrupt:
        status, reason = "KILLED", "interrupted (SIGINT/SIGTERM)"
        raise
    except UserError as error:
        status = getattr(error, "run_status", status)  # a search's pruned trial: KILLED
        reason = f"imgclf: {error}"
        raise
    except BaseException as error:
        if store.unreachable(uri) is not None:  # the server went away mid-stage: say so, not a traceback
            status = ""
            raise lost_server(uri) from None
        reason = f"{type(error).__name__}: {error}"[:500]
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if status:
            try:
                with store.store_lock(uri):
                    if reason:
                        client.set_tag(active.run_id, TAG_END_REASON, reason)
                    mlflow.end_run(status=status)
                    pipeline_run.stage_ended(client, parent, status)
            except Exception:
                if store.unreachable(uri) is None:
                    raise
                raise lost_server(uri) from None


def _resumable(client: MlflowClient, run_id: str | None, experiment_key: str) -> str | None:
    """`run_id` when this store holds it in this experiment (to resume), else None."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run_id if run.info.experiment_id == experiment_key and run.info.lifecycle_stage == "active" else None


def _log_inputs(client: MlflowClient, run_id: str, inputs: list[DatasetInput], attempts: int = 4) -> None:
    """log_inputs, retried: on a tracking server two experiments logging the same new dataset at once
    race on MLflow's dataset row (one gets an IntegrityError); the retry finds the row the other made."""
    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def lost_server(uri: str) -> UserError:
    """The error of a stage whose tracking server stopped answering while it ran."""
    error = store.unreachable(uri)
    why = f" ({error.strerror or error})" if error is not None else ""
    return UserError(
        f"lost the MLflow tracking server at {store.server_address(uri)} during this stage{why}: nothing of it "
        f"was committed to DVC; restart the server (make server), then run `dvc repro` again (the next stage "
        f"marks this run KILLED)"
    )


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")

