"""Your own images (data.source folder | csv): data.path, snapshotted into data/raw by the download stage.

data.path is a folder of images, a .zip or .tar archive of one (a tar may be compressed: gz, bz2, xz), a
folder packed by `python -m imgclf pack` (imgclf.data.shards: its files read back through its shards' indexes), or (csv) a
CSV file with a `path` column (relative to the CSV's folder) and a `label` column. The download stage writes
data/raw/images.zip — a stored zip of the files under their paths relative to data.path, sorted,
with fixed timestamps, so the same files give the same bytes — or, with data.storage shards, data/raw/pack
(a pack of the same files), plus data/raw/labels.csv for a CSV.
DVC caches that snapshot: a teammate reproduces from it without the original folder.

Nothing may leave data.path: a symbolic link pointing outside it, or an archive entry with `..`,
an absolute path or a link, refuses the whole input. Hidden files and folders and `__MACOSX/` are
ignored. A file that cannot be read is skipped with its reason; whether a file is a usable image is
the split's to decide (it skips and counts).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

import pandas as pd

from imgclf import paths
from imgclf.data import archive as archive_module
from imgclf.data import listing, shards
from imgclf.errors import UserError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
LAYOUT_HINT = "give a folder of <class>/<images>, a .zip/.tar of one, or a CSV with path,label columns"


@dataclass(frozen=True, slots=True)
class Member:
    """One file of the input: its path relative to data.path, its size, and how to read it."""

    name: str
    size: int
    read: Callable[[], bytes]


class Files:
    """A source's files in name order, re-iterable without holding them all (a folder or a pack of a million
    files is walked again on each pass); len() counts them once (a pack's pack.json knows)."""

    def __init__(self, walk: Callable[[], Iterator[Member]], count: int | None = None):
        self._walk, self._count = walk, count

    def __iter__(self) -> Iterator[Member]:
        return self._walk()

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._walk())
        return self._count


def ignored(relative: str) -> bool:
    """Hidden files and folders, and macOS' __MACOSX/ resource forks: not part of the data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(relative).parts)


def snapshot(source: str, value: str, raw: Path, max_bytes: int, label_columns: tuple[str, ...] = ("label",),
             storage: str = "folders", shards_from: int = 0) -> dict:
    """Write raw/images.zip, or raw/pack/ (data.storage), and raw/labels.csv for a CSV, from data.path;
    a summary for source.json (its `storage`: the resolved data.storage)."""
    found, labels = members(source, value, label_columns)
    if labels is not None:
        labels.to_csv(raw / paths.RAW_LABELS.name, index=False, lineterminator="\n")
    storage = shards.storage_for(storage, len(found), shards_from)
    if storage == "shards":
        skipped = write_pack(raw / paths.RAW_PACK.name, found, max_bytes, paths.user_path(value))
    else:
        skipped = write_zip(raw / paths.RAW_IMAGES.name, found, max_bytes)
    return {"files": len(found) - len(skipped), "skipped": [list(item) for item in skipped], "storage": storage}


def write_pack(target: Path, members: Iterable[Member], max_bytes: int, origin: Path) -> list[tuple[str, str]]:
    """The files as a pack (imgclf.data.shards) with write_zip's choices; the (name, reason) of files skipped.

    From a pack (`origin`), each shard that comes out the same is hard-linked rather than written again."""
    kept = _Admitted(members, max_bytes)
    outcome = shards.pack(kept, target, reuse=origin if origin.is_dir() and shards.is_pack(origin) else None)
    return sorted(kept.skipped + outcome.skipped)


class _Admitted:
    """The members a snapshot takes, in name order (a name held twice, as a tar may: the first), re-iterable;
    `skipped`: those too large."""

    def __init__(self, members: Iterable[Member], max_bytes: int):
        self.members, self.max_bytes = members, max_bytes
        self._too_large: dict[str, str] = {}  # each pass finds the same ones

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(self._too_large.items())

    def __iter__(self) -> Iterator[Member]:
        previous = None
        for member in self.members:
            if member.name == previous:
                continue
            previous = member.name
            if member.size > self.max_bytes:
                self._too_large[member.name] = f"too large to decode safely ({member.size} bytes)"
            else:
                yield member


def members(source: str, value: str,
            label_columns: tuple[str, ...] = ("label",)) -> tuple[Sequence[Member] | Files, pd.DataFrame | None]:
    """The files of data.path (a folder, an archive, or the files a CSV names) in name order and, for a CSV,
    its labels. A folder's or a pack's files are streamed on each pass (Files), the others listed."""
    path = paths.user_path(value)
    labels = None
    if source == "csv":
        found, labels = _csv_members(path, value, label_columns)
    elif path.is_dir() and shards.is_pack(path):
        found = _packed_members(path)
    elif path.is_dir() and listing.sharded(path):
        found = _split_members(path)
    elif path.is_dir():
        found = _folder_members(path, value)
    elif path.is_file() and path.name.lower().endswith(ARCHIVES):
        found = _archive_members(path, value)
    else:
        what = "no such folder" if not path.exists() else "not a folder or a .zip/.tar archive"
        raise UserError(f"data.path = {value}: {what}: {LAYOUT_HINT}")
    if not found:
        raise UserError(f"data.path = {value}: no files in it (hidden files are ignored): {LAYOUT_HINT}")
    return found, labels


def _folder_members(root: Path, value: str) -> Files:
    """Every file below `root`, by relative path, in name order; a link leading outside it is refused."""
    root = root.resolve()

    def walk(folder: Path, prefix: str) -> Iterator[Member]:
        try:  # names only (a folder's as "name/", so its files come exactly where their paths sort): a
            with os.scandir(folder) as listed:  # class folder of 500,000 files is held as its names
                names = sorted(entry.name + "/" * entry.is_dir(follow_symlinks=False) for entry in listed)
        except OSError:
            return  # an unreadable sub-folder: passed over, as os.walk does
        for key in names:
            name = key.rstrip("/")
            full, relative = folder / name, prefix + name
            if key.endswith("/"):
                yield from walk(full, relative + "/")
                continue
            try:
                status = full.lstat()
            except OSError:  # gone since listed: reading it fails and is reported
                status = None
            if status is not None and stat.S_ISLNK(status.st_mode):
                if not full.resolve().is_relative_to(root):
                    raise UserError(
                        f"data.path = {value}: {full.relative_to(root)} links to {full.resolve()}, outside "
                        f"data.path: refusing the whole folder; copy the file in instead"
                    )
                if full.is_dir():
                    continue  # a link to a folder inside data.path: not followed
                status = full.stat() if full.exists() else None  # a broken link: its read fails and is reported
            if ignored(relative):
                continue
            if status is not None and not stat.S_ISREG(status.st_mode):  # a FIFO would block the read forever
                yield Member(relative, 0, _not_a_file)
            else:
                yield Member(relative, status.st_size if status is not None else 0, full.read_bytes)

    return Files(lambda: walk(root, ""))


def _not_a_file() -> bytes:
    raise OSError("not a regular file (a pipe, socket or device)")


def _packed_members(folder: Path) -> Files:
    """Every file of a pack, by its index; reading one checks its sha256 (a damaged one is skipped)."""

    def walk() -> Iterator[Member]:
        reader = shards.Reader(folder)
        for entry in shards.entries(folder):
            yield Member(entry.path, entry.size, lambda entry=entry: reader.read(entry))

    return Files(walk, int(shards.read_info(folder).get("files", 0)) or None)


def _split_members(folder: Path) -> list[Member]:
    """A sharded split's images (data.storage shards), under their <split>/<class>/<file> paths, as files."""
    found = [Member(file.path, file.size, file.read_bytes) for split in paths.SPLITS for file in listing.files(folder, split)]
    return sorted(found, key=lambda member: member.name)


