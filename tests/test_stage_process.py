"""A stage process's own lifecycle, outside its recipe."""

from __future__ import annotations

import subprocess
import sys


def test_a_stage_process_freezes_what_is_alive_before_the_interpreter_exits() -> None:
    """The exit handler a stage registers (imgclf.pipeline.stage.freeze_at_exit, called by stage.main) freezes
    the heap (gc.freeze), so the interpreter's last collection skips what TensorFlow, Keras and MLflow imported.
    Importing the module registers nothing; the probe is registered first, so it runs after the stage's
    handler (exit handlers run last-registered first)."""
    probe = ("import atexit, gc\n"
             "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count()))\n"
             "import imgclf.pipeline.stage\n"
             "import tensorflow, keras, mlflow\n"
             "imgclf.pipeline.stage.freeze_at_exit()\n"
             "imgclf.pipeline.stage.freeze_at_exit()\n"
             "print('frozen before exit:', gc.get_freeze_count())\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    before, at_exit = (int(line.rsplit(":", 1)[1]) for line in result.stdout.splitlines())
    assert before == 0
    assert at_exit > 100_000  # everything the stage modules imported
