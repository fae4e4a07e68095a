"""What the MLflow UI compares: one parent run per pipeline execution, datasets, shared param names, descriptions."""

from __future__ import annotations

import csv
import hashlib
import json

from mlflow.tracking import MlflowClient

from imgclf import paths

from helpers.tracking_contract import EXPERIMENT, SMALL, run_stage
from helpers.workspace import STAGE_RUNS

PERCEPTRON = {**SMALL, "perceptron.steps": 5}


def all_runs(database) -> list:
    client = MlflowClient(f"sqlite:///{database}")
    return client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], max_results=1000)


def test_each_pipeline_has_one_parent_with_its_stage_runs_beneath(workspace, mlflow_store, write_params):
    write_params(PERCEPTRON)
    for pipeline in ("first", "second"):
        for stage in ("download", "split", "perceptron"):
            result = run_stage(stage, workspace, IMGCLF_PIPELINE_ID=pipeline, DVC_EXP_NAME=f"exp-{pipeline}")
            assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(mlflow_store)
    parents = [r for r in runs if r.data.tags.get("imgclf.role") == "pipeline"]
    assert sorted(r.info.run_name for r in parents) == ["pipeline exp-first", "pipeline exp-second"]
    assert {r.info.status for r in parents} == {"FINISHED"}
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["dvc.stage"] for r in children) == ["download", "perceptron", "split"]
        assert {r.data.tags["imgclf.pipeline_id"] for r in children} == {parent.data.tags["imgclf.pipeline_id"]}
        assert parent.data.tags["dvc.exp_name"] == "exp-" + parent.data.tags["imgclf.pipeline_id"]
        assert "dvc.stage" not in parent.data.tags
    assert len(runs) == 2 + 6  # nothing else: no parent per stage, no stray run


def test_a_failed_stage_leaves_its_pipeline_failed_until_a_stage_succeeds(workspace, mlflow_store, write_params):
    write_params(PERCEPTRON)
    assert run_stage("perceptron", workspace, IMGCLF_PIPELINE_ID="broken").returncode != 0  # no split yet
    (parent,) = [r for r in all_runs(mlflow_store) if r.data.tags.get("imgclf.role") == "pipeline"]
    assert parent.info.status == "FAILED"


def test_model_runs_log_their_datasets_shared_params_and_a_description(workspace, mlflow_store, write_params):
    write_params(PERCEPTRON)
    for stage in ("download", "split", "perceptron"):
        assert run_stage(stage, workspace, IMGCLF_PIPELINE_ID="p").returncode == 0
    client = MlflowClient(f"sqlite:///{mlflow_store}")
    (perceptron,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                       f"{STAGE_RUNS} and tags.`dvc.stage` = 'perceptron'")
    manifest = paths.MANIFEST.read_bytes()
    inputs = client.get_run(perceptron.info.run_id).inputs.dataset_inputs
    contexts = {tag.value for item in inputs for tag in item.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"train", "test"}
    assert sorted(item.dataset.name for item in inputs) == ["mnist-sample/test", "mnist-sample/train"]
    (digest,) = {item.dataset.digest for item in inputs}
    assert digest == hashlib.sha256(manifest).hexdigest()[:16]
    rows = list(csv.DictReader(manifest.decode().splitlines()))
    profile = json.loads(inputs[0].dataset.profile)
    assert profile["train"]["images"] == sum(row["split"] == "train" for row in rows) == 60
    assert sum(profile["test"]["classes"].values()) == profile["test"]["images"] == 20

    params = perceptron.data.params
    assert (params["learning_rate"], params["batch_size"], params["steps"]) == (
        params["perceptron.learning_rate"], params["perceptron.batch_size"], "5")
    assert (params["architecture"], params["optimizer"]) == ("perceptron", "sgd")
    note = perceptron.data.tags["mlflow.note.content"]
    assert note.startswith(f"perceptron, on mnist-sample ({hashlib.sha256(manifest).hexdigest()[:12]}), test accuracy ")
    assert f"{perceptron.data.metrics['accuracy']:.4f}" in note and "pipeline p" in note
