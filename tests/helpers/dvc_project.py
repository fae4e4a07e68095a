"""Build a real DVC project in a temp git repo from this repo's files, with a subset of the stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from imgclf.params import apply_overrides

from helpers.workspace import REPO

VENV_BIN = Path(sys.executable).parent


def project_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would have: the venv first on PATH, no inherited store."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "IMGCLF_PIPELINE_ID")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in the project; on failure show its output."""
    result = subprocess.run(command, cwd=cwd, env=env or project_env(), text=True,
                            capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def make_project(root: Path, stages: list[str], overrides: dict[str, Any] | None = None) -> Path:
    """Copy src/, stages/, images/, params.yaml and the named stages of dvc.yaml into a fresh git+dvc repo."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    shutil.copytree(REPO / "images", root / "images")  # data.path's default: a dependency of download
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    kept = {name: pipeline["stages"][name] for name in stages}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": kept}, sort_keys=False))
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    apply_overrides(root / "params.yaml", overrides or {})
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)
    return root
