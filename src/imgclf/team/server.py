"""`make server`: PostgreSQL + an S3-compatible endpoint + the MLflow tracking server, on 127.0.0.1.

The tracking server's backend store is the PostgreSQL cluster in <state>/postgres (initialised on
first use); its artifacts are proxied to s3://<bucket>/mlflow, so clients only ever talk to the
tracking server (`mlflow-artifacts:/` URIs) and need no S3 credentials. Everything stays in the
state folder (git-ignored `.team/`), so runs and artifacts survive a restart. The process runs in
the foreground: Ctrl-C, SIGTERM or `python -m imgclf server-stop` stops all of it.

Secrets (the database password, the S3 key pair, the admin password) live in 0600 files there and
reach the services through their environment: never on a command line, in a log or in MLflow.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imgclf.errors import UserError
from imgclf.team import BUCKET, LOOPBACK, POSTGRES_PORT, S3_PORT, TRACKING_PORT, processes, s3
from imgclf.team.postgres import LocalPostgres

DATABASE = "mlflow"
AUTH_DATABASE = "mlflow_auth"
ADMIN = "admin"


@dataclass(frozen=True)
class Settings:
    """Where the server keeps its state and which ports it takes."""

    state: Path
    host: str = LOOPBACK
    port: int = TRACKING_PORT
    pg_port: int = POSTGRES_PORT
    s3_port: int = S3_PORT
    bucket: str = BUCKET
    s3_endpoint: str | None = None  # an existing S3-compatible endpoint (credentials from the environment)
    auth: bool = False
    workers: int = 2

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def info_file(self) -> Path:
        """Endpoints and ports of the last start (kept after a stop: `make remote` reads it)."""
        return self.state / "server.json"

    @property
    def s3_keys_file(self) -> Path:
        return self.state / "s3.credentials"

    @property
    def admin_password_file(self) -> Path:
        return self.state / "admin.password"


def tracking_uri(settings: Settings) -> str:
    host = LOOPBACK if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


def serve(settings: Settings) -> None:
    """Start everything, print what to export, wait for Ctrl-C/SIGTERM (or a service dying), stop everything."""
    settings.state.mkdir(parents=True, exist_ok=True)
    running = processes.recorded_pid("server", settings.run_dir)
    if running is not None:
        raise UserError(f"the team server already runs (pid {running}, state {settings.state}): "
                        f"stop it with `make server-stop` first")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "server.pid").write_text(f"{os.getpid()}\n")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    postgres = LocalPostgres(settings.state / "postgres", settings.pg_port, settings.state / "postgres.password")
    try:
        tracking = _start(settings, postgres)
        _announce(settings)
        while tracking.poll() is None:
            time.sleep(0.5)
        print(f"imgclf: the MLflow tracking server exited (code {tracking.returncode}): stopping the team server; "
              f"see {settings.run_dir / 'mlflow.log'}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_services(settings, postgres)
        (settings.run_dir / "server.pid").unlink(missing_ok=True)
    print("server: stopped (runs and artifacts kept in " f"{settings.state})", file=sys.stderr, flush=True)
    raise SystemExit(code)


def stop(state: Path, timeout_s: float = 90) -> bool:
    """Stop a running team server (its supervisor, else any service it left); True if something ran."""
    settings = Settings(state=state)
    supervisor = processes.recorded_pid("server", settings.run_dir)
    if supervisor is not None:
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and processes.alive(supervisor):
            time.sleep(0.3)
        if not processes.alive(supervisor):
            return True
    stopped = [processes.stop(name, settings.run_dir) for name in ("mlflow", "s3")]
    postgres = LocalPostgres(state / "postgres", POSTGRES_PORT, state / "postgres.password")
    postgres.stop()
    return supervisor is not None or any(stopped)


def _start(settings: Settings, postgres: LocalPostgres):
    postgres.start([DATABASE] + ([AUTH_DATABASE] if settings.auth else []))
    if settings.s3_endpoint:
        endpoint, keys, env = settings.s3_endpoint, None, {"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint}
    else:
        endpoint = s3.start_local(settings.state / "s3", settings.s3_port, settings.run_dir)
        keys = s3.credentials(settings.s3_keys_file)
        env = s3.client_env(keys, endpoint)
    s3.ensure_bucket(endpoint, settings.bucket, keys)
    env["MLFLOW_BACKEND_STORE_URI"] = postgres.uri(DATABASE)
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", settings.host,
               "--port", str(settings.port), "--workers", str(settings.workers),
               "--artifacts-destination", f"s3://{settings.bucket}/mlflow"]
    # Beyond loopback, MLflow's own DNS-rebinding guard stays on: it admits localhost and private
    # addresses; a team reaching it by a public name sets MLFLOW_SERVER_ALLOWED_HOSTS.
    if settings.auth:
        env.update(_auth_env(settings, postgres))
        command += ["--app-name", "basic-auth"]
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    child_env.update(env)
    tracking = processes.start("mlflow", command, settings.run_dir, child_env)
    processes.wait_until(processes.http_ok(f"{tracking_uri(settings)}/health"),
                         f"the MLflow tracking server on port {settings.port}", tracking,
                         settings.run_dir / "mlflow.log", timeout_s=180)
    info = asdict(settings) | {"state": str(settings.state), "tracking_uri": tracking_uri(settings),
                               "s3_endpoint": endpoint, "local_s3": settings.s3_endpoint is None}
    settings.info_file.write_text(json.dumps(info, indent=1) + "\n")
    return tracking


def _auth_env(settings: Settings, postgres: LocalPostgres) -> dict[str, str]:
    """MLflow's basic-auth app: users in PostgreSQL, an admin whose password is generated once."""
    csrf_key = settings.state / "flask.secret"  # the auth app's CSRF key: the same for every worker
    for secret in (settings.admin_password_file, csrf_key):
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_urlsafe(24) + "\n")
    config = settings.state / "basic_auth.ini"
    config.touch(mode=0o600)
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {postgres.uri(AUTH_DATABASE)}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": settings.admin_password_file.read_text().strip(),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": csrf_key.read_text().strip()}


def _announce(settings: Settings) -> None:
    uri = tracking_uri(settings)
    lines = [f"server: MLflow tracking server on {uri} (PostgreSQL on 127.0.0.1:{settings.pg_port}, "
             f"artifacts in s3://{settings.bucket}/mlflow)", "export MLFLOW_TRACKING_URI=" + uri]
    if settings.auth:
        lines += [f"export MLFLOW_TRACKING_USERNAME={ADMIN}",
                  f"export MLFLOW_TRACKING_PASSWORD=$(cat {settings.admin_password_file})"]
    if settings.host != LOOPBACK:
        warning = ("anyone who reaches it can read, change and delete every run" if not settings.auth
                   else "passwords cross the network in clear text unless a TLS proxy fronts it")
        lines.append(f"server: WARNING: listening on {settings.host}:{settings.port}: {warning}"
                     + ("" if settings.auth else " (add AUTH=1 for MLflow's basic-auth app)"))
    lines.append("server: Ctrl-C (or `make server-stop`) stops it")
    print("\n".join(lines), flush=True)


def _stop_services(settings: Settings, postgres: LocalPostgres) -> None:
    for name in ("mlflow", "s3"):
        processes.stop(name, settings.run_dir)
    postgres.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
