"""A sweep over a Ray cluster: one Ray task per experiment, on whichever node has the resources.

The driver checks that a node elsewhere could redo what this workspace would do (everything committed
and pushed to the git remote, a default DVC remote, a shared MLflow server), hands Ray one `worker.Job`
per experiment, and `dvc exp pull`s each one that comes back, so `dvc exp show` lists it here. Ray
retries a task whose node or worker died (`--max-retries`); a task that ran and failed (a bad override,
a stage's error) is not retried: its error comes back as the experiment's outcome.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlparse

from imgclf.errors import UserError, require_extra
from imgclf.sweep import local, outcome, worker
from imgclf.sweep.grid import Point
from imgclf.tracking import store

GIT_REMOTE = "origin"
SHARED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
              "MLFLOW_TRACKING_SERVER_CERT_PATH")


@dataclass(frozen=True)
class RaySettings:
    address: str
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 2


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"sweep --ray: git {' '.join(args)}: {(done.stderr or done.stdout).strip() or done.returncode}")
    return done.stdout.strip()


def job_template(experiment: str) -> dict:
    """What every task gets, checked here so that a node elsewhere can redo this workspace's pipeline."""
    from dvc.config import Config

    require_extra("ray", "cluster", "sweep --ray")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise UserError("sweep --ray: the workspace has uncommitted changes; the nodes clone the git remote "
                        "at HEAD: commit and push them first")
    url = _git("remote", "get-url", GIT_REMOTE)
    if "://" not in url and ":" not in url.split("/")[0] and Path(url).exists():
        url = str(Path(url).resolve())  # a local bare repository: nodes of this machine clone it by path
    commit = _git("rev-parse", "HEAD")
    _git("fetch", "-q", GIT_REMOTE)
    if not _git("branch", "-r", "--contains", commit, "--list", f"{GIT_REMOTE}/*"):
        raise UserError(f"sweep --ray: HEAD {commit[:8]} is not on {GIT_REMOTE} ({store.display_uri(url)}): the nodes clone it "
                        f"from there: git push {GIT_REMOTE} first")
    dvc_dir = Path(_git("rev-parse", "--show-toplevel")) / ".dvc"
    config = Config(dvc_dir=dvc_dir)
    if not (config.get("core") or {}).get("remote"):
        raise UserError("sweep --ray: no default DVC remote: the nodes pull inputs from it and push each "
                        "experiment's outputs to it: make remote (or dvc remote add -d ...) first")
    uri = store.tracking_uri()
    if urlparse(uri).scheme not in ("http", "https"):
        raise UserError(f"sweep --ray: MLFLOW_TRACKING_URI is {store.display_uri(uri)}: every node logs to the "
                        f"same store, so point it at the shared server (http://..., make server)")
    name = _git_config("user.name") or "imgclf sweep"
    email = _git_config("user.email") or "imgclf-sweep@localhost"
    env = {"MLFLOW_TRACKING_URI": uri} | {key: os.environ[key] for key in SHARED_ENV if os.environ.get(key)}
    local_config = config.load_one("local")
    return {"git_url": url, "commit": commit, "identity": (name, email), "experiment": experiment, "env": env,
            "dvc_local": {"remote": dict(local_config.get("remote") or {}), "core": dict(local_config.get("core") or {})}}


def _git_config(key: str) -> str:
    return subprocess.run(["git", "config", key], capture_output=True, text=True).stdout.strip()


def existing_names() -> frozenset[str]:
    """Experiments here and on the git remote (teammates' sweeps), so new names do not collide."""
    pushed = local.dvc("exp", "list", GIT_REMOTE, "--all-commits", "--name-only")  # unreadable: stop here
    names = {line.strip() for line in pushed.stdout.splitlines() if line.strip() and ":" not in line}
    return local.existing_names() | names


