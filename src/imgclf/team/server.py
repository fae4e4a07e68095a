"""`make server`: PostgreSQL + the MLflow tracking server with proxied artifacts, for a team.

The tracking server's backend store is the PostgreSQL cluster in <state>/postgres (initialised on
first use, listening on 127.0.0.1 only). Artifacts are proxied (`mlflow-artifacts:/` URIs): clients
upload and download through the tracking server and need no storage credentials. By default they
live on the server's own disk, in <state>/artifacts; `--artifacts s3://…` or `gs://…` puts them in the
team's bucket instead, with the credentials of the user who starts the server. <state>/dvc is the
team's self-hosted DVC remote, which teammates reach over SSH (`make remote`). Everything stays in the
state folder (git-ignored `.team/`), so runs, artifacts and DVC objects survive a restart. The process
runs in the foreground: Ctrl-C, SIGTERM or `python -m imgclf server-stop` stops all of it.

Beyond loopback it listens only with MLflow's basic-auth app and TLS (uvicorn's own, with the
certificate the user gives): passwords never cross the network in clear text. Secrets (the database
password, the admin password, the auth app's key) live in 0600 files there and reach the services
through their environment: never on a command line, in a log or in MLflow.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import ssl
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imgclf.errors import UserError, require_extra
from imgclf.team import LOOPBACK, POSTGRES_PORT, TRACKING_PORT, moved_store, processes
from imgclf.team.postgres import LocalPostgres

DATABASE = "mlflow"
AUTH_DATABASE = "mlflow_auth"
ADMIN = "admin"
BUCKET_SCHEMES = ("s3://", "gs://")
WORKER_HEALTHCHECK_S = 120  # seconds a uvicorn worker may take to answer its supervisor (it imports MLflow first)


@dataclass(frozen=True)
class Settings:
    """Where the server keeps its state, where it listens, and how it guards what it serves."""

    state: Path
    host: str = LOOPBACK
    port: int = TRACKING_PORT
    pg_port: int = POSTGRES_PORT
    artifacts: str | None = None  # None: <state>/artifacts on this disk; else the team's s3://… or gs://… bucket
    auth: bool = False
    tls_cert: Path | None = None  # PEM certificate (chain) for the server's name or address
    tls_key: Path | None = None  # its private key
    workers: int = 2

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def info_file(self) -> Path:
        """Endpoints and ports of the last start (kept after a stop: `make remote` reads it)."""
        return self.state / "server.json"

    @property
    def admin_password_file(self) -> Path:
        return self.state / "admin.password"

    @property
    def artifacts_dir(self) -> Path:
        return self.state / "artifacts"

    @property
    def dvc_store(self) -> Path:
        """The self-hosted DVC remote: a folder on the server's disk, reached over SSH by teammates."""
        return self.state / "dvc"

    @property
    def artifacts_destination(self) -> str:
        return self.artifacts or str(self.artifacts_dir)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(settings: Settings) -> None:
    """A clear, one-line refusal of settings that would expose runs or passwords, or cannot work."""
    require_extra("psycopg", "team", "server (PostgreSQL)")
    if settings.auth:
        require_extra("flask_wtf", "team", "server --auth (MLflow's basic-auth app)")
    if settings.artifacts is not None and settings.artifacts.startswith("s3://"):
        require_extra("boto3", "team", "server --artifacts s3://")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UserError("server: --tls-cert and --tls-key go together: the certificate and its private key")
    for name, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"server: {name} {path}: not found")
    if not is_loopback(settings.host) and not (settings.auth and settings.tls):
        missing = " and ".join(part for part, ok in (("--auth (AUTH=1)", settings.auth),
                                                     ("--tls-cert/--tls-key (TLS_CERT=, TLS_KEY=)", settings.tls))
                               if not ok)
        raise UserError(f"server: --host {settings.host} listens beyond this machine: add {missing}, so that only "
                        f"teammates with a password reach the runs and no password crosses the network in clear text")
    if settings.artifacts is not None and not settings.artifacts.startswith(BUCKET_SCHEMES):
        raise UserError(f"server: --artifacts {settings.artifacts}: must be s3://<bucket>/<path> or gs://<bucket>/<path> "
                        f"(leave it out for {settings.artifacts_dir} on this disk)")


