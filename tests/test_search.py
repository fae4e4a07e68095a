"""`python -m imgclf search`: the space checked before anything runs; a real study of DVC experiments on the tiny
profile, pruned where the space is hopeless, killed and resumed without repeating or losing a trial."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from imgclf.errors import UserError
from imgclf.sweep import space, study, trial
from imgclf.sweep.trial import Pruned, Reporter

from helpers.dvc_project import make_project, project_env, run
from helpers.workspace import STAGE_RUNS


@pytest.mark.parametrize(("texts", "message"), [
    (["baseline.nope=uniform(0,1)"], "params.yaml has no key baseline.nope"),
    (["cnn.dropout=uniform(0.3,0.3)"], "the range is empty"),
    (["cnn.dropout=uniform(0,1.5)"], "1.5 is not a value cnn.dropout takes"),
    (["baseline.epochs=uniform(1,5)"], "is not a value baseline.epochs takes"),  # a float for an int key
    (["baseline.epochs=int(1.5,4)"], "int takes two whole numbers"),
    (["cnn.architecture=choice(simple_cnn,nope)"], "nope is not a value cnn.architecture takes"),
    (["baseline.learning_rate=loguniform(0,1)"], "loguniform needs 0 < low < high"),
    (["baseline.epochs=2,4"], "use baseline.epochs=choice(2,4)"),
    (["baseline.epochs=normal(2,4)"], "normal(...) is not a distribution"),
    (["cnn=choice(1,2)"], "cnn is a section"),
    (["baseline.epochs=3"], "every -S is a fixed value"),
    (["cnn.dropout=uniform(0,0.5)", "cnn.dropout=uniform(0,0.2)"], "given twice"),
])
def test_a_bad_space_is_one_line_naming_the_key(workspace, texts, message):
    with pytest.raises(UserError) as error:
        space.parse(texts)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_space_of_every_kind_and_its_overrides(workspace):
    dimensions = space.parse(["baseline.learning_rate=loguniform(1e-4,1e-2)", "cnn.dropout=uniform(0,0.5)",
                              "baseline.epochs=int(2,8)", "cnn.architecture=choice(simple_cnn,stn)",
                              "augmentation.horizontal_flip=choice(true,false)", "seed=7"])
    assert [d.kind for d in dimensions] == ["loguniform", "uniform", "int", "choice", "choice", "fixed"]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = {d.key: d.suggest(trial) for d in dimensions}
    assert 1e-4 <= values["baseline.learning_rate"] <= 1e-2 and values["baseline.epochs"] in range(2, 9)
    assert values["seed"] == 7 and "seed" not in trial.params  # fixed: not a dimension Optuna models
    assert space.override("cnn.architecture", "stn") == "cnn.architecture=stn"
    assert space.override("augmentation.horizontal_flip", False) == "augmentation.horizontal_flip=false"
    assert space.override("cnn.dropout", 0.25) == "cnn.dropout=0.25"
    assert space.override("baseline.learning_rate", 1e-07) == "baseline.learning_rate=1.0e-07"  # a number in YAML 1.1
    assert space.given("cnn.dropout=0.2 baseline.epochs=3", dimensions) == {"cnn.dropout": 0.2, "baseline.epochs": 3}
    for bad in ("cnn.dropout=0.9", "baseline.epochs=2.5", "seed=3", "nothing"):
        with pytest.raises(UserError):
            space.given(bad, dimensions)


def test_the_objective_and_its_direction():
    assert study.objective("baseline.accuracy", "auto") == study.Objective("baseline", "accuracy", "maximize")
    assert study.objective("top.loss", "auto").direction == "minimize"
    assert study.objective("top.loss", "maximize").direction == "maximize"
    assert study.objective("convnet.accuracy", "auto").monitor == "val_accuracy"
    for text in ("report.accuracy", "baseline", "baseline.per_class.0"):
        with pytest.raises(UserError, match="use <stage>.<metric>"):
            study.objective(text, "auto")


def test_the_hook_reports_each_epoch_and_stops_a_hopeless_trial(tmp_path):
    search = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s", direction="maximize",
                                 pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    done = search.ask()
    for epoch, value in enumerate([0.5, 0.7, 0.8], start=1):
        done.report(value, epoch)
    search.tell(done, 0.8)
    trial = search.ask()
    reporter = Reporter(trial, "baseline", "val_accuracy")
    reporter.epoch_end(1, {"val_accuracy": 0.6, "val_loss": 1.0})  # above the median at epoch 1: goes on
    reporter.epoch_end(2, {"loss": 3.0})  # no validation figure this epoch: nothing to report
    with pytest.raises(Pruned, match=r"baseline: pruned by the search at epoch 2 \(val_accuracy 0\.1000"):
        reporter.epoch_end(2, {"val_accuracy": 0.1})
    assert search.trials[1].intermediate_values == {1: 0.6, 2: 0.1}
    assert search.trials[1].user_attrs["pruned_at_epoch"] == 2


def test_a_stage_finds_its_trial_by_experiment_name_and_prunes_with_the_searchs_pruner(workspace, monkeypatch):
    url = f"sqlite:///{workspace / 'search.db'}"
    goal = study.objective("baseline.accuracy", "auto")
    made = study.open_study("s", url, goal, space.parse(["cnn.dropout=uniform(0,0.5)"]), 0, 4, ("median", 1))
    first = made.ask()
    first.report(0.9, 1)
    made.tell(first, 0.9)
    running = made.ask()
    running.set_user_attr("experiment", "s-1")
    monkeypatch.setenv(trial.ENV_STORAGE, url)
    monkeypatch.setenv(trial.ENV_STUDY, "s")
    monkeypatch.setenv("DVC_EXP_NAME", "s-1")
    assert trial.active("top") is None  # not the objective's stage
    reporter = trial.active("baseline")
    assert (reporter.trial.number, reporter.monitor) == (1, "val_accuracy")
    with pytest.raises(Pruned):  # one complete trial is enough here (prune-after 1), not load_study's default 5
        reporter.epoch_end(1, {"val_accuracy": 0.2})
    monkeypatch.setenv("DVC_EXP_NAME", "another")
    assert trial.active("baseline") is None
    monkeypatch.delenv(trial.ENV_STORAGE)
    assert trial.active("baseline") is None  # no search: no cost, no optuna


def test_the_command_line_refuses_a_bad_space_before_anything_runs(workspace):
    done = subprocess.run([sys.executable, "-m", "imgclf", "search", "-S", "baseline.epochs=uniform(1,5)",
                           "--objective", "baseline.accuracy"], cwd=workspace, capture_output=True, text=True,
                          env=project_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "imgclf: search -S baseline.epochs=uniform(1,5): 1.0 is not a value baseline.epochs takes "
        "(baseline.epochs = 1.0: must be an integer in [1, 10000])"]
    assert not (workspace / "search.db").exists()


STAGES = ["download", "split", "perceptron"]
# 180 training images in batches of 30: six steps an epoch, three epochs.
TINY = {"data.train_per_class": 20, "data.test_per_class": 5, "perceptron.steps": 18, "perceptron.batch_size": 30,
        "mlflow.log_model": False}
SPACE = ["-S", "perceptron.learning_rate=loguniform(1e-7,1)", "--objective", "perceptron.accuracy", "--name", "lr",
         "--trials", "6", "--jobs", "2", "--prune-after", "1",
         # Two good trials first, then two hopeless ones (a learning rate of 1e-7 leaves the weights at zero):
         # a hopeless one starts only once a good one has finished, so the pruner has a median to compare with.
         "--enqueue", "perceptron.learning_rate=0.5", "--enqueue", "perceptron.learning_rate=0.3",
         "--enqueue", "perceptron.learning_rate=1e-7", "--enqueue", "perceptron.learning_rate=2e-7"]


def finished_lines(text: str) -> list[str]:
    return re.findall(r"^search: trial (\d+) \((lr-\d+), .*\) (perceptron\.accuracy [0-9.]+|pruned at epoch \d)",
                      text, re.MULTILINE)


@pytest.mark.slow
def test_a_study_of_dvc_experiments_prunes_and_resumes_after_a_kill(tmp_path):
    project = make_project(tmp_path / "project", STAGES, TINY)
    run(["dvc", "repro", "split"], project)
    command = [sys.executable, "-m", "imgclf", "search", *SPACE]
    # Killed (SIGKILL: no cleanup) once two trials have finished; its DVC queue workers killed too, as a reboot would.
    driver = subprocess.Popen(command, cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 600
    while not (len(finished_lines(seen)) >= 2 and "search: trial 3 -> lr-3" in seen) and time.monotonic() < deadline:
        line = driver.stderr.readline()
        if not line:
            break
        seen += line
    assert len(finished_lines(seen)) == 2, seen
    time.sleep(3)  # trial 3 queued, or not yet: lost either way
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {trial.number: (trial.state, trial.value) for trial in load(project).trials}
    run(["dvc", "queue", "stop", "--kill"], project, check=False)
    deadline = time.monotonic() + 120
    while "Worker status: 0 active" not in run(["dvc", "queue", "status"], project).stdout:
        assert time.monotonic() < deadline, "the DVC queue's workers did not stop"
        time.sleep(2)
    lost = [n for n, (state, _) in before.items() if state == optuna.trial.TrialState.RUNNING]

    resumed = run(command, project)
    assert "search lr: resumed with 2 finished trial(s)" in resumed.stderr, resumed.stderr
    final = load(project)
    for number, (state, value) in before.items():  # what had finished is as it was
        if state != optuna.trial.TrialState.RUNNING:
            assert (final.trials[number].state, final.trials[number].value) == (state, value)
    counted = [t for t in final.trials if not t.user_attrs.get("error", "").startswith("lost")]
    assert len(counted) == 6 and all(t.state.is_finished() for t in final.trials)
    for number in lost:  # lost in the kill, or still in the queue and waited for: never both
        trial = final.trials[number]
        if trial.user_attrs.get("error", "").startswith("lost"):
            again = [t for t in final.trials if t.user_attrs.get("rerun_of") == number]
            assert len(again) == 1 and again[0].params == trial.params
    pruned = [t for t in final.trials if t.state == optuna.trial.TrialState.PRUNED]
    hopeless = [t for t in counted if t.params["perceptron.learning_rate"] < 1e-6]
    assert len(hopeless) == 2 and all(t in pruned for t in hopeless), resumed.stdout
    complete = [t for t in final.trials if t.state == optuna.trial.TrialState.COMPLETE]

    # Every complete trial is a DVC experiment with its value; every trial ran its stage once (nothing repeated).
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], project).stdout
    assert all(t.user_attrs["experiment"] in shown for t in complete)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image-classification")
    runs = [r for r in client.search_runs([experiment.experiment_id], STAGE_RUNS, max_results=1000)
            if r.data.tags["dvc.stage"] == "perceptron" and r.data.tags.get("dvc.exp_name", "").startswith("lr-")]
    finished = [r.data.tags["dvc.exp_name"] for r in runs if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(t.user_attrs["experiment"] for t in complete)
    for trial in complete:
        mine = next(r for r in runs if r.data.tags["dvc.exp_name"] == trial.user_attrs["experiment"]
                    and r.info.status == "FINISHED")
        assert mine.data.metrics["accuracy"] == pytest.approx(trial.value)
    assert {r.data.tags["dvc.exp_name"] for r in runs if r.info.status == "KILLED"} >= \
        {t.user_attrs["experiment"] for t in pruned}
    # The study's MLflow run: each trial's pipeline run beneath it, the table and figures on it.
    search_run = client.search_runs([experiment.experiment_id], "tags.`imgclf.role` = 'search'")
    assert len(search_run) == 1 and search_run[0].info.status == "FINISHED"
    parents = client.search_runs([experiment.experiment_id], "tags.`imgclf.role` = 'pipeline' and "
                                 "tags.`dvc.exp_name` LIKE 'lr-%'")
    assert len(parents) >= 6 and {p.data.tags["mlflow.parentRunId"] for p in parents} == {search_run[0].info.run_id}
    artifacts = {a.path for a in client.list_artifacts(search_run[0].info.run_id)}
    assert {"trials.csv", "trials.md", "history.png", "importances.png"} <= artifacts
    best = max(complete, key=lambda t: t.value)
    assert f"dvc exp apply {best.user_attrs['experiment']}" in resumed.stdout
    table = [line for line in resumed.stdout.splitlines() if line.startswith("| ") and "| trial |" not in line]
    assert table[0].startswith(f"| {best.number} | {best.user_attrs['experiment']} | complete |")
    assert (project / "reports" / "search" / "lr" / "history.png").stat().st_size > 0


def load(project: Path) -> optuna.Study:
    return optuna.load_study(study_name="lr", storage=f"sqlite:///{project / 'search.db'}")

