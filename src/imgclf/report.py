"""The leaderboard across model stages: built from MLflow runs, written as Markdown, CSV and a PNG.

The same `leaderboard()` serves the report stage (runs resolved through dvc.lock: the runs that
produced the outputs DVC has now) and `python -m imgclf compare` (runs picked by pipeline id, DVC
experiment name, or dvc.lock), so both print the same table for the same runs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from imgclf import atomic, paths
from imgclf.params import Params
from imgclf.tracking import queries
from imgclf.tracking.runs import StageRun
from imgclf.tracking.tags import TAG_PIPELINE, TAG_STAGE

MODEL_STAGES = ("perceptron", "baseline", "augmented", "top", "finetune")
COLUMNS = [
    "stage", "accuracy", "f1_macro", "loss", "trainable_params", "total_params", "model_size_mb",
    "training_seconds", "epochs", "backbone", "weights", "pipeline_id", "run_id",
]
SORT_ASCENDING = {"accuracy": False, "f1_macro": False, "loss": True}


def row_from_run(run: Any) -> dict[str, Any]:
    """One leaderboard row from an MLflow run of a model stage."""
    metrics, tags = run.data.metrics, run.data.tags
    size = metrics.get("model_size_bytes")
    return {
        "stage": tags.get(TAG_STAGE, run.info.run_name),
        "accuracy": metrics.get("accuracy"),
        "f1_macro": metrics.get("f1_macro"),
        "loss": metrics.get("loss"),
        "trainable_params": _int_or_none(metrics.get("trainable_params")),
        "total_params": _int_or_none(metrics.get("total_params")),
        "model_size_mb": None if size is None else round(size / 1e6, 2),
        "training_seconds": None if metrics.get("training_seconds") is None else round(metrics["training_seconds"], 1),
        "epochs": _int_or_none(metrics.get("epochs")),
        "backbone": tags.get("backbone", ""),
        "weights": tags.get("weights", ""),
        "pipeline_id": tags.get(TAG_PIPELINE, ""),
        "run_id": run.info.run_id,
    }


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def leaderboard(runs: Mapping[str, Any], sort_by: str = "accuracy") -> pd.DataFrame:
    """A table with one row per model stage that has a run, best first."""
    rows = [row_from_run(runs[stage]) for stage in MODEL_STAGES if stage in runs]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    frame = frame.sort_values(sort_by, ascending=SORT_ASCENDING[sort_by], kind="stable", na_position="last")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def render(frame: pd.DataFrame, output_format: str = "markdown", with_ids: bool = False) -> str:
    """The leaderboard as Markdown (for people) or CSV (for tools); run ids only when asked.

    The report stage's files are DVC outputs, so they leave out run ids and pipeline ids.
    """
    shown = frame if with_ids else frame.drop(columns=["pipeline_id", "run_id"], errors="ignore")
    if output_format == "csv":
        return shown.to_csv(index=False, lineterminator="\n")
    return shown.astype(object).where(shown.notna(), "").to_markdown(index=False, floatfmt=".4f") + "\n"


def plot(frame: pd.DataFrame, target: Path) -> None:
    """Accuracy bars per stage beside the validation-accuracy curves overlaid."""
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    ordered = frame.sort_values("accuracy", ascending=True)
    bars.barh(ordered["stage"], ordered["accuracy"].astype(float), color="#4C72B0")
    for position, value in enumerate(ordered["accuracy"].astype(float)):
        bars.text(value, position, f" {value:.3f}", va="center")
    bars.set_xlim(0, 1.1)
    bars.set_xlabel("test accuracy")
    bars.set_title("Test accuracy by stage")
    for stage in frame["stage"]:
        history = paths.plots_dir(stage) / "history.csv"
        if history.exists():
            data = pd.read_csv(history)
            column = "val_accuracy" if "val_accuracy" in data else "accuracy"
            curves.plot(data["epoch"], data[column], marker="o", label=stage)
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy")
    curves.set_title("Learning curves")
    curves.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    with atomic.file(target, "wb") as stream:
        stream.write(buffer.getvalue())


def build_report(params: Params, run: StageRun) -> pd.DataFrame:
    """The report stage: resolve each model stage's run through dvc.lock, write and log the leaderboard."""
    runs = queries.runs_from_lock(run.client, params.mlflow.experiment)
    frame = leaderboard(runs, params.report.sort_by)
    missing = [stage for stage in MODEL_STAGES if stage not in runs]
    paths.REPORTS.mkdir(parents=True, exist_ok=True)
    markdown = "# Leaderboard\n\n" + render(frame)
    if missing:
        markdown += f"\nNo MLflow run found for: {', '.join(missing)}.\n"
    atomic.write_text(paths.REPORTS / "leaderboard.md", markdown)
    atomic.write_text(paths.REPORTS / "leaderboard.csv", render(frame, "csv"))
    if not frame.empty:
        plot(frame, paths.REPORTS / "leaderboard.png")
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png"):
        run.log_artifact(paths.REPORTS / name)
    run.set_tags({f"report.{row['stage']}.run_id": row["run_id"] for _, row in frame.iterrows()})
    return frame
