"""TPE against a grid of the same budget: the best baseline accuracy after each of N trials, offline default.

    python benchmarks/search.py                 # ~25 minutes on 2 cores (12 trials each); not part of `make bench`
    python benchmarks/search.py --trials 8 --epochs 1   # shorter

A project of download, split and baseline on the offline default (5,000 MNIST digits), with the baseline's
epochs fixed at --epochs and no model logged to MLflow (both stated in the results). Then, with two DVC
queue workers each:
- the grid: `sweep -S baseline.learning_rate=<4 values> -S cnn.dropout=<N/4 values>` (N experiments);
- the search: `search -S baseline.learning_rate=loguniform(1e-5,0.3) -S cnn.dropout=uniform(0,0.9)
  --objective baseline.accuracy --trials N` (TPE, 4 random trials first, the median pruner), one seed.
The grid's values span the search's ranges evenly (log-spaced learning rates). Writes
results/search.json: each method's best accuracy after each trial (in the order they finished), its wall
time, the trials pruned. One seed and one run: a figure for this workload, not a general ranking.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, machine_info

sys.path.insert(0, str(ROOT / "tests"))  # the tests' helper that builds a real DVC project in a temp git repo
from helpers.dvc_project import make_project, project_env, run

LEARNING_RATE = (1e-5, 0.3)
DROPOUT = (0.0, 0.9)
STAGES = ["download", "split", "baseline"]


def grid_values(trials: int) -> tuple[list[float], list[float]]:
    """4 log-spaced learning rates x trials/4 dropouts, inside the search's ranges (their ends excluded)."""
    rates = np.geomspace(*LEARNING_RATE, 6)[1:-1]
    dropouts = np.linspace(*DROPOUT, trials // 4 + 2)[1:-1]
    return [float(f"{rate:.2g}") for rate in rates], [round(float(value), 2) for value in dropouts]


def best_so_far(values: list[float | None]) -> list[float | None]:
    best, running = None, []
    for value in values:
        if value is not None and (best is None or value > best):
            best = value
        running.append(best)
    return running


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--trials", type=int, default=12, help="the budget of each method (a multiple of 4)")
    arguments.add_argument("--epochs", type=int, default=2, help="baseline.epochs in every trial")
    arguments.add_argument("--jobs", type=int, default=2)
    args = arguments.parse_args()
    root = Path(tempfile.mkdtemp(prefix="searchbench-"))
    project = make_project(root / "project", STAGES, {"baseline.epochs": args.epochs, "mlflow.log_model": False})
    env = project_env()
    run(["dvc", "repro", "split"], project, env=env, timeout=3000)
    rates, dropouts = grid_values(args.trials)

    started = time.monotonic()
    grid = run([sys.executable, "-m", "imgclf", "sweep", "-S", "baseline.learning_rate=" + ",".join(map(str, rates)),
                "-S", "cnn.dropout=" + ",".join(map(str, dropouts)), "--name", "grid", "--jobs", str(args.jobs)],
               project, env=env, timeout=6000, check=False)
    grid_s = time.monotonic() - started
    # The order they finished in (one line each on stderr) and their accuracies.
    grid_values_seen = [float(value) for value in re.findall(r"^sweep: grid-\d+ .* done in \d+ s: best baseline accuracy "
                                                              r"([0-9.]+)$", grid.stderr, re.MULTILINE)]
    grid_values_seen += [None] * (len(rates) * len(dropouts) - len(grid_values_seen))  # failed ones

    started = time.monotonic()
    search = run([sys.executable, "-m", "imgclf", "search",
                  "-S", f"baseline.learning_rate=loguniform({LEARNING_RATE[0]},{LEARNING_RATE[1]})",
                  "-S", f"cnn.dropout=uniform({DROPOUT[0]},{DROPOUT[1]})", "--objective", "baseline.accuracy",
                  "--trials", str(args.trials), "--jobs", str(args.jobs), "--name", "tpe"],
                 project, env=env, timeout=6000, check=False)
    search_s = time.monotonic() - started
    told = re.findall(r"^search: trial \d+ \(tpe-\d+, .*\) (baseline\.accuracy ([0-9.]+)|pruned at epoch \d|FAILED)",
                      search.stderr, re.MULTILINE)
    search_values = [float(value) if value else None for _, value in told]
    result = {
        "benchmark": "search", "machine": machine_info(), "workload": "the offline default (mnist-sample), "
        f"download + split + baseline (simple_cnn), baseline.epochs {args.epochs}, no model logged",
        "trials": args.trials, "jobs": args.jobs, "seed": 42,
        "grid": {"learning_rates": rates, "dropouts": dropouts, "seconds": round(grid_s, 1),
                 "values": grid_values_seen, "best_so_far": best_so_far(grid_values_seen), "exit_code": grid.returncode},
        "tpe": {"space": {"baseline.learning_rate": f"loguniform{LEARNING_RATE}", "cnn.dropout": f"uniform{DROPOUT}"},
                "startup_trials": 4, "pruner": "median after 2 complete trials", "seconds": round(search_s, 1),
                "values": search_values, "best_so_far": best_so_far(search_values),
                "pruned": sum(1 for state, _ in told if state.startswith("pruned")), "exit_code": search.returncode},
    }
    (RESULTS / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"grid ({len(rates)}x{len(dropouts)}): best {result['grid']['best_so_far'][-1]} in {grid_s:.0f} s; "
          f"TPE ({args.trials} trials, {result['tpe']['pruned']} pruned): best {result['tpe']['best_so_far'][-1]} "
          f"in {search_s:.0f} s")
    if grid.returncode or search.returncode:
        print(grid.stderr[-2000:], search.stderr[-2000:], file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
