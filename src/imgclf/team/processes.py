"""The team services' processes: started in their own session, recorded by pid file, stopped by pid."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable
from urllib.request import urlopen

import psutil

from imgclf.errors import UserError


def start(name: str, command: list[str], run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `command` in its own session, output to <run_dir>/<name>.log, pid in <run_dir>/<name>.pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    (run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
    return process


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not: it waited out server-stop's 90 s)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recorded_pid(name: str, run_dir: Path) -> int | None:
    """The pid of a recorded process that is still alive, else None."""
    try:
        pid = int((run_dir / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop(name: str, run_dir: Path, timeout_s: float = 30) -> bool:
    """SIGTERM to the recorded process group, SIGKILL if it lingers; True if something was running."""
    pid = recorded_pid(name, run_dir)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                return True
            try:  # our own child: reap it, or it stays a zombie that looks alive
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
    return True


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen | None, log: Path,
               timeout_s: float = 120) -> None:
    """Poll `ready` until it is true; a clear error with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UserError(f"{what} exited with code {process.returncode}: {tail(log)}: see {log}")
        if ready():
            return
        time.sleep(0.3)
    raise UserError(f"{what} did not come up within {timeout_s:.0f} s: {tail(log)}: see {log}")


def http_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """Whether `url` answers 200 (over TLS with `context`, when given)."""
    def ready() -> bool:
        try:
            with urlopen(url, timeout=2, context=context) as answer:
                return answer.status == 200
        except OSError:
            return False
    return ready


def tail(log: Path) -> str:
    """The log's last error line (an exception's message), else its last line."""
    try:
        text = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    errors = [line for line in text if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or text or ["(empty log)"])[-1][:400]
