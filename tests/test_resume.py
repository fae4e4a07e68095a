"""Training that survives being killed: SIGKILL a stage at chosen moments, run it again, and find the bytes of
an uninterrupted run and one FINISHED MLflow run per execution with its whole history.

The moments come from imgclf.training.checkpoint's test hook (IMGCLF_TEST_KILL): just before a training step
(mid-epoch, or the first step after a checkpoint) or halfway through writing a checkpoint file. The stages
run as processes, as dvc.yaml runs them, on tiny generated images.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from mlflow.tracking import MlflowClient

from imgclf import paths
from imgclf.training import checkpoint

from helpers.workspace import REPO, STAGE_RUNS, TINY_TRAINING, stage_argv

# 3 classes x 12 train images, 0.2 held out -> 29 training images: 4 batches of 8 per epoch.
STEPS_PER_EPOCH = 4
RESUMABLE = {
    "baseline.epochs": 3,
    "convnet.steps": 12,
    "convnet.batch_size": 8,
    "convnet.dense_units": 16,
    "convnet.filters": [4, 8],
    "convnet.test_summary_steps": 0,
}


def run_stage(workspace: Path, stage: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(checkpoint.TEST_KILL, None)
    if kill:
        env[checkpoint.TEST_KILL] = kill
    return subprocess.run(stage_argv(stage), cwd=workspace, env=env, capture_output=True, text=True, timeout=600)


def outputs(workspace: Path, stage: str) -> dict[str, str]:
    """sha256 of every file the stage's dvc.yaml outs, metrics and plots hold."""
    found = {}
    for root in (workspace / paths.model_dir(stage), workspace / paths.PLOTS / stage):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[path.relative_to(workspace).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    metrics = workspace / paths.METRICS / f"{stage}.json"
    found[metrics.relative_to(workspace).as_posix()] = hashlib.sha256(metrics.read_bytes()).hexdigest()
    return found


def clear_outputs(workspace: Path, stage: str) -> None:
    """What `dvc repro` does before running a stage: its outputs removed."""
    shutil.rmtree(workspace / paths.model_dir(stage), ignore_errors=True)
    shutil.rmtree(workspace / paths.PLOTS / stage, ignore_errors=True)
    (workspace / paths.METRICS / f"{stage}.json").unlink(missing_ok=True)


def stage_runs(workspace: Path, stage: str) -> list[Any]:
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"{STAGE_RUNS} and tags.`dvc.stage` = '{stage}'")


