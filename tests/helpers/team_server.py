"""The team's server for tests: `python -m imgclf server` (PostgreSQL + MLflow, artifacts on its disk) on free ports."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers.dvc_project import project_env, run
from helpers.servers import free_port, wait_until_up


class TeamServer:
    """`python -m imgclf server` on free ports, its state in a folder the postgres user can reach."""

    def __init__(self, auth: bool = False):
        # pytest's tmp_path sits under a 0700 folder: PostgreSQL's own user could not enter it.
        self.state = Path(tempfile.mkdtemp(prefix="imgclf-team-")) / ".team"
        self.state.parent.chmod(0o755)
        self.port, self.pg_port = free_port(), free_port()
        self.auth = auth
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "imgclf", "server", "--state", str(self.state), "--port", str(self.port),
                   "--pg-port", str(self.pg_port)] + (["--auth"] if self.auth else [])
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, env=project_env(), cwd=self.state.parent)
        wait_until_up(self.uri, self.process, timeout_s=240)

    def stop(self) -> None:
        run([sys.executable, "-m", "imgclf", "server-stop", "--state", str(self.state)], self.state.parent)
        if self.process is not None:
            self.process.wait(timeout=60)

    def pid(self, service: str) -> int:
        return int((self.state / "run" / f"{service}.pid").read_text())

    def artifact_files(self) -> list[str]:
        """The artifacts the server holds, as paths under <state>/artifacts."""
        root = self.state / "artifacts"
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())

    def dvc_objects(self) -> list[str]:
        """The DVC objects in the server's DVC store."""
        root = self.state / "dvc"
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())

    def remove(self) -> None:
        shutil.rmtree(self.state.parent, ignore_errors=True)
