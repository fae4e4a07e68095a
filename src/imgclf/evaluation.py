"""What every training stage writes and logs after training: test metrics, plots, model, MLflow."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_fscore_support  # noqa: E402

from imgclf import atomic, paths  # noqa: E402
from imgclf.params import flatten  # noqa: E402
from imgclf.tracking import StageRun  # noqa: E402

HISTORY_COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy")
INPUT_EXAMPLE_SIZE = 5
# Cross-entropy clips probabilities like Keras does, so `loss` matches model.evaluate.
EPSILON = 1e-7

TestData = tf.data.Dataset | tuple[np.ndarray, np.ndarray]


def finish(
    stage: str,
    model: keras.Model,
    test: TestData,
    class_names: Sequence[str],
    history: Mapping[str, Sequence[float]],
    run: StageRun,
    *,
    log_model: bool,
    training_seconds: float | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate on the test split; write metrics, plots and the model; log them all to MLflow.

    `test`: a batched (images, labels) dataset or a pair of arrays; labels one-hot or integer.
    Returns the metrics written to metrics/<stage>.json (only what data and params determine).
    """
    labels, probabilities = predict(model, test)
    metrics = test_metrics(labels, probabilities, class_names)
    metrics |= {
        "epochs": len(history.get("loss", [])),
        "trainable_params": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
        "total_params": int(model.count_params()),
    }
    metrics |= dict(extra_metrics or {})
    atomic.write_json(paths.metrics_file(stage), metrics)
    write_plots(paths.plots_dir(stage), history, labels, probabilities.argmax(axis=1), class_names)
    inference_model = without_optimizer(model)
    with atomic.directory(paths.model_dir(stage)) as folder:
        save_model(inference_model, folder / paths.model_file(stage).name)

    run.log_history({key: list(values) for key, values in history.items()})
    final = {key: value for key, value in flatten(metrics).items() if isinstance(value, (int, float))}
    if training_seconds is not None:
        final["training_seconds"] = training_seconds  # run-specific: MLflow only, never the JSON
    final["model_size_bytes"] = paths.model_file(stage).stat().st_size  # for the leaderboard
    run.log_metrics(final)
    run.log_artifact(paths.metrics_file(stage), "metrics")
    run.log_artifact(paths.plots_dir(stage), "plots")
    run.log_artifact(paths.tensorboard_dir(stage), "tensorboard")
    if log_model:
        # MLflow validates the input example with predict(): no progress bars from that in logs.
        keras.utils.disable_interactive_logging()
        try:
            run.log_keras_model(inference_model, input_example(test))
        finally:
            keras.utils.enable_interactive_logging()
    print(
        f"{stage}: test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f}",
        flush=True,
    )
    return metrics


def predict(model: keras.Model, test: TestData) -> tuple[np.ndarray, np.ndarray]:
    """(integer labels, class probabilities) over the whole test split, in its order."""
    if isinstance(test, tf.data.Dataset):
        labels = np.concatenate([batch_labels.numpy() for _, batch_labels in test])
        probabilities = model.predict(test, verbose=0)
    else:
        images, labels = test
        probabilities = model.predict(images, batch_size=256, verbose=0)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    return labels.astype(np.int64), np.asarray(probabilities, dtype=np.float64)


def input_example(test: TestData) -> np.ndarray:
    """A few test images, as the MLflow model's input example (and signature)."""
    if isinstance(test, tf.data.Dataset):
        images = next(iter(test.unbatch().batch(INPUT_EXAMPLE_SIZE).take(1)))[0]
        return np.asarray(images)
    return np.asarray(test[0][:INPUT_EXAMPLE_SIZE])


def test_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, macro and per-class precision/recall/F1."""
    predicted = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(class_names)), zero_division=0
    )
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "loss": float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0)))),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "test_images": int(len(labels)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
    }


# The zip epoch: Keras stamps each save with the time (metadata.json's date_saved and the weights
# entry's date); both are set to this so the same weights give the same bytes.
STABLE_DATE = (1980, 1, 1, 0, 0, 0)
STABLE_DATE_SAVED = "%04d-%02d-%02d@%02d:%02d:%02d" % STABLE_DATE  # Keras' date_saved format


def save_model(model: keras.Model, target: Path) -> None:
    """model.save(target) as a .keras file with nothing run-specific in it (DVC caches it).

    Two runs with the same weights write byte-identical files: date_saved reads
    1980-01-01@00:00:00 (Keras' file editor expects the key), every zip entry has that date, and
    shared-object ids (Python id()s) are renumbered.
    """
    model.save(target)
    saved = target.read_bytes()
    with zipfile.ZipFile(io.BytesIO(saved)) as source, zipfile.ZipFile(target, "w") as stable:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(data) | {"date_saved": STABLE_DATE_SAVED}
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=STABLE_DATE)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            stable.writestr(entry, data)


def _renumber_shared_objects(node: Any, numbers: dict[int, int]) -> Any:
    """Keras marks objects used twice with `shared_object_id`: the object's Python id(), which
    differs every run. Replaced by 1, 2, ... in order of appearance (loading only pairs them up)."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbers) for value in node]
    return node


def without_optimizer(model: keras.Model) -> keras.Model:
    """A copy without optimizer state for saving: a third of the file with Adam, same predictions."""
    if getattr(model, "optimizer", None) is None:
        return model
    # Not keras.models.clone_model: since Keras 3.x it compiles the clone, optimizer included.
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def write_plots(
    folder: Path,
    history: Mapping[str, Sequence[float]],
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """history.csv, confusion.csv (DVC plots) and their PNGs, each written atomically.

    File by file, not by swapping the folder: DVC keeps its .gitignore in there.
    """
    atomic.write_text(folder / "history.csv", history_csv(history))
    rows = [("actual", "predicted")] + [
        (class_names[actual], class_names[guess]) for actual, guess in zip(labels, predicted)
    ]
    atomic.write_text(folder / "confusion.csv", _csv(rows))
    plot_confusion(labels, predicted, class_names, folder / "confusion.png")
    plot_learning_curves(history, folder / "learning_curves.png")


def history_csv(history: Mapping[str, Sequence[float]]) -> str:
    """epoch,loss,accuracy,val_loss,val_accuracy (the columns the history has), 6 decimals."""
    columns = [name for name in HISTORY_COLUMNS if name in history]
    epochs = len(history[columns[0]]) if columns else 0
    rows = [["epoch", *columns]]
    rows += [[epoch + 1, *(round(float(history[name][epoch]), 6) for name in columns)] for epoch in range(epochs)]
    return _csv(rows)


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def plot_confusion(
    labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str], target: Path
) -> None:
    """Confusion matrix PNG (counts written in the cells up to 20 classes)."""
    size = min(4 + 0.5 * len(class_names), 30)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=np.arange(len(class_names)), display_labels=list(class_names),
        include_values=len(class_names) <= 20, colorbar=False, ax=axes, xticks_rotation="vertical",
    )
    axes.set_title("Test confusion matrix")
    _save(figure, target)


def plot_learning_curves(history: Mapping[str, Sequence[float]], target: Path) -> None:
    """Loss and accuracy per epoch, train and validation side by side."""
    figure, all_axes = plt.subplots(1, 2, figsize=(10, 4))
    for axes, metric in zip(all_axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.legend()
    _save(figure, target)


def _save(figure: plt.Figure, target: Path) -> None:
    figure.tight_layout()
    with atomic.file(target, "wb") as stream:
        figure.savefig(stream, format="png", dpi=100)
    plt.close(figure)