def history_steps(workspace: Path, run_id: str, key: str) -> list[int]:
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def kill_and_resume(workspace: Path, stage: str, kill: str) -> str:
    """Run the stage killed at `kill`, then again to the end: the second run's output."""
    clear_outputs(workspace, stage)
    killed = run_stage(workspace, stage, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert (workspace / paths.CHECKPOINTS / f"{stage}.npz").is_file()
    resumed = run_stage(workspace, stage)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not (workspace / paths.CHECKPOINTS / f"{stage}.npz").exists(), "removed when the stage completes"
    assert not list((workspace / paths.CHECKPOINTS).glob(".*")), "no temp file left behind"
    return resumed.stdout


@pytest.fixture
def resumable(tiny_training: Callable[..., Any]) -> Callable[..., Any]:
    def setup(overrides: dict[str, Any] | None = None) -> Any:
        return tiny_training(RESUMABLE | (overrides or {}))

    return setup


def test_baseline_killed_mid_epoch_during_a_save_and_after_one_resumes_to_the_same_bytes(workspace, resumable):
    resumable()
    reference = run_stage(workspace, "baseline")
    assert reference.returncode == 0, reference.stderr
    expected = outputs(workspace, "baseline")
    assert not (workspace / paths.CHECKPOINTS / "baseline.npz").exists()
    moments = {
        f"step:{STEPS_PER_EPOCH + 2}": "resuming at epoch 2 of 3",  # mid-epoch 2: epoch 1's checkpoint
        "save:3": "resuming at epoch 2 of 3",  # halfway through epoch 2's save: epoch 1's is whole
        f"step:{2 * STEPS_PER_EPOCH + 1}": "resuming at epoch 3 of 3",  # right after epoch 2's save
    }
    for kill, line in moments.items():
        said = kill_and_resume(workspace, "baseline", kill)
        assert f"baseline: {line}" in said, (kill, said)
        assert outputs(workspace, "baseline") == expected, kill
    runs = stage_runs(workspace, "baseline")
    assert len(runs) == 1 + len(moments), "one run per execution, resumed runs included"
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert history_steps(workspace, run.info.run_id, "train_loss") == [1, 2, 3]
        assert history_steps(workspace, run.info.run_id, "val_accuracy") == [1, 2, 3]


def test_convnet_killed_between_and_during_saves_resumes_to_the_same_bytes(workspace, resumable):
    """The step-counted loop, saving every 3 steps (an epoch is 4): resumed mid-epoch, its epoch's figures kept."""
    resumable({"train.checkpoint": "steps:3"})
    reference = run_stage(workspace, "convnet")
    assert reference.returncode == 0, reference.stderr
    expected = outputs(workspace, "convnet")
    moments = {
        "step:6": "resuming at step 4 of 12",  # saved at step 3, mid-epoch 1... killed in epoch 2
        "save:4": "resuming at step 7 of 12",  # saves: begin, 3, 6, (9 killed halfway) -> step 6's
        "step:10": "resuming at step 10 of 12",  # right after step 9's save
    }
    for kill, line in moments.items():
        said = kill_and_resume(workspace, "convnet", kill)
        assert f"convnet: {line}" in said, (kill, said)
        assert outputs(workspace, "convnet") == expected, kill
    runs = stage_runs(workspace, "convnet")
    assert len(runs) == 1 + len(moments) and {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert history_steps(workspace, run.info.run_id, "train_loss") == [1, 2, 3]


def test_a_params_change_after_the_kill_discards_the_checkpoint_and_trains_from_the_start(
        workspace, resumable, write_params):
    resumable()
    killed = run_stage(workspace, "baseline", f"step:{STEPS_PER_EPOCH + 1}")
    assert killed.returncode == -signal.SIGKILL
    write_params(TINY_TRAINING | RESUMABLE | {"baseline.learning_rate": 0.002})
    rerun = run_stage(workspace, "baseline")
    assert rerun.returncode == 0, rerun.stderr
    assert ("baseline: discarded the checkpoint at epoch 1: made under other params "
            "(baseline.learning_rate 0.001 -> 0.002") in rerun.stdout
    assert "resuming" not in rerun.stdout
    changed = outputs(workspace, "baseline")
    clear_outputs(workspace, "baseline")
    fresh = run_stage(workspace, "baseline")
    assert fresh.returncode == 0 and "discarded" not in fresh.stdout
    assert outputs(workspace, "baseline") == changed, "the rerun trained from scratch, as a fresh run does"
    statuses = sorted(run.info.status for run in stage_runs(workspace, "baseline"))
    assert statuses == ["FINISHED", "FINISHED", "KILLED"], "the killed execution's run is closed, not resumed"


def test_checkpoint_none_keeps_no_state_and_the_same_outputs(workspace, resumable):
    resumable({"train.checkpoint": "none"})
    killed = run_stage(workspace, "baseline", f"step:{STEPS_PER_EPOCH + 1}")
    assert killed.returncode == -signal.SIGKILL
    assert not (workspace / paths.CHECKPOINTS / "baseline.npz").exists()
    rerun = run_stage(workspace, "baseline")
    assert rerun.returncode == 0 and "resuming" not in rerun.stdout


@pytest.mark.slow
def test_finetune_killed_mid_epoch_and_during_a_save_resumes_to_the_same_bytes(workspace, with_features,
                                                                               run_stage_script):
    """The backbone's last block on augmented images: the augmentation's stream picks up where it was."""
    with_features({"finetune.epochs": 2})
    run_stage_script("top")
    reference = run_stage(workspace, "finetune")
    assert reference.returncode == 0, reference.stderr
    expected = outputs(workspace, "finetune")
    moments = {f"step:{STEPS_PER_EPOCH + 2}": "resuming at epoch 2 of 2", "save:3": "resuming at epoch 2 of 2"}
    for kill, line in moments.items():
        said = kill_and_resume(workspace, "finetune", kill)
        assert f"finetune: {line}" in said, (kill, said)
        assert outputs(workspace, "finetune") == expected, kill
    runs = stage_runs(workspace, "finetune")
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}


@pytest.mark.slow
def test_mirrored_training_keeps_no_checkpoint_and_says_so_in_one_line(workspace, resumable):
    """train.distribute: mirrored over 2 logical CPU devices: no checkpoint (a resumed mirrored fit differed from an
    uninterrupted one by ~1e-3 in the weights), a kill restarts from epoch 1 and the result is still the same."""
    resumable({"train.distribute": "mirrored"})
    harness = [sys.executable, str(REPO / "tests" / "logical_cpus.py"), "2", "baseline"]

    def run(kill: str | None = None) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if key != checkpoint.TEST_KILL}
        return subprocess.run(harness, cwd=workspace, env=env | ({checkpoint.TEST_KILL: kill} if kill else {}),
                              capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("baseline: no checkpoints: a resumed mirrored fit does not yet") == 1
    expected = outputs(workspace, "baseline")
    clear_outputs(workspace, "baseline")
    assert run(f"step:{2 * STEPS_PER_EPOCH + 2}").returncode == -signal.SIGKILL
    assert not (workspace / paths.CHECKPOINTS / "baseline.npz").exists()
    again = run()
    assert again.returncode == 0 and "resuming" not in again.stdout
    assert outputs(workspace, "baseline") == expected
