"""What every run is tagged with: stage, pipeline id, git state, data hash, DVC stage fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
from pathlib import Path

import psutil

from imgclf import paths
from imgclf.pipeline import stages
from imgclf.tracking import lineage

TAG_STAGE = "dvc.stage"
TAG_PIPELINE = "imgclf.pipeline_id"
TAG_EXP_NAME = "dvc.exp_name"
TAG_DATA_HASH = "imgclf.data_hash"
TAG_STAGE_HASH = "dvc.stage_hash"
TAG_COMMIT = "git.commit"
TAG_DIRTY = "git.dirty"
TAG_PID = "imgclf.pid"
TAG_HOST = "imgclf.host"
TAG_END_REASON = "imgclf.end_reason"
TAG_CLASSIFIER_MODEL = "imgclf.classifier_model_id"  # the served classifier logged by this run


def pipeline_id() -> str:
    """An id shared by every stage of one `dvc repro` or one DVC experiment.

    IMGCLF_PIPELINE_ID wins; in a DVC experiment it derives from the experiment's name and
    baseline; in a plain `dvc repro` from the dvc process that runs the stages (pid + start time).
    """
    explicit = os.environ.get("IMGCLF_PIPELINE_ID")
    if explicit:
        return explicit
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        return _short_hash(f"exp:{os.environ.get('DVC_EXP_BASELINE_REV', '')}:{exp_name}")
    process = _dvc_ancestor() or psutil.Process()
    return _short_hash(f"proc:{socket.gethostname()}:{process.pid}:{process.create_time()}")


def _dvc_ancestor() -> psutil.Process | None:
    with contextlib.suppress(psutil.Error):
        for parent in psutil.Process().parents():
            words = [Path(word).name for word in parent.cmdline()[:3]]
            # `dvc repro`, `python -m dvc exp run`, `.venv/bin/dvc queue ...` (a celery worker)
            if "dvc" in words and any(verb in parent.cmdline()[:4] for verb in ("repro", "exp", "queue")):
                return parent
    return None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the workspace, or ("unknown", True) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
    return commit, bool(status)


def data_hash() -> str | None:
    """sha256 of the split manifest: the data every training stage saw."""
    if not paths.MANIFEST.exists():
        return None
    with open(paths.MANIFEST, "rb") as stream:  # in chunks: a million images' manifest is ~130 MB
        return hashlib.file_digest(stream, "sha256").hexdigest()


def stage_tags(stage: str) -> dict[str, str]:
    """The tags every run carries (docs/tracking.md lists them)."""
    commit, dirty = git_state()
    tags = {
        TAG_STAGE: stage,
        TAG_PIPELINE: pipeline_id(),
        TAG_COMMIT: commit,
        TAG_DIRTY: str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        TAG_PID: str(os.getpid()),
        TAG_HOST: socket.gethostname(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags[TAG_EXP_NAME] = os.environ["DVC_EXP_NAME"]
    # download precedes any manifest; split replaces it (stage_run tags the new one when it ends)
    digest = data_hash() if stages.get(stage).kind != "data" else None
    if digest:
        tags[TAG_DATA_HASH] = digest
    stage_hash = lineage.current_fingerprint(stage)
    if stage_hash:
        tags[TAG_STAGE_HASH] = stage_hash
    return tags
