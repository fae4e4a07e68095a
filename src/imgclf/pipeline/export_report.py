"""The export stage's scoring and report: each export run on the whole test split in its own runtime, beside its
Keras model — the chapter's model choice (accuracy, size, latency, memory) answered with numbers.

metrics/export.json holds what data, params and code determine (accuracy, agreement with the Keras model's
labels, file size, or why a format could not be made): a DVC metric. The timings and peak memory vary run to
run: MLflow metrics, reports/export.md and reports/export.png (git-ignored, logged to the stage's run).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from imgclf import atomic, paths
from imgclf.data import listing
from imgclf.data.listing import SplitFile
from imgclf.errors import UserError
from imgclf.inference import export, measure
from imgclf.inference.classifier import Classifier
from imgclf.pipeline import stages

KERAS = "keras"  # the reference row: models/<stage>/model.keras
REPORT_FILE = paths.REPORTS / "export.md"
TABLE_FILE = paths.REPORTS / "export.csv"  # the same rows for tools (benchmarks/export.py, the docs' figures)
PLOT_FILE = paths.REPORTS / "export.png"
MB = 1e6  # file sizes in MB (10^6 bytes), as the leaderboard's model_size_mb


@dataclass
class Row:
    """One model file of one stage: what DVC tracks (accuracy, agreement, size, error) and its timings."""

    stage: str
    format: str
    file: str
    size_mb: float | None = None
    accuracy: float | None = None
    agreement: float | None = None  # share of test images whose label (every head's) equals the Keras model's
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def tracked(self) -> dict:
        if self.error:
            return {"error": self.error}
        found = {"accuracy": self.accuracy, "size_mb": self.size_mb}
        return found | ({"agreement": self.agreement} if self.agreement is not None else {})


def chosen_stages(which: str, leaderboard: Path = paths.REPORTS / "leaderboard.csv") -> list[str]:
    """export.stages: champion (the leaderboard's first row) or all (every model stage with a model file)."""
    if which == "all":
        return [stage for stage in stages.MODEL_STAGES if paths.model_file(stage).is_file()]
    if not leaderboard.is_file():
        raise UserError(f"{leaderboard}: not found: run the report stage first (dvc repro report)")
    board = pd.read_csv(leaderboard)
    if board.empty:
        raise UserError(f"{leaderboard}: no model stage has metrics yet: run the pipeline first (dvc repro)")
    return [str(board["stage"].iloc[0])]


def split_images(classifier: Classifier, files: Sequence[SplitFile | Path]) -> np.ndarray:
    """The split's image files decoded as predict and serving decode them (the same pixels into every runtime)."""
    decoded = [classifier.read(path) for path in files]
    broken = [f"{path}: {why}" for path, why in zip(files, decoded, strict=True) if isinstance(why, str)]
    if broken:
        raise UserError(f"{len(broken)} split images cannot be read ({broken[0]}): re-run split (dvc repro split)")
    spec = classifier.spec
    return np.stack(decoded) if decoded else np.zeros((0, spec.height, spec.width, spec.channels), np.uint8)


def labels_of(classifier: Classifier, files: Sequence[SplitFile | Path]) -> np.ndarray:
    """Each test file's class (its folder) as an index into the first head's class names."""
    _, names, _ = classifier.groups()[0]
    return np.array([names.index(file.parent.name) for file in files], dtype=np.int64)


def calibration_files(count: int, seed: int, root: Path = paths.SPLIT) -> list[SplitFile]:
    """`count` train images drawn with `seed` (all of them when there are fewer), in file order."""
    files = listing.files(root, "train") if (root / "train").is_dir() or listing.sharded(root) else []
    if not files:
        raise UserError(f"{root / 'train'}: no images: run split first (dvc repro split)")
    picked = np.random.default_rng(seed).choice(len(files), size=min(count, len(files)), replace=False)
    return [files[index] for index in sorted(picked)]


def score(stage: str, folder: Path, keras_file: Path, classifier: Classifier, images: np.ndarray, labels: np.ndarray,
          formats: Sequence[str], failed: dict[str, str], seed: int) -> list[Row]:
    """The Keras model and each format of one stage, run on `images` in a child process each."""
    files = {KERAS: keras_file} | {name: folder / export.FILES[name] for name in formats}
    rows, reference = [], None
    for name, path in files.items():
        row = Row(stage, name, path.name)
        rows.append(row)
        if name in failed:
            row.error = failed[name]
            continue
        row.size_mb = round(_size(path) / MB, 4)
        try:
            probabilities, row.timings = measure.in_child(path, images, seed)
        except RuntimeError as error:
            row.error = f"{path.name}: its runtime failed: {error}"[:240]
            continue
        predicted = [probabilities[:, part].argmax(axis=1) for _, _, part in classifier.groups()]
        row.accuracy = round(float(np.mean(predicted[0] == labels)), 6) if len(labels) else None
        if reference is None:
            reference = predicted
        else:
            same = np.all([mine == theirs for mine, theirs in zip(predicted, reference, strict=True)], axis=0)
            row.agreement = round(float(np.mean(same)), 6) if len(labels) else None
    return rows


def _size(path: Path) -> int:
    return sum(part.stat().st_size for part in path.rglob("*") if part.is_file()) if path.is_dir() else path.stat().st_size


def metrics(rows: Sequence[Row], test_images: int) -> dict:
    """metrics/export.json: per stage, per format (keras first) its accuracy, agreement and size, or its error."""
    found: dict = {"test_images": test_images, "stages": {}}
    for row in rows:
        found["stages"].setdefault(row.stage, {})[row.format] = row.tracked()
    return found


def table(rows: Sequence[Row]) -> pd.DataFrame:
    """Every row with its timings and its ratios to the stage's Keras model (size, latency)."""
    frame = pd.DataFrame([{
        "stage": row.stage, "format": row.format, "file": row.file, "size_mb": row.size_mb, "accuracy": row.accuracy,
        "agreement": row.agreement, "latency_ms": row.timings.get("latency_ms_batch1"),
        "latency_p95_ms": row.timings.get("latency_ms_batch1_p95"),
        "images_per_s": row.timings.get("images_per_s_batch32"), "peak_rss_mb": row.timings.get("peak_rss_mb"),
        "error": row.error,
    } for row in rows])
    keras_rows = frame[frame["format"] == KERAS].set_index("stage")
    for column, ratio in (("size_mb", "size_x_keras"), ("latency_ms", "latency_x_keras")):
        reference = frame["stage"].map(keras_rows[column]).astype(float)
        frame[ratio] = (frame[column].astype(float) / reference).round(3)
    return frame


def render(frame: pd.DataFrame, machine: str) -> str:
    """reports/export.md: one table per stage, the timings measured on `machine`."""
    shown = ["format", "file", "size_mb", "size_x_keras", "accuracy", "agreement", "latency_ms", "latency_p95_ms",
             "latency_x_keras", "images_per_s", "peak_rss_mb", "error"]
    parts = ["# Exports\n", f"Each file run on the whole test split in its own runtime (LiteRT, onnxruntime, TensorFlow) "
             f"on {machine}. Latency: batch 1, median and p95; throughput: batch 32; peak RSS: the runtime's process.\n"]
    for stage, group in frame.groupby("stage", sort=False):
        body = group[shown].astype(object).where(group[shown].notna(), "")
        parts.append(f"## {stage}\n\n" + body.to_markdown(index=False, floatfmt=".4g") + "\n")
    return "\n".join(parts)


def plot(frame: pd.DataFrame, target: Path = PLOT_FILE) -> bool:
    """Accuracy against batch-1 latency, point area by file size, one point per export; False with nothing to draw."""
    known = frame[frame["latency_ms"].notna() & frame["accuracy"].notna()]
    if known.empty:
        return False
    figure, axes = plt.subplots(figsize=(8, 5))
    for _, entry in known.iterrows():
        axes.scatter(entry["latency_ms"], entry["accuracy"], s=30 + 6 * float(entry["size_mb"]), alpha=0.6)
        axes.annotate(f" {entry['stage']} {entry['format']} ({entry['size_mb']:.3g} MB)",
                      (entry["latency_ms"], entry["accuracy"]), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("latency at batch 1 (ms, this machine, log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Exports: accuracy, latency and size (point area: file size)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic.write_bytes(target, buffer.getvalue())
    return True


def timings(rows: Sequence[Row]) -> dict[str, float]:
    """The MLflow metrics of the run: export.<stage>.<format>.<figure>."""
    return {f"export.{row.stage}.{row.format}.{key}": value for row in rows for key, value in row.timings.items()}
