"""Tracking faults: a killed stage leaves no RUNNING run, an unreachable server fails fast, a real server works."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from helpers.dvc_project import make_project, project_env, run
from helpers.servers import free_port, wait_until_up
from helpers.workspace import STAGE_RUNS, stage_argv

HOLD_RUN_OPEN = """
import sys, time
from imgclf.tracking import runs
with runs.stage_run("baseline", "faults", {"seed": 1}) as run:
    print(run.run_id, flush=True)
    time.sleep(600)
"""


def runs_of(database: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{database}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], STAGE_RUNS) if found else []


def start_holder(workspace: Path) -> tuple[subprocess.Popen, str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_OPEN], cwd=workspace, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    run_id = holder.stdout.readline().strip()
    assert run_id, "the stage never opened its run"
    return holder, run_id


def test_sigkill_leaves_running_run_that_the_next_stage_marks_killed(workspace, mlflow_store):
    holder, run_id = start_holder(workspace)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    client = MlflowClient(f"sqlite:///{mlflow_store}")
    assert client.get_run(run_id).info.status == "RUNNING"  # nothing could close it
    from imgclf.tracking import runs

    with runs.stage_run("perceptron", "faults", {}):
        pass
    stale = client.get_run(run_id)
    assert stale.info.status == "KILLED"
    assert "ended without closing the run" in stale.data.tags["imgclf.end_reason"]


def test_sigterm_marks_the_run_killed_at_once(workspace, mlflow_store):
    holder, run_id = start_holder(workspace)
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=60)
    run_info = MlflowClient(f"sqlite:///{mlflow_store}").get_run(run_id)
    assert run_info.info.status == "KILLED"
    assert "interrupted" in run_info.data.tags["imgclf.end_reason"]


def test_unreachable_tracking_server_fails_fast_with_one_line(workspace, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    result = subprocess.run(stage_argv("download"), cwd=workspace,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"imgclf: cannot reach the MLflow tracking server at http://127.0.0.1:{port}")
    assert elapsed < 30
    assert not (workspace / "data").exists()  # stopped before doing any work


def test_stage_logs_to_a_real_mlflow_server_over_http(workspace, monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{workspace / 'server.db'}",
         "--artifacts-destination", (workspace / "server-artifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(url, server)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("IMGCLF_PIPELINE_ID", "over-http")
        result = subprocess.run(stage_argv("download"), cwd=workspace,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("image-classification")
        (only,) = client.search_runs([experiment.experiment_id], STAGE_RUNS)
        assert only.info.run_name == "download" and only.info.status == "FINISHED"
        assert only.data.tags["imgclf.pipeline_id"] == "over-http"
        assert only.data.params["data.source"] == "mnist-sample"
        assert not (workspace / "mlflow.db").exists()  # nothing went to the default store
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_midway_then_dvc_repro_completes_without_stale_runs(tmp_path):
    project = make_project(tmp_path / "project", ["download", "split"], {})
    run(["dvc", "repro", "download"], project)
    repro = subprocess.Popen(["dvc", "repro", "split"], cwd=project, env=project_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage_process = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and stage_process is None:
        for child in psutil.Process(repro.pid).children(recursive=True):
            if "stages.split" in " ".join(child.cmdline()):
                stage_process = child
        time.sleep(0.1)
    assert stage_process is not None, "the split stage never started"
    while time.monotonic() < deadline and not list((project / "data").glob(".split.tmp-*")):
        time.sleep(0.05)  # kill it while it is writing images, its run open
    stage_process.send_signal(signal.SIGKILL)
    assert repro.wait(timeout=120) != 0
    run(["dvc", "repro"], project)
    assert "up to date" in run(["dvc", "status"], project).stdout
    assert (project / "data" / "split" / "manifest.csv").exists()
    assert not list((project / "data").glob(".split.tmp-*"))
    runs = runs_of(project / "mlflow.db", "image-classification")
    splits = sorted(r.info.status for r in runs if r.data.tags["dvc.stage"] == "split")
    assert splits == ["FINISHED", "KILLED"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
