"""The one MLflow entry point: one run per stage execution, with the tags that make runs comparable.

Store: `sqlite:///<main workspace>/mlflow.db`, artifacts in `<main workspace>/mlartifacts`;
`MLFLOW_TRACKING_URI` overrides. SQLite has one writer at a time, and `dvc queue start -j 2`
runs stages of several experiments at once, so every write to a SQLite store happens under an
inter-process file lock beside the database (`mlflow.db.lock`): no `database is locked`, no lost run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

import psutil
from filelock import FileLock

from imgclf import lineage, paths
from imgclf.errors import UserError

# Fail fast on an unreachable server instead of MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402  (after the environment above, which mlflow reads at import)

# "Creating initial MLflow database tables..." is noise on a stage's stderr; errors stay one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
from mlflow.tracking import MlflowClient  # noqa: E402

TAG_STAGE = "dvc.stage"
TAG_PIPELINE = "imgclf.pipeline_id"
TAG_EXP_NAME = "dvc.exp_name"
TAG_DATA_HASH = "imgclf.data_hash"
TAG_STAGE_HASH = "dvc.stage_hash"
TAG_COMMIT = "git.commit"
TAG_DIRTY = "git.dirty"
TAG_PID = "imgclf.pid"
TAG_HOST = "imgclf.host"
TAG_END_REASON = "imgclf.end_reason"
LOCK_TIMEOUT_S = 600


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the SQLite store at the main workspace's root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{paths.main_workspace() / paths.STORE_FILE}"


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def store_lock(uri: str) -> contextlib.AbstractContextManager:
    """An inter-process lock around writes to a SQLite store; a no-op for a tracking server."""
    database = _sqlite_file(uri)
    if database is None:
        return contextlib.nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".lock", timeout=LOCK_TIMEOUT_S)


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """For an http(s) tracking server, one quick TCP connect: a clear error instead of retries."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as error:
        raise UserError(
            f"cannot reach the MLflow tracking server at {parsed.scheme}://{parsed.hostname}:{port} "
            f"({error.strerror or error}): start it (make ui), or unset MLFLOW_TRACKING_URI to use "
            f"the project's SQLite store"
        ) from None


def pipeline_id() -> str:
    """An id shared by every stage of one `dvc repro` or one DVC experiment.

    IMGCLF_PIPELINE_ID wins; in a DVC experiment it derives from the experiment's name and
    baseline; in a plain `dvc repro` from the dvc process that runs the stages (pid + start time).
    """
    explicit = os.environ.get("IMGCLF_PIPELINE_ID")
    if explicit:
        return explicit
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        return _short_hash(f"exp:{os.environ.get('DVC_EXP_BASELINE_REV', '')}:{exp_name}")
    process = _dvc_ancestor() or psutil.Process()
    return _short_hash(f"proc:{socket.gethostname()}:{process.pid}:{process.create_time()}")


def _dvc_ancestor() -> psutil.Process | None:
    with contextlib.suppress(psutil.Error):
        for parent in psutil.Process().parents():
            words = [Path(word).name for word in parent.cmdline()[:3]]
            # `dvc repro`, `python -m dvc exp run`, `.venv/bin/dvc queue ...` (a celery worker)
            if "dvc" in words and any(verb in parent.cmdline()[:4] for verb in ("repro", "exp", "queue")):
                return parent
    return None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the workspace, or ("unknown", True) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
    return commit, bool(status)


def data_hash() -> str | None:
    """sha256 of the split manifest: the data every training stage saw."""
    if not paths.MANIFEST.exists():
        return None
    return hashlib.sha256(paths.MANIFEST.read_bytes()).hexdigest()


def stage_tags(stage: str) -> dict[str, str]:
    """The tags every run carries (see the README's tracking contract)."""
    commit, dirty = git_state()
    tags = {
        TAG_STAGE: stage,
        TAG_PIPELINE: pipeline_id(),
        TAG_COMMIT: commit,
        TAG_DIRTY: str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        TAG_PID: str(os.getpid()),
        TAG_HOST: socket.gethostname(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags[TAG_EXP_NAME] = os.environ["DVC_EXP_NAME"]
    # download precedes any manifest; split replaces it (stage_run tags the new one when it ends)
    digest = data_hash() if stage not in ("download", "split") else None
    if digest:
        tags[TAG_DATA_HASH] = digest
    stage_hash = lineage.current_fingerprint(stage)
    if stage_hash:
        tags[TAG_STAGE_HASH] = stage_hash
    return tags


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, created on first use with artifacts beside a SQLite store."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise UserError(
                f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore) "
                f"or set mlflow.experiment to another name"
            )
        return experiment.experiment_id
    database = _sqlite_file(uri)
    location = (database.parent / paths.ARTIFACTS_DIR).as_uri() if database else None
    # The UI's "Model training" view (not GenAI) for this experiment.
    return client.create_experiment(
        name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
    )


