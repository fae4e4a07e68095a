"""A killed finetune, finished with and without its checkpoint, on the chapter's workload.

The chapter's workload (benchmarks/chapter.py: Kaggle's layout, 1,000 train + 400 test images per class at
150x150, float32) in a fresh clone, with `finetune.epochs: 2` (the committed 1 would leave no epoch to
resume after). `dvc repro top` prepares finetune's inputs; then finetune runs three times as dvc.yaml
runs it: uninterrupted (what finishing costs without a checkpoint: everything again), SIGKILLed halfway
through its last epoch (the checkpoint's test hook), and resumed from its checkpoint. The resumed
outputs must be byte-identical to the uninterrupted ones.

    python benchmarks/resume.py [--epochs 2] [--train-per-class 1000] [--test-per-class 400] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapter  # noqa: I001 - the chapter workload, beside common
import common

TARGETS = {"resumed_over_full_max": 0.75}  # with 2 epochs, killed halfway through the second: ~0.25 + fixed costs


def outputs(clone: Path) -> dict[str, str]:
    files = [*sorted((clone / "models" / "finetune").rglob("*")), *sorted((clone / "plots" / "finetune").rglob("*")),
             clone / "metrics" / "finetune.json"]
    return {path.relative_to(clone).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in files if path.is_file() and not path.name.startswith(".")}  # not DVC's .gitignore


def clear(clone: Path) -> None:
    """What dvc repro does before running the stage: its outputs removed."""
    for folder in ("models/finetune", "plots/finetune"):
        shutil.rmtree(clone / folder, ignore_errors=True)
    (clone / "metrics" / "finetune.json").unlink(missing_ok=True)


def different(first: dict[str, str], second: dict[str, str]) -> list[str]:
    return sorted(name for name in set(first) | set(second) if first.get(name) != second.get(name))


def finetune(clone: Path, env: dict[str, str], kill: str | None = None) -> dict:
    """One `python -m stages.finetune`: seconds, exit code, the lines it said about its checkpoint."""
    env = dict(env) | ({"IMGCLF_TEST_KILL": kill} if kill else {})
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stages.finetune"], cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, -9):
        raise RuntimeError(f"finetune failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    said = [line for line in done.stdout.splitlines() if line.startswith("finetune: ")]
    return {"seconds": round(seconds, 1), "exit": done.returncode, "said": said}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-per-class", type=int, default=chapter.WORKLOAD["data.train_per_class"])
    parser.add_argument("--test-per-class", type=int, default=chapter.WORKLOAD["data.test_per_class"])
    parser.add_argument("--keep", action="store_true", help="keep the clone in benchmarks/work")
    args = parser.parse_args()
    load = common.load_now()
    zip_path = chapter.archive()
    clone = common.clone_project("resume-")
    try:
        workload = chapter.WORKLOAD | {"data.train_per_class": args.train_per_class,
                                       "data.test_per_class": args.test_per_class}
        common.apply_overrides(clone / "params.yaml", workload | {
            "data.archive": str(zip_path), "finetune.epochs": args.epochs})
        env = common.stage_env(clone, clone)
        print(f"dvc repro top (finetune's inputs) in {clone} ...", flush=True)
        common.dvc_repro(clone, env, "top")
        from imgclf import params as params_module
        from imgclf.data import holdout

        params = params_module.load(clone / "params.yaml")
        train = 2 * args.train_per_class
        steps_per_epoch = math.ceil((train - holdout.held_out(train, params.data.validation_fraction))
                                    / params.finetune.batch_size)
        kill_step = (args.epochs - 1) * steps_per_epoch + steps_per_epoch // 2
        print("finetune, uninterrupted ...", flush=True)
        full = finetune(clone, env)
        expected = outputs(clone)
        clear(clone)
        print("finetune, uninterrupted again (the control: the same bytes without any kill?) ...", flush=True)
        finetune(clone, env)
        control = outputs(clone)
        clear(clone)
        print(f"finetune, killed before step {kill_step} (epoch {args.epochs} of {args.epochs}, "
              f"{steps_per_epoch} steps each) ...", flush=True)
        killed = finetune(clone, env, f"step:{kill_step}")
        checkpoint_mib = (clone / ".checkpoints" / "finetune.npz").stat().st_size / 2**20
        print("finetune, resumed ...", flush=True)
        resumed = finetune(clone, env)
        identical = outputs(clone) == expected
        differ = {"control": different(expected, control), "resumed": different(expected, outputs(clone))}
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent, ignore_errors=True)
    figures = {
        "workload": workload | {"finetune.epochs": args.epochs}, "steps_per_epoch": steps_per_epoch,
        "differ": differ, "control_identical": not differ["control"],
        "kill_step": kill_step, "full_s": full["seconds"], "killed_after_s": killed["seconds"],
        "resumed_s": resumed["seconds"], "resumed_said": resumed["said"], "checkpoint_mib": round(checkpoint_mib, 1),
        "resumed_over_full": round(resumed["seconds"] / full["seconds"], 3), "outputs_identical": identical,
        "targets": TARGETS,
        "checks": {"pass_identical": identical, "pass_control_identical": not differ["control"],
                   "pass_resumed_over_full": resumed["seconds"] / full["seconds"] <= TARGETS["resumed_over_full_max"]},
    }
    print(f"finish after the kill: {resumed['seconds']:.1f} s resumed vs {full['seconds']:.1f} s from the start "
          f"({figures['resumed_over_full']:.2f}x); checkpoint {checkpoint_mib:.0f} MiB; outputs identical: {identical}; "
          f"differ: {differ}")
    path = common.write_result("resume", figures, load)
    print(f"written to {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
