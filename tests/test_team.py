"""A team's setup, for real: PostgreSQL + the MLflow tracking server (artifacts proxied to its disk) started by the
project's own `python -m imgclf server`, the pipeline logging to it, its DVC store as the remote, migrate-store.
Across machines (network namespaces, SSH, HTTPS): tests/test_team_hosts.py."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import yaml
from mlflow.tracking import MlflowClient

from imgclf.pipeline.stages import MODEL_STAGES

from helpers.dvc_project import make_project, project_env, run
from helpers.queue import assert_one_parent_per_experiment, wait_for_queue
from helpers.team_server import TeamServer
from helpers.workspace import REPO, STAGE_RUNS

pytestmark = pytest.mark.slow
TINY = yaml.safe_load((REPO / "profiles" / "tiny.yaml").read_text())
ALL_STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def client_of(team: TeamServer) -> MlflowClient:
    return MlflowClient(team.uri)


def runs_in(team: TeamServer, experiment: str) -> list:
    client = client_of(team)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], STAGE_RUNS, max_results=1000) if found else []


@pytest.fixture(scope="module")
def pipeline(team, tmp_path_factory):
    """The whole pipeline (tiny profile) run once against the team server."""
    project = make_project(tmp_path_factory.mktemp("team") / "project", ALL_STAGES,
                           TINY | {"mlflow.experiment": "team-pipeline"})
    run(["dvc", "repro"], project, env=project_env(MLFLOW_TRACKING_URI=team.uri))
    return project


def test_every_stage_logs_to_the_server_and_models_land_on_its_disk(team, pipeline):
    runs = runs_in(team, "team-pipeline")
    assert sorted(r.data.tags["dvc.stage"] for r in runs) == sorted(ALL_STAGES)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["imgclf.pipeline_id"] for r in runs}) == 1
    client = client_of(team)
    keys = team.artifact_files()
    for r in runs:
        assert r.info.artifact_uri.startswith("mlflow-artifacts:/"), r.info.artifact_uri  # proxied, no S3 keys
        if r.data.tags["dvc.stage"] in MODEL_STAGES:
            assert 0 < r.data.metrics["accuracy"] <= 1
            model_id = r.data.tags["imgclf.classifier_model_id"]
            stored = [key for key in keys if f"/models/{model_id}/artifacts/" in key]
            assert any(key.endswith("model.keras") for key in stored), (model_id, keys[:20])
            assert client.get_logged_model(model_id).source_run_id == r.info.run_id
    champion = client.get_model_version_by_alias("imgclf", "champion")
    assert champion.run_id in {r.info.run_id for r in runs}
    # Nothing secret went to MLflow: no tag or param holds the database password.
    secrets = [(team.state / "postgres.password").read_text().strip()]
    logged = json.dumps([[r.data.tags, r.data.params] for r in runs])
    assert not any(secret in logged for secret in secrets)
    assert not any(secret in (team.state / "run" / "mlflow.log").read_text() for secret in secrets)


def test_push_then_pull_into_a_fresh_clone_gives_a_clean_workspace(team, pipeline, tmp_path):
    configured = run([sys.executable, "-m", "imgclf", "remote", "--state", str(team.state)], pipeline).stdout
    assert f"team = {team.state / 'dvc'} (default)" in configured
    run(["git", "add", "-A"], pipeline)  # dvc.lock, the outputs' .gitignore files, metrics, .dvc/config
    run(["git", "commit", "-qm", "pipeline results, team remote"], pipeline)
    run(["dvc", "push"], pipeline)
    assert any(key.startswith("files/md5/") for key in team.dvc_objects())

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(pipeline), str(clone)], tmp_path)
    assert not (clone / ".dvc" / "config.local").exists()  # a teammate's credentials are their own
    run([sys.executable, "-m", "imgclf", "remote", "--state", str(team.state)], clone)
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    output = run(["dvc", "repro"], clone, env=project_env(MLFLOW_TRACKING_URI=team.uri)).stdout
    assert "Running stage" not in output, output
    assert (clone / "reports" / "leaderboard.md").read_bytes() == (pipeline / "reports" / "leaderboard.md").read_bytes()


def test_migrate_store_copies_each_local_run_once(team, tmp_path):
    stages = ["download", "split", "perceptron"]
    project = make_project(tmp_path / "alone", stages, TINY | {"mlflow.experiment": "team-migrated"})
    run(["dvc", "repro"], project)  # the project's own SQLite store
    local = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    source = local.search_runs([local.get_experiment_by_name("team-migrated").experiment_id], STAGE_RUNS)
    assert len(source) == len(stages)

    migrate = [sys.executable, "-m", "imgclf", "migrate-store", "--to", team.uri]
    first = run(migrate, project).stdout
    assert f"{len(stages) + 1} run(s) copied" in first, first  # the stages and their pipeline's run
    second = run(migrate, project).stdout
    assert "0 run(s) copied" in second and f"{len(stages) + 1} already there" in second, second

    copies = runs_in(team, "team-migrated")
    assert sorted(r.data.tags["imgclf.migrated_from"] for r in copies) == sorted(r.info.run_id for r in source)
    server = client_of(team)
    for original in source:
        copy = next(r for r in copies if r.data.tags["imgclf.migrated_from"] == original.info.run_id)
        assert copy.data.params == original.data.params
        assert copy.data.metrics == original.data.metrics
        assert (copy.info.status, copy.info.start_time, copy.info.end_time) == (
            original.info.status, original.info.start_time, original.info.end_time)
        for key in original.data.metrics:
            steps = [(m.step, m.value) for m in local.get_metric_history(original.info.run_id, key)]
            assert sorted(steps) == sorted((m.step, m.value) for m in server.get_metric_history(copy.info.run_id, key))
        assert sorted(a.path for a in server.list_artifacts(copy.info.run_id)) == sorted(
            a.path for a in local.list_artifacts(original.info.run_id))
    perceptron = next(r for r in copies if r.data.tags["dvc.stage"] == "perceptron")
    model = server.get_logged_model(perceptron.data.tags["imgclf.classifier_model_id"])
    assert model.source_run_id == perceptron.info.run_id


def test_two_workers_two_queued_experiments_both_land_on_postgres(team, tmp_path):
    stages = ["download", "split", "perceptron"]
    project = make_project(tmp_path / "queued", stages, TINY | {"mlflow.experiment": "team-queue"})
    env = project_env(MLFLOW_TRACKING_URI=team.uri)
    names = [f"lr-{index}" for index in range(2)]  # 2 at once, each forced to run all 3 stages
    for index, name in enumerate(names):
        run(["dvc", "exp", "run", "--queue", "-f", "-n", name,
             "-S", f"perceptron.learning_rate={0.1 * (index + 1):.1f}"], project, env=env)
    run(["dvc", "queue", "start", "-j", "2"], project, env=env)
    status = wait_for_queue(project)
    assert "Failed" not in status, status
    runs = runs_in(team, "team-queue")
    assert len(runs) == len(names) * len(stages)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for name in names:
        assert sorted(r.data.tags["dvc.stage"] for r in runs if r.data.tags.get("dvc.exp_name") == name) == sorted(stages)
    experiment = client_of(team).get_experiment_by_name("team-queue").experiment_id
    assert_one_parent_per_experiment(client_of(team), experiment, runs, names, stages)


def test_server_killed_mid_stage_fails_fast_then_repro_completes_after_a_restart(team, tmp_path):
    stages = ["download", "split", "baseline"]
    project = make_project(tmp_path / "killed", stages,
                           TINY | {"mlflow.experiment": "team-killed", "baseline.epochs": 3})
    env = project_env(MLFLOW_TRACKING_URI=team.uri)
    repro = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not any(r.data.tags["dvc.stage"] == "baseline" and "train_loss" in r.data.metrics
                  for r in runs_in(team, "team-killed")):  # baseline is mid-training
        assert repro.poll() is None and time.monotonic() < deadline, repro.stdout.read()
        time.sleep(0.5)
    before = {r.data.tags["dvc.stage"]: r for r in runs_in(team, "team-killed")}
    os.killpg(team.pid("mlflow"), signal.SIGKILL)
    killed_at = time.monotonic()
    output, _ = repro.communicate(timeout=120)
    assert time.monotonic() - killed_at < 30
    assert repro.returncode != 0
    assert re.search(r"^imgclf: lost the MLflow tracking server at http://127\.0\.0\.1:\d+ during this stage", output,
                     re.MULTILINE), output[-3000:]
    assert "Traceback" not in output
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert "baseline" not in lock["stages"]  # nothing of the failed stage was committed
    team.process.wait(timeout=120)  # the supervisor saw its tracking server die and stopped the rest

    team.start()  # same state: PostgreSQL's runs and the artifacts on its disk are still there
    split = before["split"]
    assert client_of(team).get_run(split.info.run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client_of(team).list_artifacts(split.info.run_id))
    run(["dvc", "repro"], project, env=env)
    # baseline resumed from its checkpoint, in the run the lost server left open: one run, finished
    baselines = [r for r in runs_in(team, "team-killed") if r.data.tags["dvc.stage"] == "baseline"]
    assert [r.info.status for r in baselines] == ["FINISHED"]
    assert baselines[0].info.run_id == before["baseline"].info.run_id
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_basic_auth_server_refuses_a_wrong_password():
    server = TeamServer(auth=True)
    try:
        server.start()
        password = (server.state / "admin.password").read_text().strip()
        url = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"

        def status(user: str | None, secret: str | None) -> int:
            request = Request(url)
            if user is not None:
                request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())
            try:
                with urlopen(request, timeout=10) as answer:
                    return answer.status
            except HTTPError as error:
                return error.code

        assert status("admin", password + "x") == 401
        assert status(None, None) == 401
        assert status("admin", password) == 200
        assert password not in (server.state / "run" / "mlflow.log").read_text()
    finally:
        server.stop()
        server.remove()
