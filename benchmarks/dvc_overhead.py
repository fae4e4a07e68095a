"""DVC overhead in the real pipeline: a no-op `dvc repro`, `dvc status`, and which stages re-run
when only `top.*` changes (must be exactly top, finetune, report).

Alone: a fresh `git clone` of the project with profiles/tiny.yaml applied (the whole pipeline in a
few minutes), `dvc repro` once. With --clone (what run_all.py does): the clone end_to_end.py has
just reproduced with the committed params.yaml (the offline default), which saves running a second
pipeline. Then timed no-op `dvc repro` and `dvc status`, then top.epochs set to 2 and a real
`dvc repro` (not --dry: --dry cannot see that an upstream output will change), whose "Running
stage" lines say what ran. The 25,000-image figures are benchmarks/dvc_status.py's.

    python benchmarks/dvc_overhead.py [--repeats 3] [--keep] [--clone PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGET_NOOP_S = 3.0
EXPECTED_AFTER_TOP = ["top", "finetune", "report"]
TOP_EPOCHS_AFTER = 2


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the clone in benchmarks/work")
    parser.add_argument("--clone", type=Path, help="a clone whose pipeline is already reproduced")
    args = parser.parse_args()
    load = common.load_now()
    clone = args.clone.resolve() if args.clone else common.clone_project("dvc-overhead-")
    try:
        env = common.stage_env(clone, clone)
        if args.clone:
            profile = "params.yaml as committed (offline default), reproduced by end_to_end.py"
            first = None
        else:
            profile = yaml.safe_load((clone / "profiles" / "tiny.yaml").read_text())
            common.apply_overrides(clone / "params.yaml", profile)
            print(f"dvc repro (tiny profile) in {clone} ...", flush=True)
            first = common.dvc_repro(clone, env)
        noop = []
        for _ in range(args.repeats):
            run = common.dvc_repro(clone, env)
            if run["ran"]:
                raise RuntimeError(f"a no-op dvc repro ran {run['ran']}")
            noop.append(run["seconds"])
        status = []
        for _ in range(args.repeats):
            seconds, output = timed(["dvc", "status"], clone, env)
            if "up to date" not in output:
                raise RuntimeError(f"dvc status not clean after repro:\n{output}")
            status.append(seconds)
        epochs = int(yaml.safe_load((clone / "params.yaml").read_text())["top"]["epochs"])
        # Any other value re-runs the same stages; a small one keeps top itself short.
        changed = TOP_EPOCHS_AFTER if epochs != TOP_EPOCHS_AFTER else epochs + 1
        common.apply_overrides(clone / "params.yaml", {"top.epochs": changed})
        after_top = common.dvc_repro(clone, env)
    finally:
        if not args.keep and not args.clone:
            shutil.rmtree(clone.parent, ignore_errors=True)
    figures = {
        "profile": profile,
        "first_repro": first,
        "noop_repro_s": noop, "noop_repro_median_s": statistics.median(noop),
        "status_s": status, "status_median_s": statistics.median(status),
        "top_change": {"change": f"top.epochs {epochs} -> {changed}", "ran": after_top["ran"],
                       "skipped": after_top["skipped"], "seconds": after_top["seconds"],
                       "stage_seconds": after_top["stage_seconds"]},
        "targets": {"noop_repro_max_s": TARGET_NOOP_S, "after_top_change": EXPECTED_AFTER_TOP},
        "pass_noop": bool(statistics.median(noop) <= TARGET_NOOP_S),
        "pass_top_change": sorted(after_top["ran"]) == sorted(EXPECTED_AFTER_TOP),
    }
    first_text = f"first repro {first['seconds']:.0f} s; " if first else ""
    print(f"  {first_text}no-op repro {figures['noop_repro_median_s']:.2f} s "
          f"(median of {args.repeats}); dvc status {figures['status_median_s']:.2f} s", flush=True)
    print(f"  after {figures['top_change']['change']}: ran {after_top['ran']} "
          f"(expected {EXPECTED_AFTER_TOP}) in {after_top['seconds']:.0f} s", flush=True)
    path = common.write_result("dvc_overhead", figures, load)
    print(f"written to {path.relative_to(common.ROOT)} (load before {load})")


if __name__ == "__main__":
    main()
