"""train.distribute: mirrored — MirroredStrategy over 2 logical CPU devices, against one device."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.workspace import REPO, TINY_TRAINING

HARNESS = str(REPO / "tests" / "logical_cpus.py")
MNIST = {"data.source": "mnist-sample", "data.train_per_class": 200, "data.test_per_class": 50,
         "cnn.filters": [8, 16], "cnn.dense_units": 64, "baseline.epochs": 8, "baseline.batch_size": 32,
         "mlflow.log_model": False}
TEST_IMAGES = 10 * MNIST["data.test_per_class"]


def run_stages(workspace: Path, devices: int, *stages: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, HARNESS, str(devices), *stages], cwd=workspace,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def metrics(workspace: Path, stage: str) -> dict:
    return json.loads((workspace / "metrics" / f"{stage}.json").read_text())


def replicas_logged(workspace: Path, stage: str) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image-classification")
    [latest] = client.search_runs([experiment.experiment_id], f"tags.`dvc.stage` = '{stage}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    assert latest.data.metrics["train_images_per_s_per_replica"] > 0
    return latest.data.metrics["replicas"]


@pytest.mark.slow
def test_baseline_mirrored_on_two_devices_matches_one_device(workspace, raw_mnist_sample, write_params, run_stage_script):
    write_params(MNIST)
    run_stage_script("split")
    run_stages(workspace, 2, "baseline")
    alone = metrics(workspace, "baseline")
    assert replicas_logged(workspace, "baseline") == 1

    write_params(MNIST | {"train.distribute": "mirrored"})
    run_stages(workspace, 2, "baseline")
    mirrored = metrics(workspace, "baseline")
    assert replicas_logged(workspace, "baseline") == 2
    print(f"baseline test accuracy: one device {alone['accuracy']:.4f}, mirrored on 2 {mirrored['accuracy']:.4f}")
    assert alone["accuracy"] > 0.5  # it learned: 10 digits, 500 test images
    # Not the same trajectory: mirrored tops a pass's short last batch up from the next pass (every global
    # batch full), one device trains on it short. Equally good models then differ by test-set sampling
    # noise: within two standard errors of the difference of two accuracies on these 500 images.
    mean = (alone["accuracy"] + mirrored["accuracy"]) / 2
    noise = 2 * math.sqrt(2 * mean * (1 - mean) / TEST_IMAGES)
    assert abs(mirrored["accuracy"] - alone["accuracy"]) <= noise, (alone["accuracy"], mirrored["accuracy"], noise)

    run_stages(workspace, 2, "baseline")  # deterministic under seed for a fixed number of replicas
    assert metrics(workspace, "baseline") == mirrored


@pytest.mark.slow
def test_augmented_top_and_finetune_train_mirrored_with_uneven_validation(workspace, make_split, write_params):
    # 3 x 13 train images, 10 % held out: 4 validation images, batches of 8 and a short last one.
    make_split(train=13, test=5, size=(32, 32), rgb=True)
    write_params(TINY_TRAINING | {"image.size": [32, 32], "train.distribute": "mirrored", "top.epochs": 2,
                                  "top.batch_size": 8, "finetune.batch_size": 8, "top.units": 8,
                                  "data.validation_fraction": 0.1})
    run_stages(workspace, 2, "augmented", "bottleneck", "top", "finetune")
    for stage in ("augmented", "top", "finetune"):
        assert replicas_logged(workspace, stage) == 2
        assert 0 <= metrics(workspace, stage)["accuracy"] <= 1
        history = (workspace / "plots" / stage / "history.csv").read_text()
        assert "val_accuracy" in history.splitlines()[0], history


def test_a_global_batch_that_does_not_split_over_the_replicas_is_a_user_error(workspace, tiny_training):
    tiny_training({"train.distribute": "mirrored", "baseline.batch_size": 7})
    done = subprocess.run([sys.executable, HARNESS, "2", "baseline"], cwd=workspace, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "imgclf: baseline.batch_size: 7 does not split over 2 replicas (train.distribute: mirrored): " \
           "use a multiple of 2" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (workspace / "models" / "baseline").exists()
