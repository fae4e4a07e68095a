"""A PostgreSQL cluster in a project folder: initialised on first use, started and stopped by pg_ctl.

PostgreSQL refuses to run as root, so as root every command runs as the `postgres` user that
Debian's package creates (`runuser`), in a folder that user owns. Password authentication
(scram-sha-256) on 127.0.0.1 only; the password is generated once and kept in a 0600 file.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from imgclf.errors import UserError
from imgclf.team import processes

SERVICE_USER = "postgres"
ROLE = "imgclf"


class LocalPostgres:
    """The cluster in <folder>/data, its log and socket in <folder>, listening on 127.0.0.1:<port>."""

    def __init__(self, folder: Path, port: int, password_file: Path):
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = port
        self.password_file = password_file

    def uri(self, database: str) -> str:
        """SQLAlchemy URI of a database (with the password: never print it, see store.display_uri)."""
        return f"postgresql+psycopg://{ROLE}:{self.password()}@127.0.0.1:{self.port}/{database}"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def start(self, databases: list[str]) -> None:
        """Initialise on first use, start (a no-op if it runs), create the databases that are missing."""
        if not (self.data / "PG_VERSION").exists():
            self._initialise()
        if self._pg_ctl("status").returncode != 0:
            started = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log),
                                   "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}")
            if started.returncode != 0:
                raise UserError(f"PostgreSQL did not start on 127.0.0.1:{self.port}: {processes.tail(self.log)}: "
                                f"see {self.log} (is the port taken? pass another --pg-port)")
        for database in databases:
            self._create_database(database)

    def stop(self) -> None:
        if (self.data / "PG_VERSION").exists() and self._pg_ctl("status").returncode == 0:
            self._pg_ctl("stop", "-m", "fast", "-w")

    def _initialise(self) -> None:
        if not self.password_file.exists():
            self.password_file.parent.mkdir(parents=True, exist_ok=True)
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        if os.geteuid() == 0:
            shutil.chown(self.folder, user=SERVICE_USER)
            if self._run(["test", "-w", str(self.folder)]).returncode != 0:
                raise UserError(
                    f"PostgreSQL runs as user {SERVICE_USER}, which cannot reach {self.folder} (a parent folder "
                    f"is not searchable by others, /root is 0700): pass --state <a folder it can reach>, "
                    f"e.g. /var/tmp/imgclf-team")
        given = self.folder / "initdb.password"  # initdb reads it as the service user; removed at once
        given.write_text(self.password() + "\n")
        if os.geteuid() == 0:
            shutil.chown(given, user=SERVICE_USER)
        try:
            result = self._run([_binary("initdb"), "-D", str(self.data), "-U", ROLE, f"--pwfile={given}",
                                "-A", "scram-sha-256", "-E", "UTF8", "--no-instructions"])
        finally:
            given.unlink(missing_ok=True)
        if result.returncode != 0:
            raise UserError(f"initdb failed in {self.data}: {(result.stderr or result.stdout).strip()[-300:]}")

    def _create_database(self, name: str) -> None:
        env = dict(os.environ, PGPASSWORD=self.password())
        exists = subprocess.run(
            [_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], env=env, capture_output=True, text=True)
        if exists.returncode != 0:
            raise UserError(f"PostgreSQL on 127.0.0.1:{self.port} refused a query: {exists.stderr.strip()[-300:]}")
        if exists.stdout.strip() != "1":
            subprocess.run([_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, name],
                           env=env, check=True, capture_output=True)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return self._run([_binary("pg_ctl"), "-D", str(self.data), *args])

    def _run(self, command: list[str]) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        try:
            return subprocess.run(command, capture_output=True, text=True, cwd="/")
        except FileNotFoundError as error:
            raise UserError(f"cannot run {error.filename}: install util-linux (runuser)") from None


def _binary(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise UserError(f"PostgreSQL's {name} is not installed: apt-get install postgresql (Debian), "
                        f"or pass --backend-store-uri of an existing database")
    return found

