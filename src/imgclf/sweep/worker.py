"""One experiment of a `sweep --ray`, as the Ray task runs it on whichever node it lands on.

In a temporary folder of that node: clone the project's git remote at the sweep's commit, give the clone
the driver's DVC remote settings (endpoint, keys: `.dvc/config.local`, never in git), then
`dvc exp run --pull -n <name> -S ...` (missing inputs come from the DVC remote; stages log to the shared
MLflow server), `dvc push` (the experiment's outputs to the DVC remote) and last
`dvc exp push --no-cache -f` (its ref to the git remote). The experiment exists for the driver only once
that ref is there, and then all it names is already on the DVC remote: a killed attempt left nothing
the driver could pull, and the retry's forced push replaces whatever of it got through. Stage runs a
killed attempt left RUNNING in MLflow are marked KILLED before the retry starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.sweep.grid import Point
from imgclf.sweep.outcome import error_line, first_line
from imgclf.tracking.tags import TAG_EXP_NAME


@dataclass(frozen=True)
class Job:
    """Everything a node needs for one experiment; secrets stay out of its repr (Ray prints reprs)."""

    point: Point
    git_url: str = field(repr=False)  # may hold a token (https://user:token@host/...)
    commit: str
    identity: tuple[str, str]  # git user.name, user.email for the experiment's commit
    experiment: str  # the MLflow experiment (params.yaml's mlflow.experiment)
    env: dict[str, str] = field(repr=False)  # MLFLOW_TRACKING_URI, its credentials
    dvc_local: dict = field(repr=False)  # the driver's .dvc/config.local remote sections (endpoint, keys)


@dataclass(frozen=True)
class Done:
    host: str  # where it ran
    error: str | None = None  # None: pushed


def run_experiment(job: Job) -> Done:
    host = socket.gethostname()
    bin_dir = os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory(prefix=f"imgclf-sweep-{job.point.name}-") as folder:
        root = Path(folder) / "project"
        env = _environment(root, bin_dir, job)

        def step(*command: str) -> str | None:
            """Run a command in the clone under the guard; None when it succeeded, else its error line."""
            guarded = [sys.executable, "-m", "imgclf.sweep.guard", str(os.getpid()), *command]
            done = subprocess.run(guarded, cwd=root if root.exists() else folder, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if done.returncode == 0:
                return None
            return f"{' '.join(command[:3])}: {error_line(done.stdout)}"


        name, email = job.identity  # the experiment's commit is the driver's user's (scmrepo reads git config)
        error = step("git", "clone", "-q", "--no-checkout", job.git_url, str(root)) or \
            step("git", "checkout", "-q", "--detach", job.commit) or \
            step("git", "config", "user.name", name) or step("git", "config", "user.email", email)
        if error:
            return Done(host, error)
        try:
            _configure_dvc(root, job.dvc_local)
            _mark_killed(job)
        except Exception as failure:  # noqa: BLE001 - the store unreachable, a refused login, ...
            return Done(host, f"before dvc exp run: {type(failure).__name__}: {first_line(failure)}")
        dvc = os.path.join(bin_dir, "dvc")
        arguments = [argument for override in job.point.overrides for argument in ("-S", override)]
        # The outputs first, the experiment's git ref last: once the ref is on origin, all it names is on
        # the DVC remote (dvc exp push alone sends the ref first, the cache after).
        error = step(dvc, "exp", "run", "--pull", "-n", job.point.name, *arguments, *job.point.targets) or step(dvc, "push") or \
            step(dvc, "exp", "push", "--no-cache", "-f", "origin", job.point.name)
        return Done(host, error)



def _environment(root: Path, bin_dir: str, job: Job) -> dict[str, str]:
    """The node's environment, with the shared store, this node's Python first, the clone's own code."""
    # The node's own MLflow settings (TLS certificates, ...) stay; what names a run or a store is the driver's.
    replaced = {*job.env, "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"}
    env = {key: value for key, value in os.environ.items()
           if key not in replaced and not key.startswith(("DVC_", "IMGCLF_", "RAY_AUTH"))}
    env.update(job.env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join([str(root / "src"), str(root)]),  # the commit's code, not the node's
               DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0")
    return env


def _configure_dvc(root: Path, local: dict) -> None:
    """The driver's remote settings as the clone's .dvc/config.local (DVC keeps it out of git)."""
    from dvc.config import Config

    config = Config(dvc_dir=root / ".dvc")
    with config.edit("local") as conf:
        for name, settings in (local.get("remote") or {}).items():
            conf["remote"][name] = dict(settings)
        if (local.get("core") or {}).get("remote"):
            conf["core"]["remote"] = local["core"]["remote"]


def _mark_killed(job: Job) -> None:
    """Mark KILLED the stage runs an earlier attempt of this experiment left RUNNING (its node died)."""
    from mlflow.tracking import MlflowClient

    saved = {key: os.environ.get(key) for key in job.env}
    os.environ.update(job.env)  # the client reads the server's credentials from the environment
    try:
        client = MlflowClient(job.env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name(job.experiment)
        if experiment is None:
            return
        stale = client.search_runs([experiment.experiment_id], f"tags.`{TAG_EXP_NAME}` = '{job.point.name}' "
                                   "and attributes.status = 'RUNNING'", max_results=1000)
        for run in stale:  # the pipeline's parent run among them: its next stage sets it RUNNING again
            client.set_terminated(run.info.run_id, "KILLED")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