def close_stale_runs(client: MlflowClient, experiment: str) -> int:
    """Mark KILLED the RUNNING runs of this host whose process is gone (SIGKILL, power loss)."""
    host = socket.gethostname()
    closed = 0
    for run in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'"):
        if run.data.tags.get(TAG_HOST) != host:
            continue
        pid = int(run.data.tags.get(TAG_PID, "0") or 0)
        if pid and psutil.pid_exists(pid) and pid != os.getpid():
            continue
        client.set_tag(run.info.run_id, TAG_END_REASON, f"process {pid} ended without closing the run")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed += 1
    return closed


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
    """{stage: newest FINISHED run} among the runs carrying all `tags`."""
    latest: dict[str, Any] = {}
    for run in finished_runs(client, experiment, tags):
        latest.setdefault(run.data.tags.get(TAG_STAGE, run.info.run_name), run)
    return latest


class StageRun:
    """The active run of one stage: what a stage may log."""

    def __init__(self, client: MlflowClient, run_id: str, uri: str):
        self.client = client
        self.run_id = run_id
        self.uri = uri

    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log flattened params ("top.units": 256)."""
        items = [mlflow.entities.Param(key, _param_text(value)) for key, value in sorted(flat.items())]
        with store_lock(self.uri):
            for start in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics, optionally at a step (epoch)."""
        entries = [
            mlflow.entities.Metric(key, float(value), 0, step or 0)
            for key, value in sorted(metrics.items())
        ]
        with store_lock(self.uri):
            for start in range(0, len(entries), 500):
                self.client.log_batch(self.run_id, metrics=entries[start:start + 500])

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        """Per-epoch curves as metrics with step = epoch (1-based).

        Keras names (loss, accuracy, val_loss, ...) become train_loss, train_accuracy, val_loss, ...:
        plain `accuracy` and `loss` are reserved for the final test figures.
        """
        entries = [
            mlflow.entities.Metric(key if key.startswith("val_") else f"train_{key}", float(value), 0, epoch)
            for key, values in sorted(history.items())
            for epoch, value in enumerate(values, start=1)
        ]
        with store_lock(self.uri):
            for start in range(0, len(entries), 500):
                self.client.log_batch(self.run_id, metrics=entries[start:start + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags."""
        with store_lock(self.uri):
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file or a folder into the run's artifacts."""
        path = Path(path)
        with store_lock(self.uri):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_keras_model(self, model: Any, input_example: Any) -> None:
        """The model through MLflow's keras flavor, with a signature inferred from an example."""
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, model.predict(input_example, verbose=0))
        with store_lock(self.uri), _keras_example_folder_fix():
            mlflow.keras.log_model(
                model, name="model", signature=signature, input_example=input_example,
                pip_requirements=_model_requirements(),
            )


def _model_requirements() -> list[str]:
    """What loading a keras-flavor model needs, pinned to what is installed. Listed, because
    MLflow's inference of them loads the model in a subprocess: ~20 s per logged model."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "keras", "tensorflow", "numpy")]


@contextlib.contextmanager
def _keras_example_folder_fix() -> Iterator[None]:
    """mlflow.keras.save_model writes input_example.json before creating the model folder
    (mlflow#16183, open in 3.17): create the folder first, for the duration of one log_model."""
    from mlflow.keras import save as keras_save

    original = keras_save._save_example

    def save_example(mlflow_model: Any, input_example: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, input_example, path, *args, **kwargs)

    keras_save._save_example = save_example
    try:
        yield
    finally:
        keras_save._save_example = original


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, flat_params: Mapping[str, Any]) -> Iterator[StageRun]:
    """One MLflow run named after the stage: FINISHED on success, FAILED/KILLED otherwise."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    tags = stage_tags(stage)
    with store_lock(uri):  # creating the client creates (migrates) a new SQLite store: one at a time
        client = MlflowClient(uri)
        experiment_key = experiment_id(client, experiment, uri)
        close_stale_runs(client, experiment_key)
        run = mlflow.start_run(experiment_id=experiment_key, run_name=stage, tags=tags)
    active = StageRun(client, run.info.run_id, uri)
    active.log_params(flat_params)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    status, reason = "FAILED", "exception"
    try:
        yield active
        if TAG_DATA_HASH not in tags and data_hash():  # the split stage made the manifest just now
            active.set_tags({TAG_DATA_HASH: data_hash()})
        status, reason = "FINISHED", ""
    except KeyboardInterrupt:
        status, reason = "KILLED", "interrupted (SIGINT/SIGTERM)"
        raise
    except UserError as error:
        reason = f"imgclf: {error}"
        raise
    except BaseException as error:  # noqa: BLE001 - recorded, then re-raised
        reason = f"{type(error).__name__}: {error}"[:500]
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        with store_lock(uri):
            if reason:
                client.set_tag(active.run_id, TAG_END_REASON, reason)
            mlflow.end_run(status=status)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def temp_artifact_dir() -> contextlib.AbstractContextManager[str]:
    """A scratch folder for artifacts that exist only to be logged."""
    return tempfile.TemporaryDirectory(prefix="imgclf-artifacts-")
