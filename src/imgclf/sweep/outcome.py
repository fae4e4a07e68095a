"""What each experiment of a sweep gave: a line as it finishes, a table at the end, the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from imgclf.pipeline.stages import MODEL_STAGES
from imgclf.sweep.grid import Point
from imgclf.tracking.pipeline_run import ROLE, TAG_ROLE
from imgclf.tracking.tags import TAG_EXP_NAME


@dataclass
class Outcome:
    point: Point
    error: str | None = None
    accuracy: dict[str, float] = field(default_factory=dict)  # model stage -> test accuracy
    seconds: float | None = None  # the experiment's pipeline run in MLflow, first stage to last

    def best(self) -> tuple[str, float] | None:
        return max(self.accuracy.items(), key=lambda item: item[1]) if self.accuracy else None

    def line(self) -> str:
        took = "" if self.seconds is None else f" in {self.seconds:.0f} s"
        if self.error:
            return f"sweep: {self.point.name} ({self.point.describe()}) FAILED{took}: {self.error}"
        best = self.best()
        headline = f"best {best[0]} accuracy {best[1]:.4f}" if best else "no model stage ran"
        return f"sweep: {self.point.name} ({self.point.describe()}) done{took}: {headline}"


def error_line(text: str) -> str:
    """The last meaningful line of a failed command's output (the stage's `imgclf: ...` line if any)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("imgclf:")]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (ours or errors or lines or ["no output"])[-1]


def first_line(error: BaseException) -> str:
    """An exception's message, first line (its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _metrics(show: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """{metrics file: its data} of experiment `name` in `dvc exp show --json`."""
    for baseline in show:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("name") == name:
                    return {file: (value or {}).get("data") or {}
                            for file, value in ((rev.get("data") or {}).get("metrics") or {}).items()}
    return {}


def accuracies(show: Sequence[Mapping[str, Any]], name: str) -> dict[str, float]:
    """{stage: accuracy} of experiment `name` from `dvc exp show --json` (metrics/<stage>.json)."""
    metrics = _metrics(show, name)
    return {stage: float(data["accuracy"]) for stage in MODEL_STAGES
            if "accuracy" in (data := metrics.get(f"metrics/{stage}.json", {}))}


def metric(show: Sequence[Mapping[str, Any]], name: str, stage: str, key: str) -> float | None:
    """metrics/<stage>.json's `key` in experiment `name` (`dvc exp show --json`); None if it has none."""
    value = _metrics(show, name).get(f"metrics/{stage}.json", {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pipeline_seconds(client: Any, experiment_name: str, name: str) -> float | None:
    """Wall time of the DVC experiment's MLflow pipeline run (its first stage's start to its last's end)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`{TAG_ROLE}` = '{ROLE}' and tags.`{TAG_EXP_NAME}` = '{name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs or not runs[0].info.end_time:
        return None
    return (runs[0].info.end_time - runs[0].info.start_time) / 1000


def table(outcomes: Sequence[Outcome]) -> str:
    """The final table, best first (failed experiments last): name, overrides, best stage, accuracy, seconds."""
    ordered = sorted(outcomes, key=lambda o: (o.error is not None, -(o.best() or ("", -1.0))[1]))
    rows = ["| experiment | overrides | best stage | accuracy | seconds |", "|---|---|---|---|---|"]
    for outcome in ordered:
        best = outcome.best()
        seconds = "" if outcome.seconds is None else f"{outcome.seconds:.0f}"
        if outcome.error:
            rows.append(f"| {outcome.point.name} | {outcome.point.describe()} | FAILED |  | {seconds} |")
        else:
            rows.append(f"| {outcome.point.name} | {outcome.point.describe()} | {best[0] if best else ''} | "
                        f"{f'{best[1]:.4f}' if best else ''} | {seconds} |")
    return "\n".join(rows) + "\n"


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0 when every experiment finished, 1 when any failed (the others still ran)."""
    return 1 if any(outcome.error for outcome in outcomes) else 0
