"""migrate-store between two real stores (SQLite here; the slow team test does SQLite -> tracking server)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from imgclf.tracking import migrate

from helpers.workspace import STAGE_RUNS


@pytest.fixture
def stores(tmp_path):
    source_uri = f"sqlite:///{tmp_path / 'alone.db'}"
    target_uri = f"sqlite:///{tmp_path / 'team.db'}"
    source = MlflowClient(source_uri)
    experiment = source.create_experiment("exp", artifact_location=(tmp_path / "alone-artifacts").as_uri())
    parent = source.create_run(experiment, run_name="pipeline p", tags={"imgclf.role": "pipeline"})
    source.set_terminated(parent.info.run_id, status="FINISHED")
    for index in range(2):
        run = source.create_run(experiment, run_name=f"stage-{index}",
                                tags={"dvc.stage": f"stage-{index}", "mlflow.parentRunId": parent.info.run_id})
        source.log_batch(run.info.run_id, params=[mlflow.entities.Param("lr", str(0.1 * (index + 1)))],
                         metrics=[Metric("val_loss", 1.0 / step, 1_000 + step, step) for step in range(1, 4)])
        note = tmp_path / f"note-{index}.txt"
        note.write_text(f"run {index}\n")
        source.log_artifact(run.info.run_id, str(note), "notes")
        model = source.create_logged_model(experiment, name="classifier", source_run_id=run.info.run_id)
        (tmp_path / f"model-{index}").mkdir()
        (tmp_path / f"model-{index}" / "MLmodel").write_text("flavors: {}\n")
        source.log_model_artifacts(model.model_id, str(tmp_path / f"model-{index}"))
        source.finalize_logged_model(model.model_id, status="READY")
        source.set_tag(run.info.run_id, "imgclf.classifier_model_id", model.model_id)
        source.set_terminated(run.info.run_id, status="FINISHED" if index == 0 else "FAILED")
    return source_uri, target_uri


def test_runs_are_copied_whole_and_only_once(stores, tmp_path):
    source_uri, target_uri = stores
    first = migrate.migrate(source_uri, target_uri)
    assert (first.copied, first.skipped, first.metric_points, first.models) == (3, 0, 6, 2)
    second = migrate.migrate(source_uri, target_uri)
    assert (second.copied, second.skipped) == (0, 3)

    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    originals = source.search_runs([source.get_experiment_by_name("exp").experiment_id], STAGE_RUNS)
    copies = target.search_runs([target.get_experiment_by_name("exp").experiment_id], STAGE_RUNS)
    assert len(copies) == 2
    (parent,) = target.search_runs([target.get_experiment_by_name("exp").experiment_id], "tags.`imgclf.role` = 'pipeline'")
    assert {copy.data.tags["mlflow.parentRunId"] for copy in copies} == {parent.info.run_id}  # nested as before
    for original in originals:
        copy = next(r for r in copies if r.data.tags[migrate.TAG_FROM] == original.info.run_id)
        assert copy.info.run_name == original.info.run_name
        assert (copy.info.status, copy.info.start_time, copy.info.end_time) == (
            original.info.status, original.info.start_time, original.info.end_time)
        assert copy.data.params == original.data.params
        assert [(m.step, m.value, m.timestamp) for m in target.get_metric_history(copy.info.run_id, "val_loss")] == \
            [(m.step, m.value, m.timestamp) for m in source.get_metric_history(original.info.run_id, "val_loss")]
        downloaded = target.download_artifacts(copy.info.run_id, "notes", str(tmp_path / copy.info.run_id))
        assert sorted(p.name for p in Path(downloaded).iterdir()) == [
            f"note-{original.data.tags['dvc.stage'][-1]}.txt"]
        model = target.get_logged_model(copy.data.tags["imgclf.classifier_model_id"])  # re-pointed to the copy
        assert model.source_run_id == copy.info.run_id and model.name == "classifier"


def test_an_interrupted_copy_is_deleted_and_redone(stores):
    source_uri, target_uri = stores
    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    original = source.search_runs([source.get_experiment_by_name("exp").experiment_id])[0]
    experiment = target.create_experiment("exp")
    half = target.create_run(experiment, tags={migrate.TAG_COPYING: original.info.run_id})  # cut short
    summary = migrate.migrate(source_uri, target_uri)
    assert (summary.copied, summary.redone) == (3, 1)
    assert target.get_run(half.info.run_id).info.lifecycle_stage == "deleted"
    live = target.search_runs([experiment])
    assert sorted(r.data.tags[migrate.TAG_FROM] for r in live) == sorted(
        r.info.run_id for r in source.search_runs([source.get_experiment_by_name("exp").experiment_id]))
    assert len(live) == 3
