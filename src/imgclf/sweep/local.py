"""A sweep on this host: every point queued as a DVC experiment, run by DVC's queue workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Sequence

from imgclf.errors import UserError
from imgclf.sweep.grid import Point
from imgclf.sweep.outcome import error_line

POLL_S = 3.0
ACTIVE = ("Queued", "Running")


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """This environment's `dvc` (beside the running Python, even when its bin is not on PATH)."""
    command = [os.path.join(os.path.dirname(sys.executable), "dvc"), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"dvc {' '.join(args[:3])}: {detail[-1] if detail else f'exit code {done.returncode}'}")
    return done


def existing_names() -> frozenset[str]:
    """The experiments this repository already has (earlier sweeps), so new names do not collide."""
    listing = dvc("exp", "list", "--all-commits", "--name-only", check=False)
    return frozenset(line.strip() for line in listing.stdout.splitlines() if line.strip() and ":" not in line)


def queue(points: Sequence[Point]) -> None:
    """`dvc exp run --queue -n <name> -S ... [targets]` for each point (DVC copies the workspace into each)."""
    for point in points:
        arguments = [argument for override in point.overrides for argument in ("-S", override)]
        dvc("exp", "run", "--queue", "-n", point.name, *arguments, *point.targets)


def queue_states() -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed} from `dvc queue status`."""
    states = {}
    for line in dvc("queue", "status").stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[-1] in (*ACTIVE, "Success", "Failed"):
            states[fields[1]] = fields[-1]
    return states


def failure(name: str) -> str:
    """The last meaningful line of a failed experiment's log (the stage's `imgclf: ...` line if any)."""
    return error_line(dvc("queue", "logs", name, check=False).stdout)


class Queue:
    """This host's DVC queue as a sweep or a search uses it: experiments in, those that ended out."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.pending: dict[str, Point] = {}

    def capacity(self) -> int:
        """How many experiments run at once: the workers."""
        return self.jobs

    def submit(self, points: Sequence[Point]) -> None:
        """Queue the points and make sure `jobs` workers run (DVC starts only the missing ones)."""
        queue(points)
        self.adopt(points)

    def adopt(self, points: Sequence[Point]) -> None:
        """Wait for points in the queue (a resumed search's: queued before its workers were stopped)."""
        self.pending.update({point.name: point for point in points})
        dvc("queue", "start", "-j", str(self.jobs))

    def wait(self) -> list[tuple[Point, str | None]]:
        """Block until one or more pending experiments end: [(point, error or None)]."""
        while self.pending:
            time.sleep(POLL_S)
            states = queue_states()
            ended = [(self.pending.pop(name), failure(name) if states[name] == "Failed" else None)
                     for name in [name for name in self.pending if states.get(name) in ("Success", "Failed")]]
            if not ended and not any(states.get(name) in ACTIVE for name in self.pending):
                # gone from the queue without an outcome (removed by hand?)
                ended = [(point, "left the DVC queue without finishing (dvc queue status)") for point in self.pending.values()]
                self.pending = {}
            if ended:
                return ended
        return []


def run(points: Sequence[Point], jobs: int, finished: Callable[[Point, str | None], None]) -> None:
    """Queue the points, start `jobs` workers, and call `finished(point, error or None)` as each ends."""
    runner = Queue(jobs)
    runner.submit(points)
    while runner.pending:
        for point, error in runner.wait():
            finished(point, error)
