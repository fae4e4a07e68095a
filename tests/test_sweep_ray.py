"""`sweep --ray` on a real 2-node Ray cluster of this machine, with the team's server (PostgreSQL + S3 +
MLflow), a bare git repository as the git remote and the S3 bucket as the DVC remote. One node's raylet
is SIGKILLed while it runs an experiment: Ray reruns it on the other node, and the sweep still ends with
each experiment exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from helpers.dvc_project import make_project, project_env, run
from helpers.queue import STAGES, TINY
from helpers.ray_cluster import RayCluster
from helpers.team_server import TeamServer
from helpers.workspace import STAGE_RUNS

pytestmark = pytest.mark.slow
EXPERIMENT = "ray-sweep"


@pytest.fixture(scope="module")
def cluster():
    ray = RayCluster()
    try:
        ray.start()
        yield ray
    finally:
        ray.stop()


def pushed_project(root: Path, team: TeamServer) -> Path:
    """The queue tests' tiny project, reproduced once, its outputs pushed to the team's bucket (the default
    DVC remote) and its dvc.lock to a bare git repository, as a team's project stands before a sweep."""
    project = make_project(root / "project", STAGES, TINY | {"mlflow.experiment": EXPERIMENT})
    run(["git", "init", "-q", "--bare", str(root / "origin.git")], root)
    run(["git", "remote", "add", "origin", str(root / "origin.git")], project)
    run([sys.executable, "-m", "imgclf", "remote", "--state", str(team.state)], project)
    run(["dvc", "repro"], project, env=project_env(MLFLOW_TRACKING_URI=team.uri))
    run(["dvc", "push"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline results, team DVC remote"], project)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project)
    return project


def node_experiments(raylet: int) -> list[psutil.Process]:
    """The stage processes (`python -m stages.<name>`) running under one node's raylet."""
    try:
        tree = psutil.Process(raylet).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [process for process in tree if "stages." in " ".join(_cmdline(process))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_a_ray_sweep_survives_a_killed_node_and_lands_each_experiment_once(team, cluster, tmp_path):
    project = pushed_project(tmp_path, team)
    env = cluster.env | {"MLFLOW_TRACKING_URI": team.uri}
    names = [f"lr-{index}" for index in range(1, 5)]
    sweep = subprocess.Popen([sys.executable, "-m", "imgclf", "sweep", "-S", "perceptron.learning_rate=0.1,0.2,0.3,0.4",
                              "--name", "lr", "--ray", cluster.address, "--max-retries", "2"],
                             cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until the second node runs a stage of one experiment, then kill that node's raylet.
    deadline = time.monotonic() + 600
    while not (running := node_experiments(cluster.raylets[1])):
        assert sweep.poll() is None and time.monotonic() < deadline, "no stage ever ran on the second node"
        time.sleep(0.2)
    orphans = [process for process in psutil.Process(cluster.raylets[1]).children(recursive=True)]
    os.kill(cluster.raylets[1], signal.SIGKILL)
    out, err = sweep.communicate(timeout=1200)
    assert sweep.returncode == 0, err[-4000:]

    # The guard took the killed node's experiment down with it: no stage kept training as an orphan.
    time.sleep(2)
    assert not [process for process in orphans if process.is_running() and process.status() != psutil.STATUS_ZOMBIE
                and "stages." in " ".join(_cmdline(process))], [_cmdline(process) for process in running]

    finished = re.findall(r"^sweep: (lr-\d) \(perceptron\.learning_rate=0\.\d\) done in \d+ s: "
                          r"best perceptron accuracy (0\.\d{4})$", err, re.MULTILINE)
    assert sorted(name for name, _ in finished) == names, err
    assert len(out.splitlines()) == 2 + len(names), out
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], project).stdout
    for name in names:  # pulled from the git remote: listed here, each once
        assert len(re.findall(rf"^{name},", shown, re.MULTILINE)) == 1, shown
    listed = run(["dvc", "exp", "list", "origin", "--name-only"], project).stdout.split()
    assert sorted(listed) == names

    client = MlflowClient(team.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], STAGE_RUNS, max_results=1000)
    assert "RUNNING" not in {r.info.status for r in runs}  # the killed attempt's runs were marked KILLED
    for name in names:
        mine = [r for r in runs if r.data.tags.get("dvc.exp_name") == name and r.info.status == "FINISHED"]
        # only what the override changes ran, once: download and split's outputs came from the DVC remote
        assert [r.data.tags["dvc.stage"] for r in mine] == ["perceptron"], name
        perceptron = next(r for r in mine if r.data.tags["dvc.stage"] == "perceptron")
        assert f"{perceptron.data.metrics['accuracy']:.4f}" == dict(finished)[name]

    # A task that fails is reported with its own error, not retried; nothing is pushed for it.
    failed = run([sys.executable, "-m", "imgclf", "sweep", "-S", "data.source=cifar10", "--name", "offline",
                  "--ray", cluster.address], project, env=env, check=False)
    assert failed.returncode == 1, failed.stderr
    assert re.search(r"^sweep: offline-1 \(data\.source=cifar10\) FAILED.*imgclf: cifar10 needs cifar-10-python\.tar\.gz",
                     failed.stderr, re.MULTILINE), failed.stderr
    assert "offline-1" not in run(["dvc", "exp", "list", "origin", "--name-only"], project).stdout