def tracking_uri(settings: Settings) -> str:
    host = LOOPBACK if settings.host in ("0.0.0.0", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


def dvc_remote_url(settings: Settings) -> str:
    """What teammates' DVC reaches the server's DVC store by: SSH to the server's address, or (a server
    on loopback, this machine only) the folder itself."""
    if is_loopback(settings.host) or settings.host in ("0.0.0.0", "::"):
        return str(settings.dvc_store)
    return f"ssh://{settings.host}{settings.dvc_store}"


def serve(settings: Settings) -> None:
    """Start everything, print what to export, wait for Ctrl-C/SIGTERM (or a service dying), stop everything."""
    check(settings)
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
    print(f"server: stopped (runs, artifacts and DVC objects kept in {settings.state})", file=sys.stderr, flush=True)
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
    stopped = [processes.stop(name, settings.run_dir) for name in ("mlflow", "s3")]  # s3: an earlier version's
    postgres = LocalPostgres(state / "postgres", POSTGRES_PORT, state / "postgres.password")
    postgres.stop()
    return supervisor is not None or any(stopped)


def _start(settings: Settings, postgres: LocalPostgres):
    postgres.start([DATABASE] + ([AUTH_DATABASE] if settings.auth else []))
    settings.dvc_store.mkdir(parents=True, exist_ok=True)
    if settings.artifacts is None:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        moved = moved_store.migrate(settings.state, settings.artifacts_dir, settings.dvc_store)
        if moved:
            print(f"server: {moved}", flush=True)
    elif moved_store.pending(settings.state):
        print(f"server: {moved_store.pending(settings.state)}", flush=True)
    env = {"MLFLOW_BACKEND_STORE_URI": postgres.uri(DATABASE)}
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", settings.host,
               "--port", str(settings.port), "--workers", str(settings.workers),
               "--artifacts-destination", settings.artifacts_destination]
    # Beyond loopback, MLflow's own DNS-rebinding guard stays on: it admits localhost and private
    # addresses; a team reaching it by a public name sets MLFLOW_SERVER_ALLOWED_HOSTS.
    if settings.auth:
        env.update(_auth_env(settings, postgres))
        command += ["--app-name", "basic-auth"]
    # uvicorn kills a worker that has not answered its health check within 5 s, and importing MLflow on a busy
    # machine takes longer: workers were killed and restarted until the start timed out (seen in CI).
    uvicorn_opts = f"--timeout-worker-healthcheck {WORKER_HEALTHCHECK_S}"
    if settings.tls:
        uvicorn_opts += f" --ssl-certfile {Path(settings.tls_cert).resolve()} --ssl-keyfile {Path(settings.tls_key).resolve()}"
    command += ["--uvicorn-opts", uvicorn_opts]
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    child_env.update(env)
    tracking = processes.start("mlflow", command, settings.run_dir, child_env)
    processes.wait_until(_health(settings), f"the MLflow tracking server on port {settings.port}", tracking,
                         settings.run_dir / "mlflow.log", timeout_s=180)
    info = asdict(settings) | {"state": str(settings.state), "tracking_uri": tracking_uri(settings),
                               "artifacts_destination": settings.artifacts_destination,
                               "dvc_remote": dvc_remote_url(settings), "dvc_store": str(settings.dvc_store),
                               "tls_cert": str(Path(settings.tls_cert).resolve()) if settings.tls else None,
                               "tls_key": None}
    settings.info_file.write_text(json.dumps(info, indent=1) + "\n")
    return tracking


def _health(settings: Settings):
    """Whether /health answers 200: over TLS, trusting the server's own certificate (no password is sent)."""
    context = None
    if settings.tls:
        context = ssl.create_default_context(cafile=str(settings.tls_cert))
        context.check_hostname = False  # the certificate names the team's address; this probe may use loopback
    return processes.http_ok(f"{tracking_uri(settings)}/health", context)


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
    where = settings.artifacts or str(settings.artifacts_dir)
    lines = [f"server: MLflow tracking server on {uri} (PostgreSQL on 127.0.0.1:{settings.pg_port}, artifacts in "
             f"{where}, DVC store {settings.dvc_store})", "export MLFLOW_TRACKING_URI=" + uri]
    if settings.tls:
        lines.append(f"export MLFLOW_TRACKING_SERVER_CERT_PATH={Path(settings.tls_cert).resolve()}  "
                     f"# a certificate no public CA signed: teammates need this file")
    if settings.auth:
        lines += [f"export MLFLOW_TRACKING_USERNAME={ADMIN}",
                  f"export MLFLOW_TRACKING_PASSWORD=$(cat {settings.admin_password_file})"]
    lines.append(f"server: DVC remote for this project: make remote (here); on a teammate's machine: "
                 f"make remote URL={dvc_remote_url(settings)}")
    lines.append("server: Ctrl-C (or `make server-stop`) stops it")
    print("\n".join(lines), flush=True)


def _stop_services(settings: Settings, postgres: LocalPostgres) -> None:
    for name in ("mlflow",):
        processes.stop(name, settings.run_dir)
    postgres.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
