"""The tracking contract's experiment, its small params, and a stage run as a subprocess with a chosen environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers.workspace import stage_argv

EXPERIMENT = "tracking-contract"
SMALL = {"data.train_per_class": 6, "data.test_per_class": 2, "mlflow.experiment": EXPERIMENT}


def run_stage(name: str, cwd: Path, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key in ("IMGCLF_PIPELINE_ID", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT", "DVC_STAGE"):
        env.pop(key, None)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    result = subprocess.run(stage_argv(name), cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=240)
    return result
