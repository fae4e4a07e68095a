"""Read dogs-vs-cats archives safely: Kaggle's train.zip or Microsoft's PetImages zip.

Nothing is ever extracted under an entry's own name, and an archive holding an entry that would
escape its folder (`../`, an absolute path, a symlink) is refused as a whole.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgclf.errors import UserError

# What reading one file of a folder or an archive may raise: that file is skipped and reported, not fatal.
READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, tarfile.TarError, RuntimeError, ValueError)
KAGGLE_ENTRY = re.compile(r"^(?:[^/]+/)*(cat|dog)\.\d+\.[A-Za-z]+$")
PETIMAGES_ENTRY = re.compile(r"^(?:[^/]+/)*PetImages/(Cat|Dog)/[^/]+$")
JUNK = ("__MACOSX/", "Thumbs.db", ".DS_Store", "desktop.ini")


@dataclass(frozen=True)
class Entry:
    """One candidate image in the archive."""

    name: str  # the entry's name inside the zip
    label: str  # "cat" | "dog"
    filename: str  # the file name it gets in the split: cat.123.jpg / cat.PetImages-123.jpg


@dataclass(frozen=True)
class Listing:
    """An archive's usable entries and the ones skipped before reading (junk, unknown names)."""

    entries: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...]  # (entry name, reason)


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open `path` as a zip, or explain what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data.archive = {path}: no such file: set it to a dogs-vs-cats train.zip or null")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the archive is empty (0 bytes): download it again")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UserError(
            f"{path}: not a zip archive (corrupt, truncated, or another format): "
            f"use Kaggle's dogs-vs-cats train.zip or Microsoft's PetImages zip"
        ) from None


def unsafe_reason(info: zipfile.ZipInfo) -> str:
    """Why an entry would escape the target folder, or '' when it is safe."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "contains '..'"
    return ""


def list_entries(archive: zipfile.ZipFile, source: str) -> Listing:
    """Classify every entry: a cat or dog image, junk to skip, or an unsafe entry (refused)."""
    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}  # split file name -> the entry that took it
    for info in sorted(archive.infolist(), key=lambda item: item.filename):
        reason = unsafe_reason(info)
        if reason:
            raise UserError(
                f"{source}: entry {info.filename!r} {reason}: refusing the whole archive "
                f"(it could write outside the data folder); use an untampered train.zip"
            )
        name = info.filename
        if info.is_dir():
            continue
        if any(part in name for part in JUNK):
            skipped.append((name, "system file (Thumbs.db, __MACOSX, ...)"))
            continue
        kaggle = KAGGLE_ENTRY.match(name)
        pet = PETIMAGES_ENTRY.match(name)
        if kaggle:
            entry = Entry(name, kaggle.group(1), PurePosixPath(name).name)
        elif pet:
            label = pet.group(1).lower()
            entry = Entry(name, label, f"{label}.{PurePosixPath(name).name}")
        else:
            skipped.append((name, "not a cat/dog image name (train/cat.N.jpg or PetImages/Cat/N.jpg)"))
            continue
        # Two entries mapping to one split file name would overwrite each other on disk.
        if entry.filename in seen:
            skipped.append((name, f"duplicate file name ({entry.filename}, also {seen[entry.filename]})"))
            continue
        seen[entry.filename] = name
        entries.append(entry)
    if not entries:
        raise UserError(
            f"{source}: no cat/dog images found: expected Kaggle's train/cat.N.jpg entries or "
            f"PetImages/Cat/N.jpg; check that this is the dogs-vs-cats train.zip"
        )
    return Listing(tuple(sorted(entries, key=lambda entry: entry.name)), tuple(skipped))


def read_entry(archive: zipfile.ZipFile, entry: Entry, max_bytes: int) -> tuple[bytes | None, str]:
    """The entry's bytes, or (None, reason) when the archive itself is broken there."""
    info = archive.getinfo(entry.name)
    if info.file_size > max_bytes:
        return None, f"too large to decode safely ({info.file_size} bytes)"
    if info.flag_bits & 0x1:
        return None, "encrypted in the archive (password-protected entry)"
    try:
        return archive.read(info), ""
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as error:  # RuntimeError: zipfile's "password required"
        return None, f"unreadable in the archive ({str(error)[:60]})"
