"""The hook a training stage calls at each epoch's end when a search runs it: report, and stop if pruned.

`python -m imgclf search` runs each trial as a DVC experiment with the study's storage and name in the
environment (IMGCLF_SEARCH_STORAGE, IMGCLF_SEARCH_STUDY; DVC sets DVC_EXP_NAME). The stage the search's
objective names finds its trial by the experiment's name, reports its validation metric per epoch, and
stops with `Pruned` when Optuna's pruner says so. A pruned stage fails in DVC on purpose: DVC would
otherwise cache a half-trained model as what its params give. Anywhere else `active` is None: no cost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from imgclf.errors import UserError

ENV_STORAGE = "IMGCLF_SEARCH_STORAGE"
ENV_STUDY = "IMGCLF_SEARCH_STUDY"
ENV_RUN = "IMGCLF_SEARCH_RUN"  # the study's MLflow run: each trial's pipeline run nests under it
ATTR_EXPERIMENT = "experiment"  # a trial's DVC experiment name
ATTR_PRUNED = "pruned_at_epoch"
ATTR_STAGE = "stage"  # the study's: the stage whose metric is the objective
ATTR_MONITOR = "monitor"  # the study's: the per-epoch validation metric that stage reports
ATTR_PRUNER = "pruner"  # the study's: [kind, complete trials first] (Optuna keeps no pruner in its storage)


class Pruned(UserError):
    """The search's pruner stopped this trial: the stage ends without outputs, its run KILLED."""

    run_status = "KILLED"


@dataclass
class Reporter:
    """Reports one trial's per-epoch validation metric to its study; raises Pruned when it should stop."""

    trial: Any  # optuna.trial.Trial
    stage: str
    monitor: str

    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """After epoch `epoch` (1-based): report logs[monitor]; stop the stage if the pruner says so."""
        if self.monitor not in logs:
            return
        value = float(logs[self.monitor])
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(ATTR_PRUNED, epoch)
            raise Pruned(f"{self.stage}: pruned by the search at epoch {epoch} ({self.monitor} {value:.4f}, below the "
                         f"median of earlier trials at that epoch): trial {self.trial.number} of study "
                         f"{self.trial.study.study_name}; nothing of it is cached")


def active(stage: str) -> Reporter | None:
    """The hook for `stage` when a search's trial runs it and the objective is this stage's, else None."""
    storage, study_name, experiment = (os.environ.get(ENV_STORAGE), os.environ.get(ENV_STUDY),
                                       os.environ.get("DVC_EXP_NAME"))
    if not (storage and study_name and experiment):
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage_for(storage))
    if study.user_attrs.get(ATTR_STAGE) != stage:
        return None
    study.pruner = pruner(*study.user_attrs[ATTR_PRUNER])  # the search's own, not load_study's default
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.user_attrs.get(ATTR_EXPERIMENT) == experiment:
            print(f"{stage}: trial {frozen.number} of search {study_name}: reporting "
                  f"{study.user_attrs[ATTR_MONITOR]} each epoch (it stops if pruned)", flush=True)
            return Reporter(optuna.trial.Trial(study, frozen._trial_id), stage, study.user_attrs[ATTR_MONITOR])
    return None


def pruner(kind: str, prune_after: int) -> Any:
    """Optuna's median pruner once `prune_after` trials have completed (kind "median"), or none."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=prune_after, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def storage_for(url: str) -> Any:
    """Optuna's RDB storage at `url`; SQLite waits for a busy file rather than failing at once."""
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)
