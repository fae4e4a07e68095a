"""The model registry: one version per distinct winning run, `champion` following the winner."""

from __future__ import annotations

import os

import pytest
from mlflow.tracking import MlflowClient

from imgclf import cli
from imgclf.errors import UserError
from imgclf.tracking import registry

NAME = "imgclf-test"


def stage_run(client: MlflowClient, stage: str):
    (run,) = client.search_runs(["1"], f"tags.`dvc.stage` = '{stage}'")
    return run


def test_champion_follows_the_winner_with_one_version_per_run(tiny_training, run_stage_script, mlflow_store, capsys):
    tiny_training({"mlflow.log_model": True})
    run_stage_script("perceptron")
    run_stage_script("baseline")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    perceptron, baseline = stage_run(client, "perceptron"), stage_run(client, "baseline")

    first = registry.register_champion(client, uri, NAME, baseline)
    again = registry.register_champion(client, uri, NAME, baseline)  # same winner: no new version
    assert (first.version, first.created, again.version, again.created) == ("1", True, "1", False)
    moved = registry.register_champion(client, uri, NAME, perceptron)  # the winner changes: champion moves
    assert (moved.version, moved.created) == ("2", True)
    assert client.get_model_version_by_alias(NAME, registry.ALIAS).run_id == perceptron.info.run_id
    back = registry.register_champion(client, uri, NAME, baseline)  # back to a known winner: its version
    assert (back.version, back.created) == ("1", False)
    assert str(client.get_model_version_by_alias(NAME, registry.ALIAS).version) == "1"
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2

    version = client.get_model_version(NAME, "1")
    assert version.tags["stage"] == "baseline" and version.tags["git_commit"]
    assert version.tags["pipeline_id"] == baseline.data.tags["imgclf.pipeline_id"]
    assert float(version.tags["test_accuracy"]) == pytest.approx(baseline.data.metrics["accuracy"], abs=1e-4)
    assert "test_f1_macro" in version.tags and "data_hash" in version.tags

    # --model best loads the champion from the registry and classifies with it.
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        cli.main(["predict", "data/split/test/a", "--model", f"models:/{NAME}@champion", "--format", "csv"])
    captured = capsys.readouterr()
    assert ended.value.code == 0, captured.err
    assert captured.out.startswith("path,label,probability\n") and len(captured.out.splitlines()) == 7


def test_a_winner_without_a_logged_classifier_is_a_clear_error(tiny_training, run_stage_script, mlflow_store):
    tiny_training({"mlflow.log_model": False})
    run_stage_script("perceptron")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    with pytest.raises(UserError, match="logged no classifier .* set mlflow.log_model: true"):
        registry.register_champion(client, uri, NAME, stage_run(client, "perceptron"))


def test_serve_without_a_champion_says_how_to_make_one(workspace, mlflow_store, capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(["serve", "--port", "5999"])
    assert ended.value.code == 2
    assert "no registered model 'imgclf' with alias 'champion'" in capsys.readouterr().err
