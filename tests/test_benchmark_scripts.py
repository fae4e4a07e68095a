"""Every `make bench` script starts from any working directory, as run_all runs it: imports resolve, --help answers.

A fresh clone's backbone benchmark once exited with "No module named 'stages'" after 4 s: it imported the
stage modules before putting the checkout's root on sys.path. No test ran the scripts, so only a `make bench`
on a fresh clone found it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    path.name for path in (ROOT / "benchmarks").glob("*.py") if "ArgumentParser(" in path.read_text()
)


def test_every_benchmark_with_options_is_listed():
    assert {"backbone.py", "chapter.py", "input_pipeline.py", "run_all.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
