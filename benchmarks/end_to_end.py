"""End to end: the offline default `dvc repro` (params.yaml as committed: mnist-sample, every stage)
in a fresh `git clone` of the project, wall time per stage and in total.

Per-stage seconds run from DVC's "Running stage '<name>'" line to the next one (the last stage: to
the end of `dvc repro`), so each includes the stage process's start (Python, TensorFlow, MLflow
imports) and DVC's saving of its outputs. The clone's own src/ is put first on PYTHONPATH (imgclf is
installed editable from the main checkout) and its MLflow store is its own.

    python benchmarks/end_to_end.py [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGET_S = 360.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone in benchmarks/work")
    args = parser.parse_args()
    load = common.load_now()
    clone = common.clone_project("end-to-end-")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    try:
        env = common.stage_env(clone, clone)
        print(f"dvc repro (offline default) in {clone} ...", flush=True)
        repro = common.dvc_repro(clone, env)
        status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True)
        repro["status_clean_after"] = "up to date" in status.stdout
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent, ignore_errors=True)
    for stage, seconds in repro["stage_seconds"].items():
        print(f"  {stage:12} {seconds:6.1f} s", flush=True)
    print(f"  {'total':12} {repro['seconds']:6.1f} s (target <= {TARGET_S:.0f} s)", flush=True)
    figures = {"commit": commit, "repro": repro, "target_s": TARGET_S,
               "pass": bool(repro["seconds"] <= TARGET_S), "kept_clone": str(clone) if args.keep else None}
    path = common.write_result("end_to_end", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
