"""Faults while the split writes: a crash, a full disk, a read-only folder, a failing rename.

Whatever happens, data/split and metrics/split.json are either the previous good ones, byte for
byte, or the complete new ones; never a mix, never a partial folder DVC could cache; no temp
folder is left behind (or, after SIGKILL, the next run removes it).

We run as root, so chmod cannot make a folder read-only: faults are injected as the OSError the
kernel would raise (ENOSPC, EROFS, EACCES), in-process and inside the real stage script. Where the
machine allows mounts in a private namespace (unshare -m), a real full and a real read-only tmpfs
are used too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from imgclf import atomic, paths
from imgclf.data import split
from imgclf.errors import UserError

from helpers.workspace import REPO, stage_argv

SMALL = {"data.train_per_class": 6, "data.test_per_class": 2}
LARGER = {"data.train_per_class": 10, "data.test_per_class": 3}


class SimulatedKill(BaseException):
    """What a signal looks like to Python code: not an Exception, so nothing swallows it."""


def tree(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def state() -> dict:
    """data/split and metrics/split.json, plus anything hidden (temp folders) in data/ or metrics/."""
    metrics = paths.metrics_file("split")
    hidden = sorted(str(path) for folder in (paths.DATA, paths.METRICS) if folder.exists()
                    for path in folder.iterdir() if path.name.startswith("."))
    return {"split": tree(paths.SPLIT), "metrics": metrics.read_bytes() if metrics.exists() else None,
            "hidden": hidden}


@pytest.fixture
def good_split(raw_mnist_sample, write_params) -> dict:
    """An earlier good run's outputs; returns their state."""
    split.split(write_params(SMALL))
    before = state()
    assert before["split"] and before["metrics"] and before["hidden"] == []
    return before


