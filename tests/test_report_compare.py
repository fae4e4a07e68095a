"""Report and compare: the leaderboard from what DVC tracks, the runs behind it from MLflow, via dvc.lock."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from imgclf.pipeline import report
from imgclf.tracking import lineage, queries, runs, store

from helpers.workspace import stage_argv

EXPERIMENT = "image-classification"
ACCURACY = {"perceptron": 0.88, "baseline": 0.97, "augmented": 0.96, "top": 0.61, "finetune": 0.74}


def lock_entry(stage: str, version: int) -> dict:
    return {"cmd": f"python -m stages.{stage}",
            "deps": [{"path": f"stages/{stage}.py", "hash": "md5", "md5": f"{stage}-{version}"}],
            "params": {"params.yaml": {f"{stage}.epochs": version}}}


def stage_metrics(stage: str, accuracy: float) -> dict:
    """What a model stage writes to metrics/<stage>.json (the part the leaderboard reads)."""
    metrics = {"accuracy": accuracy, "f1_macro": accuracy - 0.01, "loss": 1 - accuracy,
               "trainable_params": 1000, "total_params": 2000, "epochs": 2, "model_size_bytes": 3_000_000}
    if stage in ("top", "finetune"):
        metrics |= {"backbone": "vgg16", "weights": "none"}
    return metrics


def log_stage_run(stage: str, version: int, pipeline: str, monkeypatch, accuracy: float) -> str:
    """A finished run as a stage would leave it, fingerprinted like dvc.lock version `version`."""
    monkeypatch.setenv("IMGCLF_PIPELINE_ID", pipeline)
    monkeypatch.setattr(lineage, "current_fingerprint", lambda name: lineage.fingerprint(lock_entry(name, version)))
    with runs.stage_run(stage, EXPERIMENT, {f"{stage}.epochs": version}) as run:
        run.log_history({"loss": [1.0, 0.5], "accuracy": [0.5, accuracy]})
        metrics = stage_metrics(stage, accuracy)
        run.log_metrics({key: value for key, value in metrics.items() if isinstance(value, float | int)}
                        | {"training_seconds": 12.5, "latency_ms_batch1": 7.25, "images_per_s_batch32": 987.0})
        if stage in ("top", "finetune"):
            run.set_tags({"backbone": "vgg16", "weights": "none"})
        return run.run_id


@pytest.fixture
def pipeline_runs(workspace, mlflow_store, monkeypatch):
    """Pipeline p1 ran every stage (version 1, its metrics files here); p2 re-ran top with another fingerprint."""
    ids = {stage: log_stage_run(stage, 1, "p1", monkeypatch, accuracy) for stage, accuracy in ACCURACY.items()}
    (workspace / "metrics").mkdir()
    for stage, accuracy in ACCURACY.items():
        (workspace / "metrics" / f"{stage}.json").write_text(json.dumps(stage_metrics(stage, accuracy)))
    newer_top = log_stage_run("top", 2, "p2", monkeypatch, 0.42)
    (workspace / "dvc.lock").write_text(yaml.safe_dump(
        {"schema": "2.0", "stages": {stage: lock_entry(stage, 1) for stage in ACCURACY}}))
    return ids, newer_top


def test_leaderboard_ranks_every_model_stage(pipeline_runs):
    frame = report.leaderboard(report.rows_from_files(), "accuracy")
    assert list(frame["stage"]) == sorted(ACCURACY, key=ACCURACY.get, reverse=True)
    assert list(frame["rank"]) == [1, 2, 3, 4, 5]
    top = frame.set_index("stage").loc["top"]
    assert top["accuracy"] == pytest.approx(0.61) and top["weights"] == "none" and top["model_size_mb"] == 3.0


def test_lock_resolves_a_restored_stage_to_the_run_that_produced_it(pipeline_runs):
    ids, newer_top = pipeline_runs
    client = store.client(store.tracking_uri())
    runs = queries.runs_from_lock(client, EXPERIMENT)
    # dvc.lock says top is at version 1 (restored from the run-cache): the older run, not the newest.
    assert runs["top"].info.run_id == ids["top"] != newer_top
    assert {stage: run.info.run_id for stage, run in runs.items()} == ids


def test_report_stage_writes_and_compare_prints_the_same_leaderboard(pipeline_runs, workspace):
    env_python = [sys.executable, "-m", "imgclf", "compare"]
    result = subprocess.run(stage_argv("report"),
                            capture_output=True, text=True, timeout=240, cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    markdown = (workspace / "reports" / "leaderboard.md").read_text()
    for stage in ACCURACY:
        assert f"| {stage} " in markdown
    assert "0.42" not in markdown  # the newer top run is not the one behind dvc.lock
    assert (workspace / "reports" / "leaderboard.png").stat().st_size > 5000
    from_lock = subprocess.run(env_python, capture_output=True, text=True, timeout=120, cwd=workspace)
    by_pipeline = subprocess.run(env_python + ["--pipeline-id", "p1"], capture_output=True, text=True,
                                 timeout=120, cwd=workspace)
    assert from_lock.returncode == 0 and by_pipeline.returncode == 0, from_lock.stderr + by_pipeline.stderr
    assert markdown == "# Leaderboard\n\n" + from_lock.stdout == "# Leaderboard\n\n" + by_pipeline.stdout
    csv = subprocess.run(env_python + ["--pipeline-id", "p1", "--format", "csv"], capture_output=True,
                         text=True, timeout=120, cwd=workspace)
    assert csv.stdout == (workspace / "reports" / "leaderboard.csv").read_text()
    assert "run_id" not in csv.stdout and "p1" not in markdown  # no run ids in DVC outputs
    assert "12.5" not in markdown  # nor timings
    runs_file = (workspace / "reports" / "runs.md").read_text()  # git-ignored, not a DVC output
    assert all(run_id in runs_file and run_id in result.stdout for run_id in pipeline_runs[0].values())
    assert "12.5" in runs_file and "http://127.0.0.1:5000/#/experiments/" in runs_file
    assert "7.2" in runs_file and "987" in runs_file and "latency_ms_batch1" in runs_file  # inference figures
    assert "7.2" not in markdown and "latency" not in markdown
    assert (workspace / "reports" / "accuracy_vs_latency.png").stat().st_size > 5000
    # These runs logged no served classifier: nothing to register, and the report says so.
    assert "report: not registered: the best stage, baseline, logged no classifier" in result.stdout


def test_report_without_the_runs_still_writes_the_whole_leaderboard(pipeline_runs, workspace):
    subprocess.run(stage_argv("report"), capture_output=True, text=True, timeout=240, cwd=workspace, check=True)
    before = (workspace / "reports" / "leaderboard.csv").read_text()
    (workspace / "mlflow.db").unlink()  # a teammate's empty store
    result = subprocess.run(stage_argv("report"), capture_output=True, text=True, timeout=240, cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workspace / "reports" / "leaderboard.csv").read_text() == before
    line = [line for line in result.stdout.splitlines() if line.startswith("report: no MLflow run in")]
    assert len(line) == 1 and all(stage in line[0] for stage in ACCURACY)
    compare = subprocess.run([sys.executable, "-m", "imgclf", "compare", "--with-ids"], capture_output=True,
                             text=True, timeout=120, cwd=workspace)
    assert compare.returncode == 0 and "report: no MLflow run in" in compare.stderr
    assert all(f"| {stage} " in compare.stdout for stage in ACCURACY)


def test_compare_without_a_reachable_server_prints_the_table_and_says_why(pipeline_runs, workspace):
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens there
    result = subprocess.run([sys.executable, "-m", "imgclf", "compare"], capture_output=True, text=True,
                            timeout=120, cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert all(f"| {stage} " in result.stdout for stage in ACCURACY)
    assert result.stderr.startswith("imgclf: cannot reach the MLflow tracking server at http://127.0.0.1:9")


def test_compare_says_what_is_wrong_when_nothing_matches(pipeline_runs, workspace):
    result = subprocess.run([sys.executable, "-m", "imgclf", "compare", "--pipeline-id", "nope"],
                            capture_output=True, text=True, timeout=120, cwd=workspace)
    assert result.returncode == 2
    assert result.stderr.startswith("imgclf: no finished model-stage runs for pipeline nope")
    assert len(result.stderr.strip().splitlines()) == 1


def test_render_csv_round_trips(pipeline_runs):
    frame = report.leaderboard(report.rows_from_files(), "loss")
    parsed = pd.read_csv(io.StringIO(report.render(frame, "csv")))
    assert list(parsed["stage"])[0] == "baseline"  # lowest loss first
