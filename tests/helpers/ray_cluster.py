"""A 2-node Ray cluster on this machine for tests and benchmarks: one CPU per node, token auth."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import psutil

from helpers.dvc_project import VENV_BIN, project_env, run
from helpers.servers import free_port


class RayCluster:
    """`ray start --head` and a second `ray start --address` on this machine, one CPU each, token auth."""

    def __init__(self):
        self.temp = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's unix socket paths must fit 107 bytes
        self.port = free_port()
        self.env = project_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                               RAY_USAGE_STATS_ENABLED="0")
        self.raylets: list[int] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ray(self, *args: str) -> None:
        run([str(VENV_BIN / "ray"), "start", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
             f"--temp-dir={self.temp}", "--node-ip-address=127.0.0.1", *args], self.temp, env=self.env, timeout=180)
        self.raylets.append(next(p.pid for p in self._processes() if p.name() == "raylet" and p.pid not in self.raylets))

    def start(self) -> None:
        self._ray("--head", f"--port={self.port}", "--include-dashboard=false",
                  f"--ray-client-server-port={free_port()}")
        self._ray(f"--address={self.address}")

    def _processes(self) -> list[psutil.Process]:
        mine = []
        for process in psutil.process_iter(["cmdline"]):
            if str(self.temp) in " ".join(process.info["cmdline"] or []):
                mine.append(process)
        return mine

    def stop(self) -> None:
        """SIGKILL what this cluster started (not `ray stop`: that stops every Ray on the machine)."""
        doomed = []
        for process in self._processes():
            try:
                doomed += [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for process in doomed:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)
