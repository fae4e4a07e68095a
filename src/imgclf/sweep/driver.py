"""`python -m imgclf sweep`: expand the grid, run it, print one line per experiment and the table."""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

from imgclf import params as params_module
from imgclf.sweep import cluster, grid, local, outcome
from imgclf.tracking import store


def sweep(overrides: Sequence[str], prefix: str, jobs: int, ray: cluster.RaySettings | None = None) -> int:
    """Run the grid as DVC experiments, on this host with `jobs` queue workers or as tasks of the Ray
    cluster `ray`; print a line per finished experiment, then the table; the exit code."""
    experiment = params_module.load().mlflow.experiment
    template = cluster.job_template(experiment) if ray else None  # refuses before anything runs
    points = grid.points(overrides, prefix, taken=cluster.existing_names() if ray else local.existing_names())
    client = store.client(store.tracking_uri())
    outcomes: list[outcome.Outcome] = []
    started = time.monotonic()
    runnable = []
    for point in points:  # a bad point is reported, not queued; the others still run
        reason = grid.invalid(point)
        if reason:
            outcomes.append(outcome.Outcome(point, f"not run: {reason}"))
            print(outcomes[-1].line(), file=sys.stderr, flush=True)
        else:
            runnable.append(point)
    where = (f"on the Ray cluster at {ray.address} ({ray.num_cpus:g} CPU, {ray.num_gpus:g} GPU each)" if ray
             else f"on this host, {jobs} at a time")
    print(f"sweep: {len(runnable)} experiment(s) {where}: " + ", ".join(point.name for point in runnable),
          file=sys.stderr, flush=True)

    def finished(point: grid.Point, error: str | None) -> None:
        result = outcome.Outcome(point, error)
        try:  # the figures only: a store or `dvc exp show` that fails now must not end the whole sweep
            result.seconds = outcome.pipeline_seconds(client, experiment, point.name)
            if error is None:
                shown = json.loads(local.dvc("exp", "show", "--json", "--no-fetch", check=False).stdout or "[]")
                result.accuracy = outcome.accuracies(shown, point.name)
        except Exception as failure:  # noqa: BLE001 - MlflowException, JSONDecodeError, ...
            print(f"sweep: {point.name}: could not read its figures ({type(failure).__name__}: "
                  f"{str(failure).strip()[:200]})", file=sys.stderr, flush=True)
        outcomes.append(result)
        print(result.line(), file=sys.stderr, flush=True)

    if runnable and ray:
        cluster.run(runnable, ray, template, finished)
    elif runnable:
        local.run(runnable, jobs, finished)
    print(f"sweep: {len(outcomes)} experiment(s) in {time.monotonic() - started:.0f} s; "
          f"`dvc exp show` and `python -m imgclf compare --exp-name <name>` list them", file=sys.stderr)
    sys.stdout.write(outcome.table(outcomes))
    return outcome.exit_code(outcomes)
