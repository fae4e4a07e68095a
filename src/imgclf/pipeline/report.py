"""The leaderboard across model stages: from what DVC tracks, with the MLflow runs beside it when known.

The table itself is built from `metrics/<stage>.json` (written by each model stage, tracked by
DVC), so any clone that has the outputs — a teammate after `dvc pull`, a fresh MLflow store, a
different one — gets the same leaderboard. The MLflow runs that produced those outputs (found
through dvc.lock's fingerprints) add run ids, training seconds, inference latency and links: run-specific, so they go
to stdout, MLflow and `reports/runs.md` and `reports/accuracy_vs_latency.png` (git-ignored, not DVC outputs), never into
the cached `reports/leaderboard.{md,csv,png}`.

`python -m imgclf compare` prints the same table; with --pipeline-id/--exp-name it builds it from
the runs' own metrics instead (those filters exist in MLflow only).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from imgclf import atomic, paths
from imgclf.pipeline.stages import MODEL_STAGES
from imgclf.tracking.tags import TAG_PIPELINE

COLUMNS = [
    "stage", "accuracy", "f1_macro", "loss", "trainable_params", "total_params", "model_size_mb",
    "epochs", "backbone", "weights",
]
# Run-specific (they vary run to run): from MLflow, never in the DVC-tracked files.
TIMING_COLUMNS = ["training_seconds", "latency_ms_batch1", "images_per_s_batch32"]
RUN_COLUMNS = [*TIMING_COLUMNS, "pipeline_id", "run_id", "link"]
SORT_ASCENDING = {"accuracy": False, "f1_macro": False, "loss": True}
RUNS_FILE = paths.REPORTS / "runs.md"  # run ids and timings: run-specific, so not a DVC output


def row(stage: str, metrics: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One leaderboard row from a stage's metrics (metrics/<stage>.json or its MLflow run's)."""
    tags = tags or {}
    size = metrics.get("model_size_bytes")
    return {
        "stage": stage,
        "accuracy": metrics.get("accuracy"),
        "f1_macro": metrics.get("f1_macro"),
        "loss": metrics.get("loss"),
        "trainable_params": _int_or_none(metrics.get("trainable_params")),
        "total_params": _int_or_none(metrics.get("total_params")),
        "model_size_mb": None if size is None else round(size / 1e6, 2),
        "epochs": _int_or_none(metrics.get("epochs")),
        "backbone": metrics.get("backbone") or tags.get("backbone", ""),
        "weights": metrics.get("weights") or tags.get("weights", ""),
    }


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def rows_from_files(metrics_dir: Path = paths.METRICS) -> list[dict[str, Any]]:
    """A row per model stage whose metrics/<stage>.json exists."""
    rows = []
    for stage in MODEL_STAGES:
        path = metrics_dir / f"{stage}.json"
        if path.is_file():
            rows.append(row(stage, json.loads(path.read_text(encoding="utf-8"))))
    return rows