@contextlib.contextmanager
def joined(settings: RaySettings) -> Iterator[None]:
    """This process joined to the Ray cluster (refused if no node can meet the request), left at the end."""
    import ray
    from ray.exceptions import RayError

    with _stdout_to_stderr():  # Ray's own notices (a node died, ...) must not mix into the table on stdout
        try:
            ray.init(address=settings.address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, RayError) as error:  # auth too
            raise UserError(f"sweep --ray {settings.address}: cannot join the Ray cluster: "
                            f"{outcome.first_line(error)}") from error
        try:
            _check_resources(settings, ray.nodes())
            yield
        finally:
            ray.shutdown()


def run(points: Sequence[Point], settings: RaySettings, template: dict,
        finished: Callable[[Point, str | None], None]) -> None:
    """One Ray task per point; as each ends, pull it and call `finished(point, error or None)`."""
    with joined(settings):
        tasks = Tasks(settings, template)
        tasks.submit(points)
        while tasks.pending:
            for point, error in tasks.wait():
                finished(point, error)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _check_resources(settings: RaySettings, nodes: list[dict]) -> None:
    """Refuse a request no node can meet (Ray would wait for such a node forever)."""
    wanted = {"CPU": settings.num_cpus, "GPU": settings.num_gpus}
    if not any(node.get("Alive") and all(node.get("Resources", {}).get(kind, 0) >= amount
                                         for kind, amount in wanted.items() if amount)
               for node in nodes):
        offered = [f"{node['Resources'].get('CPU', 0):g} CPU/{node['Resources'].get('GPU', 0):g} GPU"
                   for node in nodes if node.get("Alive")]
        raise UserError(f"sweep --num-cpus {settings.num_cpus:g} --num-gpus {settings.num_gpus:g}: no node of the "
                        f"Ray cluster has that much (its nodes: {', '.join(offered) or 'none alive'})")


class Tasks:
    """Experiments as Ray tasks (inside `joined`): points in, those that ended (pulled here) out."""

    def __init__(self, settings: RaySettings, template: dict):
        import ray

        self.settings = settings
        self.template = template
        self.task = ray.remote(worker.run_experiment).options(
            num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, max_retries=settings.max_retries,
            retry_exceptions=False)
        self.pending: dict[Any, Point] = {}

    def capacity(self) -> int:
        """How many experiments the cluster runs at once: its CPUs (and GPUs) over what each reserves."""
        import ray

        total = ray.cluster_resources()
        fits = [total.get(kind, 0) / amount for kind, amount in (("CPU", self.settings.num_cpus),
                                                                   ("GPU", self.settings.num_gpus)) if amount]
        return max(1, int(min(fits))) if fits else 1

    def submit(self, points: Sequence[Point]) -> None:
        for point in points:
            self.pending[self.task.remote(worker.Job(point=point, **self.template))] = point

    def wait(self) -> list[tuple[Point, str | None]]:
        """Block until a task ends: [(point, error or None)], its experiment pulled here when it succeeded."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        ready, _ = ray.wait(list(self.pending), num_returns=1)
        point = self.pending.pop(ready[0])
        try:
            done: worker.Done = ray.get(ready[0])
        except RayTaskError as error:  # the task's own Python raised (not retried: retry_exceptions=False)
            cause = error.cause or error
            return [(point, f"the Ray task failed: {type(cause).__name__}: {outcome.first_line(cause)}")]
        except RayError as error:  # its node or worker died more often than --max-retries
            return [(point, f"lost after {self.settings.max_retries} retries: {type(error).__name__}: "
                            f"{outcome.first_line(error)}")]
        error = done.error
        if error is None:  # pushed: fetch its git ref and outputs, so dvc exp show lists it here
            pulled = local.dvc("exp", "pull", "-f", GIT_REMOTE, point.name, check=False)
            if pulled.returncode != 0:
                error = f"ran on {done.host} but dvc exp pull failed: {outcome.error_line(pulled.stderr)}"
        return [(point, error)]
