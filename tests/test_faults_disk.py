"""The disk filling up (a file-size limit, ulimit -f) while a model stage saves: one `imgclf:` line,
exit 2, nothing half-written, and the next run completes. (The split on a really full or read-only
file system: tests/test_faults_split.py.)"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

from helpers.workspace import stage_argv

# A model big enough to cross the limit (~19 MB: 6x6x64 features into Dense 2048), tiny data.
BIG_MODEL = {"cnn.filters": [8, 64], "cnn.dense_units": 2048}


def run_limited(name: str, workspace: Path, max_bytes: int | None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if max_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(stage_argv(name), cwd=workspace, preexec_fn=limit, capture_output=True, text=True,
                          timeout=600)


def leftovers(folder: Path) -> list[str]:
    """Temp or half-written entries an atomic write would leave behind."""
    return sorted(path.name for path in folder.rglob(".*") if ".tmp-" in path.name or ".old-" in path.name)


def test_model_save_on_a_full_disk_fails_in_one_line_and_keeps_nothing(tiny_training, mlflow_store, workspace):
    tiny_training(BIG_MODEL)
    result = run_limited("baseline", workspace, 8 << 20)

    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imgclf: baseline: cannot write ") and "(File too large)" in last, last
    assert "Traceback" not in result.stderr
    assert not (workspace / "models" / "baseline").exists()
    assert not (workspace / "metrics" / "baseline.json").exists()  # written after the model, so never
    assert leftovers(workspace) == []

    again = run_limited("baseline", workspace, None)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (workspace / "models" / "baseline" / "model.keras").stat().st_size > 8 << 20
    assert (workspace / "metrics" / "baseline.json").is_file()
