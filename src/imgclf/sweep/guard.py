"""`python -m imgclf.sweep.guard PARENT_PID COMMAND...`: run COMMAND; when PARENT_PID dies, kill all of it.

A Ray task runs `dvc exp run` as a subprocess, and DVC runs each stage as its own. When the Ray worker
dies (its node killed, the task cancelled), Ray SIGKILLs the worker's direct children, but nothing stops
their children: an orphaned stage would go on training and logging to the shared MLflow store while Ray
retries the experiment elsewhere. So there are three processes between the worker and COMMAND:

- this one, the worker's direct child (Ray may SIGKILL it; it also dies with the worker, PR_SET_PDEATHSIG);
- the guard proper, forked from it into a session of its own, which Linux sends SIGTERM when this one
  dies (PR_SET_PDEATHSIG; and it checks its parent every second besides);
- COMMAND, in a session (process group) of its own, with DVC's stage processes in it: the guard kills
  that whole group, then exits.

The exit code is COMMAND's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def _die_with_parent(parent: int, signum: int) -> None:
    """Have Linux send `signum` to this process when its parent goes; exit now if it already went."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os._exit(128 + signum)


def _guard(command: list[str], parent: int) -> int:
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def end(signum: int, _frame: object) -> None:
        if child is None:  # inside Popen, or just out of it: the group may exist already, so end it after
            pending.append(signum)
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, end)  # before the command starts: no moment where a SIGTERM orphans it
    signal.signal(signal.SIGINT, end)
    _die_with_parent(parent, signal.SIGTERM)
    child = subprocess.Popen(command, start_new_session=True)
    if pending:
        end(pending[0], None)
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                end(signal.SIGTERM, None)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m imgclf.sweep.guard PARENT_PID COMMAND...", file=sys.stderr)
        return 2
    _die_with_parent(int(argv[0]), signal.SIGKILL)
    me = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the guard proper
        os.setsid()
        try:
            code = _guard(argv[1:], me)
        except BaseException as error:  # noqa: BLE001 - a child of fork() must never return into the caller's code
            print(f"imgclf: guard: cannot run {argv[1]}: {error}", file=sys.stderr, flush=True)
            code = 127
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