def _archive_members(path: Path, value: str) -> list[Member]:
    """Every regular file of a zip or tar; an entry that would leave it refuses the whole archive."""
    if path.name.lower().endswith(".zip"):
        opened = archive_module.open_zip(path)
        members = []
        for info in opened.infolist():
            reason = archive_module.unsafe_reason(info)
            if reason:
                raise UserError(f"data.path = {value}: entry {info.filename!r} {reason}: refusing the whole archive")
            if not info.is_dir() and not ignored(info.filename):
                members.append(Member(info.filename, info.file_size, lambda info=info: opened.read(info)))
        return sorted(members, key=lambda member: member.name)  # stable: a name held twice keeps its first
    try:
        opened = tarfile.open(fileobj=_seekable_tar(path, value))
        infos = opened.getmembers()
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as error:
        raise UserError(f"data.path = {value}: not a readable tar archive ({error}): {LAYOUT_HINT}") from None
    members = []
    for info in infos:
        leaves = info.name.startswith("/") or ".." in PurePosixPath(info.name).parts
        if leaves or info.issym() or info.islnk() or not (info.isfile() or info.isdir()):
            raise UserError(
                f"data.path = {value}: entry {info.name!r} is a link or a device, or leaves the archive: "
                f"refusing the whole archive"
            )
        if info.isfile() and not ignored(info.name):
            members.append(Member(info.name, info.size, lambda info=info: opened.extractfile(info).read()))
    return sorted(members, key=lambda member: member.name)


BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")  # a block or the end of the stream follows the header


def _decompressor(head: bytes) -> Callable[..., BinaryIO] | None:
    """gzip.open, bz2.open or lzma.open by the file's first bytes, None for a plain tar (which starts with
    its first member's name: the whole magic is checked, so a member named BZh... stays a plain tar)."""
    if head.startswith(b"\x1f\x8b\x08"):
        return gzip.open
    if BZIP2.match(head):
        return bz2.open
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open
    return None


