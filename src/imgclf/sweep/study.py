"""A search's Optuna study: its storage, its settings, its MLflow run, its table and figures.

The study lives in Optuna's RDB storage (a SQLite file in the project, or the team's PostgreSQL), so a
search restarted under the same name finds every trial it had. Its settings (objective, direction, the
space, the per-epoch metric the objective's stage reports) are the study's user attributes: a restart
with another objective or space is refused rather than mixed into it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from imgclf import paths
from imgclf.errors import UserError
from imgclf.pipeline.stages import MODEL_STAGES
from imgclf.sweep import trial as trial_hook
from imgclf.sweep.space import Dimension
from imgclf.tracking import store
from imgclf.tracking.pipeline_run import TAG_NOTE, TAG_ROLE

STORAGE_FILE = "search.db"  # the default storage, in the main workspace (git-ignored)
ROLE = "search"
TAG_SEARCH = "imgclf.search"
ATTR_OBJECTIVE = "objective"
ATTR_DIRECTION = "direction"
ATTR_SPACE = "space"
ATTR_RUN = "mlflow_run_id"
ATTR_RERUN_OF = "rerun_of"  # a trial re-run because the one before it was lost (its search was killed)
ATTR_ERROR = "error"
MINIMIZED = ("loss", "model_size_bytes", "total_params", "trainable_params")
PER_EPOCH = {"accuracy": "val_accuracy", "f1_macro": "val_accuracy", "precision_macro": "val_accuracy",
             "recall_macro": "val_accuracy", "loss": "val_loss"}


@dataclass(frozen=True)
class Objective:
    """`<stage>.<metric>` of metrics/<stage>.json, and whether bigger is better."""

    stage: str
    metric: str
    direction: str  # maximize | minimize

    @property
    def text(self) -> str:
        return f"{self.stage}.{self.metric}"

    @property
    def monitor(self) -> str:
        """The per-epoch validation figure the stage reports for pruning ("" when none follows the objective)."""
        return PER_EPOCH.get(self.metric, "")


def objective(text: str, direction: str) -> Objective:
    """The objective of `--objective stage.metric --direction auto|maximize|minimize`."""
    stage, _, metric = text.partition(".")
    if stage not in MODEL_STAGES or not metric or "." in metric:
        raise UserError(f"search --objective {text}: use <stage>.<metric> of a model stage's metrics/<stage>.json "
                        f"(baseline.accuracy, top.loss; stages: {', '.join(MODEL_STAGES)})")
    if direction == "auto":
        direction = "minimize" if metric in MINIMIZED else "maximize"
    if direction not in ("maximize", "minimize"):
        raise UserError(f"search --direction {direction}: use auto, maximize or minimize")
    return Objective(stage, metric, direction)


def default_storage() -> str:
    """sqlite:///<main workspace>/search.db."""
    return f"sqlite:///{paths.main_workspace() / STORAGE_FILE}"


def open_study(name: str, storage: str, goal: Objective, dimensions: Sequence[Dimension], seed: int,
               startup_trials: int, pruning: tuple[str, int]) -> Any:
    """The study `name` in `storage`, created if new; refused if it was made for another objective or space.
    `pruning`: (median | none, complete trials first), kept in the study for the stages' hook to use too."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = [dimension.describe() for dimension in dimensions]
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True)
    try:
        study = optuna.create_study(study_name=name, storage=trial_hook.storage_for(storage), sampler=sampler,
                                    pruner=trial_hook.pruner(*pruning), direction=goal.direction, load_if_exists=True)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's OperationalError (no server, a refused login), ...
        raise UserError(f"search --storage {store.display_uri(storage)}: cannot open the study: "
                        f"{str(error).strip().splitlines()[0][:300]}") from None
    made = study.user_attrs
    if not made:
        for key, value in {ATTR_OBJECTIVE: goal.text, ATTR_DIRECTION: goal.direction, ATTR_SPACE: space,
                           trial_hook.ATTR_STAGE: goal.stage, trial_hook.ATTR_MONITOR: goal.monitor}.items():
            study.set_user_attr(key, value)
    elif (made.get(ATTR_OBJECTIVE), made.get(ATTR_DIRECTION), made.get(ATTR_SPACE)) != (goal.text, goal.direction, space):
        raise UserError(f"search --name {name}: that study searches {made.get(ATTR_DIRECTION)} "
                        f"{made.get(ATTR_OBJECTIVE)} over {' '.join(made.get(ATTR_SPACE) or [])}: to resume it, give "
                        f"the same -S and --objective; for another search, give another --name")
    study.set_user_attr(trial_hook.ATTR_PRUNER, list(pruning))  # this run's: --pruner may change on a resume
    return study


def mlflow_run(client: Any, experiment_id: str, study: Any, uri: str, settings: dict[str, Any]) -> str:
    """The study's MLflow run (made once, RUNNING again when the search resumes): settings as params."""
    import mlflow

    run_id = study.user_attrs.get(ATTR_RUN)
    if run_id:
        with contextlib.suppress(Exception):  # a store that no longer has it: a new one
            if client.get_run(run_id).info.experiment_id == experiment_id:
                with store.store_lock(uri):
                    client.update_run(run_id, status="RUNNING")
                return run_id
    note = (f"Search {study.study_name}: {study.user_attrs[ATTR_DIRECTION]} {study.user_attrs[ATTR_OBJECTIVE]} over "
            f"{' '.join(study.user_attrs[ATTR_SPACE])}; each trial's pipeline run is beneath.")
    with store.store_lock(uri):
        run = client.create_run(experiment_id, run_name=f"search {study.study_name}",
                                tags={TAG_ROLE: ROLE, TAG_SEARCH: study.study_name, TAG_NOTE: note})
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(key, str(value)[:6000])
                                                  for key, value in sorted(settings.items())])
    study.set_user_attr(ATTR_RUN, run.info.run_id)
    return run.info.run_id


def rows(study: Any) -> list[dict[str, Any]]:
    """Every trial as a row, best first: the complete ones by value, then pruned, then failed."""
    import optuna

    states = optuna.trial.TrialState
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    order = {states.COMPLETE: 0, states.PRUNED: 1, states.RUNNING: 2, states.WAITING: 2, states.FAIL: 3}
    table = []
    for frozen in study.get_trials(deepcopy=False):
        table.append({
            "trial": frozen.number, "experiment": frozen.user_attrs.get(trial_hook.ATTR_EXPERIMENT, ""),
            "state": frozen.state.name.lower() + (f" at epoch {frozen.user_attrs[trial_hook.ATTR_PRUNED]}"
                                                  if trial_hook.ATTR_PRUNED in frozen.user_attrs else ""),
            "value": frozen.value, **frozen.params,
            "note": frozen.user_attrs.get(ATTR_ERROR, "") or (f"re-run of trial {frozen.user_attrs[ATTR_RERUN_OF]}"
                                                            if ATTR_RERUN_OF in frozen.user_attrs else ""),
            "_key": (order.get(frozen.state, 3), sign * frozen.value if frozen.value is not None else 0.0, frozen.number),
        })
    table.sort(key=lambda row: row["_key"])
    return [{key: value for key, value in row.items() if key != "_key"} for row in table]


def markdown(table: Sequence[dict[str, Any]]) -> str:
    """The trials table as Markdown."""
    columns = list(dict.fromkeys(key for row in table for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value).replace("|", "/")


def report_dir(name: str) -> Path:
    """reports/search/<name>/: the trials table and figures (people's, not DVC's: git-ignored)."""
    return paths.REPORTS / "search" / name


def figures(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimization history and parameter importances as PNGs (the latter once it can be computed)."""
    import matplotlib.pyplot as plt
    import optuna

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    plots = {"history.png": optuna.visualization.matplotlib.plot_optimization_history,
             "importances.png": optuna.visualization.matplotlib.plot_param_importances}
    for file, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on its matplotlib backend
            try:
                axes = plot(study)
            except (ValueError, RuntimeError):  # importances need two complete trials that differ
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(folder / file, dpi=100)
        plt.close(figure)
        made.append(folder / file)
    return made
