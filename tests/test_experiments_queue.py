"""DVC experiments: queued runs with -j 2 all land, complete, in the workspace's MLflow store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import STAGE_RUNS
from dvc_project import make_project, run

STAGES = ["download", "split", "perceptron"]
TINY = {"data.train_per_class": 20, "data.test_per_class": 5, "perceptron.steps": 5,
        "mlflow.log_model": False}


def wait_for_queue(project: Path, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if not any(word in status for word in ("Running", "Queued")):
            return status
        time.sleep(5)
    raise TimeoutError(f"queue still busy after {timeout_s} s:\n{status}")


@pytest.mark.slow
def test_four_queued_experiments_two_workers_land_complete_in_one_store(tmp_path):
    project = make_project(tmp_path / "project", STAGES, TINY)
    names = [f"lr-{index}" for index in range(4)]
    for index, name in enumerate(names):
        run(["dvc", "exp", "run", "--queue", "-f", "-n", name,
             "-S", f"perceptron.learning_rate={0.1 * (index + 1):.1f}"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    status = wait_for_queue(project)
    assert "Failed" not in status, status + run(["dvc", "queue", "logs", names[0]], project, check=False).stdout

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image-classification")
    runs = client.search_runs([experiment.experiment_id], STAGE_RUNS, max_results=1000)
    assert len(runs) == len(names) * len(STAGES)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for name in names:
        mine = [r for r in runs if r.data.tags.get("dvc.exp_name") == name]
        assert sorted(r.data.tags["dvc.stage"] for r in mine) == sorted(STAGES)
        assert len({r.data.tags["imgclf.pipeline_id"] for r in mine}) == 1
        perceptron = next(r for r in mine if r.data.tags["dvc.stage"] == "perceptron")
        assert "accuracy" in perceptron.data.metrics
    pipeline_ids = {r.data.tags["imgclf.pipeline_id"] for r in runs}
    assert len(pipeline_ids) == len(names)
    assert_one_parent_per_experiment(client, experiment.experiment_id, runs, names, STAGES)


def assert_one_parent_per_experiment(client: MlflowClient, experiment_id: str, runs: list, names: list[str],
                                     stages: list[str]) -> None:
    """One parent run per DVC experiment, each with exactly its own stage runs beneath (none crossed)."""
    parents = client.search_runs([experiment_id], "tags.`imgclf.role` = 'pipeline'")
    assert sorted(p.info.run_name for p in parents) == sorted(f"pipeline {name}" for name in names)
    for parent in parents:
        children = [r for r in runs if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert {r.data.tags["dvc.exp_name"] for r in children} == {parent.data.tags["dvc.exp_name"]}
        assert sorted(r.data.tags["dvc.stage"] for r in children) == sorted(stages)
        assert parent.info.status == "FINISHED"
