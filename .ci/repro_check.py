"""CI reproducibility check: the whole pipeline, tiny profile, twice from clean (at once); fail unless identical.

Each run is a fresh `git clone` of the committed project with profiles/tiny.yaml applied; both log
to one temp MLflow store. Fails (exit 1, with a readable diff) unless:
  - every output hash dvc.lock records (data, features, models, metrics, plots, reports) is the same
    in both runs, and every metrics/*.json is byte-identical,
  - `dvc status` is clean after each run,
  - the store holds two complete (FINISHED) runs per stage with identical final metrics
    (timings and peak memory excluded: measurements of the machine, the only figures allowed to differ).
"""

from __future__ import annotations

import concurrent.futures
import difflib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from imgclf.params import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
# Measurements of the machine, not results: timings and a process's peak memory may differ between runs.
RUN_SPECIFIC = ("seconds", "per_second", "gflops", "images_per_s", "latency_ms", "rss_mb")


def sh(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; on failure print its output and stop."""
    result = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True)
    if result.returncode != 0:
        print(f"FAILED: {' '.join(command)} (in {cwd})\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        raise SystemExit(1)
    return result.stdout


def run_pipeline(workdir: Path, env: dict[str, str], label: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """Clone, apply the tiny profile, dvc repro, check dvc status; (metrics files' bytes, out hashes)."""
    sh(["git", "clone", "--quiet", str(ROOT), str(workdir)], ROOT, env)
    apply_overrides(workdir / "params.yaml", yaml.safe_load((workdir / "profiles" / "tiny.yaml").read_text()))
    env = {**env, "PYTHONPATH": str(workdir / "src")}  # the clone's code, not the venv's editable install
    start = time.monotonic()
    sh(["dvc", "repro"], workdir, env)
    print(f"{label}: dvc repro in {time.monotonic() - start:.0f} s")
    status = sh(["dvc", "status"], workdir, env)
    if "up to date" not in status:
        print(f"FAILED: dvc status not clean after {label}:\n{status}")
        raise SystemExit(1)
    metrics = {path.name: path.read_bytes() for path in sorted((workdir / "metrics").glob("*.json"))}
    return metrics, out_hashes(workdir / "dvc.lock")


def out_hashes(lock_file: Path) -> dict[str, str]:
    """{stage: out path: md5} for every output dvc.lock records."""
    stages = yaml.safe_load(lock_file.read_text())["stages"]
    return {f"{name}: {out['path']}": out.get("md5", "") for name, stage in stages.items() for out in stage.get("outs", [])}


def compare_outputs(first: dict[str, str], second: dict[str, str]) -> list[str]:
    """The dvc.lock outputs whose hashes differ between the two runs."""
    return [f"dvc.lock {key}: {first.get(key)} vs {second.get(key)}"
            for key in sorted(set(first) | set(second)) if first.get(key) != second.get(key)]


def compare_metrics(first: dict[str, bytes], second: dict[str, bytes]) -> list[str]:
    """Readable differences between two runs' metrics files."""
    problems = []
    for name in sorted(set(first) | set(second)):
        if name not in first or name not in second:
            problems.append(f"metrics/{name} exists in only one run")
        elif first[name] != second[name]:
            diff = difflib.unified_diff(
                first[name].decode().splitlines(), second[name].decode().splitlines(),
                f"run1/metrics/{name}", f"run2/metrics/{name}", lineterm="",
            )
            problems.append("\n".join(diff))
    return problems


def compare_mlflow(uri: str, stages: list[str]) -> list[str]:
    """Two FINISHED runs per stage, identical final metrics (RUN_SPECIFIC measurements excluded)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    problems = []
    experiments = client.search_experiments()
    runs = client.search_runs([experiment.experiment_id for experiment in experiments], max_results=5000)
    for stage in stages:
        mine = [run for run in runs if run.data.tags.get("dvc.stage") == stage]
        finished = [run for run in mine if run.info.status == "FINISHED"]
        if len(mine) != 2 or len(finished) != 2:
            problems.append(f"stage {stage}: {len(mine)} runs ({len(finished)} FINISHED), expected 2 FINISHED")
            continue
        first, second = (
            {key: value for key, value in run.data.metrics.items() if not any(part in key for part in RUN_SPECIFIC)}
            for run in finished
        )
        if first != second:
            keys = sorted(key for key in set(first) | set(second) if first.get(key) != second.get(key))
            problems.append(f"stage {stage}: final metrics differ: " + ", ".join(
                f"{key}: {first.get(key)} vs {second.get(key)}" for key in keys))
    return problems


def main() -> None:
    """Run the check; exit 1 with the differences when the pipeline does not reproduce."""
    with tempfile.TemporaryDirectory(prefix="imgclf-repro-") as temp:
        temp_path = Path(temp)
        uri = f"sqlite:///{temp_path / 'mlflow.db'}"
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": uri}
        env.pop("DVC_ROOT", None)
        # Both at once, one per core, into the one store: CI's time, and the outputs must not depend
        # on what else runs beside them.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            runs = [pool.submit(run_pipeline, temp_path / f"run{index}", env, f"run {index}") for index in (1, 2)]
            (first, first_outs), (second, second_outs) = (run.result() for run in runs)
        stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
        problems = compare_outputs(first_outs, second_outs) + compare_metrics(first, second) + compare_mlflow(uri, stages)
    if problems:
        print("REPRODUCIBILITY CHECK FAILED:\n" + "\n\n".join(problems))
        raise SystemExit(1)
    print(f"reproducibility check passed: {len(first_outs)} dvc.lock output hashes identical, "
          f"{len(first)} metrics files byte-identical, "
          f"dvc status clean twice, 2 complete MLflow runs per stage ({', '.join(stages)})")


if __name__ == "__main__":
    sys.exit(main())
