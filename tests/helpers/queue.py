"""DVC's experiment queue on the tests' tiny project: the stages, params, waiting, one parent run per experiment."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from helpers.dvc_project import run

STAGES = ["download", "split", "perceptron"]
TINY = {"data.train_per_class": 20, "data.test_per_class": 5, "perceptron.steps": 5,
        "mlflow.log_model": False}


def wait_for_queue(project: Path, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if not any(word in status for word in ("Running", "Queued")):
            failed = [line.split()[0] for line in status.splitlines() if " Failed" in line]
            for task in failed:  # what went wrong, beside the status table, for the assertion's message
                logs = run(["dvc", "queue", "logs", task], project, check=False)
                status += f"\n--- dvc queue logs {task} (tail) ---\n{(logs.stdout + logs.stderr)[-4000:]}"
            return status
        time.sleep(5)
    raise TimeoutError(f"queue still busy after {timeout_s} s:\n{status}")


def assert_one_parent_per_experiment(client: MlflowClient, experiment_id: str, runs: list, names: list[str],
                                     stages: list[str], restorable: tuple[str, ...] = ()) -> None:
    """One parent run per DVC experiment, each with exactly its own stage runs beneath (none crossed)."""
    parents = client.search_runs([experiment_id], "tags.`imgclf.role` = 'pipeline'")
    assert sorted(p.info.run_name for p in parents) == sorted(f"pipeline {name}" for name in names)
    for parent in parents:
        children = [r for r in runs if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert {r.data.tags["dvc.exp_name"] for r in children} == {parent.data.tags["dvc.exp_name"]}
        ran = sorted(r.data.tags["dvc.stage"] for r in children)
        assert ran == sorted(stages) or (ran == sorted(set(stages) - set(restorable)) and restorable), ran
        assert parent.info.status == "FINISHED"
