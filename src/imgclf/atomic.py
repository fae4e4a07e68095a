"""Write outputs so a killed stage leaves nothing DVC could cache: temp path, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def directory(target: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    temp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); outputs get the usual mode
    try:
        with _naming(target):
            yield temp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            try:
                os.replace(temp, target)
            except BaseException:
                os.replace(old, target)  # keep the previous good output in place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """An OSError that names no file (h5py, zipfile) gets the output's name: the user sees which."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(target)) from error
        raise


def remove_stale(target: Path) -> None:
    """Delete temp/old siblings of `target` left by a killed process (SIGKILL skips `finally`)."""
    for sibling in Path(target).parent.glob(f".{Path(target).name}.*"):
        match = re.fullmatch(rf"\.{re.escape(Path(target).name)}\.(?:tmp|old)-(\d+)(?:-.*)?", sibling.name)
        if match and not _alive(int(match.group(1))):
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def file(target: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside `target` for writing; on success rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent)
    os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes it private (0600)
    temp = Path(temp_name)
    try:
        with _naming(target), os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_json(target: Path, data: Any) -> None:
    """Stable JSON (sorted keys, fixed float rounding) so two identical runs are byte-identical."""
    with file(target) as stream:
        stream.write(json.dumps(_rounded(data), indent=2, sort_keys=True) + "\n")


def write_bytes(target: Path, data: bytes) -> None:
    """Atomically write a binary file."""
    with file(target, "wb") as stream:
        stream.write(data)


def write_text(target: Path, text: str) -> None:
    """Atomically write a text file."""
    with file(target) as stream:
        stream.write(text)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(key): _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        return _rounded(value.item())
    return value


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
