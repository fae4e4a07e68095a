"""DVC experiments: queued runs with -j 2 all land, complete, in the workspace's MLflow store."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers.dvc_project import make_project, run
from helpers.queue import STAGES, TINY, assert_one_parent_per_experiment
from helpers.workspace import STAGE_RUNS


def sweep(project: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "imgclf", "sweep", *args], project, check=check)


@pytest.mark.slow
def test_a_sweep_of_four_experiments_on_two_workers_lands_complete_in_one_store(tmp_path):
    project = make_project(tmp_path / "project", STAGES, TINY)
    done = sweep(project, "-S", "perceptron.learning_rate=0.1,0.2,0.3,0.4", "--jobs", "2", "--name", "lr")
    names = [f"lr-{index}" for index in range(1, 5)]
    finished = re.findall(r"^sweep: (lr-\d) \(perceptron\.learning_rate=0\.\d\) done in \d+ s: "
                          r"best perceptron accuracy (0\.\d{4})$", done.stderr, re.MULTILINE)
    assert sorted(name for name, _ in finished) == names, done.stderr
    table = done.stdout.splitlines()
    assert table[0] == "| experiment | overrides | best stage | accuracy | seconds |" and len(table) == 2 + len(names)
    accuracies = [float(row.split("|")[4]) for row in table[2:]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], project).stdout
    assert all(name in shown for name in names), shown

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image-classification")
    runs = client.search_runs([experiment.experiment_id], STAGE_RUNS, max_results=1000)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for name in names:
        mine = [r for r in runs if r.data.tags.get("dvc.exp_name") == name]
        # download and split are the same in every point: a later experiment restores them from DVC's
        # run-cache (no new MLflow run), the first ones to start ran them.
        assert sorted(r.data.tags["dvc.stage"] for r in mine) in (sorted(STAGES), ["perceptron"])
        assert len({r.data.tags["imgclf.pipeline_id"] for r in mine}) == 1
        perceptron = next(r for r in mine if r.data.tags["dvc.stage"] == "perceptron")
        accuracy = dict(finished)[name]
        assert f"{perceptron.data.metrics['accuracy']:.4f}" == accuracy
    assert len({r.data.tags["imgclf.pipeline_id"] for r in runs}) == len(names)
    assert_one_parent_per_experiment(client, experiment.experiment_id, runs, names, STAGES,
                                     restorable=("download", "split"))

    # A second sweep: a bad value and a failing stage (no network for cifar10) are reported by name;
    # the good point still runs.
    mixed = sweep(project, "-S", "data.source=mnist-sample,cifar10", "-S", "perceptron.steps=4,0",
                  "--jobs", "2", "--name", "mix", check=False)
    assert mixed.returncode == 1, mixed.stderr
    lines = {line.split()[1]: line for line in mixed.stderr.splitlines() if line.startswith("sweep: mix-")}
    assert sorted(lines) == ["mix-1", "mix-2", "mix-3", "mix-4"], mixed.stderr
    assert " done in " in lines["mix-1"]
    for invalid in ("mix-2", "mix-4"):
        assert "FAILED: not run: params.yaml: perceptron.steps = 0: must be an integer" in lines[invalid]
    # offline: the download stage's own line
    assert re.search(r"\) FAILED in \d+ s: imgclf: cifar10 needs cifar-10-python\.tar\.gz", lines["mix-3"]), lines["mix-3"]
    assert "Traceback" not in mixed.stderr