def fail_after(count: int, error: BaseException):
    """A Path.write_bytes that writes `count` files, then raises `error`."""
    original = Path.write_bytes
    calls = {"n": 0}

    def write_bytes(self: Path, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > count:
            raise error
        return original(self, data)

    return write_bytes


# --- in-process ---------------------------------------------------------------------------


def test_crash_midway_leaves_no_split_at_all(raw_mnist_sample, write_params, monkeypatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", fail_after(25, SimulatedKill("killed")))
    with pytest.raises(SimulatedKill):
        split.split(write_params(LARGER))
    assert state() == {"split": {}, "metrics": None, "hidden": []}


def test_crash_midway_keeps_the_previous_split(good_split, write_params, monkeypatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", fail_after(25, SimulatedKill("killed")))
    with pytest.raises(SimulatedKill):
        split.split(write_params(LARGER))
    assert state() == good_split


def test_crash_while_writing_metrics_keeps_both_outputs(good_split, write_params, monkeypatch) -> None:
    original = atomic.file

    def exploding(target, mode="w"):
        if Path(target).name == "split.json":
            manager = original(target, mode)
            stream = manager.__enter__()
            stream.write('{"half": ')
            manager.__exit__(SimulatedKill, SimulatedKill("killed"), None)
            raise SimulatedKill("killed")
        return original(target, mode)

    monkeypatch.setattr(atomic, "file", exploding)
    with pytest.raises(SimulatedKill):
        split.split(write_params(LARGER))
    assert state() == good_split


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_disk_full_while_writing_images(good_split, write_params, monkeypatch, code: int) -> None:
    error = OSError(code, os.strerror(code), str(paths.DATA / ".split.tmp-x" / "train" / "0" / "f.png"))
    monkeypatch.setattr(Path, "write_bytes", fail_after(30, error))
    with pytest.raises(UserError) as caught:
        split.split(write_params(LARGER))
    assert str(caught.value).startswith(f"cannot write the split ({os.strerror(code)}: ")
    assert str(caught.value).endswith(": free disk space or fix the folder's permissions, then run again")
    assert state() == good_split


def test_disk_full_at_fsync_of_metrics(good_split, write_params, monkeypatch) -> None:
    """NFS and full disks report ENOSPC as late as fsync: still nothing half-written, the file named."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(UserError, match=r"^cannot write the split \(No space left on device: metrics/split\.json\)"):
        split.split(write_params(LARGER))
    assert state() == good_split


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_or_forbidden_data_folder(good_split, write_params, monkeypatch, code: int) -> None:
    def mkdtemp(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(UserError, match=rf"^cannot write the split \({os.strerror(code)}: data\): "):
        split.split(write_params(LARGER))
    assert state() == good_split


@pytest.mark.parametrize("failing_call", [1, 2])
def test_failing_rename_keeps_the_previous_split(good_split, write_params, monkeypatch, failing_call: int) -> None:
    """Call 1 moves the old split aside, call 2 moves the new one in: either may fail."""
    original = os.replace
    calls = {"n": 0}

    def replace(source, target):
        if Path(target) == paths.SPLIT or Path(source) == paths.SPLIT:
            calls["n"] += 1
            if calls["n"] == failing_call:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(target))
        return original(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError, match=r"^cannot write the split \(Permission denied: "):
        split.split(write_params(LARGER))
    after = state()
    assert after["split"] == good_split["split"]
    assert after["hidden"] == []


def test_stale_temp_folders_of_dead_processes_are_removed(good_split, write_params) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = paths.DATA / f".split.tmp-{pid}-abc123"
    (stale / "train" / "0").mkdir(parents=True)
    (stale / "train" / "0" / "x.png").write_bytes(b"partial")
    stale_metrics = paths.METRICS / f".split.json.tmp-{pid}-xyz"
    stale_metrics.write_text("{")
    alive = paths.DATA / f".split.tmp-{os.getppid()}-busy"  # a live process's: left alone
    alive.mkdir()
    split.split(write_params(LARGER))
    hidden = state()["hidden"]
    assert hidden == [str(alive)]


# --- through the real stage script --------------------------------------------------------

INJECT = """
import errno, os, runpy, sys, tempfile
from pathlib import Path
kind = sys.argv[1]
if kind == "enospc":
    original, calls = Path.write_bytes, [0]
    def write_bytes(self, data):
        calls[0] += 1
        if calls[0] > 30:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return original(self, data)
    Path.write_bytes = write_bytes
elif kind in ("erofs", "eacces"):
    code = errno.EROFS if kind == "erofs" else errno.EACCES
    def mkdtemp(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))
    tempfile.mkdtemp = mkdtemp
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def without_mlflow_store_setup(stderr: str) -> list[str]:
    """stderr lines, minus MLflow's INFO lines when it creates a fresh SQLite store."""
    return [line for line in stderr.strip().splitlines()
            if not re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow\.store\.db\.utils: ", line)]


def stage_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return env


@pytest.mark.parametrize("kind, strerror", [("enospc", "No space left on device"),
                                            ("erofs", "Read-only file system"),
                                            ("eacces", "Permission denied")])
def test_stage_script_reports_write_faults_in_one_line(good_split, mlflow_store, write_params, workspace: Path,
                                                       kind: str, strerror: str) -> None:
    write_params(LARGER)
    script = "stages.split"
    result = subprocess.run([sys.executable, "-c", INJECT, kind, script], cwd=workspace, env=stage_env(),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = without_mlflow_store_setup(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"imgclf: cannot write the split ({strerror}: "), lines[0]
    assert lines[0].endswith("free disk space or fix the folder's permissions, then run again")
    assert state() == good_split


def test_sigkill_midway_then_rerun(good_split, mlflow_store, write_params, workspace: Path) -> None:
    """A real SIGKILL: `finally` never runs, so the temp folder stays until the next run removes it."""
    write_params({"data.train_per_class": 400, "data.test_per_class": 100})
    process = subprocess.Popen(stage_argv("split"), cwd=workspace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    temp = []
    while time.monotonic() < deadline and process.poll() is None:
        temp = [path for path in paths.DATA.glob(f".split.tmp-{process.pid}-*")]
        if temp and sum(1 for _ in temp[0].rglob("*.png")) >= 200:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the split finished before it could be killed: " + process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    after = state()
    assert after["split"] == good_split["split"] and after["metrics"] == good_split["metrics"]
    assert after["hidden"] == [str(temp[0])]  # what SIGKILL leaves: only a hidden temp folder
    metrics = split.split(write_params(LARGER))
    final = state()
    assert final["hidden"] == []
    assert json.loads(final["metrics"]) == metrics
    assert len(final["split"]) == 10 * 13 + 1


# --- real filesystems, where this machine lets us mount in a private namespace --------------


def can_mount_privately() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


REAL_FS = """
set -u
mount -t tmpfs -o size=$SIZE tmpfs data
cp -a "$SEED"/. data/
[ "$MODE" = ro ] && mount -o remount,ro data
"$PYTHON" -m "$STAGE" 2>stage.err
echo "exit=$?"
find data -mindepth 1 -maxdepth 1 -name '.*' | sed 's/^/hidden=/'
sha256sum data/split/manifest.csv
"""


@pytest.mark.skipif(not can_mount_privately(), reason="needs root and mount namespaces (unshare -m)")
@pytest.mark.parametrize("mode", ["full", "ro"])
def test_real_full_or_read_only_filesystem(good_split, mlflow_store, write_params, workspace: Path, mode: str) -> None:
    seed = workspace.parent / f"{workspace.name}-seed"
    shutil.copytree(paths.DATA, seed)
    used = sum(path.stat().st_size + 4096 for path in seed.rglob("*") if path.is_file())
    write_params({"data.train_per_class": 400, "data.test_per_class": 100})
    env = dict(os.environ, SIZE=str(used + 256 * 1024), MODE=mode, PYTHON=sys.executable, SEED=str(seed),
               STAGE="stages.split")
    result = subprocess.run(["unshare", "-m", "sh", "-c", REAL_FS], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=300)
    stage_err = (workspace / "stage.err").read_text().strip().splitlines()
    (workspace / "stage.err").unlink()
    assert "exit=2" in result.stdout, (result.stdout, result.stderr, stage_err)
    expected = "No space left on device" if mode == "full" else "Read-only file system"
    stage_err = without_mlflow_store_setup("\n".join(stage_err))
    assert len(stage_err) == 1 and stage_err[0].startswith(f"imgclf: cannot write the split ({expected}: ")
    assert "hidden=" not in result.stdout  # no temp folder left on the full/read-only filesystem
    old_manifest = hashlib.sha256((seed / "split" / "manifest.csv").read_bytes()).hexdigest()
    assert old_manifest in result.stdout  # the previous split is intact
    assert state()["metrics"] == good_split["metrics"]
    # Space again (the namespace and its file system are gone): the next run completes.
    again = subprocess.run(stage_argv("split"), cwd=workspace, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
