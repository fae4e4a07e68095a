"""`python -m imgclf search`: Optuna's TPE sampler asks, each trial runs as a DVC experiment, its metric is told back.

Each trial is `dvc exp run -n <name>-<trial> -S <its values> <objective's stage>` on this host's DVC queue
(`--jobs` at a time) or as a Ray task (`--ray`), so every trial is a DVC experiment a user can
`dvc exp apply`. While it trains, the objective's stage reports its per-epoch validation metric to the
study and stops when the median pruner says so (imgclf.sweep.trial). The study is persisted (study):
a search killed and started again under the same name waits for the trials still in the DVC queue,
re-runs those that were lost, and never repeats a finished one.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from imgclf import params as params_module
from imgclf.errors import UserError, require_extra
from imgclf.sweep import cluster, local, outcome, space
from imgclf.sweep import study as study_module
from imgclf.sweep import trial as trial_hook
from imgclf.sweep.grid import NAME, Point
from imgclf.tracking import store


@dataclass(frozen=True)
class Settings:
    """What `python -m imgclf search` was asked for."""

    overrides: tuple[str, ...]
    objective: str
    direction: str = "auto"
    trials: int = 20
    jobs: int = 1
    name: str = "search"
    storage: str | None = None
    seed: int | None = None  # the sampler's; None: params.yaml's seed
    startup_trials: int = 4  # random trials before TPE models the space
    pruner: str = "median"
    prune_after: int = 2  # complete trials before the pruner compares
    enqueue: tuple[str, ...] = ()  # trials given by hand ("key=value key=value"), run first
    ray: cluster.RaySettings | None = None


def search(settings: Settings) -> int:
    """Run the search to `settings.trials` finished trials; print a line per trial, then the table; the exit code."""
    require_extra("optuna", "search", "search")
    if not NAME.match(settings.name):
        raise UserError(f"search --name {settings.name!r}: use letters, digits, - and _ (starting with a letter)")
    if settings.trials < 1 or settings.jobs < 1 or settings.startup_trials < 0 or settings.prune_after < 0:
        raise UserError("search --trials/--jobs: use 1 or more; --startup-trials/--prune-after: 0 or more")
    if settings.pruner not in ("median", "none"):
        raise UserError(f"search --pruner {settings.pruner}: use median or none")
    goal = study_module.objective(settings.objective, settings.direction)
    dimensions = space.parse(settings.overrides)  # a bad space stops here, before anything runs
    given = [space.given(text, dimensions) for text in settings.enqueue]
    config = params_module.load()
    storage = settings.storage or os.environ.get(trial_hook.ENV_STORAGE) or study_module.default_storage()
    if settings.ray and storage.startswith("sqlite"):
        raise UserError("search --ray: the study's storage is a SQLite file on this host, and each node's stage "
                        "reports its epochs to it: give --storage postgresql+psycopg://... (the team's PostgreSQL)")
    template = cluster.job_template(config.mlflow.experiment) if settings.ray else None
    if not settings.ray:
        _check_no_workers()
    pruning = ("median" if settings.pruner == "median" and goal.monitor else "none", settings.prune_after)
    seed = config.seed if settings.seed is None else settings.seed
    study = study_module.open_study(settings.name, storage, goal, dimensions, seed, settings.startup_trials, pruning)
    for values in given:  # once: a resumed study already has them
        study.enqueue_trial(values, skip_if_exists=True)

    uri = store.tracking_uri()
    client = store.client(uri)
    experiment_id = store.experiment_id(client, config.mlflow.experiment, uri)
    run_id = study_module.mlflow_run(client, experiment_id, study, uri, {
        "objective": goal.text, "direction": goal.direction, "space": " ".join(d.describe() for d in dimensions),
        "sampler": f"TPE (seed {seed}, {settings.startup_trials} random trials first)",
        "pruner": f"median of {goal.monitor} after {settings.prune_after} complete trials"
                  if pruning[0] == "median" else "none",
        "trials": settings.trials, "storage": store.display_uri(storage)})
    hook_env = {trial_hook.ENV_STORAGE: storage, trial_hook.ENV_STUDY: settings.name, trial_hook.ENV_RUN: run_id}
    if settings.ray:
        template["env"] = template["env"] | hook_env
    else:
        os.environ.update(hook_env)  # DVC's queue workers, started from here, pass it to the stages
    search_run = Search(settings, study, goal, dimensions, client, run_id, uri)
    try:
        if settings.ray:
            with cluster.joined(settings.ray):
                search_run.loop(cluster.Tasks(settings.ray, template))
        else:
            search_run.loop(local.Queue(settings.jobs))
    except KeyboardInterrupt:
        with store.store_lock(uri):
            client.set_terminated(run_id, "KILLED")
        print(f"search: interrupted; `python -m imgclf search` with the same -S, --objective and --name "
              f"{settings.name} resumes it (trials already in DVC's queue go on: `dvc queue stop` stops them)",
              file=sys.stderr)
        return 130
    return search_run.finish()


def _check_no_workers() -> None:
    """Refuse to share DVC's queue with workers started elsewhere: their trials would not report to the study."""
    status = local.dvc("queue", "status", check=False).stdout
    for line in status.splitlines():
        if line.startswith("Worker status:") and not line.split(":", 1)[1].strip().startswith("0 active"):
            raise UserError(f"search: DVC queue workers are already running ({line.split(':', 1)[1].strip()}): their "
                            f"trials would not report to the study: let them finish, or dvc queue stop")