def _seekable_tar(path: Path, value: str) -> BinaryIO:
    """The tar's bytes, to be read in path order, not the archive's: a compressed one (gzip, bzip2, xz) is
    decompressed once into a temporary file (deleted when closed), as every step back in a compressed
    stream would decompress it again from its start."""
    with path.open("rb") as stream:
        opener = _decompressor(stream.read(10))
    if opener is None:
        return path.open("rb")
    plain = tempfile.TemporaryFile(prefix="imgclf-tar-")
    try:
        with opener(path, "rb") as compressed:
            shutil.copyfileobj(compressed, plain, 1 << 20)
    except BaseException as error:  # damaged data (zlib.error, EOFError, ...): the caller says it is unreadable
        plain.close()
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"data.path = {value}: no room to decompress it in {tempfile.gettempdir()} "
                            f"(needs its uncompressed size): free space there or set TMPDIR") from None
        raise
    plain.seek(0)
    return plain


def _csv_members(path: Path, value: str, label_columns: tuple[str, ...]) -> tuple[list[Member], pd.DataFrame]:
    """The files a labels CSV names, and the CSV with its paths normalised (sorted by path).

    The first of `label_columns` becomes the column `label` (the class folders); the others stay as they are.
    """
    if not path.is_file():
        raise UserError(f"data.path = {value}: no such CSV file: {LAYOUT_HINT}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"data.path = {value}: not a readable CSV ({str(error).strip()[:80]}): {LAYOUT_HINT}") from None
    missing = [column for column in ("path", *label_columns) if column not in table.columns]
    if missing:
        named = "path and label columns" if label_columns == ("label",) else \
            f"a path column and the label columns data.label_columns names ({', '.join(label_columns)})"
        raise UserError(
            f"data.path = {value}: the CSV has no {' and no '.join(missing)} column (its columns: "
            f"{', '.join(map(str, table.columns)) or 'none'}): give it {named}"
        )
    first = label_columns[0]
    if first != "label" and "label" in table.columns:
        raise UserError(f"data.path = {value}: the CSV has a label column, but data.label_columns puts {first} "
                        f"first: list label first, or rename that column")
    for column in label_columns[1:]:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise UserError(f"data.path = {value}: line {empty[0] + 2} has an empty {column}: fill it in or remove the row")
    table = table.rename(columns={first: "label"})
    if table.empty:
        raise UserError(f"data.path = {value}: the CSV has no rows: {LAYOUT_HINT}")
    folder = path.parent.resolve()
    normalized = []
    for line, (relative, label) in enumerate(zip(table["path"], table["label"], strict=True), start=2):
        if not relative.strip() or not label.strip():
            raise UserError(f"data.path = {value}: line {line} has an empty path or label: fill it in or remove the row")
        full = (folder / relative).resolve()
        if not full.is_relative_to(folder):
            raise UserError(f"data.path = {value}: line {line}: {relative} is outside the CSV's folder: refusing the CSV")
        normalized.append(full.relative_to(folder).as_posix())
    table["path"] = normalized
    repeated = table["path"][table["path"].duplicated()]
    if len(repeated):
        raise UserError(f"data.path = {value}: {repeated.iloc[0]} is listed more than once: keep one row per file")
    absent = [name for name in table["path"] if not (folder / name).is_file()]
    if absent:
        raise UserError(
            f"data.path = {value}: {len(absent)} row(s) name files that do not exist (first: {absent[0]}): "
            f"fix the paths (relative to the CSV's folder) or remove the rows"
        )
    table = table.sort_values("path").reset_index(drop=True)
    members = [Member(name, (folder / name).stat().st_size, (folder / name).read_bytes) for name in table["path"]]
    return members, table


class Stored:
    """The snapshot in data/raw, read by the split: images.zip or (data.storage shards) pack/."""

    def __init__(self, raw: Path):
        self._zip = self._reader = None
        if (raw / paths.RAW_PACK.name).is_dir():
            self.pack: Path | None = raw / paths.RAW_PACK.name
            self._reader = shards.Reader(self.pack)
        else:
            self.pack = None
            self._zip = archive_module.open_zip(raw / paths.RAW_IMAGES.name)

    def files(self) -> Iterator[tuple[str, int, shards.Entry | None]]:
        """(name, size, where a packed file's bytes lie or None in a zip) of each file, in name order;
        a pack's streamed from its indexes, not held."""
        if self.pack:
            for entry in shards.entries(self.pack):
                yield entry.path, entry.size, entry
        else:
            for info in sorted(self._zip.infolist(), key=lambda info: info.filename):
                yield info.filename, info.file_size, None

    def read(self, name: str, origin: shards.Entry | None) -> bytes:
        """A file's bytes (`origin`: where files() said a packed one lies), a packed one checked against its
        sha256 (OSError when damaged)."""
        return self._reader.read(origin) if self.pack else self._zip.read(name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Stored:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_zip(target: Path, members: Iterable[Member], max_bytes: int) -> list[tuple[str, str]]:
    """A stored zip of `members`, sorted, with fixed timestamps; the (name, reason) of files skipped."""
    kept = _Admitted(members, max_bytes)
    skipped: list[tuple[str, str]] = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
        for member in kept:
            try:
                data = member.read()
            except archive_module.READ_ERRORS as error:
                skipped.append((member.name, f"unreadable ({str(error)[:60]})"))
                continue
            out.writestr(zipfile.ZipInfo(member.name, date_time=ZIP_DATE), data)
    return sorted(kept.skipped + skipped)
