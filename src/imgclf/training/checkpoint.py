"""Training that survives being killed: a stage's whole training state, saved as it goes, resumed on restart.

A training stage (baseline, augmented, top, finetune, and the step-counted loops of perceptron and
convnet) saves its state at each epoch's end, or every N steps for the step-counted loops
(`train.checkpoint`): every variable of the model and the optimizer (the random generators' states
included: Keras' seed generators are variables, the low-level models seed from their step counter),
how far it got (which fixes the position in the input stream: every stream is seeded, so the resumed
run skips exactly the batches already trained on), the history so far, the per-step figures of an
unfinished epoch, early stopping's state, and the stage's MLflow run id.

The file is `.checkpoints/<stage>.npz` (git-ignored, never a DVC output), written to a temp file and
renamed, so a kill during a save leaves the previous one whole; arrays only, read back without pickle.
Restarted with the same code, params and data, the stage resumes from it and its outputs are the
bytes an uninterrupted run writes; under anything else the checkpoint is discarded, saying why. It is
removed when the stage completes. What "the same" means is the fingerprint: the stage's code files
(its dvc.yaml code deps) by content, its data deps by each file's path, size and modification time,
its params (resolved), and the TensorFlow, Keras and NumPy versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from imgclf import atomic, paths

FORMAT = 1  # the layout of the file; another is discarded
# Test hook, for the kill-and-resume tests: "step:N" SIGKILLs this process just before training step N
# (counted from the start of training, resumed steps included), "save:N" halfway through writing its Nth
# checkpoint file (the first is the one begin() writes). Unset, nothing happens.
TEST_KILL = "IMGCLF_TEST_KILL"


def test_kill(event: str, count: int) -> None:
    """SIGKILL this process if IMGCLF_TEST_KILL names this moment (`event`:`count`)."""
    if os.environ.get(TEST_KILL) == f"{event}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


def test_kill_wanted(event: str) -> bool:
    """Whether IMGCLF_TEST_KILL names a moment of this kind (a loop adds its per-step check only then)."""
    return os.environ.get(TEST_KILL, "").startswith(f"{event}:")


def steps_between(setting: str, steps_per_epoch: int) -> int | None:
    """Steps between two saves of a step-counted loop for `train.checkpoint` (None: never)."""
    if setting == "none":
        return None
    if setting.startswith("steps:"):
        return int(setting.split(":", 1)[1])
    return steps_per_epoch


@dataclass
class Saved:
    """A checkpoint as read back: how far training got, and everything needed to go on from there."""

    done: int  # epochs (Keras fit) or steps (the low-level loops) completed
    total: int  # epochs or steps the stage trains in all
    arrays: list[np.ndarray]  # the state's variables, in the order the loop saved them
    history: dict[str, list[float]]  # per completed epoch
    extra: dict[str, Any]  # the loop's own: early stopping's state, an unfinished epoch's per-step figures
    seconds: float  # training time before this process


@dataclass
class Checkpoints:
    """One stage's checkpoint file: what it was made under, and the run it belongs to."""

    stage: str
    fingerprint: dict[str, Any]
    setting: str  # train.checkpoint
    unit: str = "epoch"  # what `done` counts: epoch (Keras fit) or step (the low-level loops)
    run_id: str | None = None  # the MLflow run this execution logs to (a resumed one keeps its run)
    resumed: Saved | None = None  # what this process starts from; None: the beginning
    saves: int = field(default=0)

    @property
    def path(self) -> Path:
        return paths.CHECKPOINTS / f"{self.stage}.npz"

    @property
    def enabled(self) -> bool:
        return self.setting != "none"

    def open(self) -> None:
        """Read the checkpoint if there is one: kept (and said) when made under this fingerprint, else
        discarded (and said why)."""
        atomic.remove_stale(self.path)  # the temp file of a save a kill interrupted
        if not self.path.is_file():
            return
        if not self.enabled:
            self.path.unlink()
            print(f"{self.stage}: removed its checkpoint: train.checkpoint is none", flush=True)
            return
        try:
            meta, arrays = _read(self.path)
        except (OSError, ValueError, KeyError) as error:
            self.path.unlink(missing_ok=True)
            print(f"{self.stage}: discarded an unreadable checkpoint ({error}); training from the start", flush=True)
            return
        why = differences(meta.get("fingerprint", {}), self.fingerprint) if meta.get("format") == FORMAT else ["its format"]
        if why:
            self.path.unlink()
            print(f"{self.stage}: discarded the checkpoint at {meta.get('unit', 'epoch')} {meta.get('done', 0)}: "
                  f"made under other "
                  f"{'; '.join(why)}; training from the start", flush=True)
            return
        self.run_id = meta.get("run_id")
        self.resumed = Saved(int(meta["done"]), int(meta["total"]), arrays, meta["history"], meta["extra"],
                             float(meta["seconds"]))

    def begin(self, run_id: str) -> None:
        """Note the MLflow run at the start, so a kill before the first save still resumes that run."""
        self.run_id = run_id
        if self.enabled and self.resumed is None and not self.path.exists():
            self._write({"done": 0, "total": 0, "history": {}, "extra": {}, "seconds": 0.0}, [])

    def resume_line(self, total: int, unit: str = "epoch") -> Saved | None:
        """The state to start from (saying so in one line), or None to start at the beginning. `total`: the
        epochs (unit epoch: Keras fit) or steps (unit step: the low-level loops) the stage trains."""
        self.unit = unit
        saved = self.resumed
        if saved is None or (saved.done == 0 and not saved.arrays):
            return None
        if saved.total != total:  # cannot happen under the same params; kept as a guard
            print(f"{self.stage}: discarded the checkpoint: it trains {saved.total} {self.unit}s, this run {total}",
                  flush=True)
            return None
        position = saved.done + 1 if saved.done < total else total
        print(f"{self.stage}: resuming at {self.unit} {position} of {total}", flush=True)
        return saved

    def save(self, done: int, total: int, variables: Sequence[Any], history: Mapping[str, list[float]],
             extra: Mapping[str, Any], seconds: float) -> None:
        """Write the state atomically: a kill during the write leaves the previous checkpoint whole."""
        if not self.enabled:
            return
        arrays = [np.asarray(variable) for variable in variables]
        meta = {"done": done, "total": total, "history": {key: [float(value) for value in values]
                                                          for key, values in history.items()},
                "extra": dict(extra), "seconds": seconds}
        self._write(meta, arrays)

    def refuse(self, why: str) -> None:
        """No checkpoints for this run (said in one line with `why`); any earlier one is removed."""
        if self.enabled:
            print(f"{self.stage}: no checkpoints: {why}", flush=True)
        self.setting, self.resumed = "none", None
        self.path.unlink(missing_ok=True)

    def finish(self) -> None:
        """The stage completed: its checkpoint is of no further use."""
        self.path.unlink(missing_ok=True)

    def _write(self, meta: dict[str, Any], arrays: list[np.ndarray]) -> None:
        meta = meta | {"format": FORMAT, "stage": self.stage, "unit": self.unit, "run_id": self.run_id,
                       "fingerprint": self.fingerprint, "saved_at": time.time()}
        buffer = io.BytesIO()
        members = {f"v{index:05d}": array for index, array in enumerate(arrays)}
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8), **members)
        data = buffer.getvalue()
        self.saves += 1
        with atomic.file(self.path, "wb") as stream:
            if test_kill_wanted("save"):
                stream.write(data[: len(data) // 2])
                stream.flush()
                test_kill("save", self.saves)
            stream.write(data[stream.tell():])


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        names = sorted(name for name in archive.files if name != "meta")
        return meta, [archive[name] for name in names]


def restore(variables: Sequence[Any], arrays: Sequence[np.ndarray]) -> None:
    """Assign saved arrays to the variables they were saved from (same order, shapes checked)."""
    if len(variables) != len(arrays):
        raise ValueError(f"the checkpoint holds {len(arrays)} variables, the model {len(variables)}")
    for variable, array in zip(variables, arrays, strict=True):
        if tuple(variable.shape) != array.shape:
            raise ValueError(f"variable {getattr(variable, 'path', getattr(variable, 'name', '?'))}: shape "
                             f"{tuple(variable.shape)}, checkpoint {array.shape}")
        variable.assign(array)


# --- what a checkpoint was made under ------------------------------------------------------------------

def fingerprint(flat_params: Mapping[str, Any], code_root: Path, code_files: Sequence[str],
                data_inputs: Sequence[str]) -> dict[str, Any]:
    """The stage's code files (paths under `code_root`) by content, its data deps (paths in the workspace) by
    listing, its params but train.checkpoint, and the library versions."""
    import keras
    import tensorflow as tf

    files = {name: _file_digest(code_root / name) for name in code_files}
    files |= {name: _data_digest(Path(name)) for name in data_inputs}
    params = {key: value for key, value in flat_params.items() if key != "train.checkpoint"}
    return {"params": json.loads(json.dumps(params, default=str)), "files": files,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words ([] when nothing does)."""
    said = []
    params = _changed(old.get("params", {}), new.get("params", {}))
    if params:
        said.append("params (" + ", ".join(params[:3]) + (", …" if len(params) > 3 else "") + ")")
    files = sorted(name for name in set(old.get("files", {})) | set(new.get("files", {}))
                   if old.get("files", {}).get(name) != new.get("files", {}).get(name))
    code = [name for name in files if name.endswith(".py")]
    data = [name for name in files if not name.endswith(".py")]
    if code:
        said.append("code (" + ", ".join(code[:3]) + (", …" if len(code) > 3 else "") + ")")
    if data:
        said.append("data (" + ", ".join(data) + ")")
    versions = _changed(old.get("versions", {}), new.get("versions", {}))
    if versions:
        said.append("library versions (" + ", ".join(versions) + ")")
    return said


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{key} {old.get(key, '-')} -> {new.get(key, '-')}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_digest(path: Path) -> str | None:
    """A data dep's identity without reading it: each file's relative path, size and modification time
    (a folder of a million images lists in seconds; anything that rewrites a file changes it)."""
    if path.is_file():
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for folder, names, files in os.walk(path):
        names.sort()
        for name in sorted(files):
            file = Path(folder) / name
            stat = file.stat()
            digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# --- the stage's checkpoints, for its training loop ------------------------------------------------------

_ACTIVE: dict[str, Checkpoints] = {}


@contextlib.contextmanager
def opened(stage: str, fingerprint: dict[str, Any], setting: str) -> Iterator[Checkpoints]:
    """The stage's checkpoints while it runs; its training loop finds them with active(stage). Removed when
    the stage completes, kept when it fails or is stopped."""
    checkpoints = Checkpoints(stage, fingerprint, setting)
    checkpoints.open()
    _ACTIVE[stage] = checkpoints
    try:
        yield checkpoints
        checkpoints.finish()
    finally:
        _ACTIVE.pop(stage, None)


def active(stage: str) -> Checkpoints | None:
    """The running stage's checkpoints (None when the loop runs outside a stage, e.g. in a test)."""
    return _ACTIVE.get(stage)
