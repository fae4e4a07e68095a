"""A 4-experiment sweep two ways: DVC's queue with one worker, and a 2-node Ray cluster (1 CPU each).

    python benchmarks/sweep_ray.py        # ~10 minutes; not part of `make bench` (it would double it)

The tests' tiny project (download, split, perceptron), reproduced once and pushed (git: a bare
repository; DVC: a local folder remote; MLflow: `mlflow server` on SQLite, all on 127.0.0.1), then
`sweep -S perceptron.learning_rate=0.1,0.2,0.3,0.4` in a clone with `--jobs 1` (one after another), and
the same grid with `--ray` over the cluster that tests/helpers/ray_cluster.py starts. Writes
results/sweep_ray.json: both wall times and the per-experiment accuracies (which must agree).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, machine_info

sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers: the Ray cluster, the tiny DVC project, servers
from helpers.dvc_project import VENV_BIN, make_project, project_env, run
from helpers.queue import STAGES, TINY
from helpers.ray_cluster import RayCluster
from helpers.servers import free_port, wait_until_up

GRID = ["-S", "perceptron.learning_rate=0.1,0.2,0.3,0.4"]


def accuracies(table: str) -> dict[str, float]:
    rows = [line.split("|") for line in table.splitlines()[2:]]
    return {row[2].strip(): float(row[4]) for row in rows}


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="sweepbench-"))
    port = free_port()
    mlflow = subprocess.Popen([str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
                               "--default-artifact-root", str(root / "artifacts")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cluster = RayCluster()
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_up(uri, mlflow)
        env = project_env(MLFLOW_TRACKING_URI=uri)
        project = make_project(root / "project", STAGES, TINY)
        run(["git", "init", "-q", "--bare", str(root / "origin.git")], root)
        run(["git", "remote", "add", "origin", str(root / "origin.git")], project)
        run(["dvc", "remote", "add", "-d", "store", str(root / "dvc-store")], project)
        run(["dvc", "repro"], project, env=env)
        run(["dvc", "push"], project)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "pipeline, DVC remote"], project)
        run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project)
        sequential = root / "sequential"
        run(["git", "clone", "-q", "-b", "main", str(root / "origin.git"), str(sequential)], root)
        run(["dvc", "pull"], sequential)

        started = time.monotonic()
        one_by_one = run([sys.executable, "-m", "imgclf", "sweep", *GRID, "--name", "lr", "--jobs", "1"],
                         sequential, env=env, timeout=3000)
        sequential_s = time.monotonic() - started
        cluster.start()
        started = time.monotonic()
        fanned = run([sys.executable, "-m", "imgclf", "sweep", *GRID, "--name", "lr", "--ray", cluster.address],
                     project, env=cluster.env | {"MLFLOW_TRACKING_URI": uri}, timeout=3000)
        ray_s = time.monotonic() - started
    finally:
        cluster.stop()
        os.killpg(mlflow.pid, signal.SIGKILL)
    same = accuracies(one_by_one.stdout) == accuracies(fanned.stdout)
    result = {"machine": machine_info(), "experiments": 4, "sequential_s": round(sequential_s, 1),
              "ray_2_nodes_s": round(ray_s, 1), "speedup": round(sequential_s / ray_s, 2),
              "accuracies": accuracies(fanned.stdout), "same_accuracies": same}
    (RESULTS / "sweep_ray.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"sweep of 4: one after another {sequential_s:.0f} s, 2 Ray nodes {ray_s:.0f} s "
          f"({sequential_s / ray_s:.2f}x); accuracies {'the same' if same else 'DIFFER'}")
    shutil.rmtree(root, ignore_errors=True)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