def rows_from_runs(runs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A row per model stage from its MLflow run's final metrics and tags."""
    return [row(stage, runs[stage].data.metrics, runs[stage].data.tags) for stage in MODEL_STAGES if stage in runs]


def leaderboard(rows: list[dict[str, Any]], sort_by: str = "accuracy") -> pd.DataFrame:
    """A table with one row per model stage, best first."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    frame = frame.sort_values(sort_by, ascending=SORT_ASCENDING[sort_by], kind="stable", na_position="last")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def with_runs(frame: pd.DataFrame, runs: Mapping[str, Any], run_link: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """The leaderboard plus each stage's run (timings, pipeline, id, link); stages without one.

    `run_link(run)` gives a run's address in the MLflow UI, or None.
    """
    linked = frame.copy()
    found = [runs.get(stage) for stage in linked["stage"]]
    for column in TIMING_COLUMNS:
        linked[column] = [None if run is None or column not in run.data.metrics
                          else round(run.data.metrics[column], 1) for run in found]
    linked["pipeline_id"] = ["" if run is None else run.data.tags.get(TAG_PIPELINE, "") for run in found]
    linked["run_id"] = ["" if run is None else run.info.run_id for run in found]
    linked["link"] = ["" if run is None or run_link is None else (run_link(run) or "") for run in found]
    missing = [stage for stage, run in zip(linked["stage"], found, strict=True) if run is None]
    return linked, missing


def render(frame: pd.DataFrame, output_format: str = "markdown", with_ids: bool = False) -> str:
    """The leaderboard as Markdown (for people) or CSV (for tools); run columns only when asked."""
    shown = frame if with_ids else frame.drop(columns=RUN_COLUMNS, errors="ignore")
    if output_format == "csv":
        return shown.to_csv(index=False, lineterminator="\n")
    return shown.astype(object).where(shown.notna(), "").to_markdown(index=False, floatfmt=".4f") + "\n"


def missing_line(missing: list[str], where: str) -> str:
    """The one line saying which stages' runs the store does not have."""
    return f"report: no MLflow run in {where} for {', '.join(missing)} (the leaderboard comes from metrics/*.json)"


def write(frame: pd.DataFrame, folder: Path = paths.REPORTS) -> list[Path]:
    """reports/leaderboard.{md,csv,png}: only what data, params and code determine (DVC outputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "leaderboard.md", folder / "leaderboard.csv"]
    atomic.write_text(written[0], "# Leaderboard\n\n" + render(frame))
    atomic.write_text(written[1], render(frame, "csv"))
    if not frame.empty:
        written.append(folder / "leaderboard.png")
        plot(frame, written[2])
    return written


def write_runs(linked: pd.DataFrame, missing: list[str], where: str, target: Path = RUNS_FILE) -> None:
    """reports/runs.md: the leaderboard with its MLflow runs (git-ignored, rewritten every run)."""
    text = "# Leaderboard runs\n\n" + render(linked, with_ids=True)
    if missing:
        text += "\n" + missing_line(missing, where) + "\n"
    atomic.write_text(target, text)


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


def plot_latency(linked: pd.DataFrame, target: Path = paths.LATENCY_PLOT) -> bool:
    """Test accuracy against batch-1 latency on this machine, one labelled point per stage (the
    chapter's question: which model fits the latency budget?). False when no run has the figure."""
    known = linked[linked["latency_ms_batch1"].notna()]
    if known.empty:
        return False
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for _, entry in known.iterrows():
        size = entry["model_size_mb"] if entry["model_size_mb"] is not None else 1.0
        axes.scatter(entry["latency_ms_batch1"], entry["accuracy"], s=40 + 4 * float(size), alpha=0.7)
        axes.annotate(f" {entry['stage']} ({size} MB)", (entry["latency_ms_batch1"], entry["accuracy"]))
    axes.set_xscale("log")
    axes.set_xlabel("latency at batch 1 (ms, this machine, log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy vs latency (point size: model file size)")
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=100)
    plt.close(figure)
    return True


CHAMPION_PAGE = paths.REPORTS / "champion.png"  # a DVC output: the best stage's confusion matrix, mistakes, Grad-CAM


def champion_page(stage: str, target: Path = CHAMPION_PAGE) -> Path:
    """One image of the champion: its confusion matrix, its most confidently wrong test images, their Grad-CAM."""
    parts = [paths.plots_dir(stage) / name for name in ("confusion.png", "mistakes.png", "gradcam.png")]
    pictures = [Image.open(path).convert("RGB") for path in parts if path.is_file()]
    width = max([picture.width for picture in pictures] + [320])
    page = Image.new("RGB", (width, 24 + sum(picture.height for picture in pictures)), "white")
    title = f"champion: {stage}" + ("" if pictures else f" (no plots in {paths.plots_dir(stage)})")
    ImageDraw.Draw(page).text((6, 6), title, fill="black", font=ImageFont.load_default())
    top = 24
    for picture in pictures:
        page.paste(picture, (0, top))
        top += picture.height
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")  # Pillow writes no time chunk: the same plots give the same bytes
    atomic.write_bytes(target, buffer.getvalue())
    return target

