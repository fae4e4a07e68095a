"""Real DVC in a temp git repo: download + split reproduce, stay up to date, and track to one store.

The repo is a copy of this project's dvc.yaml (download and split only), params.yaml, stages/ and
src/, with PYTHONPATH=src so the stages run the copied code (as DVC's deps say they do).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from imgclf.params import set_dotted

from helpers.workspace import REPO, STAGE_RUNS

STAGES = ("download", "split")
EXPERIMENT = "dvc-pipeline-test"


def make_repo(root: Path, store_template: Path) -> Path:
    """A git + DVC repo holding the download and split stages of this project, committed."""
    repo = root / "project"
    repo.mkdir()
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline["stages"] = {name: pipeline["stages"][name] for name in STAGES}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in {"data.train_per_class": 20, "data.test_per_class": 5,
                       "mlflow.experiment": EXPERIMENT}.items():
        set_dotted(raw, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (repo / "stages").mkdir()
    for name in ["__init__", *STAGES]:
        shutil.copy(REPO / "stages" / f"{name}.py", repo / "stages")
    shutil.copytree(REPO / "src" / "imgclf", repo / "src" / "imgclf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    shutil.copytree(REPO / "images", repo / "images")  # data.path's default: a dependency of download
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    shutil.copy(store_template, repo / "mlflow.db")  # migrated and empty: saves seconds per stage
    return repo


def environment(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DVC_", "MLFLOW_", "IMGCLF_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH="src",  # relative: each workspace (main or DVC temp copy) runs its own code
        DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(root / "dvc-site-cache"),
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


def run(repo: Path, env: dict[str, str], *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(command), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def runs(repo: Path) -> list:
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return sorted(client.search_runs([experiment.experiment_id], STAGE_RUNS), key=lambda item: item.info.start_time)


@pytest.fixture
def dvc_repo(tmp_path: Path, mlflow_store_template: Path) -> tuple[Path, dict[str, str]]:
    repo = make_repo(tmp_path, mlflow_store_template)
    env = environment(tmp_path)
    run(repo, env, "git", "init", "-q")
    run(repo, env, "dvc", "init", "-q")
    run(repo, env, "git", "add", "-A")
    run(repo, env, "git", "commit", "-q", "-m", "pipeline")
    return repo, env


@pytest.mark.slow
def test_repro_status_skip_and_experiments(dvc_repo) -> None:
    repo, env = dvc_repo
    first = run(repo, env, "dvc", "repro")
    for name in STAGES:
        assert f"Running stage '{name}'" in first.stdout, first.stdout
    assert "split: " in first.stdout  # the stage's own summary line
    status = run(repo, env, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    second = run(repo, env, "dvc", "repro")
    for name in STAGES:
        assert f"Stage '{name}' didn't change, skipping" in second.stdout, second.stdout
    assert "Running stage" not in second.stdout

    # One MLflow run per executed stage, both from one repro: one pipeline id.
    repro_runs = runs(repo)
    assert [item.info.run_name for item in repro_runs] == list(STAGES)
    assert all(item.info.status == "FINISHED" for item in repro_runs)
    assert len({item.data.tags["imgclf.pipeline_id"] for item in repro_runs}) == 1
    assert all("dvc.exp_name" not in item.data.tags for item in repro_runs)

    # A temp experiment runs in .dvc/tmp/exps/... and still lands in this store, with its name.
    run(repo, env, "git", "add", "-A")
    run(repo, env, "git", "commit", "-q", "-m", "lock")
    experiment = run(repo, env, "dvc", "exp", "run", "--temp", "-S", "data.train_per_class=10")
    names = run(repo, env, "dvc", "exp", "list", "--name-only").stdout.split()
    assert len(names) == 1, names
    exp_runs = runs(repo)[len(repro_runs):]
    assert [item.info.run_name for item in exp_runs] == ["split"], experiment.stdout  # download unchanged
    (exp_split,) = exp_runs
    assert exp_split.info.status == "FINISHED"
    assert exp_split.data.tags["dvc.exp_name"] == names[0]
    assert exp_split.data.params["data.train_per_class"] == "10"
    assert exp_split.data.tags["imgclf.pipeline_id"] != repro_runs[0].data.tags["imgclf.pipeline_id"]
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))
    # The main workspace is untouched by the temp experiment.
    assert "train_per_class: 20" in (repo / "params.yaml").read_text()

    # An invalid -S value fails through the same validation, one line, no traceback.
    failed = run(repo, env, "dvc", "exp", "run", "-S", "data.train_per_class=-1", check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "imgclf: params.yaml: data.train_per_class = -1: must be an integer >= 1 or all\n" in output, output
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_second_repro_while_one_runs_stops_with_dvcs_lock_message(dvc_repo) -> None:
    repo, env = dvc_repo
    log = repo.parent / "first.log"
    with open(log, "w") as output:
        first = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while "Running stage 'download'" not in log.read_text() and time.monotonic() < deadline:
            assert first.poll() is None, log.read_text()
            time.sleep(0.2)
        second = run(repo, env, "dvc", "repro", check=False)
        assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    message = second.stdout + second.stderr
    # DVC 3 holds a read/write lock on each stage's outputs while it runs: the second repro is refused.
    assert second.returncode != 0 and "is busy, it is being blocked by" in message, message
    assert "Running stage" not in message
    assert "Data and pipelines are up to date." in run(repo, env, "dvc", "status").stdout
    assert [item.info.run_name for item in runs(repo)] == list(STAGES)  # the second ran nothing
