"""The training stages end to end on tiny data: outputs, determinism, the MLflow contract, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.params import FitParams

from helpers.workspace import STAGE_RUNS, TINY_TRAINING

STAGES = ("perceptron", "baseline", "augmented")
PLOT_FILES = ("history.csv", "confusion.csv", "confusion.png", "learning_curves.png", "mistakes.png")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize("stage", STAGES)
def test_stage_writes_model_metrics_and_plots(stage, tiny_training, run_stage_script, workspace):
    tiny_training()
    run_stage_script(stage)

    assert (workspace / "models" / stage / "model.keras").is_file()
    metrics = json.loads((workspace / "metrics" / f"{stage}.json").read_text())
    for key in ("accuracy", "loss", "precision_macro", "recall_macro", "f1_macro",
                "epochs", "trainable_params", "total_params"):
        assert key in metrics, key
    assert set(metrics["per_class"]) == {"a", "b", "c"}
    assert {"precision", "recall"} <= set(metrics["per_class"]["a"])
    assert metrics["test_images"] == 18
    assert not {"training_seconds", "run_id", "seconds"} & set(metrics)

    plots = workspace / "plots" / stage
    convolutional = ("gradcam.png",) if stage != "perceptron" else ()  # Grad-CAM needs a convolution
    assert sorted(path.name for path in plots.iterdir()) == sorted(PLOT_FILES + convolutional)
    history = read_csv(plots / "history.csv")
    assert list(history[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [int(row["epoch"]) for row in history] == list(range(1, metrics["epochs"] + 1))
    confusion = read_csv(plots / "confusion.csv")
    assert len(confusion) == 18 and set(confusion[0]) == {"actual", "predicted"}
    assert list(((workspace / "logs" / stage)).rglob("events.out.tfevents*")), "no TensorBoard events"


def test_photo_layout_rgb_balanced_without_validation(make_split, write_params, run_stage_script, workspace):
    make_split(rgb=True)
    write_params(TINY_TRAINING | {
        "image.color_mode": "rgb", "cnn.layout": "photo", "cnn.precision": "float32",
        "augmented.class_weight": "balanced", "data.validation_fraction": 0.0,
    })
    run_stage_script("augmented")

    history = read_csv(workspace / "plots" / "augmented" / "history.csv")
    assert list(history[0]) == ["epoch", "loss", "accuracy"]
    metrics = json.loads((workspace / "metrics" / "augmented.json").read_text())
    assert metrics["train_images"] == 36


def test_perceptron_learns_and_summarises_weights(tiny_training, run_stage_script, workspace):
    tiny_training({"perceptron.steps": 40})
    run_stage_script("perceptron")

    metrics = json.loads((workspace / "metrics" / "perceptron.json").read_text())
    assert metrics["accuracy"] == 1.0  # the class is a bright bar's position: linearly separable
    assert metrics["steps"] == 40 and metrics["trainable_params"] == 16 * 16 * 3 + 3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workspace / "logs" / "perceptron" / "train"))
    events.Reload()
    tags = set(events.Tags()["tensors"])
    for name in ("weights", "biases"):
        assert {f"{name}/{what}" for what in ("mean", "stddev", "min", "max", "histogram")} <= tags
    assert {"loss", "accuracy"} <= tags


@pytest.mark.parametrize("stage", ("perceptron", "augmented"))
def test_same_params_same_bytes(stage, tiny_training, run_stage_script, workspace):
    tiny_training({"augmented.epochs": 2})
    outputs = [workspace / "metrics" / f"{stage}.json", workspace / "plots" / stage / "history.csv",
               workspace / "plots" / stage / "mistakes.png"] + ([workspace / "plots" / stage / "gradcam.png"]
                                                               if stage != "perceptron" else [])
    run_stage_script(stage)
    first = [path.read_bytes() for path in outputs]
    run_stage_script(stage)
    assert [path.read_bytes() for path in outputs] == first


def test_mlflow_run_contract(tiny_training, run_stage_script, workspace):
    import mlflow
    from mlflow.tracking import MlflowClient

    from imgclf.tracking import store

    config = tiny_training({"baseline.epochs": 2, "mlflow.log_model": True})
    run_stage_script("baseline")

    client = MlflowClient(store.tracking_uri())
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], STAGE_RUNS)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["dvc.stage"] == "baseline"
    assert run.data.params["baseline.epochs"] == "2" and run.data.params["cnn.filters"] == "[4, 8]"
    assert [point.step for point in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]
    metrics = json.loads((workspace / "metrics" / "baseline.json").read_text())
    assert run.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert "training_seconds" in run.data.metrics

    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/confusion.png", "plots/learning_curves.png", "plots/history.csv"} <= artifacts
    assert client.list_artifacts(run.info.run_id, "tensorboard")
    images = {Path(item.path).name.split("+")[0] for item in client.list_artifacts(run.info.run_id, "images")}
    assert {"mistakes", "gradcam"} <= images  # mlflow's image view: the wrong test images and their Grad-CAM

    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    from imgclf.data import tfdata

    data = tfdata.load_split(config, batch_size=8)
    labels = np.concatenate([batch_labels.numpy().argmax(axis=1) for _, batch_labels in data.test])
    predicted = model.predict(data.test, verbose=0).argmax(axis=1)
    assert float(np.mean(predicted == labels)) == pytest.approx(metrics["accuracy"])


def test_missing_split_is_a_user_error(workspace, write_params, run_stage_script, capsys):
    write_params()
    with pytest.raises(SystemExit) as exit_info:
        run_stage_script("baseline")
    assert exit_info.value.code == 2
    assert "imgclf: data/split: not found: run the split stage first" in capsys.readouterr().err


def test_balanced_class_weights():
    from imgclf.training import fit

    assert fit.class_weights([10, 30], "none") is None
    assert fit.class_weights([10, 30], "balanced") == {0: 2.0, 1: 40 / 60}


def test_endless_repeats_whole_passes():
    import tensorflow as tf

    from imgclf.training import fit

    finite = tf.data.Dataset.range(10).shuffle(10, seed=3, reshuffle_each_iteration=True).batch(4)
    repeated, steps = fit.endless(finite)
    assert steps == 3
    batches = [batch.numpy().tolist() for batch in repeated.take(3 * steps)]
    passes = [sorted(sum(batches[index:index + steps], [])) for index in range(0, 3 * steps, steps)]
    assert passes == [list(range(10))] * 3  # every epoch is one whole pass, the last batch short
    assert len({tuple(sum(batches[index:index + steps], [])) for index in range(0, 3 * steps, steps)}) > 1

    infinite = finite.repeat()
    assert fit.endless(infinite) == (infinite, None)
    assert fit.endless(None) == (None, None)


def test_fit_runs_one_pass_per_epoch(tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)  # fit writes TensorBoard events to logs/<stage>/ under the working directory

    from imgclf.training import fit

    images = tf.random.stateless_uniform((10, 4), seed=(1, 2))
    labels = tf.one_hot(tf.range(10) % 2, 2)
    train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # 3 batches, the last of 2
    validation = tf.data.Dataset.from_tensor_slices((images[:5], labels[:5])).batch(4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])

    settings = FitParams(epochs=3, batch_size=4, learning_rate=0.01, class_weight="none", patience=0, monitor="val_loss")
    fitted = fit.fit(model, train, validation, settings, "probe", [5, 5])
    assert len(fitted.history["loss"]) == 3 and len(fitted.history["val_loss"]) == 3
    assert int(model.optimizer.iterations.numpy()) == 9  # 3 epochs x 3 steps: one pass each
    # Validation saw the whole hold-out (both batches) in the last epoch, as evaluate() does.
    assert fitted.history["val_loss"][-1] == pytest.approx(model.evaluate(validation, verbose=0)[0], rel=1e-5)


def test_early_stopping_stops_keeps_the_best_epoch_and_repeats(tiny_training, run_stage_script, workspace, capsys):
    tiny_training({"baseline.epochs": 30, "baseline.patience": 2, "baseline.learning_rate": 0.03})
    run_stage_script("baseline")
    out = capsys.readouterr().out
    metrics = json.loads((workspace / "metrics" / "baseline.json").read_text())
    history = read_csv(workspace / "plots" / "baseline" / "history.csv")
    assert "early stopping" in out and metrics["epochs"] == len(history) < 30
    losses = [float(row["val_loss"]) for row in history]
    best = int(np.argmin(losses))
    assert len(history) == best + 1 + 2  # stopped `patience` epochs after the best
    first = (workspace / "models" / "baseline" / "model.keras").read_bytes()
    assert f"Restoring model weights from the end of the best epoch: {best + 1}" in out

    run_stage_script("baseline")  # the same params: the same epochs, the same weights
    assert (workspace / "models" / "baseline" / "model.keras").read_bytes() == first


def test_early_stopping_needs_a_validation_hold_out(tiny_training, run_stage_script, capsys):
    tiny_training({"baseline.patience": 2, "data.validation_fraction": 0.0})
    with pytest.raises(SystemExit) as stopped:
        run_stage_script("baseline")
    assert stopped.value.code == 2
    assert "baseline.patience: 2: early stopping watches the validation hold-out" in capsys.readouterr().err
