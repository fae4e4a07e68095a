"""A step in a child process of its own: `python -m <module> <input.npy> <answer file> [arguments...]`.

Export converts each model, and measure scores each file, in a fresh process: TensorFlow's per-process
state (traced functions' names, the memory a runtime keeps) must not leak from one model into the next.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class ChildFailed(RuntimeError):
    """The child ended without its answer: the message is its last line on stderr."""


def run(module: str, given: np.ndarray, answer: str, arguments: Sequence[str], read: Callable[[Path], T],
        timeout_s: float | None = None) -> T:
    """Run `module` on `given` (saved as .npy); `read` its answer file (named `answer`) before it is deleted."""
    with tempfile.TemporaryDirectory(prefix="imgclf-child-") as folder:
        array, answered = Path(folder) / "input.npy", Path(folder) / answer
        np.save(array, given)
        done = subprocess.run([sys.executable, "-m", module, str(array), str(answered), *arguments],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0 or not answered.is_file():
            lines = [line for line in (done.stderr or "").strip().splitlines() if line.strip()]
            raise ChildFailed(lines[-1] if lines else f"exit code {done.returncode}")
        return read(answered)