class Search:
    """One search's loop: ask, run, tell, until the study has its trials."""

    def __init__(self, settings: Settings, study: Any, goal: study_module.Objective, dimensions: Sequence[space.Dimension],
                 client: Any, run_id: str, uri: str):
        self.settings, self.study, self.goal, self.dimensions = settings, study, goal, dimensions
        self.client, self.run_id, self.uri = client, run_id, uri
        self.running: dict[str, Any] = {}  # experiment name -> optuna Trial
        self.taken = set(cluster.existing_names() if settings.ray else local.existing_names())
        self.started = time.monotonic()

    def finished_count(self) -> int:
        import optuna

        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return sum(1 for frozen in self.study.get_trials(deepcopy=False, states=done)
                   if not frozen.user_attrs.get(study_module.ATTR_ERROR, "").startswith("lost"))

    def loop(self, runner: Any) -> None:
        self._resume(runner)
        left = self.settings.trials - self.finished_count()
        slots = runner.capacity()
        print(f"search {self.settings.name}: {self.goal.direction} {self.goal.text}; {max(left, 0)} trial(s) to run, "
              f"{slots} at a time", file=sys.stderr, flush=True)
        while True:
            free = self.settings.trials - self.finished_count() - len(self.running)
            batch = [self._ask() for _ in range(min(free, slots - len(self.running)))]
            if batch:
                runner.submit(batch)
            if not self.running:
                return
            for point, error in runner.wait():
                self._tell(point, error)

    def _ask(self) -> Point:
        trial = self.study.ask()
        values = {dimension.key: dimension.suggest(trial) for dimension in self.dimensions}
        number = trial.number
        name = f"{self.settings.name}-{number}"
        while name in self.taken:  # an earlier study's experiment (its storage deleted) keeps its name
            number += 1000
            name = f"{self.settings.name}-{number}"
        self.taken.add(name)
        trial.set_user_attr(trial_hook.ATTR_EXPERIMENT, name)
        point = Point(name, tuple(space.override(key, value) for key, value in values.items()), (self.goal.stage,))
        self.running[name] = trial
        print(f"search: trial {trial.number} -> {name} ({point.describe()})", file=sys.stderr, flush=True)
        return point

    def _resume(self, runner: Any) -> None:
        """The trials a killed search left RUNNING: told if their experiment finished, waited for if it is
        still in the DVC queue, else failed as lost and asked again with the same values."""
        import optuna

        lost = [frozen for frozen in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
        if not lost:
            return
        states = local.queue_states() if not self.settings.ray else {}
        if self.settings.ray:  # a Ray task dies with its driver; one that got its experiment pushed first counts
            for frozen in lost:
                local.dvc("exp", "pull", "-f", cluster.GIT_REMOTE, frozen.user_attrs.get(trial_hook.ATTR_EXPERIMENT, ""),
                          check=False)
        shown = _shown()
        adopted, rerun = [], 0
        for frozen in lost:
            name = frozen.user_attrs.get(trial_hook.ATTR_EXPERIMENT, "")
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            point = Point(name, tuple(space.override(key, value) for key, value in frozen.params.items()), (self.goal.stage,))
            if name and outcome.metric(shown, name, self.goal.stage, self.goal.metric) is not None:
                self.running[name] = trial
                self._tell(point, None, shown)
            elif name and states.get(name) in local.ACTIVE:
                self.running[name] = trial
                adopted.append(point)
            else:
                trial.set_user_attr(study_module.ATTR_ERROR, "lost: its search was killed before it finished; re-run")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.study.enqueue_trial(frozen.params, user_attrs={study_module.ATTR_RERUN_OF: frozen.number},
                                         skip_if_exists=False)
                rerun += 1
        if adopted:
            runner.adopt(adopted)
        print(f"search {self.settings.name}: resumed with {self.finished_count()} finished trial(s); "
              f"{len(adopted)} still in the DVC queue, {rerun} lost and run again", file=sys.stderr, flush=True)

    def _tell(self, point: Point, error: str | None, shown: Any = None) -> None:
        import optuna

        trial = self.running.pop(point.name)
        value = None
        if error is None:
            value = outcome.metric(shown if shown is not None else _shown(), point.name, self.goal.stage, self.goal.metric)
            if value is None:
                error = f"metrics/{self.goal.stage}.json has no {self.goal.metric}"
        # The stage's hook, in another process, may have marked it pruned: read it back from the storage.
        frozen = next(item for item in self.study.get_trials(deepcopy=False) if item.number == trial.number)
        if error is not None and trial_hook.ATTR_PRUNED in frozen.user_attrs:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            line = f"pruned at epoch {frozen.user_attrs[trial_hook.ATTR_PRUNED]}"
        elif error is not None:
            trial.set_user_attr(study_module.ATTR_ERROR, error[:500])
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            line = f"FAILED: {error}"
        else:
            self.study.tell(trial, value)
            line = f"{self.goal.text} {value:.4f}"
        best = self._best()
        print(f"search: trial {trial.number} ({point.name}, {point.describe()}) {line}"
              + (f"; best so far {best.value:.4f} (trial {best.number})" if best else ""), file=sys.stderr, flush=True)
        metrics = {"trial_value": value} if value is not None else {}
        if best:
            metrics["best_value"] = best.value
        self._log(metrics, trial.number)

    def _best(self) -> Any:
        try:
            return self.study.best_trial
        except ValueError:  # no complete trial yet
            return None

    def _log(self, metrics: dict[str, float], step: int) -> None:
        import mlflow

        with store.store_lock(self.uri):
            self.client.log_batch(self.run_id, metrics=[mlflow.entities.Metric(key, float(value), 0, step)
                                                        for key, value in metrics.items()])

    def finish(self) -> int:
        """The table best first, the best trial's apply line, the figures; the study's run FINISHED."""
        table = study_module.rows(self.study)
        folder = study_module.report_dir(self.settings.name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "trials.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in table for key in row)))
            writer.writeheader()
            writer.writerows(table)
        figures = study_module.figures(self.study, folder)
        (folder / "trials.md").write_text(study_module.markdown(table), encoding="utf-8")
        best = self._best()
        with store.store_lock(self.uri):
            for path in [folder / "trials.csv", folder / "trials.md", *figures]:
                self.client.log_artifact(self.run_id, str(path))
            if best:
                self.client.set_tag(self.run_id, "imgclf.best_experiment",
                                    best.user_attrs.get(trial_hook.ATTR_EXPERIMENT, ""))
            self.client.set_terminated(self.run_id, "FINISHED")
        failed = sum(1 for row in table if row["state"] == "fail" and not str(row["note"]).startswith("lost"))
        print(f"search {self.settings.name}: {len(table)} trial(s) in the study, this run took "
              f"{time.monotonic() - self.started:.0f} s; table and figures in {folder}", file=sys.stderr)
        sys.stdout.write(study_module.markdown(table))
        if best:
            name = best.user_attrs.get(trial_hook.ATTR_EXPERIMENT, "")
            print(f"\nbest: trial {best.number}, {self.goal.text} {best.value:.4f}: dvc exp apply {name} && dvc repro")
        return 1 if failed else 0


def _shown() -> Any:
    """`dvc exp show --json` of this workspace's experiments."""
    return json.loads(local.dvc("exp", "show", "--json", "--no-fetch", check=False).stdout or "[]")
