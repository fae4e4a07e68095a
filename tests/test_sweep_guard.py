"""The guard a Ray task runs each experiment under: when the task's worker dies, the whole command dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

# A stand-in for the Ray worker: it starts the guard over a command with a child of its own (as dvc runs
# a stage), prints the pids, then waits.
WORKER = """
import os, subprocess, sys, time
guard = subprocess.Popen([sys.executable, "-m", "imgclf.sweep.guard", str(os.getpid()),
                          "sh", "-c", "sleep 300 & echo $$ $!; wait"], stdout=subprocess.PIPE, text=True)
print(guard.pid, guard.stdout.readline().strip(), flush=True)
time.sleep(300)
"""


def gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("ray_kills_children", [False, True])
def test_the_command_and_its_children_die_with_the_worker(ray_kills_children):
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    launcher, shell, sleeper = map(int, worker.stdout.readline().split())
    assert psutil.Process(sleeper).is_running()
    if ray_kills_children:  # what Ray does to a dead worker's direct children
        os.kill(launcher, signal.SIGKILL)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert gone(shell) and gone(sleeper)


def test_the_exit_code_is_the_commands():
    done = subprocess.run([sys.executable, "-m", "imgclf.sweep.guard", str(os.getpid()), "sh", "-c", "echo hi; exit 3"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "hi\n")
    killed = subprocess.run([sys.executable, "-m", "imgclf.sweep.guard", str(os.getpid()), "sh", "-c", "kill -9 $$"],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == 137  # as a shell says it: 128 + SIGKILL
    missing = subprocess.run([sys.executable, "-m", "imgclf.sweep.guard", str(os.getpid()), "/no/such/dvc", "exp"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 127 and "imgclf: guard: cannot run /no/such/dvc" in missing.stderr
    usage = subprocess.run([sys.executable, "-m", "imgclf.sweep.guard", "sh"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr
