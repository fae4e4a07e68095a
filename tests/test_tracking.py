"""The tracking contract, observed from outside: run the real stage scripts, read the MLflow store.

One run per stage execution, named after the stage, in experiment `mlflow.experiment`, with the
tags dvc.stage, git.commit, git.dirty, imgclf.pipeline_id, dvc.exp_name (in a DVC experiment),
imgclf.data_hash (once a split manifest exists) and the stage's params flattened. Nothing
run-specific goes into DVC-tracked outputs. The default store is SQLite at the main workspace.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient

from imgclf import paths
from imgclf.tracking import store, tags

from helpers.tracking_contract import EXPERIMENT, SMALL, run_stage
from helpers.workspace import STAGE_RUNS


def runs_in(database: Path, experiment: str = EXPERIMENT) -> list:
    client = MlflowClient(f"sqlite:///{database}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {database}"
    return sorted(client.search_runs([found.experiment_id], STAGE_RUNS), key=lambda run: run.info.start_time)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_one_run_per_stage_with_the_contract_tags(workspace, mlflow_store, write_params) -> None:
    write_params(SMALL)
    git(workspace, "init", "-q")
    git(workspace, "add", "params.yaml")
    git(workspace, "commit", "-q", "-m", "params")
    commit = git(workspace, "rev-parse", "HEAD")
    env = {"IMGCLF_PIPELINE_ID": "pipeline-under-test", "DVC_EXP_NAME": "exp-under-test"}
    for name in ("download", "split"):
        result = run_stage(name, workspace, **env)
        assert result.returncode == 0, result.stderr[-3000:]

    runs = runs_in(mlflow_store)
    assert [run.info.run_name for run in runs] == ["download", "split"]
    manifest_hash = hashlib.sha256(paths.MANIFEST.read_bytes()).hexdigest()
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["dvc.stage"] == run.info.run_name
        assert tags["git.commit"] == commit and tags["git.dirty"] == "false"
        assert tags["imgclf.pipeline_id"] == "pipeline-under-test"
        assert tags["dvc.exp_name"] == "exp-under-test"
    download, split_run = runs
    assert "imgclf.data_hash" not in download.data.tags  # nothing to hash before the split
    assert split_run.data.tags["imgclf.data_hash"] == manifest_hash
    # The stage's params, resolved and flattened; download reads data only, split seed + data.
    assert download.data.params["data.source"] == "mnist-sample"
    assert "seed" not in download.data.params
    assert split_run.data.params["seed"] == "42"
    assert split_run.data.params["data.train_per_class"] == "6"
    assert split_run.data.params["data.archive"] == "null"
    assert split_run.data.metrics["images_train"] == 60 and split_run.data.metrics["skipped"] == 0


def test_dirty_flag_and_unset_experiment_name(workspace, mlflow_store, write_params, raw_mnist_sample) -> None:
    write_params(SMALL)
    git(workspace, "init", "-q")
    git(workspace, "add", "params.yaml")
    git(workspace, "commit", "-q", "-m", "params")
    write_params({**SMALL, "seed": 3})  # a tracked file changed: the run says so
    result = run_stage("split", workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_in(mlflow_store)
    assert run.data.tags["git.dirty"] == "true"
    assert "dvc.exp_name" not in run.data.tags
    assert run.data.params["seed"] == "3"


def test_separate_processes_get_separate_pipeline_ids_and_identical_outputs(
        workspace, mlflow_store, write_params, raw_mnist_sample) -> None:
    write_params(SMALL)
    outputs = []
    for _ in range(2):
        result = run_stage("split", workspace)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append((paths.MANIFEST.read_bytes(), paths.metrics_file("split").read_bytes()))
    first, second = runs_in(mlflow_store)
    assert first.data.tags["imgclf.pipeline_id"] != second.data.tags["imgclf.pipeline_id"]
    # Both runs hash the manifest they produced (the second one replaced an identical one).
    assert first.data.tags["imgclf.data_hash"] == second.data.tags["imgclf.data_hash"]
    # DVC-tracked outputs carry nothing run-specific: byte-identical, no run id, no clock time.
    assert outputs[0] == outputs[1]
    text = b"".join(outputs[0]).decode()
    for run in (first, second):
        assert run.info.run_id not in text
    assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", text)
    assert not re.search(r"\b1[6-9]\d{8}(\.\d+)?\b", text)  # no epoch timestamps either


def test_split_hash_tag_is_the_new_manifest_even_over_an_old_split(
        workspace, mlflow_store, write_params, raw_mnist_sample) -> None:
    """Re-running split over an earlier split: its data hash is that of what it wrote, not the old one."""
    write_params(SMALL)
    assert run_stage("split", workspace).returncode == 0
    old_hash = hashlib.sha256(paths.MANIFEST.read_bytes()).hexdigest()
    write_params({**SMALL, "seed": 99})
    assert run_stage("split", workspace).returncode == 0
    new_hash = hashlib.sha256(paths.MANIFEST.read_bytes()).hexdigest()
    assert new_hash != old_hash
    assert [run.data.tags["imgclf.data_hash"] for run in runs_in(mlflow_store)] == [old_hash, new_hash]


def test_pipeline_id_from_the_dvc_experiment(monkeypatch) -> None:
    monkeypatch.delenv("IMGCLF_PIPELINE_ID", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "sunny-dial")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    same = tags.pipeline_id()
    assert same == tags.pipeline_id()
    monkeypatch.setenv("DVC_EXP_NAME", "rainy-knob")
    assert tags.pipeline_id() != same
    monkeypatch.setenv("IMGCLF_PIPELINE_ID", "explicit")
    assert tags.pipeline_id() == "explicit"


def test_failed_stage_is_a_failed_run_with_its_reason(workspace, mlflow_store, write_params,
                                                      raw_mnist_sample) -> None:
    write_params({**SMALL, "data.train_per_class": 480, "data.test_per_class": 100})
    result = run_stage("split", workspace)
    assert result.returncode == 2
    (run,) = runs_in(mlflow_store)
    assert run.info.status == "FAILED"
    assert run.data.tags["imgclf.end_reason"].startswith("imgclf: class '0' has 500 usable images")


# --- where the store is -------------------------------------------------------------------


def test_default_store_is_sqlite_at_the_workspace(workspace, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert store.tracking_uri() == f"sqlite:///{workspace.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(workspace / "main"))
    assert store.tracking_uri() == f"sqlite:///{(workspace / 'main').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert store.tracking_uri() == "sqlite:////elsewhere/x.db"


def test_stage_without_tracking_uri_uses_the_workspace_store_and_artifacts(
        workspace, write_params, raw_mnist_sample, mlflow_store_template) -> None:
    import shutil

    write_params(SMALL)
    shutil.copy(mlflow_store_template, workspace / "mlflow.db")  # a migrated, empty store: faster
    result = run_stage("split", workspace, MLFLOW_TRACKING_URI=None)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_in(workspace / "mlflow.db")
    experiment = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (workspace / "mlartifacts").resolve().as_uri()
    logged = {path.name for path in (workspace / "mlartifacts").rglob("*") if path.is_file()}
    assert {"manifest.csv", "split.json"} <= logged


def test_dvc_root_sends_runs_to_the_main_workspace(workspace, write_params, raw_mnist_sample,
                                                   mlflow_store_template, tmp_path_factory) -> None:
    """What `dvc exp run --temp` does: the stage runs in a copy, DVC_ROOT names the main workspace."""
    import shutil

    write_params(SMALL)
    main = tmp_path_factory.mktemp("main-workspace")
    shutil.copy(mlflow_store_template, main / "mlflow.db")
    result = run_stage("split", workspace, MLFLOW_TRACKING_URI=None, DVC_ROOT=str(main),
                       DVC_EXP_NAME="temp-exp")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_in(main / "mlflow.db")
    assert run.data.tags["dvc.exp_name"] == "temp-exp"
    assert not (workspace / "mlflow.db").exists() and not (workspace / "mlartifacts").exists()
    assert any((main / "mlartifacts").rglob("manifest.csv"))
