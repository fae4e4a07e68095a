"""A model stage's plots: history.csv and confusion.csv (DVC plots) and their PNGs for people."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from imgclf import atomic

HISTORY_COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy")


def write_plots(
    folder: Path,
    history: Mapping[str, Sequence[float]],
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """history.csv, confusion.csv (DVC plots) and their PNGs, each written atomically; no history (a model
    fitted in one go, the svm): the confusion matrix only.

    File by file, not by swapping the folder: DVC keeps its .gitignore in there.
    """
    if history:
        atomic.write_text(folder / "history.csv", history_csv(history))
        plot_learning_curves(history, folder / "learning_curves.png")
    write_confusion(folder, labels, predicted, class_names)


def write_confusion(folder: Path, labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> None:
    """confusion.csv (actual, predicted: a DVC plot) and confusion.png."""
    name = "confusion"
    rows = [("actual", "predicted")] + [
        (class_names[actual], class_names[guess]) for actual, guess in zip(labels, predicted, strict=True)
    ]
    atomic.write_text(folder / f"{name}.csv", _csv(rows))
    plot_confusion(labels, predicted, class_names, folder / f"{name}.png")


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
    for axes, metric in zip(all_axes, ("loss", "accuracy"), strict=True):
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
