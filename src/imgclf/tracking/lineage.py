"""Which MLflow run produced the outputs DVC has now: a fingerprint of a stage's inputs.

A stage's fingerprint is a hash of its command, its deps' hashes and its params — exactly what
`dvc.lock` records for it. A running stage computes it through DVC's own API and tags its MLflow
run with it; later, `compare` and `report` read dvc.lock and find the run with the same
fingerprint. So a stage that DVC restored from its run-cache (no new MLflow run) still resolves
to the run that produced those outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

LOCK_FILE = "dvc.lock"


def fingerprint(entry: dict[str, Any]) -> str:
    """Hash of a dvc.lock-style stage entry's cmd, deps (path + hash) and params."""
    deps = sorted((dep["path"], dep.get("md5") or dep.get("etag") or dep.get("checksum") or "")
                  for dep in entry.get("deps", []))
    payload = {"cmd": entry.get("cmd"), "deps": deps, "params": entry.get("params", {})}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_fingerprint(stage: str) -> str | None:
    """The running stage's fingerprint, from DVC's view of its deps now; None outside DVC."""
    if not os.environ.get("DVC_STAGE") and not Path("dvc.yaml").exists():
        return None
    try:
        from dvc.repo import Repo
        from dvc.stage.serialize import to_single_stage_lockfile

        with Repo(".") as repo:
            (dvc_stage,) = repo.stage.collect(stage)
            dvc_stage.save_deps()
            entry = to_single_stage_lockfile(dvc_stage, with_files=False)
    except Exception:  # noqa: BLE001 - lineage is best effort: no DVC stage of that name, no repo
        return None
    return fingerprint(json.loads(json.dumps(entry, default=str)))


def locked_fingerprints(lock_file: str | Path = LOCK_FILE) -> dict[str, str]:
    """{stage: fingerprint} for every stage recorded in dvc.lock."""
    path = Path(lock_file)
    if not path.exists():
        return {}
    lock = yaml.safe_load(path.read_text()) or {}
    return {name: fingerprint(entry) for name, entry in (lock.get("stages") or {}).items()}
