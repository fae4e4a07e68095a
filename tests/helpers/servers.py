"""Real servers in tests: a free loopback port, a process in its own session, waiting until it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from urllib.request import urlopen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """The server in its own process group (setsid), output captured; stop it with `stop`."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)


def wait_until_up(url: str, server: subprocess.Popen, path: str = "/health", timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stdout.read()[-3000:]}")
        try:
            with urlopen(url + path, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"server not up at {url} after {timeout_s} s")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn workers included), SIGKILL if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
