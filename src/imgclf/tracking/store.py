"""The MLflow store: its URI, the inter-process lock a SQLite store needs, reachability, experiments.

Store: `sqlite:///<main workspace>/mlflow.db`, artifacts in `<main workspace>/mlartifacts`;
`MLFLOW_TRACKING_URI` overrides. SQLite has one writer at a time, and `dvc queue start -j 2`
runs stages of several experiments at once, so every write to a SQLite store happens under an
inter-process file lock beside the database (`mlflow.db.lock`): no `database is locked`, no lost run.
A tracking server's URI takes no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from imgclf import paths
from imgclf.errors import UserError


def configure_client() -> None:
    """The MLflow client as the project's entry points (a stage, the command line) use it."""
    # Fail fast on an unreachable server instead of MLflow's minutes of retries (read per request).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # Logging a model validates its input example by loading it back: no progress bars in stage logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # "Creating initial MLflow database tables..." is noise on a stage's stderr; errors stay one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

LOCK_TIMEOUT_S = 600

def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the SQLite store at the main workspace's root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{paths.main_workspace() / paths.STORE_FILE}"


def display_uri(uri: str) -> str:
    """The URI without user name or password (safe to print or log)."""
    parsed = urlparse(uri)
    if parsed.username or parsed.password:
        return parsed._replace(netloc=parsed.hostname + (f":{parsed.port}" if parsed.port else "")).geturl()
    return uri


def sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def store_lock(uri: str) -> contextlib.AbstractContextManager:
    """An inter-process lock around writes to a SQLite store; a no-op for a tracking server."""
    database = sqlite_file(uri)
    if database is None:
        return contextlib.nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".lock", timeout=LOCK_TIMEOUT_S)


def unreachable(uri: str, timeout_s: float = 5.0) -> OSError | None:
    """For an http(s) tracking server, one quick TCP connect: the error if it fails, else None."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            return None
    except OSError as error:
        return error


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """A clear error for an unreachable tracking server, or one whose TLS certificate this machine does not
    trust, instead of MLflow's retries."""
    error = unreachable(uri, timeout_s)
    if error is not None:
        raise UserError(
            f"cannot reach the MLflow tracking server at {server_address(uri)} ({error.strerror or error}): "
            f"start it (make server), or unset MLFLOW_TRACKING_URI to use the project's SQLite store"
        ) from None
    parsed = urlparse(uri)
    if parsed.scheme != "https" or os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return
    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=parsed.hostname):
            pass
    except ssl.SSLCertVerificationError as refused:
        raise UserError(
            f"the MLflow tracking server at {server_address(uri)} presents a TLS certificate this machine does not "
            f"trust ({refused.verify_message}): set MLFLOW_TRACKING_SERVER_CERT_PATH to its certificate file"
        ) from None
    except (OSError, ssl.SSLError):
        return  # anything else: MLflow's own request says what


def refused(error: Exception, uri: str) -> UserError | None:
    """A clear error for MLflow's answer to missing or wrong credentials (401) or too few rights (403)."""
    text = str(error)
    for code, meaning in (("401", "refused the credentials"), ("403", "denied this user the request")):
        if f"error code {code}" in text or f"{code} != 200" in text:
            return UserError(f"the MLflow tracking server at {server_address(uri)} {meaning} (HTTP {code}): check "
                             f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; nothing was logged")
    return None


def server_address(uri: str) -> str:
    parsed = urlparse(uri)
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def client(uri: str) -> MlflowClient:
    """A client of the store; creating one creates (migrates) a new SQLite store, so one at a time."""
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    with store_lock(uri):
        return MlflowClient(uri)


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, created on first use with artifacts beside a SQLite store."""
    try:
        experiment = client.get_experiment_by_name(name)
    except MlflowException as error:
        raise (refused(error, uri) or error) from None
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise UserError(
                f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore) "
                f"or set mlflow.experiment to another name"
            )
        return experiment.experiment_id
    database = sqlite_file(uri)
    location = (database.parent / paths.ARTIFACTS_DIR).as_uri() if database else None
    # The UI's "Model training" view (not GenAI) for this experiment.
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
        )
    except MlflowException as error:
        # Two experiments of a queue (or a sweep's nodes) creating it at once on a tracking server: the one that
        # lost the race finds the other's.
        found = client.get_experiment_by_name(name) if error.error_code == "RESOURCE_ALREADY_EXISTS" else None
        if found is None:
            raise
        return found.experiment_id
